"""ZenML steps: thin glue over the ledgerlink library, one concern per file."""
from .deployment.deploy_model import deploy_model
from .etl.collect_month import collect_month_step
from .etl.current_dataset import current_dataset
from .promotion.compare_with_production import compare_with_production
from .promotion.promote_model import promote_model
from .training.evaluate_matcher import evaluate_matcher
from .training.train_matcher import train_matcher

__all__ = ["collect_month_step", "current_dataset", "train_matcher", "evaluate_matcher",
           "compare_with_production", "promote_model", "deploy_model"]
