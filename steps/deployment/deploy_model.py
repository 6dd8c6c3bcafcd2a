from typing import Annotated

from zenml import get_step_context, log_metadata, step

from ledgerlink.deploy.export import export_model


@step(enable_cache=False)
def deploy_model(matcher: object, decision: dict, promotion: dict, deploy: dict) -> Annotated[dict, "deployment"]:
    """Ship a promoted model; otherwise do nothing and say why."""
    if not promotion["promoted"]:
        reason = "; ".join(decision["reasons"])
        print(f"Deploy skipped: the model was not promoted ({reason})")
        result = {"deployed": False, "reason": reason}
        log_metadata(metadata={"deployment": result}, infer_model=True)
        return result
    info = {"model_name": promotion["model_name"], "version": promotion["version"], "number": promotion["number"]}
    path = export_model(matcher, deploy["model_dir"], promotion["model_name"], promotion["number"], info)
    result = {"deployed": True, "deployer": deploy.get("deployer", "local"), "model_path": str(path)}
    print(f"Deployed model version {promotion['number']} to {path}")
    log_metadata(metadata={"deployment": result}, infer_model=True)
    return result
