from typing import Annotated, Optional

from zenml import get_step_context, log_metadata, step

from ledgerlink.data.store import DatasetStore
from ledgerlink.deploy.deployers import DeploymentFailed, ModelVersionInfo, deploy_promoted, skipped
from ledgerlink.matching.base import BaseMatcher
from ledgerlink.monitoring.alerts import Alert, Alerter


@step(enable_cache=False)
def deploy_model(
    matcher: BaseMatcher,
    decision: dict,
    promotion: dict,
    deploy: dict,
    alerts: dict,
    dataset_ref: Optional[dict] = None,
) -> Annotated[dict, "deployment"]:
    """Ship a promoted model (BentoML model + Bento, smoke test, then the configured deployer); otherwise do
    nothing and say why. The outcome is the model version's ``deployment`` metadata, failures included."""
    alerter = Alerter(alerts.get("slack_webhook"))
    if not promotion["promoted"]:
        result = skipped(decision["reasons"])
        print(f"Deploy skipped: the model was not promoted ({result['reason']})")
        log_metadata(metadata={"deployment": result}, infer_model=True)
        alerter.send(Alert("deployment", f"skipped: {result['reason']}"))
        return result

    model = get_step_context().model
    meta = model.run_metadata  # logged by promote_model
    info = ModelVersionInfo(
        model_name=promotion["model_name"],
        version=str(promotion["version"]),
        number=int(promotion["number"]),
        model_version_id=str(model.id),
        metrics=dict(meta.get("metrics") or {}),
        months=list(meta.get("data_months") or []),
        threshold=getattr(matcher, "auto_threshold_", None),
        currencies=deploy.get("currencies"),
    )
    smoke_tables = None
    if deploy.get("smoke_test", True) and dataset_ref:
        smoke_tables = DatasetStore(dataset_ref["uri"]).load_test()
    try:
        result = deploy_promoted(matcher, info, deploy, smoke_tables=smoke_tables)
    except DeploymentFailed as exc:
        log_metadata(metadata={"deployment": exc.record}, infer_model=True)  # recorded before the run fails
        raise
    log_metadata(metadata={"deployment": result}, infer_model=True)
    where = result.get("image") or result.get("model_path")
    print(f"Deployed model version {info.number} ({result['deployer']}): {where}")
    alerter.send(
        Alert(
            "deployment",
            f"version {info.number} deployed ({result['deployer']})",
            {k: result[k] for k in ("image", "build_id", "bento_tag", "model_path") if k in result},
        )
    )
    return result
