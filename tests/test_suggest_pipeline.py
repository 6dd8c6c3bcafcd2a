"""The suggest pipeline through real ZenML (issue 13, done when): refused without a production model, then after a
training run it writes the open month's rows to ``suggested_links`` twice without duplicates, shows its report, and
the next month's monitoring scores the suggestions against the tags and records that on the model version."""

from pathlib import Path

import duckdb
import pytest

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def cfg(tmp_path_factory):
    from ledgerlink.config import Config

    home = tmp_path_factory.mktemp("suggest_e2e")
    return Config.load(
        ROOT / "configs" / "local.yaml",
        {
            "data_dir": str(home),
            "model_name": "suggest_e2e",
            # 300 a month: a first model trained on 200 transfers may find no confidence safe to auto-match
            "synthetic": {"months": 3, "contractors": 50, "transfers_per_month": 300},
            "deploy": {"smoke_test": False},
            "model": {"params": {"n_estimators": 40}},
            "promotion": {"bootstrap_samples": 200},
        },
    )


def _table(cfg):
    with duckdb.connect(cfg.warehouse.path, read_only=True) as con:
        return con.execute("SELECT * FROM ledgerlink.suggested_links").df()


def test_suggest_is_refused_without_a_production_model(cfg, capsys):
    from cli.runner import run_suggest

    assert run_suggest(cfg) == 2
    out = capsys.readouterr().out
    assert "no production model of 'suggest_e2e'" in out and "run.py --pipeline training" in out


def test_training_then_suggest_twice_writes_the_month_once_and_monitoring_scores_it(cfg, capsys):
    from zenml.client import Client

    from cli.runner import run_cycle, run_cycles, run_suggest, suggest

    assert run_cycles(cfg, "training", months=1) == 0
    assert run_suggest(cfg) == 0
    assert "suggestions for 2025-02" in capsys.readouterr().out
    first = _table(cfg)
    again = suggest(cfg)
    second = _table(cfg)
    columns = ["month", "transfer_id", "invoice_id", "allocated_amount", "confidence", "decision", "model_version"]
    assert set(columns + ["reasons", "suggested_at"]) <= set(second.columns)
    assert len(second) == len(first) == again.suggestions["rows"] > 0
    assert not second.duplicated(["month", "model_name", "model_version", "transfer_id", "invoice_id"]).any()
    assert (second["month"] == "2025-02").all() and second["invoice_id"].isna().any()
    assert second["suggested_at"].iloc[0] > first["suggested_at"].iloc[0]  # replaced, not kept
    assert set(second["model_version"]) == {str(Client().get_model_version(cfg.model_name, "production").name)}

    run = Client().get_pipeline_run(again.run)
    report = run.steps["render_suggestions"].outputs["suggestions_report"][0]
    page = report.load()
    assert report.visualizations and "data:image/png;base64," in page and "<script" not in page.lower()
    assert "matched automatically" in page and "sent to review" in page and "pays no invoice" in page

    from cli.runner import run_suggest as refuse

    assert refuse(cfg, "2025-01") == 2  # collected already
    assert "collected already" in capsys.readouterr().out

    row = run_cycle(cfg, "all")  # collects 2025-02 with its tags; monitoring compares them with the suggestions
    assert row["month"] == "2025-02"
    precision = row["values"]["auto_precision"]
    assert precision is not None and 0.5 < precision <= 1.0
    version = Client().get_model_version(cfg.model_name, int(second["model_version"].iloc[0]))
    recorded = version.run_metadata["suggestions_2025-02"]
    assert recorded["auto_precision"] == pytest.approx(precision)
    assert recorded["tagged"] == recorded["suggested"] == second["transfer_id"].nunique()
    assert 0 <= recorded["review_share"] <= 1 and recorded["auto_amount"] > 0
    runs = Client().list_pipeline_runs(sort_by="desc:created", size=10).items
    mon = Client().get_pipeline_run(next(r for r in runs if r.pipeline.name == "monitoring").id)
    decision = mon.steps["decide_retraining"].outputs["retraining_decision"][0].load()
    assert decision["figures"]["auto_precision"] == pytest.approx(precision)
