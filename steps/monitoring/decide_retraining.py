from typing import Annotated

from zenml import log_metadata, step

from ledgerlink.config import MonitoringConfig
from ledgerlink.monitoring.alerts import Alert
from ledgerlink.monitoring.triggers import evaluate_triggers
from utils.alerting import alerter


@step(enable_cache=False)
def decide_retraining(
    drift_summary: dict, fresh_performance: dict, suggestion_quality: dict, monitoring: MonitoringConfig
) -> Annotated[dict, "retraining_decision"]:
    """Apply the configured triggers; alert when drift, degradation or production auto precision passes its
    threshold."""
    decision = evaluate_triggers(
        drift_summary.get("drift_share"),
        fresh_performance.get("metrics"),
        fresh_performance.get("reference"),
        monitoring,
        has_production="version" in fresh_performance,
        auto_precision=suggestion_quality.get("production", {}).get("auto_precision"),
    )
    result = {"month": drift_summary.get("month"), **decision.to_dict()}
    log_metadata(metadata={"retraining_decision": result})
    if decision.fired:
        send = alerter()
        for event in decision.fired:
            what = "below its floor" if event == "auto_precision" else "over threshold"
            send.send(Alert(event, f"{event} {what} in {result['month']}", decision.figures))
    return result
