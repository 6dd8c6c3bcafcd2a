from typing import Annotated

from zenml import step

from ledgerlink.data.suggest import no_production_model
from utils.model_versions import ModelVersionMetadata, production_version


@step(enable_cache=False)
def production_model(model_name: str) -> Annotated[dict, "production_model"]:
    """The version in the Model Control Plane's ``production`` stage, pinned for the run (a promotion while it runs
    does not change which model suggests); refused with a clear error when there is none."""
    version = production_version(model_name)
    if version is None:
        raise no_production_model(model_name)
    meta = ModelVersionMetadata.of(version)
    return {
        "model_name": model_name,
        "version": str(version.name),
        "number": int(version.number),
        "auto_threshold": meta.auto_threshold,
        "data_months": meta.data_months or [],
    }
