from zenml import pipeline

from ledgerlink.config import Config
from steps import collect_month
from steps.hooks import alert_on_failure


@pipeline(enable_cache=False, on_failure=alert_on_failure)
def data_collection(config: Config, month: str | None = None):
    """Extract the next month from the warehouse, validate it and commit it to the dataset store."""
    dataset_ref = collect_month(config=config, month=month)
    return dataset_ref
