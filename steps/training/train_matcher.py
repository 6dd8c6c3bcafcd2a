from typing import Annotated

from zenml import log_metadata, step

from ledgerlink.config import ModelConfig
from ledgerlink.data.store import DatasetRef
from ledgerlink.matching.base import BaseMatcher
from ledgerlink.matching.registry import build_matcher, family_params

from ..materializers import MatcherMaterializer


@step(output_materializers=MatcherMaterializer)
def train_matcher(dataset_ref: DatasetRef, model: ModelConfig) -> Annotated[BaseMatcher, "matcher"]:
    """Fit the configured model family on all committed training months."""
    train = dataset_ref.open().load_train(dataset_ref.months)
    progress = {"show_progress": True} if "show_progress" in family_params(model.family) else {}
    matcher = build_matcher(model.family, **{**progress, **model.params})
    matcher.fit(train["invoices"], train["transfers"], train["links"])
    log_metadata(
        metadata={
            "training": {
                "months": dataset_ref.months,
                "rows": dataset_ref.train_rows,
                "train_fingerprint": dataset_ref.train_fingerprint,
                **getattr(matcher, "training_summary_", {}),
            }
        }
    )
    return matcher
