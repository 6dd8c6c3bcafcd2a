"""The promotion rule: first run, clear win, noise-level gain, slice regression."""

import numpy as np
import pandas as pd
import pytest

from ledgerlink.evaluation.compare import decide, paired_bootstrap
from ledgerlink.evaluation.evaluate import Evaluation
from ledgerlink.evaluation.metrics import slice_metrics, summarize

CFG = {
    "primary_metric": "pair_f1",
    "min_delta": 0.002,
    "bootstrap_samples": 500,
    "confidence": 0.95,
    "slice_tolerance": 0.02,
    "min_slice_size": 30,
    "seed": 0,
}


def _outcomes(correct: np.ndarray, size: np.ndarray) -> pd.DataFrame:
    """Per-transfer outcomes where ``correct`` transfers are exactly right, the rest have one wrong pair."""
    n = len(correct)
    n_true = np.where(size == "none", 0, np.where(size == "multi", 3, 1))
    tp = np.where(correct, n_true, np.maximum(n_true - 1, 0))
    fp = np.where(correct, 0, 1)
    fn = n_true - tp
    return pd.DataFrame(
        {
            "transfer_id": [f"T{i}" for i in range(n)],
            "n_true": n_true,
            "n_pred": tp + fp,
            "tp": tp,
            "fp": fp,
            "fn": fn,
            "exact": correct,
            "auto": False,
            "size": size,
            "number": np.where(size == "none", "none", "present"),
        }
    )


def _evaluation(name, correct, size) -> Evaluation:
    out = _outcomes(correct, size)
    return Evaluation(name, summarize(out), slice_metrics(out, out[["transfer_id", "size", "number"]]), out)


rng = np.random.default_rng(1)
N = 1000
SIZE = rng.choice(["single", "multi", "none"], size=N, p=[0.8, 0.12, 0.08])
BASE = rng.random(N) < 0.85


def test_first_run_promotes_only_over_the_rules_baseline():
    model, rules = _evaluation("m", BASE, SIZE), _evaluation("r", rng.random(N) < 0.6, SIZE)
    d = decide(model, None, rules, CFG)
    assert d.promote and "beats the rules baseline" in d.reasons[0]
    d = decide(rules, None, model, CFG)
    assert not d.promote and "does not beat" in d.reasons[0]


def test_clear_win_is_promoted():
    better = BASE | (rng.random(N) < 0.6)
    d = decide(_evaluation("c", better, SIZE), _evaluation("p", BASE, SIZE), _evaluation("r", BASE, SIZE), CFG)
    assert d.promote, d.reasons
    assert d.checks["bootstrap"]["lower"] > 0 and d.checks["gain"] > 0.002


def test_noise_level_gain_is_not_promoted():
    flip = np.zeros(N, bool)
    flip[np.where(~BASE)[0][:3]] = True  # three more transfers right out of 1000: a gain, but noise-level
    d = decide(_evaluation("c", BASE | flip, SIZE), _evaluation("p", BASE, SIZE), _evaluation("r", BASE, SIZE), CFG)
    assert not d.promote
    assert any("includes 0" in r or "< min_delta" in r for r in d.reasons)


def test_slice_regression_blocks_promotion_despite_overall_gain():
    cand = BASE | (rng.random(N) < 0.7)
    cand[SIZE == "none"] = False  # the candidate wins overall but now assigns invoices to non-payments
    d = decide(_evaluation("c", cand, SIZE), _evaluation("p", BASE, SIZE), _evaluation("r", BASE, SIZE), CFG)
    assert not d.promote
    assert any("slice 'pays_nothing'" in r for r in d.reasons)
    assert d.checks["gain"] > 0


def test_bootstrap_of_identical_models_is_centered_on_zero():
    out = _outcomes(BASE, SIZE)
    b = paired_bootstrap(out, out, "pair_f1", 200)
    assert b["gain"] == 0 and b["lower"] == 0 and b["upper"] == 0
    b = paired_bootstrap(_outcomes(BASE | (rng.random(N) < 0.5), SIZE), out, "exact_set_accuracy", 200)
    assert b["lower"] > 0 and b["lower"] <= b["gain"] <= b["upper"]


def _challenge(gain, lower, upper):
    return {"month": "2025-09", "challenger": 8, "metric": "pair_f1", "gain": gain, "lower": lower, "upper": upper}


def test_out_of_time_evidence_promotes_a_non_inferior_candidate_the_frozen_test_cannot_separate():
    same = _evaluation("c", BASE, SIZE)
    prod, rules = _evaluation("p", BASE, SIZE), _evaluation("r", BASE, SIZE)
    assert not decide(same, prod, rules, CFG).promote
    d = decide(same, prod, rules, {**CFG, "frozen_margin": 0.005}, _challenge(0.09, 0.06, 0.12))
    assert d.promote and d.checks["route"] == "out-of-time"
    assert any("retraining helps on fresh data" in r for r in d.reasons)
    assert any("non-inferior" in r for r in d.reasons)


def test_out_of_time_route_needs_significance_and_frozen_non_inferiority():
    prod, rules = _evaluation("p", BASE, SIZE), _evaluation("r", BASE, SIZE)
    same = _evaluation("c", BASE, SIZE)
    assert not decide(same, prod, rules, CFG, _challenge(0.01, -0.01, 0.03)).promote  # noise on the fresh month
    worse = BASE & (rng.random(N) < 0.9)  # clearly worse on the frozen test
    d = decide(_evaluation("c", worse, SIZE), prod, rules, CFG, _challenge(0.09, 0.06, 0.12))
    assert not d.promote and any("worse on the frozen test" in r for r in d.reasons)


def _flip(correct: np.ndarray, where: np.ndarray, to: bool, k: int) -> np.ndarray:
    """A copy of ``correct`` with the first ``k`` transfers in ``where`` that are not already ``to`` set to ``to``."""
    out = correct.copy()
    out[np.where(where & (correct != to))[0][:k]] = to
    return out


def test_a_noise_level_slice_drop_beyond_the_tolerance_does_not_block():
    multi = SIZE == "multi"
    cand = _flip(BASE | ((rng.random(N) < 0.6) & ~multi), multi, False, 3)  # wins elsewhere, 3 fewer right in multi
    d = decide(_evaluation("c", cand, SIZE), _evaluation("p", BASE, SIZE), _evaluation("r", BASE, SIZE), CFG)
    s = d.checks["slices"]["multi"]
    assert s["drop"] > CFG["slice_tolerance"]  # the old rule (drop > tolerance) blocked this
    assert s["lower"] <= 0 and not s["blocks"] and s["method"] == "paired bootstrap"
    assert s["confidence"] == pytest.approx(1 - 0.05 / len(d.checks["slices"]))  # Bonferroni over the slices judged
    assert d.promote and d.checks["route"] == "frozen test", d.reasons
    assert any("slice 'multi'" in r and "noise-level, does not block" in r for r in d.reasons)


def test_a_real_slice_drop_blocks():
    multi = SIZE == "multi"
    cand = _flip(BASE | ((rng.random(N) < 0.6) & ~multi), multi, False, 15)  # 15 fewer right in a ~120 slice
    d = decide(_evaluation("c", cand, SIZE), _evaluation("p", BASE, SIZE), _evaluation("r", BASE, SIZE), CFG)
    s = d.checks["slices"]["multi"]
    assert d.checks["bootstrap"]["lower"] > 0  # a clear overall win...
    assert s["blocks"] and s["lower"] > 0 and s["drop"] > CFG["slice_tolerance"]  # ...with a real slice regression
    assert not d.promote
    assert any("slice 'multi'" in r and "real regression" in r for r in d.reasons)
    assert d.checks["decided_by"].startswith("slice 'multi'")


def test_slice_intervals_without_per_transfer_labels_fall_back_to_the_slice_size():
    cand, prod = _evaluation("c", BASE, SIZE), _evaluation("p", BASE, SIZE)
    cand.outcomes = cand.outcomes.drop(columns=["size", "number"])  # e.g. outcomes stored before slice labels
    s = decide(cand, prod, prod, CFG).checks["slices"]["multi"]
    assert s["method"].startswith("normal approximation") and s["lower"] < 0 < s["upper"]


# the frozen test set is small: 30% of the first month
SMALL = 240
SIZE_SMALL = rng.choice(["single", "multi", "none"], size=SMALL, p=[0.8, 0.12, 0.08])
BASE_SMALL = rng.random(SMALL) < 0.9


def test_fresh_evidence_promotes_despite_a_frozen_loss_within_noise():
    prod = _evaluation("p", BASE_SMALL, SIZE_SMALL)
    single = SIZE_SMALL == "single"
    cand = _flip(_flip(BASE_SMALL, single, False, 4), single, True, 1)  # net 3 of 240 worse on the frozen test
    cand = _evaluation("c", cand, SIZE_SMALL)
    margin = 0.01
    d = decide(cand, prod, prod, {**CFG, "frozen_margin": margin}, _challenge(0.08, 0.05, 0.11))
    boot = d.checks["bootstrap"]
    assert boot["gain"] < -margin < boot["upper"]  # worse than the margin, but within noise
    assert d.promote and d.checks["route"] == "out-of-time", d.reasons
    assert any("non-inferior" in r for r in d.reasons)
    assert "out-of-time on 2025-09" in d.checks["decided_by"] and "[+0.0500, +0.1100]" in d.checks["decided_by"]
    # the same candidate without fresh evidence is kept: the frozen test alone shows no gain
    kept = decide(cand, prod, prod, {**CFG, "frozen_margin": margin})
    assert not kept.promote and "includes 0" in kept.reasons[0]


def test_every_reason_of_a_later_decision_carries_its_interval_and_the_report_draws_them():
    from ledgerlink.evaluation.report import decision_html

    prod = _evaluation("p", BASE, SIZE)
    d = decide(_evaluation("c", BASE | (rng.random(N) < 0.6), SIZE), prod, prod, CFG, _challenge(0.01, -0.01, 0.03))
    assert d.promote and d.checks["route"] == "frozen test"
    assert all("[" in r and "interval" in r for r in d.reasons if not r.startswith("no slice")), d.reasons
    assert d.reasons[-1].startswith("promoted by frozen test: pair_f1 gain")
    page = decision_html(d.to_dict(), {"metrics": prod.metrics}, {"metrics": prod.metrics}, {"metrics": prod.metrics})
    for name in d.checks["slices"]:
        assert f"<td>{name}</td>" in page
    assert page.count("<svg") == len(d.checks["slices"]) + 2  # per slice, the frozen-test and the out-of-time gain
    assert "Route: <b>frozen test</b>" in page


def test_after_a_promotion_the_fresh_evidence_is_what_the_last_month_of_data_bought_production():
    from ledgerlink.monitoring.performance import challenge, pick_challenger

    versions = [(6, ["2025-06"]), (7, ["2025-07"]), (8, ["2025-08"])]
    assert pick_challenger(versions, 8, "2025-09") is None  # production is the newest: no newer challenger
    assert pick_challenger(versions, 8, "2025-09", predecessor=True) == 7  # so its predecessor
    assert pick_challenger(versions, 6, "2025-09", predecessor=True) == 8  # a newer version always comes first
    assert pick_challenger(versions, 8, "2025-08", predecessor=True) == 7  # 8 trained on the month: not fresh

    older, prod = _evaluation("v7", BASE, SIZE), _evaluation("v8", BASE | (rng.random(N) < 0.5), SIZE)
    c = challenge(older, prod, "2025-09", 7, CFG, production=8)
    assert c["kind"] == "learning curve" and c["gain"] > 0 and c["lower"] > 0  # newer minus older: production gained
    assert challenge(older, prod, "2025-09", 7, CFG)["gain"] < 0  # without production's number: challenger - prod
    d = decide(_evaluation("c", BASE, SIZE), _evaluation("p", BASE, SIZE), prod, CFG, c)
    assert d.promote and d.checks["route"] == "out-of-time"
    assert any("predecessor version 7" in r and "the last month of training data helped" in r for r in d.reasons)
    flat = challenge(older, older, "2025-09", 7, CFG, production=8)  # the last month bought nothing
    assert not decide(_evaluation("c", BASE, SIZE), _evaluation("p", BASE, SIZE), prod, CFG, flat).promote


def test_a_significant_fall_of_the_same_model_between_fresh_months_promotes_the_candidate_that_saw_the_new_month():
    from ledgerlink.evaluation.report import decision_html
    from ledgerlink.monitoring.performance import challenge, fresh_history

    prod, older = _evaluation("v6", BASE, SIZE), _evaluation("v5", BASE, SIZE)  # production equal to its predecessor
    # v5 served 2025-06 at 0.96; on 2025-07 it scores 0.85 (BASE): the world moved
    metadata = {
        5: {"fresh_2025-06": {"metrics": {"exact_set_accuracy": 0.96, "n_transfers": 800}}, "data_months": ["x"]},
        6: {"fresh_performance": {"exact_set_accuracy": 0.5}},  # not a fresh_YYYY-MM score: ignored
    }
    assert fresh_history(metadata[5]) == {"2025-06": {"exact_set_accuracy": 0.96, "n_transfers": 800}}
    assert fresh_history(metadata[6]) == {}
    c = challenge(older, prod, "2025-07", 5, CFG, production=6, metadata=metadata)
    fall = c["degradation"]
    assert (fall["version"], fall["from_month"]) == (5, "2025-06")
    assert fall["drop"] == pytest.approx(0.96 - older.metrics["exact_set_accuracy"]) and fall["lower"] > 0.03
    same = _evaluation("c", BASE, SIZE)
    d = decide(same, prod, prod, CFG, c)
    assert d.promote and d.checks["route"] == "out-of-time"
    assert "version 5 fell from 0.9600 (2025-06)" in d.checks["decided_by"]
    assert "Route: <b>out-of-time</b>" in decision_html(d.to_dict(), *({"metrics": prod.metrics},) * 3)
    # a fall smaller than degradation_drop, or within noise, is no evidence
    small = {**c, "degradation": {**fall, "drop": 0.02, "lower": 0.001, "upper": 0.04}}
    assert not decide(same, prod, prod, CFG, small).promote
    noisy = {**c, "degradation": {**fall, "drop": 0.05, "lower": -0.01, "upper": 0.11}}
    assert not decide(same, prod, prod, CFG, noisy).promote
