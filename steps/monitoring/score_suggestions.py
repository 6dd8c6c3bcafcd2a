from typing import Annotated

from zenml import log_metadata, step

from ledgerlink.config import Config
from ledgerlink.data.store import DatasetRef
from ledgerlink.data.suggestions import open_suggestions
from ledgerlink.monitoring.suggestion_quality import month_tags, score_month
from utils.model_versions import ModelVersionMetadata, log_model_version_metadata, production_version


@step(enable_cache=False)
def score_suggestions(dataset_ref: DatasetRef, config: Config) -> Annotated[dict, "suggestion_quality"]:
    """Score the suggestions made for the newest collected month against its tags, and record the figures on each
    model version that suggested (``suggestions_<month>``); production's precision feeds the retraining trigger."""
    month = dataset_ref.months[-1]
    suggestions = open_suggestions(config.to_dict()).read(month)
    ours = suggestions[suggestions["model_name"] == config.model_name]
    if ours.empty:
        return {"month": month, "skipped": f"no suggestions were made for {month}"}
    tags = month_tags(dataset_ref.open(), month)
    scores = score_month(ours, tags["transfers"], tags["links"])
    prod = production_version(config.model_name)
    result = {"month": month, "versions": {}}
    for (model_name, version), quality in scores.items():
        log_model_version_metadata(ModelVersionMetadata(suggestion_quality={month: quality}), model_name, version)
        result["versions"][version] = quality.to_dict()
        if prod is not None and version == str(prod.name):
            result["production"] = {"version": version, **quality.to_dict()}
    log_metadata(metadata={"suggestion_quality": result})
    return result
