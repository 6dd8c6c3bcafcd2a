"""Pipeline failure hook: a short Slack alert (or a log line when no webhook is configured)."""

from ledgerlink.monitoring.alerts import Alert
from utils.alerting import alerter


def alert_on_failure(exception: BaseException) -> None:
    from zenml import get_step_context

    try:
        ctx = get_step_context()
        where, run = ctx.step_run.name, ctx.pipeline_run.name
    except Exception:
        where, run = "unknown step", None
    alerter().send(
        Alert("run_failure", f"step '{where}' failed: {type(exception).__name__}: {str(exception)[:300]}", run=run)
    )
