from typing import Annotated

from zenml import log_metadata, step
from zenml.client import Client

from ledgerlink.data.store import DatasetRef
from ledgerlink.monitoring.performance import challenge, fresh_month_data, pick_challenger, score_fresh_month
from ledgerlink.monitoring.references import fresh_reference, is_fresh_to
from utils.model_versions import FreshScore, ModelVersionMetadata, log_model_version_metadata, production_version


def _latest_challenger(model_name: str, production_number: int, month: str):
    """The out-of-time challenger (``pick_challenger``): the newest version newer than production, or else
    production's predecessor."""
    client = Client()
    newest = client.list_model_versions(model_name, sort_by="desc:number", size=50).items
    versions = [
        (v.number, ModelVersionMetadata.of(client.get_model_version(model_name, v.number)).data_months or [])
        for v in newest
    ]
    number = pick_challenger(versions, production_number, month, predecessor=True)
    return None if number is None else client.get_model_version(model_name, number)


@step(enable_cache=False)
def score_production_on_fresh_month(
    dataset_ref: DatasetRef, model_name: str, promotion: dict
) -> Annotated[dict, "fresh_performance"]:
    """Score production on the newest tagged month it has not trained on; record it per month on the model version.

    The newest non-production version that has not seen the month is scored too: when the frozen test set
    cannot tell it apart from production, this out-of-time score shows whether retraining would help.
    """
    newest = dataset_ref.months[-1]
    prod = production_version(model_name)
    if prod is None:
        return {"month": newest, "skipped": "no production model yet"}
    meta = ModelVersionMetadata.of(prod)
    if not is_fresh_to(newest, meta.data_months):
        return {
            "month": newest,
            "skipped": f"production version {prod.number} was trained on {newest}",
            "version": prod.number,
        }
    store = dataset_ref.open()
    data = fresh_month_data(store, newest)
    result, prod_eval = score_fresh_month(prod.get_artifact("matcher").load(), store, newest, data)
    result["version"] = int(prod.number)
    result["reference"] = fresh_reference(meta.fresh_metrics(), meta.metrics, newest)
    log_model_version_metadata(
        ModelVersionMetadata(fresh={newest: FreshScore(result["metrics"])}), model_name, prod.number
    )
    challenger = _latest_challenger(model_name, prod.number, newest)
    if challenger is not None:
        scored, chall_eval = score_fresh_month(challenger.get_artifact("matcher").load(), store, newest, data)
        result["challenger"] = {"version": int(challenger.number), "metrics": scored["metrics"]}
        result["challenge"] = challenge(
            chall_eval,
            prod_eval,
            newest,
            challenger.number,
            promotion,
            prod.number,
            {int(prod.number): prod.run_metadata, int(challenger.number): challenger.run_metadata},
        )
        # the training pipeline's promotion rule reads this from the production version
        log_model_version_metadata(
            ModelVersionMetadata(challenges={newest: result["challenge"]}), model_name, prod.number
        )
        log_model_version_metadata(
            ModelVersionMetadata(fresh={newest: FreshScore(scored["metrics"], role="challenger")}),
            model_name,
            challenger.number,
        )
    log_metadata(
        metadata={
            "fresh_performance": {
                "month": newest,
                "version": int(prod.number),
                **result["metrics"],
                "challenger": result.get("challenger"),
            }
        }
    )
    return result
