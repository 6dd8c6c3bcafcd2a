"""Model families selectable by configuration (``model.family``)."""

from __future__ import annotations


def build_matcher(family: str = "xgboost", **params):
    if family == "xgboost":
        from .model import Matcher

        return Matcher(**params)
    if family == "transformer":
        from .transformer import TransformerMatcher

        return TransformerMatcher(**params)
    if family == "rules":
        from .rules import RulesMatcher

        return RulesMatcher()
    raise ValueError(f"model.family must be one of 'xgboost', 'transformer', 'rules'; got {family!r}")
