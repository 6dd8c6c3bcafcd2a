from typing import Annotated

from zenml import log_metadata, step

from ledgerlink.data import collect
from ledgerlink.data.store import open_store
from ledgerlink.data.warehouse import open_warehouse


@step(enable_cache=False)
def collect_month(config: dict, month: str | None = None) -> Annotated[dict, "dataset_ref"]:
    """Extract, validate and commit the next month (or ``month``); pass on a reference, not data."""
    ref, stats = collect.collect_month(
        open_warehouse(config),
        open_store(config),
        month=month,
        test_fraction=config["split"]["test_fraction"],
        seed=config["split"]["seed"],
    )
    log_metadata(metadata={"collection": {"message": ref.message, "collected": ref.collected, **stats}})
    print(ref.message)
    return ref.to_dict()
