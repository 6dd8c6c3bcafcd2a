from typing import Annotated

from zenml import log_metadata, step
from zenml.client import Client

from ledgerlink.config import Config
from ledgerlink.data.suggest import suggest_month
from ledgerlink.data.suggestions import open_suggestions
from ledgerlink.data.warehouse import open_warehouse


@step(enable_cache=False)
def suggest_links(config: Config, month: str, production_model: dict) -> Annotated[dict, "suggestions"]:
    """Match the open month with the pinned production version and replace its rows in the suggestions table."""
    cfg = config.to_dict()
    version = Client().get_model_version(production_model["model_name"], production_model["number"])
    summary = suggest_month(
        open_warehouse(cfg),
        open_suggestions(cfg),
        version.get_artifact("matcher").load(),
        month,
        production_model["model_name"],
        production_model["version"],
        open_transfers=config.suggest.open_transfers,
        lookback_days=config.suggest.invoice_lookback_days,
        batch_size=config.suggest.batch_size,
    ).to_dict()
    log_metadata(metadata={"suggestions": {k: v for k, v in summary.items() if k != "confidence_histogram"}})
    print(summary["skipped"] or f"{summary['rows']} suggested links for {month} written to {summary['table']}")
    return summary
