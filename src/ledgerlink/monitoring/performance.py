"""Score the production model on a freshly tagged month: the real degradation signal; ``challenge`` compares a
newer version (or production's predecessor) with production on that month, and ``degradation`` asks whether
the same model fell from one fresh month to the next: the evidence of the out-of-time promotion route."""

from __future__ import annotations

import re
from statistics import NormalDist

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


_FRESH_KEY = re.compile(r"^fresh_(\d{4}-\d{2})$")


def fresh_history(metadata) -> dict[str, dict]:
    """Month -> metrics of a model version's fresh-month scores, from its metadata (``fresh_YYYY-MM`` keys)."""
    out = {}
    for key, value in dict(metadata or {}).items():
        match = _FRESH_KEY.match(key)
        if match and isinstance(value, dict) and value.get("metrics"):
            out[match.group(1)] = value["metrics"]
    return out


def degradation(version: int, before_month: str, before: dict, month: str, now: dict, confidence: float) -> dict:
    """The same model version's exact-set accuracy on an earlier fresh month minus on ``month``, with a normal
    interval for two independent proportions (different transfers): has the world moved under the model?"""
    p0, n0 = before["exact_set_accuracy"], max(int(before.get("n_transfers", 0)), 1)
    p1, n1 = now["exact_set_accuracy"], max(int(now.get("n_transfers", 0)), 1)
    drop = p0 - p1
    half = NormalDist().inv_cdf(1 - (1 - confidence) / 2) * (p0 * (1 - p0) / n0 + p1 * (1 - p1) / n1) ** 0.5
    return {
        "version": int(version),
        "from_month": before_month,
        "month": month,
        "before": p0,
        "now": p1,
        "metric": "exact_set_accuracy",
        "drop": drop,
        "lower": drop - half,
        "upper": drop + half,
        "confidence": confidence,
    }


def _latest_degradation(histories: dict[int, dict], month: str, scored: dict[int, dict], confidence: float):
    """Degradation of the first of ``scored``'s versions (production first) that has an earlier fresh month."""
    for version, now in scored.items():
        earlier = [m for m in fresh_history(histories.get(version)) if m < month]
        if earlier:
            before_month = max(earlier)
            before = fresh_history(histories[version])[before_month]
            return degradation(version, before_month, before, month, now, confidence)
    return None


def challenge(
    challenger_eval,
    production_eval,
    month: str,
    challenger: int,
    cfg: dict,
    production: int | None = None,
    metadata: dict[int, dict] | None = None,
) -> dict:
    """Paired bootstrap on the same fresh-month transfers (out-of-time): ``gain`` is always newer minus older.

    A challenger newer than production (kind "newer version"): does a retrained version beat production?
    An older one, production's predecessor (kind "learning curve", needs ``production``, its number): did the
    last month of training data make production significantly better? Then one more month is expected to help
    the candidate too. ``metadata`` (version number -> its model-version metadata, with ``fresh_YYYY-MM``
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
        "degradation": _latest_degradation(metadata or {}, month, scored, confidence) if metadata else None,
    }
