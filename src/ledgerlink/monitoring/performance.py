"""Score the production model on a freshly tagged month: the real degradation signal; ``challenge`` compares a
newer version (or production's predecessor) with production on that month, and ``degradation`` asks whether
the same model fell from one fresh month to the next: the evidence of the out-of-time promotion route."""

from __future__ import annotations

from statistics import NormalDist

from ..evaluation.compare import paired_bootstrap, unpaired_interval
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


def pick_challenger(
    versions: list[tuple[int, list[str]]], production_number: int, month: str, predecessor: bool = False
) -> int | None:
    """The out-of-time challenger among ``versions`` ((number, data months), any order): the newest version,
    newer than production, that has not trained on ``month`` (so the month is fresh to it).

    ``predecessor``: when no newer version is fresh to the month (production was promoted last month, so it is
    the newest), production's predecessor instead: the newest older version that has not trained on the month.
    Production against it measures what the last month of training data bought (``challenge`` kind
    "learning curve"); without it the month after every promotion has no fresh evidence, and a model that keeps
    improving after a drift waits a month each time (measured on the default simulated year: without it production
    lagged more than 0.02 behind a version it had in August, October and December; with it and ``degradation``,
    only in the drift month).
    """
    fresh = [n for n, months in versions if n != production_number and months and max(months) < month]
    newer = [n for n in fresh if n > production_number]
    if newer:
        return max(newer)
    older = [n for n in fresh if n < production_number] if predecessor else []
    return max(older) if older else None


def degradation(version: int, before_month: str, before: dict, month: str, now: dict, confidence: float) -> dict:
    """The same model version's exact-set accuracy on an earlier fresh month minus on ``month``, with a normal
    interval for two independent proportions (different transfers): has the world moved under the model?"""
    p0, n0 = before["exact_set_accuracy"], max(int(before.get("n_transfers", 0)), 1)
    p1, n1 = now["exact_set_accuracy"], max(int(now.get("n_transfers", 0)), 1)
    drop = p0 - p1
    lower, upper = unpaired_interval(drop, p0, n0, p1, n1, NormalDist().inv_cdf(1 - (1 - confidence) / 2))
    return {
        "version": int(version),
        "from_month": before_month,
        "month": month,
        "before": p0,
        "now": p1,
        "metric": "exact_set_accuracy",
        "drop": drop,
        "lower": lower,
        "upper": upper,
        "confidence": confidence,
    }


def _latest_degradation(fresh: dict[int, dict], month: str, scored: dict[int, dict], confidence: float):
    """Degradation of the first of ``scored``'s versions (production first) that has an earlier fresh month."""
    for version, now in scored.items():
        history = fresh.get(version) or {}
        earlier = [m for m in history if m < month]
        if earlier:
            before_month = max(earlier)
            return degradation(version, before_month, history[before_month], month, now, confidence)
    return None


def challenge(
    challenger_eval,
    production_eval,
    month: str,
    challenger: int,
    cfg: dict,
    production: int | None = None,
    fresh: dict[int, dict[str, dict]] | None = None,
) -> dict:
    """Paired bootstrap on the same fresh-month transfers (out-of-time): ``gain`` is always newer minus older.

    A challenger newer than production (kind "newer version"): does a retrained version beat production?
    An older one, production's predecessor (kind "learning curve", needs ``production``, its number): did the
    last month of training data make production significantly better? Then one more month is expected to help
    the candidate too. ``fresh`` (version number -> month -> its metrics on that month, its earlier fresh-month
    scores): adds ``degradation``, the fall of production (else the challenger) from its previous fresh month.
    """
    older = production is not None and challenger < production
    newer_eval, older_eval = (production_eval, challenger_eval) if older else (challenger_eval, production_eval)
    confidence = cfg.get("confidence", 0.95)
    boot = paired_bootstrap(
        newer_eval.outcomes,
        older_eval.outcomes,
        cfg.get("primary_metric", "pair_f1"),
        cfg.get("bootstrap_samples", 1000),
        confidence,
        cfg.get("seed", 0),
    )
    scored = {} if production is None else {int(production): production_eval.metrics}
    scored[int(challenger)] = challenger_eval.metrics
    return {
        "month": month,
        "challenger": int(challenger),
        "production": None if production is None else int(production),
        "kind": "learning curve" if older else "newer version",
        **boot,
        "degradation": _latest_degradation(fresh, month, scored, confidence) if fresh else None,
    }
