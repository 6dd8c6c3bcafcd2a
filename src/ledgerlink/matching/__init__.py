"""Transfer -> invoice matching: blocking, pair features, an XGBoost pair model, a set model choosing each
transfer's invoice set, the rules baseline; ``transformer.TransformerMatcher`` adds a cross-encoder text score
(``registry.build_matcher("transformer")``).

No orchestration here (no zenml import): pipelines, benchmarks and the BentoML service all call this API.
"""

from ..evaluation.metrics import blocking_recall
from .candidates import generate_candidates
from .features import FEATURE_NAMES, pair_features
from .model import Matcher, MatchResult
from .rules import RulesMatcher

__all__ = [
    "Matcher",
    "RulesMatcher",
    "MatchResult",
    "blocking_recall",
    "generate_candidates",
    "pair_features",
    "FEATURE_NAMES",
]
