"""The continuous-training story on small data: drift hurts production, monitoring sees it, a retrained
model is promoted and accuracy recovers; and the figures the simulation benchmark reports.

The frozen test set (month 1) cannot see the drift: candidates trained on drifted months look no
better there. The recovery comes through the out-of-time route of the promotion rule: the newest
retrained version beats production on a fresh month it never saw. This test pins both facts down.
"""

from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_simulated_year_shows_degradation_drift_and_the_recovery_retraining_brings(tmp_path):
    from cli.simulate import simulate
    from ledgerlink.config import load_config

    cfg = load_config(
        ROOT / "configs" / "local.yaml",
        {
            "data_dir": str(tmp_path),
            "model_name": "sim_test",
            "synthetic": {"contractors": 80, "transfers_per_month": 300},
            "model": {"params": {"n_estimators": 80}},
            "promotion": {"bootstrap_samples": 200},
        },
    )
    rows = simulate(cfg, months=6, drift_month=4)
    v = [r["values"] for r in rows]
    pre = [x["fresh_accuracy"] for x in v[1:3]]  # months 2-3: production on fresh, undrifted months
    post = [x["fresh_accuracy"] for x in v[3:]]  # months 4-6: after the drift
    assert min(post[:2]) < np.mean(pre) - 0.04, (pre, post)  # production degrades after the drift
    assert all(x["drift_share"] >= 0.3 for x in v[3:]), v  # drift fires every month after the event
    assert all("drift" in x["triggers"] for x in v[3:])
    # a version retrained on drifted data reaches production, by the frozen-test route or the out-of-time route,
    # within a month of the drift: fresh evidence counts, the frozen test (month 1) alone cannot see the drift
    assert rows[3]["promoted"] or rows[4]["promoted"], [x["decided_by"] for x in v]
    # and production recovers on the fresh months that follow
    assert v[5]["fresh_accuracy"] > min(post[:2]) + 0.03, (pre, post)
    # production suggested for each month before it was collected; monitoring scored that against the tags
    assert all(0.5 < x["auto_precision"] <= 1.0 for x in v[1:]), [x.get("auto_precision") for x in v]
    # each month says which version it trained and which route promoted it; the first model beat the rules
    assert [x["version"] for x in v] == list(range(1, 7))
    assert v[0]["route"] == "first run"
    assert all(x["route"] in ("frozen test", "out-of-time") for x in v[1:] if x["route"])
    assert [bool(x["route"]) for x in v] == [r["promoted"] for r in rows]
    png = tmp_path / "simulation" / "simulation.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_year_figures_follow_the_definitions():
    from ledgerlink.monitoring.recovery import production_at, year_figures

    months = ["m1", "m2", "m3", "m4", "m5"]
    trained = {m: i + 1 for i, m in enumerate(months)}  # version i is trained in month i
    promoted = {"m1": True, "m3": True, "m4": True}
    accuracy = {
        (1, "m2"): 0.90,
        (1, "m3"): 0.90,
        (2, "m3"): 0.95,
        **{(1, "m4"): 0.80, (2, "m4"): 0.85, (3, "m4"): 0.86},
        **{(1, "m5"): 0.80, (2, "m5"): 0.80, (3, "m5"): 0.90, (4, "m5"): 0.87},
    }
    assert production_at(months, trained, promoted) == {"m1": None, "m2": 1, "m3": 1, "m4": 3, "m5": 4}
    drift = year_figures(months, trained, promoted, accuracy, drift_month="m4")
    # m4: production v3 is the best; m5: production v4 is 0.03 below v3, which the system had
    assert drift["months_degraded"] == 1 and drift["accuracy_lost"] == pytest.approx(0.03)
    assert [r["best"] for r in drift["rows"]] == [1, 2, 3, 3]
    # v3 replaced v1 and was better on m4; v4 replaced v3 and was worse on m5: one false promotion of two
    assert (drift["promotions"], drift["false_promotions"], drift["judged_promotions"]) == (2, 1, 2)
    assert drift["judged_months"] == 3  # m2, m3, m4: a production model to replace and a next month to judge by
    calm = year_figures(months, trained, promoted, accuracy)  # no drift: every month with production counts
    assert calm["months_degraded"] == 2 and calm["accuracy_lost"] == pytest.approx(0.05 + 0.03)
