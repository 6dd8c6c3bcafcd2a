from typing import Annotated

from zenml import step

from ledgerlink.config import StoreConfig
from ledgerlink.data.store import DatasetRef, store_at

from ..materializers import DatasetRefMaterializer


@step(enable_cache=False, output_materializers=DatasetRefMaterializer)
def current_dataset(store: StoreConfig) -> Annotated[DatasetRef, "dataset_ref"]:
    """The store's current state as a reference: committed months, row counts, fingerprints."""
    ref = store_at(store.uri).ref()
    if not ref.months:
        raise RuntimeError(f"the dataset store {ref.uri} is empty; run the data_collection pipeline first")
    return ref
