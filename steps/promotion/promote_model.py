from typing import Annotated

from zenml import get_step_context, step

from ledgerlink.data.store import DatasetRef
from ledgerlink.monitoring.alerts import Alert
from utils.alerting import alerter
from utils.model_versions import ModelVersionMetadata, log_model_version_metadata


@step(enable_cache=False)
def promote_model(decision: dict, evaluation: dict, dataset_ref: DatasetRef) -> Annotated[dict, "promotion"]:
    """Record the evaluation and decision on this model version; on promotion make it production."""
    model = get_step_context().model
    log_model_version_metadata(ModelVersionMetadata.from_training(evaluation, dataset_ref, decision))
    if decision["promote"]:
        model.set_stage("production", force=True)
    metric = decision.get("primary_metric", "pair_f1")
    verdict = (
        f"version {model.number} promoted to production"
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
        "model_name": model.name,
        "version": str(model.version),
        "number": int(model.number),
    }
