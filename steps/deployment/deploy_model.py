from typing import Annotated

from zenml import step
from zenml.client import Client

from ledgerlink.config import DeployConfig
from ledgerlink.data.store import DatasetRef, StoreError
from ledgerlink.deploy.deployers import DeploymentFailed, deploy_promoted, skipped
from ledgerlink.matching.base import BaseMatcher
from ledgerlink.monitoring.alerts import Alert
from utils.alerting import alerter
from utils.model_versions import ModelVersionMetadata, log_model_version_metadata, model_version_info


def _frozen_test(dataset_ref: DatasetRef) -> dict | None:
    """The smoke test's data; None without a frozen test set, which ``deploy_promoted`` records as a failure."""
    try:
        return dataset_ref.open().load_test()
    except StoreError:
        return None


@step(enable_cache=False)
def deploy_model(
    matcher: BaseMatcher,
    decision: dict,
    promotion: dict,
    deploy: DeployConfig,
    dataset_ref: DatasetRef,
) -> Annotated[dict, "deployment"]:
    """Ship a promoted model (BentoML model + Bento, smoke test, then the configured deployer); otherwise do
    nothing and say why. The outcome is the model version's ``deployment`` metadata, failures included.

    ``dataset_ref`` is required (not Optional): ZenML loads an Optional input by the type stored with the artifact,
    which a run from ``run.py`` records as ``src.ledgerlink...``, a second copy of the class."""
    if not promotion["promoted"]:
        result = skipped(decision["reasons"])
        print(f"Deploy skipped: the model was not promoted ({result['reason']})")
        log_model_version_metadata(ModelVersionMetadata(deployment=result))
        alerter().send(Alert("deployment", f"skipped: {result['reason']}"))
        return result

    version = Client().get_model_version(promotion["model_name"], promotion["number"])
    info = model_version_info(promotion["model_name"], version, currencies=deploy.currencies)
    smoke_tables = _frozen_test(dataset_ref) if deploy.smoke_test else None
    try:
        result = deploy_promoted(matcher, info, deploy.model_dump(mode="json"), smoke_tables=smoke_tables)
    except DeploymentFailed as exc:
        log_model_version_metadata(ModelVersionMetadata(deployment=exc.record))  # recorded before the run fails
        raise
    log_model_version_metadata(ModelVersionMetadata(deployment=result))
    where = result.get("image") or result.get("model_path")
    print(f"Deployed model version {info.number} ({result['deployer']}): {where}")
    alerter().send(
        Alert(
            "deployment",
            f"version {info.number} deployed ({result['deployer']})",
            {k: result[k] for k in ("image", "build_id", "bento_tag", "model_path") if k in result},
        )
    )
    return result
