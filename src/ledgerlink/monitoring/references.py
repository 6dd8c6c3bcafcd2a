"""What the production model is compared against: the rules that pick a reference, kept out of the steps.

- Drift (``drift_reference_months``): production's training months, without the month being checked; before
  any production model, every earlier collected month.
- Fresh-month degradation (``fresh_reference``): the earliest fresh month production was scored on before this
  one, else its frozen-test metrics. A model is judged against its own first out-of-sample month, not against
  the frozen test set, which it was tuned to look good on.
- Promotion (``production_needs_rescoring``): production's stored evaluation is reused only when it was made on
  the same frozen test set (same fingerprint); otherwise production is scored again on today's test set.
- Out-of-time (``is_fresh_to``): a month is fresh to a model that did not train on it.
"""

from __future__ import annotations

from collections.abc import Mapping


def drift_reference_months(production_months: list[str] | None, collected_months: list[str], month: str) -> list[str]:
    """The months whose transfers are the drift reference for ``month``."""
    reference = [m for m in production_months or [] if m != month]
    return reference or [m for m in collected_months if m != month]


def fresh_reference(fresh_scores: Mapping[str, dict], frozen_metrics: dict | None, month: str) -> dict | None:
    """The metrics production's score on ``month`` is compared with: its score on the earliest fresh month
    before ``month`` (``fresh_scores``: month -> metrics), else its frozen-test ``frozen_metrics``."""
    earlier = sorted(m for m in fresh_scores if m < month)
    return fresh_scores[earlier[0]] if earlier else frozen_metrics


def production_needs_rescoring(
    stored_test_fingerprint: str | None, has_stored_evaluation: bool, test_fingerprint: str
) -> bool:
    """Whether production must be scored again on the frozen test set rather than reusing its stored evaluation."""
    return not has_stored_evaluation or stored_test_fingerprint != test_fingerprint


def is_fresh_to(month: str, training_months: list[str] | None) -> bool:
    """Whether ``month`` is out of sample for a model trained on ``training_months``."""
    return month not in (training_months or [])
