"""Model families selectable by configuration (``model.family``)."""

from __future__ import annotations

import inspect

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
    """Parameter name -> default of the family's ``__init__``, following ``**params`` up to the base classes
    (``TransformerMatcher`` passes them on to ``Matcher``), as scikit-learn's ``get_params`` does."""
    params: dict[str, object] = {}
    for klass in matcher_class(family).__mro__:
        if "__init__" not in vars(klass):
            continue
        signature = inspect.signature(klass.__init__)
        for p in list(signature.parameters.values())[1:]:
            if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY):
                params.setdefault(p.name, p.default)
        if not any(p.kind == p.VAR_KEYWORD for p in signature.parameters.values()):
            break
    return params


def build_matcher(family: str = "xgboost", **params):
    """An unfitted matcher of ``family``; parameters the family does not take are refused."""
    unknown = sorted(set(params) - set(family_params(family)))
    if unknown:
        raise TypeError(f"model family {family!r} has no parameter(s) {unknown}")
    return matcher_class(family)(**params)
