from typing import Annotated

from zenml import log_metadata, step

from ledgerlink.monitoring.alerts import Alert, Alerter
from ledgerlink.monitoring.triggers import evaluate_triggers


@step(enable_cache=False)
def decide_retraining(
    drift_summary: dict, fresh_performance: dict, monitoring: dict, alerts: dict
) -> Annotated[dict, "retraining_decision"]:
    """Apply the configured triggers; alert when drift or degradation passes its threshold."""
    fresh = fresh_performance.get("metrics")
    decision = evaluate_triggers(
        drift_summary.get("drift_share"),
        fresh,
        fresh_performance.get("reference"),
        monitoring,
        has_production="version" in fresh_performance,
    )
    result = {"month": drift_summary.get("month"), **decision.to_dict()}
    log_metadata(metadata={"retraining_decision": result})
    alerter = Alerter(alerts.get("slack_webhook"))
    for event in decision.fired:
        alerter.send(Alert(event, f"{event} over threshold in {result['month']}", decision.figures))
    return result
