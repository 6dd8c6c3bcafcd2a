from typing import Annotated

from zenml import get_step_context, step

from ledgerlink.data.store import DatasetRef
from ledgerlink.monitoring.alerts import Alert
from utils.alerting import alerter
from utils.model_stages import STAGING, change_stage
from utils.model_versions import ModelVersionMetadata, StageChange, log_model_version_metadata, production_version
from utils.repair import archive_left_staged


@step(enable_cache=False)
def promote_model(decision: dict, evaluation: dict, dataset_ref: DatasetRef) -> Annotated[dict, "promotion"]:
    """Record the evaluation and decision on this model version; on promotion move it to ``staging``.

    It becomes ``production`` in ``deploy_model``, once its deploy succeeded: until then the production version,
    ``--serve`` and the cluster stay on the previous one. The pending change is recorded first, so a run killed
    before the deploy is finished or reverted by the next run (``utils/repair.py``: ``run.py`` deploys it; a run
    that did not start from ``run.py``, such as a scheduled one on Vertex, archives it here)."""
    model = get_step_context().model
    archive_left_staged(model.name, keep=int(model.number))  # a run stopped before its deploy (e.g. on Vertex)
    metadata = ModelVersionMetadata.from_training(evaluation, dataset_ref, decision)
    if decision["promote"]:
        current = production_version(model.name)
        metadata.stage_change = StageChange("deploy", previous=None if current is None else int(current.number))
    log_model_version_metadata(metadata)
    if decision["promote"]:
        change_stage(model.name, int(model.number), STAGING)
    metric = decision.get("primary_metric", "pair_f1")
    verdict = (
        f"version {model.number} promoted to staging (production once its deploy succeeds)"
        if decision["promote"]
        else f"version {model.number} not promoted"
    )
    alerter().send(
        Alert(
            "promotion",
            f"{verdict}: {'; '.join(decision['reasons'])}",
            {metric: decision["checks"].get("candidate")},
            run=get_step_context().pipeline_run.name,
        )
    )
    return {
        "promoted": bool(decision["promote"]),
        "stage": STAGING if decision["promote"] else None,
        "model_name": model.name,
        "version": str(model.version),
        "number": int(model.number),
    }
