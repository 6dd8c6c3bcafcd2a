"""What production is compared against: the reference rules, as pure functions (ledgerlink.monitoring.references)."""

from ledgerlink.monitoring.references import (
    drift_reference_months,
    fresh_reference,
    is_fresh_to,
    production_needs_rescoring,
)


def test_drift_reference_is_productions_training_months_without_the_month_checked():
    collected = ["2025-01", "2025-02", "2025-03", "2025-04"]
    assert drift_reference_months(["2025-01", "2025-02"], collected, "2025-04") == ["2025-01", "2025-02"]
    # production trained on the month itself (training ran before monitoring): it is left out
    assert drift_reference_months(["2025-03", "2025-04"], collected, "2025-04") == ["2025-03"]
    # no production yet, or production trained only on this month: every other collected month
    assert drift_reference_months(None, collected, "2025-04") == ["2025-01", "2025-02", "2025-03"]
    assert drift_reference_months(["2025-04"], collected, "2025-04") == ["2025-01", "2025-02", "2025-03"]
    assert drift_reference_months(None, ["2025-01"], "2025-01") == []  # nothing to compare with


def test_fresh_reference_is_the_first_fresh_month_before_this_one_else_the_frozen_test():
    frozen = {"exact_set_accuracy": 0.95}
    scores = {"2025-03": {"exact_set_accuracy": 0.91}, "2025-02": {"exact_set_accuracy": 0.93}}
    assert fresh_reference(scores, frozen, "2025-04") == {"exact_set_accuracy": 0.93}
    assert fresh_reference(scores, frozen, "2025-03") == {"exact_set_accuracy": 0.93}  # not itself (a rerun)
    assert fresh_reference(scores, frozen, "2025-02") == frozen
    assert fresh_reference({}, frozen, "2025-02") == frozen and fresh_reference({}, None, "2025-02") is None


def test_production_is_rescored_only_when_its_stored_evaluation_does_not_fit():
    assert production_needs_rescoring("fp1", True, "fp1") is False
    assert production_needs_rescoring("fp1", True, "fp2") is True  # the frozen test set changed
    assert production_needs_rescoring("fp1", False, "fp1") is True  # nothing stored to reuse
    assert production_needs_rescoring(None, True, "fp1") is True


def test_a_month_is_fresh_to_a_model_that_did_not_train_on_it():
    assert is_fresh_to("2025-03", ["2025-01", "2025-02"])
    assert not is_fresh_to("2025-02", ["2025-01", "2025-02"])
    assert is_fresh_to("2025-02", None)
