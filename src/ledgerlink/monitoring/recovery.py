"""How well a simulated year of continuous training kept production at the best model it had: the figures of
``benchmarks/simulation.py``, from who was in production each month and every version's fresh-month accuracy.

Definitions (months are ``YYYY-MM`` labels, in order):

- the version **trained in month j** has seen months <= j. When month m's tags arrive (monitoring, before m's own
  training) the system **has** every version trained in a month before m;
- **production at m** is the version promoted most recently before m (promotions happen at the end of a month's
  training); none before the first promotion;
- **fresh accuracy** of a version on m: exact-set accuracy on m's transfers against every invoice collected up to
  m, as monitoring scores it (``performance.score_fresh_month``); defined for versions trained before m;
- **best(m)**: the highest fresh accuracy on m among the versions the system had at m (production included);
  **shortfall(m)** = best(m) - production's fresh accuracy on m;
- **months_degraded**: months from the drift month on (every month with a production model when there is no
  drift) whose shortfall is more than ``threshold`` (0.02); **accuracy_lost**: the sum of those shortfalls;
- a **false promotion**: a promotion (not the first model) whose version is less accurate on the next month than
  the version it replaced. Only promotions with a next month in the year are judged;
- **promotions**: promotions after the first model.
"""

from __future__ import annotations


def production_at(months: list[str], trained: dict[str, int], promoted: dict[str, bool]) -> dict[str, int | None]:
    """Month -> the version in production when that month's tags arrived."""
    current, out = None, {}
    for month in months:
        out[month] = current
        if promoted.get(month) and month in trained:
            current = trained[month]
    return out


def year_figures(
    months: list[str],
    trained: dict[str, int],
    promoted: dict[str, bool],
    accuracy: dict[tuple[int, str], float],
    drift_month: str | None = None,
    threshold: float = 0.02,
) -> dict:
    """The year's figures (see the module docstring) and one row per month that had a production model.

    ``trained``: month -> version trained that month; ``promoted``: month -> whether it was promoted;
    ``accuracy``: (version, month) -> fresh accuracy, for every version trained before the month.
    """
    prod = production_at(months, trained, promoted)
    version_month = {v: m for m, v in trained.items()}
    rows, degraded, lost = [], 0, 0.0
    for month in months:
        if prod[month] is None:
            continue
        had = [v for v, m in version_month.items() if m < month and (v, month) in accuracy]
        best_version = max(had, key=lambda v: accuracy[(v, month)])
        production = accuracy[(prod[month], month)]
        shortfall = accuracy[(best_version, month)] - production
        counted = drift_month is None or month >= drift_month
        is_degraded = counted and shortfall > threshold
        degraded += is_degraded
        lost += shortfall if is_degraded else 0.0
        rows.append(
            {
                "month": month,
                "production": prod[month],
                "production_accuracy": production,
                "best": best_version,
                "best_accuracy": accuracy[(best_version, month)],
                "shortfall": shortfall,
                "degraded": bool(is_degraded),
            }
        )
    promotions, false, judged = 0, 0, 0
    for i, month in enumerate(months):
        replaced = prod[month]
        if not promoted.get(month) or month not in trained or replaced is None:
            continue  # no promotion, or the first model
        promotions += 1
        if i + 1 < len(months):
            nxt = months[i + 1]
            judged += 1
            false += accuracy[(trained[month], nxt)] < accuracy[(replaced, nxt)]
    return {
        "months_degraded": int(degraded),
        "accuracy_lost": float(lost),
        "promotions": promotions,
        "false_promotions": int(false),
        "judged_promotions": judged,
        # months whose decision could have been a false promotion: against a production model, with a next month
        "judged_months": sum(1 for m in months[:-1] if prod[m] is not None and m in trained),
        "rows": rows,
    }
