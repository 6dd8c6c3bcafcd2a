"""The promotion rule: an explicit, configured decision with its reasons.

First run (no production model): promote when the candidate beats the rules baseline on the primary
metric. Later: promote only when (1) the primary metric gains at least ``min_delta``, (2) a paired
bootstrap over test transfers puts the lower end of the two-sided ``confidence`` interval of the gain
above 0, and (3) no slice with at least ``min_slice_size`` transfers drops by more than
``slice_tolerance``. All three are reported, pass or fail.

The frozen test set is drawn from the first month, so it cannot see a drift that came later: a
retrained model that handles the new data looks no better there. A second, out-of-time route covers
that: monitoring scores the newest retrained version (the challenger, which never saw the month) and
production on each fresh month. When that paired bootstrap shows a significant gain (``challenge``:
gain >= ``min_delta`` and lower bound > 0), the candidate, trained the same way on one more month, is
promoted if it is non-inferior on the frozen test set (loses at most ``frozen_margin``) and passes (3).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd

from .metrics import SLICES, summarize


def _metric_from_sums(tp, fp, fn, exact, n, metric: str) -> np.ndarray:
    if metric == "exact_set_accuracy":
        return exact / n
    precision = np.divide(tp, tp + fp, out=np.zeros_like(tp, dtype=float), where=(tp + fp) > 0)
    recall = np.divide(tp, tp + fn, out=np.zeros_like(tp, dtype=float), where=(tp + fn) > 0)
    if metric == "pair_precision":
        return precision
    if metric == "pair_recall":
        return recall
    if metric == "pair_f1":
        s = precision + recall
        return np.divide(2 * precision * recall, s, out=np.zeros_like(s), where=s > 0)
    raise ValueError(f"bootstrap supports pair_f1, pair_precision, pair_recall, exact_set_accuracy; got {metric!r}")


def paired_bootstrap(
    candidate: pd.DataFrame,
    production: pd.DataFrame,
    metric: str = "pair_f1",
    samples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> dict:
    """Gain of candidate over production, resampling the same test transfers for both."""
    a = candidate.set_index("transfer_id").sort_index()
    b = production.set_index("transfer_id").reindex(a.index)
    if b["tp"].isna().any():
        raise ValueError("paired bootstrap needs both models scored on the same test transfers")
    rng = np.random.default_rng(seed)
    n = len(a)
    idx = rng.integers(0, n, size=(samples, n))
    # Counting each transfer's draws turns resampling into a weighted sum: (samples, n) @ (n,)
    weights = np.zeros((samples, n))
    np.add.at(weights, (np.repeat(np.arange(samples), n), idx.ravel()), 1.0)

    def stat(frame):
        cols = {c: weights @ frame[c].to_numpy(dtype=float) for c in ("tp", "fp", "fn", "exact")}
        return _metric_from_sums(cols["tp"], cols["fp"], cols["fn"], cols["exact"], n, metric)

    gains = stat(a) - stat(b)
    alpha = (1 - confidence) / 2
    point = summarize(a.reset_index())[metric] - summarize(b.reset_index())[metric]
    return {
        "metric": metric,
        "gain": float(point),
        "lower": float(np.quantile(gains, alpha)),
        "upper": float(np.quantile(gains, 1 - alpha)),
        "samples": samples,
        "confidence": confidence,
    }


@dataclass
class Decision:
    promote: bool
    reasons: list[str]
    checks: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


def decide(candidate, production, rules, cfg: dict, challenge: dict | None = None) -> Decision:
    """Apply the promotion rule. ``candidate``/``production``/``rules`` are ``Evaluation``s (production may be None).

    ``challenge``: the out-of-time comparison of the newest challenger with production on a fresh month
    (a ``paired_bootstrap`` result plus ``month`` and ``challenger``), or None.
    """
    metric = cfg.get("primary_metric", "pair_f1")
    cand = candidate.metrics[metric]
    if production is None:
        base = rules.metrics[metric]
        ok = cand > base
        reason = f"first model: {metric} {cand:.4f} {'beats' if ok else 'does not beat'} the rules baseline {base:.4f}"
        return Decision(ok, [reason], {"first_run": True, "candidate": cand, "rules": base})

    prod = production.metrics[metric]
    gain = cand - prod
    boot = paired_bootstrap(
        candidate.outcomes,
        production.outcomes,
        metric,
        cfg.get("bootstrap_samples", 1000),
        cfg.get("confidence", 0.95),
        cfg.get("seed", 0),
    )
    reasons, passed = [], True
    min_delta = cfg.get("min_delta", 0.002)
    gain_ok = gain >= min_delta
    reasons.append(f"{metric} gain {gain:+.4f} {'>=' if gain_ok else '<'} min_delta {min_delta}")
    boot_ok = boot["lower"] > 0
    interval = (
        f"bootstrap {int(boot['confidence'] * 100)}% interval of the gain [{boot['lower']:+.4f}, {boot['upper']:+.4f}]"
    )
    reasons.append(f"{interval} is above 0" if boot_ok else f"{interval} includes 0: noise-level")
    tol, min_n = cfg.get("slice_tolerance", 0.02), cfg.get("min_slice_size", 30)
    slice_checks, slices_ok = {}, True
    for name in SLICES:
        c, p = candidate.slices.get(name, {}), production.slices.get(name, {})
        if not c or not p or c.get("n_transfers", 0) < min_n:
            continue
        # Slices are judged on exact-set accuracy: pair F1 is undefined on "pays nothing".
        drop = p["exact_set_accuracy"] - c["exact_set_accuracy"]
        slice_checks[name] = {"candidate": c["exact_set_accuracy"], "production": p["exact_set_accuracy"], "drop": drop}
        if drop > tol:
            slices_ok = False
            reasons.append(f"slice '{name}' exact-set accuracy drops by {drop:.4f} > tolerance {tol}")
    if slices_ok:
        reasons.append(f"no slice drops by more than {tol}")
    passed = gain_ok and boot_ok and slices_ok
    route = "frozen test" if passed else None
    if not passed and challenge is not None:
        margin = cfg.get("frozen_margin", 0.01)
        won = challenge["gain"] >= min_delta and challenge["lower"] > 0
        non_inferior = gain >= -margin
        reasons.append(
            f"out-of-time check on {challenge['month']}: version {challenge['challenger']} vs production, "
            f"{challenge['metric']} "
            f"gain {challenge['gain']:+.4f} [{challenge['lower']:+.4f}, {challenge['upper']:+.4f}]: "
            + ("retraining helps on fresh data" if won else "no significant gain on fresh data")
        )
        if won:
            reasons.append(
                f"frozen-test {metric} change {gain:+.4f} "
                + (f">= -{margin}: non-inferior" if non_inferior else f"< -{margin}: worse on the frozen test")
            )
        if won and non_inferior and slices_ok:
            passed, route = True, "out-of-time"
    return Decision(
        passed,
        reasons,
        {
            "first_run": False,
            "candidate": cand,
            "production": prod,
            "gain": gain,
            "bootstrap": boot,
            "slices": slice_checks,
            "route": route,
            "challenge": challenge,
        },
    )
