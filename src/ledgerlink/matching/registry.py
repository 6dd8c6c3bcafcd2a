"""Model families selectable by configuration (``model.family``)."""

from __future__ import annotations

FAMILIES = ("xgboost", "transformer", "rules")


def matcher_class(family: str) -> type:
    """The estimator class of ``family``, imported on demand (the transformer family pulls in torch)."""
    if family == "xgboost":
        from .model import Matcher

        return Matcher
    if family == "transformer":
        from .transformer import TransformerMatcher

        return TransformerMatcher
    if family == "rules":
        from .rules import RulesMatcher

        return RulesMatcher
    raise ValueError(f"model.family must be one of {', '.join(repr(f) for f in FAMILIES)}; got {family!r}")


def family_params(family: str) -> dict[str, object]:
    """Parameter name -> default of the family's estimator (``BaseMatcher._param_defaults``)."""
    return matcher_class(family)._param_defaults()


def build_matcher(family: str = "xgboost", **params):
    """An unfitted matcher of ``family``; parameters the family does not take are refused."""
    unknown = sorted(set(params) - set(family_params(family)))
    if unknown:
        raise TypeError(f"model family {family!r} has no parameter(s) {unknown}")
    return matcher_class(family)(**params)
