from typing import Annotated

from zenml import get_step_context, step

from ledgerlink.config import DeployConfig
from ledgerlink.data.store import DatasetRef, StoreError
from ledgerlink.deploy.deployers import skipped
from ledgerlink.matching.base import BaseMatcher
from ledgerlink.monitoring.alerts import Alert
from utils.alerting import alerter
from utils.deployments import ship
from utils.model_versions import ModelVersionMetadata, log_model_version_metadata


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
    """Ship the staged model (BentoML model + Bento, smoke test, then the configured deployer) and only then make it
    production (``utils/deployments.ship``); a model that was not promoted is not deployed, and the record says why.
    A failed deploy is recorded on the candidate, archives it (production stays), alerts and fails the run with the
    build log URL.

    ``dataset_ref`` is required (not Optional): ZenML loads an Optional input by the type stored with the artifact,
    which a run from ``run.py`` records as ``src.ledgerlink...``, a second copy of the class."""
    if not promotion["promoted"]:
        result = skipped(decision["reasons"])
        print(f"Deploy skipped: the model was not promoted ({result['reason']})")
        log_model_version_metadata(ModelVersionMetadata(deployment=result))
        alerter().send(Alert("deployment", f"skipped: {result['reason']}"))
        return result
    smoke_tables = _frozen_test(dataset_ref) if deploy.smoke_test else None
    return ship(
        promotion["model_name"],
        promotion["number"],
        matcher,
        deploy,
        smoke_tables,
        run=get_step_context().pipeline_run.name,
    )
