"""Score the production model on a freshly tagged month: the real degradation signal; ``challenge`` compares a
newer version with production on that month (the out-of-time promotion route)."""

from __future__ import annotations

from ..evaluation.compare import paired_bootstrap
from ..evaluation.evaluate import evaluate


def fresh_month_data(store, month: str) -> dict:
    """The month's transfers and links, with every invoice collected up to that month as candidates."""
    months = [m for m in store.collected_months() if m <= month]
    pool = store.load_train(months)["invoices"]
    data = store.load_train([month])
    return {"invoices": pool, "transfers": data["transfers"], "links": data["links"]}


def score_fresh_month(matcher, store, month: str, data: dict | None = None):
    """(summary dict, Evaluation) of ``matcher`` on the fresh month ``month``."""
    ev = evaluate(matcher, data or fresh_month_data(store, month), f"on {month}")
    return {"month": month, "metrics": ev.metrics, "slices": ev.slices}, ev


def challenge_key(month: str) -> str:
    """Where the production version's metadata keeps the out-of-time challenge of ``month`` (written by
    monitoring, read by the training pipeline's promotion rule)."""
    return f"challenge_{month}"


def pick_challenger(versions: list[tuple[int, list[str]]], production_number: int, month: str) -> int | None:
    """The out-of-time challenger among ``versions`` ((number, data months), any order): the newest version,
    newer than production, that has not trained on ``month`` (so the month is fresh to it)."""
    for number, months in sorted(versions, key=lambda v: -v[0]):
        if number <= production_number:
            return None
        if months and max(months) < month:
            return number
    return None


def challenge(challenger_eval, production_eval, month: str, challenger: int, cfg: dict) -> dict:
    """Paired bootstrap of challenger vs production on the same fresh-month transfers (out-of-time)."""
    boot = paired_bootstrap(
        challenger_eval.outcomes,
        production_eval.outcomes,
        cfg.get("primary_metric", "pair_f1"),
        cfg.get("bootstrap_samples", 1000),
        cfg.get("confidence", 0.95),
        cfg.get("seed", 0),
    )
    return {"month": month, "challenger": int(challenger), **boot}
