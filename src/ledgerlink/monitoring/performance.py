"""Score the production model on a freshly tagged month: the real degradation signal."""
from __future__ import annotations

from ..evaluation.evaluate import evaluate


def fresh_month_data(store, month: str) -> dict:
    """The month's transfers and links, with every invoice collected up to that month as candidates."""
    months = [m for m in store.collected_months() if m <= month]
    pool = store.load_train(months)["invoices"]
    data = store.load_train([month])
    return {"invoices": pool, "transfers": data["transfers"], "links": data["links"]}


def score_fresh_month(matcher, store, month: str) -> dict:
    ev = evaluate(matcher, fresh_month_data(store, month), f"production on {month}")
    return {"month": month, "metrics": ev.metrics, "slices": ev.slices}
