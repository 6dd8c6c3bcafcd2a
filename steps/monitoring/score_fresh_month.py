from typing import Annotated

from zenml import log_metadata, step

from ledgerlink.data.store import DatasetStore
from ledgerlink.monitoring.performance import score_fresh_month

from .production_model import production_version


@step(enable_cache=False)
def score_production_on_fresh_month(dataset_ref: dict, model_name: str) -> Annotated[dict, "fresh_performance"]:
    """Score production on the newest tagged month it has not trained on; record it per month on the model version."""
    newest = dataset_ref["months"][-1]
    prod = production_version(model_name)
    if prod is None:
        return {"month": newest, "skipped": "no production model yet"}
    meta = prod.run_metadata
    if newest in meta.get("data_months", []):
        return {"month": newest, "skipped": f"production version {prod.number} was trained on {newest}", "version": prod.number}
    result = score_fresh_month(prod.get_artifact("matcher").load(), DatasetStore(dataset_ref["uri"]), newest)
    result["version"] = int(prod.number)
    history = {k: v for k, v in meta.items() if k.startswith("fresh_")}
    reference = history[min(history)]["metrics"] if history else meta.get("metrics")
    result["reference"] = reference
    log_metadata(metadata={f"fresh_{newest}": {"metrics": result["metrics"]}},
                 model_name=model_name, model_version=str(prod.number))
    log_metadata(metadata={"fresh_performance": {"month": newest, "version": int(prod.number), **result["metrics"]}})
    return result
