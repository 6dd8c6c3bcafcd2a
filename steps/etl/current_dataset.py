from typing import Annotated

from zenml import step

from ledgerlink.data.store import open_store


@step(enable_cache=False)
def current_dataset(config: dict) -> Annotated[dict, "dataset_ref"]:
    """The store's current state as a reference: committed months, row counts, fingerprints."""
    ref = open_store(config).ref()
    if not ref.months:
        raise RuntimeError(f"the dataset store {ref.uri} is empty; run the data_collection pipeline first")
    return ref.to_dict()
