"""Monthly cycles through real ZenML pipelines in an isolated ZenML config (see conftest)."""

import json
from pathlib import Path

import pytest

from ledgerlink.data.store import DatasetRef
from utils.model_versions import ModelVersionMetadata

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def cfg(tmp_path_factory):
    from ledgerlink.config import Config

    home = tmp_path_factory.mktemp("e2e")
    return Config.load(
        ROOT / "configs" / "local.yaml",
        {
            "data_dir": str(home),
            "model_name": "e2e_matcher",
            "synthetic": {"months": 3, "contractors": 60, "transfers_per_month": 300},
            "warehouse": {"path": str(home / "warehouse.duckdb")},
            "store": {"uri": str(home / "datasets")},
            "deploy": {"model_dir": str(home / "models")},
            "model": {"params": {"n_estimators": 60}},
            "promotion": {"bootstrap_samples": 300},
        },
    )


def test_two_monthly_cycles_with_the_model_control_plane(cfg, capsys):
    from zenml.client import Client

    from cli.runner import collect, run_cycles, train

    assert run_cycles(cfg, "training", months=1) == 0
    client = Client()
    v1 = client.get_model_version(cfg.model_name, "production")
    meta1 = v1.run_metadata  # the keys as stored (README, utils/model_versions.py)
    assert meta1["data_months"] == ["2025-01"]
    assert meta1["decision"]["promote"] is True and "rules baseline" in meta1["decision"]["reasons"][0]
    assert meta1["metrics"]["pair_f1"] > meta1["rules_evaluation"]["metrics"]["pair_f1"]
    assert set(meta1["evaluation"]["slices"]) >= {"single", "multi", "pays_nothing", "number_present", "number_absent"}
    assert 0 < meta1["auto_threshold"] <= 1
    typed1 = ModelVersionMetadata.of(v1)
    assert typed1.auto_threshold == meta1["auto_threshold"] and typed1.data_months == ["2025-01"]
    assert typed1.deployment["deployed"] is True and typed1.deployment_succeeded()
    pointer = json.loads((Path(cfg.deploy.model_dir) / cfg.model_name / "production.json").read_text())
    assert pointer["number"] == v1.number

    collected = collect(cfg)
    assert isinstance(collected.dataset_ref, DatasetRef) and collected.dataset_ref.months == ["2025-01", "2025-02"]
    second = train(cfg)
    versions = client.list_model_versions(cfg.model_name, sort_by="asc:number").items
    assert len(versions) == 2
    v2 = client.get_model_version(cfg.model_name, versions[1].number)
    meta2 = ModelVersionMetadata.of(v2)
    assert meta2.data_months == ["2025-01", "2025-02"]
    assert meta2.test_fingerprint == typed1.test_fingerprint  # the frozen test set did not move
    decision = second.decision
    assert decision["production"]["number"] == v1.number and decision["production"]["rescored"] is False
    assert decision["reasons"] and meta2.decision["reasons"] == decision["reasons"]
    assert second.evaluation["test_fingerprint"] == meta2.test_fingerprint
    assert second.promotion["number"] == v2.number
    prod = client.get_model_version(cfg.model_name, "production")
    if decision["promote"]:
        assert prod.number == v2.number
        assert str(client.get_model_version(cfg.model_name, v1.number).stage).endswith("archived")
        assert second.deployment["deployed"] is True
    else:
        assert prod.number == v1.number
        assert second.deployment == {"deployed": False, "reason": "; ".join(decision["reasons"])}

    # The run's reports are dashboard visualisations, and so is the dataset reference.
    run = client.get_pipeline_run(second.run)
    ref_artifact = run.steps["current_dataset"].outputs["dataset_ref"][0]
    loaded = ref_artifact.load()
    assert isinstance(loaded, DatasetRef) and ref_artifact.visualizations
    assert (loaded.months, loaded.train_fingerprint) == (collected.dataset_ref.months, meta2.train_fingerprint)
    for step, name in (("evaluate_matcher", "evaluation_report"), ("compare_with_production", "comparison_report")):
        art = run.steps[step].outputs[name][0]
        assert art.visualizations and "<table>" in art.load()


def test_retraining_on_unchanged_data_is_not_promoted_and_deploy_is_skipped(cfg):
    from zenml.client import Client

    from cli.runner import train

    before = Client().get_model_version(cfg.model_name, "production").number
    result = train(cfg)
    assert result.decision["promote"] is False
    assert any("min_delta" in r for r in result.decision["reasons"])
    assert result.deployment["deployed"] is False
    assert Client().get_model_version(cfg.model_name, "production").number == before
