"""The monitoring pipeline and `--pipeline all` through real ZenML, on small data."""

from pathlib import Path

import pytest

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[1]


def _cfg(home, **over):
    from ledgerlink.config import Config

    base = {
        "data_dir": str(home),
        "model_name": f"mon_{home.name}",
        "synthetic": {"months": 3, "contractors": 50, "transfers_per_month": 200},
        "warehouse": {"path": str(home / "warehouse.duckdb")},
        "store": {"uri": str(home / "datasets")},
        "deploy": {"model_dir": str(home / "models"), "deployer": "local", "smoke_test": False},
        "model": {"params": {"n_estimators": 40}},
        "promotion": {"bootstrap_samples": 200},
    }
    for k, v in over.items():
        base[k] = {**base.get(k, {}), **v} if isinstance(v, dict) else v
    return Config.load(ROOT / "configs" / "local.yaml", base)


def test_all_runs_collection_monitoring_training_and_records_fresh_month_performance(tmp_path):
    from zenml.client import Client

    from cli.runner import run_cycle

    cfg = _cfg(tmp_path / "always")
    first = run_cycle(cfg, "all")
    assert first["month"] == "2025-01" and first["promoted"]
    second = run_cycle(cfg, "all")
    assert second["month"] == "2025-02"
    values = second["values"]
    assert 0.0 <= values["drift_share"] <= 1.0
    assert 0.0 < values["fresh_accuracy"] <= 1.0
    from utils.model_versions import ModelVersionMetadata

    v1 = Client().get_model_version(cfg.model_name, 1)
    fresh = v1.run_metadata["fresh_2025-02"]["metrics"]  # the key as stored
    assert fresh["exact_set_accuracy"] == pytest.approx(values["fresh_accuracy"])
    assert ModelVersionMetadata.of(v1).fresh["2025-02"].metrics == fresh
    runs = Client().list_pipeline_runs(sort_by="desc:created", size=10).items
    mon = next(r for r in runs if r.pipeline.name == "monitoring")
    mon = Client().get_pipeline_run(mon.id)
    report = mon.steps["detect_data_drift"].outputs["drift_report"][0]
    html = report.load()
    assert report.visualizations and "<!DOCTYPE html>" in html
    # both views ran: raw transfer columns and the production model's own pair features (issue 12: it never ran)
    from ledgerlink.monitoring.drift import PAIR_FEATURE_VIEW, RAW_VIEW

    assert f"Evidently report: {PAIR_FEATURE_VIEW}" in html and f"Evidently report: {RAW_VIEW}" in html
    summary = mon.steps["detect_data_drift"].outputs["drift_summary"][0].load()
    assert set(summary["views"]) == {RAW_VIEW, PAIR_FEATURE_VIEW}
    assert any(c.startswith("ref_") for c in summary["views"][PAIR_FEATURE_VIEW]["columns"])
    drift_meta = mon.steps["detect_data_drift"].run_metadata["drift"]
    assert set(drift_meta["drifted_columns"]) == {RAW_VIEW, PAIR_FEATURE_VIEW}
    decision = mon.steps["decide_retraining"].outputs["retraining_decision"][0].load()
    assert decision["retrain"] is True and decision["reasons"][0].startswith("retrain every month")


def test_on_trigger_policy_skips_training_when_nothing_fires(tmp_path):
    from cli.runner import run_cycle

    cfg = _cfg(
        tmp_path / "trigger",
        monitoring={"retrain": "on_trigger", "drift_share": None, "accuracy_drop": None, "auto_rate_drop": None},
    )
    run_cycle(cfg, "all")  # first month: no production yet, trains
    row = run_cycle(cfg, "all")
    assert row["candidate"] == "" and "no trigger fired" in row["decision"]
