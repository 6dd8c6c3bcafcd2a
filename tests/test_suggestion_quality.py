"""Production quality from the tags (issue 13.3): suggestions scored against the month's human tags, recorded on the
model version, and a retraining trigger with a Slack alert when auto precision drops below its floor."""

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pandas as pd
import pytest

from ledgerlink.monitoring.alerts import Alert, Alerter
from ledgerlink.monitoring.suggestion_quality import SuggestionQuality, month_tags, score_month, score_suggestions
from ledgerlink.monitoring.triggers import evaluate_triggers
from utils.model_versions import ModelVersionMetadata


def _suggest(transfer, invoices, decision, version="1", amounts=None):
    """Rows of one transfer: one per invoice, or one without an invoice when it pays nothing."""
    amounts = amounts or [100.0] * len(invoices)
    rows = [(transfer, i, a) for i, a in zip(invoices, amounts)] or [(transfer, None, float("nan"))]
    return [
        {
            "month": "2025-02",
            "transfer_id": t,
            "invoice_id": i,
            "allocated_amount": a,
            "confidence": 0.99 if decision == "auto" else 0.4,
            "decision": decision,
            "model_name": "m",
            "model_version": version,
            "reasons": [],
        }
        for t, i, a in rows
    ]


@pytest.fixture
def month():
    """Ten tagged transfers: T0-T6 pay one invoice each, T7 pays two, T8 and T9 pay nothing."""
    transfers = pd.DataFrame({"transfer_id": [f"T{i}" for i in range(10)]})
    links = pd.DataFrame(
        {
            "transfer_id": [f"T{i}" for i in range(7)] + ["T7", "T7"],
            "invoice_id": [f"I{i}" for i in range(7)] + ["I7a", "I7b"],
            "allocated_amount": 100.0,
        }
    )
    return transfers, links


def _frame(*transfers):
    return pd.DataFrame([row for t in transfers for row in t])


def test_auto_precision_recall_review_share_and_amount_come_from_the_tags(month):
    transfers, links = month
    suggestions = _frame(
        _suggest("T0", ["I0"], "auto", amounts=[120.0]),  # right
        _suggest("T1", ["I1"], "auto"),  # right
        _suggest("T2", ["I9"], "auto", amounts=[50.0]),  # wrong invoice
        _suggest("T3", ["I3"], "review"),  # right, but a human had to look
        _suggest("T7", ["I7a", "I7b"], "auto"),  # right: both invoices
        _suggest("T8", [], "auto"),  # right: pays nothing
        _suggest("T9", ["I4"], "auto", amounts=[30.0]),  # wrong: it pays nothing
        _suggest("T5", ["I5"], "auto"),  # half the set? no: T5 pays exactly I5, right
        _suggest("X1", ["I1"], "auto"),  # a transfer that never reached the collected month
        # T4 and T6 got no suggestion
    )
    q = score_suggestions(suggestions, transfers, links)
    assert (q.auto, q.auto_confirmed) == (7, 5)  # X1 is not counted: nothing to check it against
    assert q.auto_precision == pytest.approx(5 / 7)
    assert q.auto_recall == pytest.approx(5 / 10)
    assert q.review_share == pytest.approx(1 / 9) and q.review == 1
    assert q.auto_amount == pytest.approx(120 + 100 + 50 + 200 + 0 + 30 + 100 + 100)  # X1's 100 included
    assert q.auto_amount_confirmed == pytest.approx(120 + 100 + 200 + 100)
    assert (q.suggested, q.tagged, q.not_tagged, q.not_suggested) == (9, 10, 1, 2)


def test_a_partial_set_is_wrong_and_no_auto_means_no_precision(month):
    transfers, links = month
    q = score_suggestions(_frame(_suggest("T7", ["I7a"], "auto")), transfers, links)
    assert q.auto_precision == 0.0 and q.auto_confirmed == 0
    q = score_suggestions(_frame(_suggest("T0", ["I0"], "review")), transfers, links)
    assert q.auto_precision is None and q.auto == 0 and q.review_share == 1.0
    assert "auto_precision" not in q.to_dict()  # the metadata store takes no None
    assert SuggestionQuality.from_dict(q.to_dict()) == q


def test_each_model_version_is_scored_on_its_own(month):
    transfers, links = month
    both = _frame(_suggest("T0", ["I0"], "auto", version="1"), _suggest("T0", ["I9"], "auto", version="2"))
    scores = score_month(both, transfers, links)
    assert scores[("m", "1")].auto_precision == 1.0 and scores[("m", "2")].auto_precision == 0.0
    with pytest.raises(ValueError, match="one model version"):
        score_suggestions(both, transfers, links)


def test_the_month_tags_include_the_frozen_test_part_of_its_month(tmp_path):
    from ledgerlink.data.collect import collect_month
    from ledgerlink.data.store import DatasetStore
    from ledgerlink.data.warehouse import DuckDBWarehouse
    from tests.conftest import tiny_month

    wh = DuckDBWarehouse(tmp_path / "w.duckdb")
    wh.seed(tiny_month("2025-01", n=40))
    store = DatasetStore(str(tmp_path / "store"))
    collect_month(wh, store, "2025-01")
    tags = month_tags(store, "2025-01")
    assert len(tags["transfers"]) == 40 and len(tags["links"]) == 32  # train and frozen test together


def test_the_figures_are_recorded_on_the_model_version_under_one_key_per_month():
    q = SuggestionQuality(0.99, 0.8, 0.1, 1000.0, 990.0, 100, 100, 81, 80, 10, 0, 0)
    meta = ModelVersionMetadata(suggestion_quality={"2025-02": q})
    stored = meta.to_metadata()
    assert stored == {"suggestions_2025-02": q.to_dict()} and stored["suggestions_2025-02"]["auto_precision"] == 0.99
    assert ModelVersionMetadata.from_run_metadata(stored).suggestion_quality == {"2025-02": q}


# -- the trigger -----------------------------------------------------------------------------------------------
def test_auto_precision_below_the_floor_fires_a_retraining_trigger():
    policy = {"retrain": "on_trigger", "drift_share": None, "accuracy_drop": None, "auto_rate_drop": None}
    low = evaluate_triggers(None, None, None, policy, auto_precision=0.990)
    assert low.retrain and low.fired == ["auto_precision"] and low.figures["auto_precision"] == 0.990
    assert any("0.9900 from the tags is below the floor 0.995" in r for r in low.reasons)
    ok = evaluate_triggers(None, None, None, policy, auto_precision=0.995)
    assert not ok.retrain and ok.fired == [] and any(">= floor 0.995" in r for r in ok.reasons)
    none = evaluate_triggers(None, None, None, policy)
    assert not none.retrain and "auto_precision" not in none.figures
    off = evaluate_triggers(None, None, None, {**policy, "auto_precision_floor": None}, auto_precision=0.5)
    assert off.fired == [] and any("(trigger off)" in r for r in off.reasons)
    stricter = evaluate_triggers(None, None, None, {**policy, "auto_precision_floor": 0.999}, auto_precision=0.998)
    assert stricter.fired == ["auto_precision"]


def test_the_trigger_alert_reaches_slack():
    received = []

    class Hook(BaseHTTPRequestHandler):
        def do_POST(self):
            received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Hook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        sent = Alerter(f"http://127.0.0.1:{server.server_port}/services/T0/B0/x").send(
            Alert("auto_precision", "auto_precision below its floor in 2025-02", {"auto_precision": 0.99})
        )
    finally:
        server.shutdown()
        server.server_close()
    assert sent and "auto_precision below its floor in 2025-02" in received[0]["text"]
    assert "auto_precision=0.9900" in received[0]["text"]
