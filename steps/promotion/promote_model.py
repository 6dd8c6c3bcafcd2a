from typing import Annotated

from zenml import get_step_context, log_metadata, step

from ledgerlink.monitoring.alerts import Alert, Alerter


@step(enable_cache=False)
def promote_model(decision: dict, evaluation: dict, dataset_ref: dict, alerts: dict) -> Annotated[dict, "promotion"]:
    """Record the evaluation and decision on this model version; on promotion make it production."""
    model = get_step_context().model
    log_metadata(
        metadata={
            "evaluation": evaluation["candidate"],
            "rules_evaluation": evaluation["rules"],
            "metrics": evaluation["candidate"]["metrics"],
            "test_fingerprint": evaluation["test_fingerprint"],
            "train_fingerprint": dataset_ref["train_fingerprint"],
            "data_months": dataset_ref["months"],
            "auto_threshold": evaluation["auto_threshold"],
            "decision": {"promote": decision["promote"], "reasons": decision["reasons"]},
        },
        infer_model=True,
    )
    if decision["promote"]:
        model.set_stage("production", force=True)
    metric = decision.get("primary_metric", "pair_f1")
    verdict = (
        f"version {model.number} promoted to production"
        if decision["promote"]
        else f"version {model.number} not promoted"
    )
    Alerter(alerts.get("slack_webhook")).send(
        Alert(
            "promotion",
            f"{verdict}: {'; '.join(decision['reasons'])}",
            {metric: decision["checks"].get("candidate")},
            run=get_step_context().pipeline_run.name,
        )
    )
    return {
        "promoted": bool(decision["promote"]),
        "model_name": model.name,
        "version": str(model.version),
        "number": int(model.number),
    }
