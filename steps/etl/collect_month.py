from typing import Annotated

from zenml import log_metadata, step

from ledgerlink.config import Config
from ledgerlink.data import collect
from ledgerlink.data.store import DatasetRef, open_store
from ledgerlink.data.warehouse import open_warehouse

from ..materializers import DatasetRefMaterializer


@step(enable_cache=False, output_materializers=DatasetRefMaterializer)
def collect_month(config: Config, month: str | None = None) -> Annotated[DatasetRef, "dataset_ref"]:
    """Extract, validate and commit the next month (or ``month``); pass on a reference, not data."""
    cfg = config.to_dict()
    ref, stats = collect.collect_month(
        open_warehouse(cfg),
        open_store(cfg),
        month=month,
        test_fraction=config.split.test_fraction,
        seed=config.split.seed,
    )
    log_metadata(metadata={"collection": {"message": ref.message, "collected": ref.collected, **stats}})
    print(ref.message)
    return ref
