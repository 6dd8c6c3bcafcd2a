"""ledgerlink: match bank transfers to the invoices they pay, and keep the model fresh every month.

Public API (scikit-learn style)::

    from ledgerlink import Matcher, score_links
    m = Matcher().fit(invoices, transfers, links)
    predicted = m.predict(open_invoices, new_transfers)   # transfer_id, invoice_id, allocated_amount, confidence
    score_links(predicted, true_links, new_transfers)     # pair precision/recall/F1, exact-set accuracy, ...
"""

from __future__ import annotations

__version__ = "0.1.0"
__all__ = ["Matcher", "RulesMatcher", "MatchResult", "score_links", "load_config"]


def __getattr__(name: str):
    # Lazy: importing the package must stay cheap for the CLI and the service.
    if name in ("Matcher", "RulesMatcher", "MatchResult"):
        from . import matching

        return getattr(matching, name)
    if name == "score_links":
        from .evaluation.metrics import score_links

        return score_links
    if name == "load_config":
        from .config import load_config

        return load_config
    raise AttributeError(f"module 'ledgerlink' has no attribute {name!r}")
