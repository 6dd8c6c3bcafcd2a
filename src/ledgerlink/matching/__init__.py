"""Transfer -> invoice matching: blocking, pair features, an XGBoost pair model, a set model choosing each
transfer's invoice set, the rules baseline; ``transformer.TransformerMatcher`` adds a cross-encoder text score
(``registry.build_matcher("transformer")``).

No orchestration here (no zenml import): pipelines, benchmarks and the BentoML service all call this API.

Where things live: ``base`` (the interface every family shares), ``runtime`` (deadline), ``normalize`` (text),
``candidates`` (blocking), ``memory`` (what training links teach: payer -> contractor, paid invoices),
``subsets`` (which candidate sets add up to an amount), ``tolerances`` (fees, cents, partial payments, dates),
``features`` (pair features), ``sets`` (the set model's sets, features and choice), ``assignment`` (the
fallback choice without a set model), ``model`` / ``transformer`` / ``rules`` (the families), ``arrays``
(numpy joins and segment reductions).
"""

from ..evaluation.metrics import blocking_recall
from .base import BaseMatcher, MatchResult, MatchTimeout
from .candidates import generate_candidates
from .features import FEATURE_NAMES, pair_features
from .rules import RulesMatcher

__all__ = [
    "BaseMatcher",
    "MatchTimeout",
    "Matcher",
    "RulesMatcher",
    "MatchResult",
    "blocking_recall",
    "generate_candidates",
    "pair_features",
    "FEATURE_NAMES",
]


def __getattr__(name: str):
    # Lazy: the XGBoost family loads xgboost (and its OpenMP runtime); the rules baseline and the feature code
    # do not need it.
    if name == "Matcher":
        from .model import Matcher

        return Matcher
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
