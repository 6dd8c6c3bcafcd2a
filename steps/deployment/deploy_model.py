from typing import Annotated

from zenml import get_step_context, log_metadata, step

from ledgerlink.matching.base import BaseMatcher

from ledgerlink.deploy.export import export_model
from ledgerlink.monitoring.alerts import Alert, Alerter


@step(enable_cache=False)
def deploy_model(matcher: BaseMatcher, decision: dict, promotion: dict, deploy: dict, alerts: dict) -> Annotated[dict, "deployment"]:
    """Ship a promoted model; otherwise do nothing and say why."""
    if not promotion["promoted"]:
        reason = "; ".join(decision["reasons"])
        print(f"Deploy skipped: the model was not promoted ({reason})")
        result = {"deployed": False, "reason": reason}
        log_metadata(metadata={"deployment": result}, infer_model=True)
        Alerter(alerts.get("slack_webhook")).send(Alert("deployment", f"skipped: {reason}"))
        return result
    info = {"model_name": promotion["model_name"], "version": promotion["version"], "number": promotion["number"]}
    path = export_model(matcher, deploy["model_dir"], promotion["model_name"], promotion["number"], info)
    result = {"deployed": True, "deployer": deploy.get("deployer", "local"), "model_path": str(path)}
    print(f"Deployed model version {promotion['number']} to {path}")
    log_metadata(metadata={"deployment": result}, infer_model=True)
    Alerter(alerts.get("slack_webhook")).send(Alert("deployment", f"version {promotion['number']} deployed", {"path": str(path)}))
    return result
