from typing import Annotated

from zenml import log_metadata, step

from ledgerlink.data.store import DatasetStore
from ledgerlink.matching.base import BaseMatcher
from ledgerlink.matching.registry import build_matcher

from ..materializers import MatcherMaterializer


@step(output_materializers=MatcherMaterializer)
def train_matcher(dataset_ref: dict, model: dict) -> Annotated[BaseMatcher, "matcher"]:
    """Fit the configured model family on all committed training months."""
    train = DatasetStore(dataset_ref["uri"]).load_train(dataset_ref["months"])
    matcher = build_matcher(model.get("family", "xgboost"), **model.get("params", {}), show_progress=True)
    matcher.fit(train["invoices"], train["transfers"], train["links"])
    log_metadata(
        metadata={
            "training": {
                "months": dataset_ref["months"],
                "rows": dataset_ref["train_rows"],
                "train_fingerprint": dataset_ref["train_fingerprint"],
                **getattr(matcher, "training_summary_", {}),
            }
        }
    )
    return matcher
