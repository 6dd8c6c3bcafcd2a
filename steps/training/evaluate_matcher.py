from typing import Annotated

import pandas as pd
from zenml import step
from zenml.types import HTMLString

from ledgerlink.data.store import DatasetRef
from ledgerlink.evaluation.evaluate import evaluate
from ledgerlink.evaluation.report import evaluation_html
from ledgerlink.matching import RulesMatcher
from ledgerlink.matching.base import BaseMatcher


@step
def evaluate_matcher(
    matcher: BaseMatcher, dataset_ref: DatasetRef
) -> tuple[
    Annotated[dict, "evaluation"], Annotated[pd.DataFrame, "test_outcomes"], Annotated[HTMLString, "evaluation_report"]
]:
    """Score the candidate and the rules baseline on the frozen test set."""
    test = dataset_ref.open().load_test()
    candidate = evaluate(matcher, test, "candidate")
    rules = evaluate(RulesMatcher(), test, "rules baseline")
    threshold = getattr(matcher, "auto_threshold_", None)
    evaluation = {
        "candidate": candidate.summary(),
        "rules": rules.summary(),
        "test_fingerprint": dataset_ref.test_fingerprint,
        "auto_threshold": None if threshold is None else float(threshold),
    }
    report = evaluation_html(
        f"Evaluation on the frozen test set ({dataset_ref.test_month})",
        {"candidate": candidate.summary(), "rules baseline": rules.summary()},
        {
            "training months": ", ".join(dataset_ref.months),
            "test fingerprint": dataset_ref.test_fingerprint,
            "auto-match threshold": evaluation["auto_threshold"],
        },
    )
    outcomes = candidate.outcomes[
        ["transfer_id", "n_true", "n_pred", "tp", "fp", "fn", "exact", "auto", "size", "number"]
    ]
    return evaluation, outcomes, HTMLString(report)
