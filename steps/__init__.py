"""ZenML steps: thin glue over the ledgerlink library, one step per module, grouped by stage."""

from .deployment.deploy_model import deploy_model
from .etl.collect_month import collect_month
from .etl.current_dataset import current_dataset
from .monitoring.decide_retraining import decide_retraining
from .monitoring.detect_data_drift import detect_data_drift
from .monitoring.score_production_on_fresh_month import score_production_on_fresh_month
from .monitoring.score_suggestions import score_suggestions
from .promotion.compare_with_production import compare_with_production
from .promotion.promote_model import promote_model
from .suggest.production_model import production_model
from .suggest.render_suggestions import render_suggestions
from .suggest.resolve_open_month import resolve_open_month
from .suggest.suggest_links import suggest_links
from .training.evaluate_matcher import evaluate_matcher
from .training.train_matcher import train_matcher

__all__ = [
    "collect_month",
    "current_dataset",
    "train_matcher",
    "evaluate_matcher",
    "compare_with_production",
    "promote_model",
    "deploy_model",
    "detect_data_drift",
    "score_production_on_fresh_month",
    "score_suggestions",
    "decide_retraining",
    "production_model",
    "resolve_open_month",
    "suggest_links",
    "render_suggestions",
]
