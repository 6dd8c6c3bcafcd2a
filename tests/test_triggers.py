"""Retraining triggers: thresholds, policies and reasons."""

import pytest

from ledgerlink.monitoring.triggers import evaluate_triggers

REF = {"exact_set_accuracy": 0.92, "auto_match_rate": 0.80}


def test_quiet_month_keeps_production_under_on_trigger():
    d = evaluate_triggers(0.1, {"exact_set_accuracy": 0.915, "auto_match_rate": 0.79}, REF, {"retrain": "on_trigger"})
    assert not d.retrain and d.fired == [] and "no trigger fired" in d.reasons[0]


def test_drift_and_degradation_fire_and_are_explained():
    d = evaluate_triggers(0.6, {"exact_set_accuracy": 0.85, "auto_match_rate": 0.70}, REF, {"retrain": "on_trigger"})
    assert d.retrain and d.fired == ["degradation", "drift"]
    assert any("drift share 0.60 >= threshold 0.3" in r for r in d.reasons)
    assert d.figures["exact_set_accuracy_drop"] == pytest.approx(0.07)


def test_always_policy_retrains_and_records_why():
    d = evaluate_triggers(0.0, {"exact_set_accuracy": 0.92, "auto_match_rate": 0.80}, REF, {"retrain": "always"})
    assert d.retrain and d.fired == [] and d.reasons[0].startswith("retrain every month")


def test_first_month_without_production_trains_and_bad_policy_is_rejected():
    assert evaluate_triggers(None, None, None, {"retrain": "on_trigger"}, has_production=False).retrain
    with pytest.raises(ValueError, match="monitoring.retrain: Input should be 'always' or 'on_trigger'"):
        evaluate_triggers(0.1, None, None, {"retrain": "sometimes"})
    with pytest.raises(ValueError, match="monitoring.drift_shar: unknown key"):
        evaluate_triggers(0.1, None, None, {"drift_shar": 0.5})


def test_a_threshold_set_to_null_never_fires():
    off = {"retrain": "on_trigger", "drift_share": None, "accuracy_drop": None, "auto_rate_drop": None}
    d = evaluate_triggers(0.99, {"exact_set_accuracy": 0.1, "auto_match_rate": 0.1}, REF, off)
    assert not d.retrain and d.fired == [] and any("trigger off" in r for r in d.reasons)
    d = evaluate_triggers(0.99, {"exact_set_accuracy": 0.1, "auto_match_rate": 0.1}, REF, {**off, "drift_share": 0.5})
    assert d.fired == ["drift"]


def test_defaults_come_from_the_config_section():
    from ledgerlink.config import MonitoringConfig

    d = evaluate_triggers(0.3, None, None)
    assert d.fired == ["drift"] and f">= threshold {MonitoringConfig().drift_share}" in d.reasons[1]


def test_out_of_time_challenger_is_the_newest_version_after_production_that_has_not_seen_the_month():
    from ledgerlink.monitoring.performance import pick_challenger

    versions = [(3, ["2025-01", "2025-02"]), (4, ["2025-01", "2025-03"]), (5, ["2025-01", "2025-04"]), (2, ["2025-01"])]
    assert pick_challenger(versions, 3, "2025-04") == 4  # 5 trained on the month itself
    assert pick_challenger(versions, 3, "2025-05") == 5  # the newest one it has not seen
    assert pick_challenger(versions, 4, "2025-04") is None  # only versions newer than production challenge it
    assert pick_challenger([(6, [])], 3, "2025-04") is None  # a version without recorded months is not trusted
