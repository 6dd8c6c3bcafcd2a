from typing import Annotated

import pandas as pd
from zenml import log_metadata, step
from zenml.types import HTMLString

from ledgerlink.data.store import DatasetRef
from ledgerlink.evaluation.compare import decide
from ledgerlink.evaluation.evaluate import Evaluation, evaluate
from ledgerlink.evaluation.report import decision_html
from ledgerlink.monitoring.references import production_needs_rescoring
from utils.model_versions import ModelVersionMetadata, production_version


def _as_evaluation(name: str, summary: dict, outcomes: pd.DataFrame | None) -> Evaluation:
    return Evaluation(name=name, metrics=summary["metrics"], slices=summary["slices"], outcomes=outcomes)


@step(enable_cache=False)
def compare_with_production(
    evaluation: dict, test_outcomes: pd.DataFrame, dataset_ref: DatasetRef, model_name: str, promotion: dict
) -> tuple[Annotated[dict, "decision"], Annotated[HTMLString, "comparison_report"]]:
    """Compare with the production version on the same frozen test set and decide by the configured rule
    (``promotion``: ``Config.promotion_rule()``).

    When production was scored on the same test fingerprint its stored evaluation holds; otherwise its
    matcher is loaded from the Model Control Plane and re-scored here.
    """
    candidate = _as_evaluation("candidate", evaluation["candidate"], test_outcomes)
    rules = _as_evaluation("rules", evaluation["rules"], None)
    prod_mv = production_version(model_name)
    production, prod_info, challenge = None, {}, None
    if prod_mv is not None:
        meta = ModelVersionMetadata.of(prod_mv)
        stored_outcomes = prod_mv.get_artifact("test_outcomes")
        rescore = production_needs_rescoring(
            meta.test_fingerprint,
            meta.evaluation is not None and stored_outcomes is not None,
            evaluation["test_fingerprint"],
        )
        if rescore:
            production = evaluate(prod_mv.get_artifact("matcher").load(), dataset_ref.open().load_test(), "production")
        else:
            production = _as_evaluation("production", meta.evaluation, stored_outcomes.load())
        prod_info = {"version": str(prod_mv.name), "number": int(prod_mv.number), "rescored": rescore}
        # out-of-time evidence from this cycle's monitoring run, if it scored a challenger on the newest month
        challenge = meta.challenges.get(dataset_ref.months[-1])
    decision = decide(candidate, production, rules, promotion, challenge).to_dict()
    decision["production"] = prod_info
    decision["primary_metric"] = promotion.get("primary_metric", "pair_f1")
    log_metadata(metadata={"decision": decision})
    html = decision_html(
        decision, evaluation["candidate"], production.summary() if production else None, evaluation["rules"]
    )
    return decision, HTMLString(html)
