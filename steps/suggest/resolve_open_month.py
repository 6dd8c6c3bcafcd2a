from typing import Annotated

from zenml import step

from ledgerlink.config import StoreConfig
from ledgerlink.data.store import store_at
from ledgerlink.data.suggest import open_month


@step(enable_cache=False)
def resolve_open_month(store: StoreConfig, month: str | None = None) -> Annotated[str, "month"]:
    """The month to suggest for: ``month``, or the one after the newest collected; never a collected month."""
    return open_month(store_at(store.uri).collected_months(), month)
