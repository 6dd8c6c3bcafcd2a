"""The promotion rule: an explicit, configured decision whose every gate is judged against its own noise.

First run (no production model): promote when the candidate beats the rules baseline on the primary
metric. Later, three kinds of gate, each a paired comparison on the same transfers with an interval:

- **primary** (frozen test): the primary metric gains at least ``min_delta`` and the paired bootstrap puts
  the lower end of the two-sided ``confidence`` interval of the gain above 0;
- **slices** (frozen test, exact-set accuracy, slices of at least ``min_slice_size`` transfers): a slice
  blocks only when its drop is larger than ``slice_tolerance`` *and* unlikely to be noise: the lower end of
  its interval is above 0. The intervals are Bonferroni-corrected for the number of slices judged (95%
  over 5 slices: each at 99%), so five small slices do not give five chances for a fluke to block;
- **out-of-time**: monitoring's paired bootstrap on the newest tagged month (``challenge``: gain >=
  ``min_delta`` and lower end above 0) of the newest retrained version against production, or, when production
  is itself the newest version (promoted last month), of production against its predecessor: what the last
  month of training data bought ("learning curve"); or the same model's fall from its previous fresh month
  (at least ``degradation_drop`` and the lower end of its interval above 0: the world moved, and only the
  candidate has trained on the new month).

Why the noise: the frozen test set is 30% of the first month, 240 transfers. A slice there holds a few
dozen, so one transfer is 0.02-0.04 of exact-set accuracy. Measured in the simulated year of issue 14, a
0.032 "drop" of one slice (about two transfers) kept an 8-point-worse production model for three months.

Routes: the **frozen-test route** promotes when the primary gate passes and no slice blocks. The frozen
test set comes from the first month and cannot see a drift that came later, so it is not the only judge: the
**out-of-time route** promotes when the fresh month shows that retraining helps (a retrained version beats
production, one more month of data made production itself better, or the world moved under the model) and
the candidate (the same recipe
with one more month) is non-inferior on the frozen test *within noise* (the upper end of its gain's interval
reaches above ``-frozen_margin``: the frozen test cannot show a loss beyond the margin) and no slice blocks.
The asymmetry is deliberate: on this route a significant gain on fresh data has already been shown, and the
frozen test describes a world that may have changed since; measured in the simulated year, a version 3.5
points better on the fresh month was kept for a frozen-test change of -0.0107 [-0.021, -0.002] against a
margin of 0.01.
Every reason names its evidence with its interval; ``checks["decided_by"]`` says which evidence decided.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from statistics import NormalDist

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


def _paired(candidate: pd.DataFrame, production: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Both outcome tables on the same transfers, in the same order."""
    a = candidate.set_index("transfer_id").sort_index()
    b = production.set_index("transfer_id").reindex(a.index)
    if b["tp"].isna().any():
        raise ValueError("paired bootstrap needs both models scored on the same test transfers")
    return a, b


def _bootstrap_weights(n: int, samples: int, seed: int) -> np.ndarray:
    """(samples, n): how often each transfer is drawn in each resample; resampling becomes a weighted sum."""
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, n, size=(samples, n))
    weights = np.zeros((samples, n))
    np.add.at(weights, (np.repeat(np.arange(samples), n), idx.ravel()), 1.0)
    return weights


def paired_bootstrap(
    candidate: pd.DataFrame,
    production: pd.DataFrame,
    metric: str = "pair_f1",
    samples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> dict:
    """Gain of candidate over production, resampling the same test transfers for both."""
    a, b = _paired(candidate, production)
    n = len(a)
    weights = _bootstrap_weights(n, samples, seed)

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


def slice_drops(
    candidate: pd.DataFrame | None,
    production: pd.DataFrame | None,
    candidate_slices: dict[str, dict],
    production_slices: dict[str, dict],
    min_slice_size: int = 30,
    samples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> dict[str, dict]:
    """Per slice: exact-set accuracy drop (production - candidate) with a Bonferroni-corrected interval.

    With both per-transfer outcome tables carrying the slice labels (``size``, ``number``) the interval is a
    paired bootstrap: the whole test set is resampled and each slice's accuracy is its share of the resampled
    slice, so a slice's noise is that of its own few transfers, and only transfers the two models disagree on
    move it. Without them (old metadata) it is a normal approximation for two independent proportions of the
    slice's size, which is wider: it cannot know the models err on the same transfers.
    """
    judged = [
        name
        for name in SLICES
        if candidate_slices.get(name)
        and production_slices.get(name)
        and candidate_slices[name].get("n_transfers", 0) >= min_slice_size
    ]
    if not judged:
        return {}
    level = 1 - (1 - confidence) / len(judged)  # two-sided; each side gets (1 - confidence) / 2 / k
    alpha = (1 - level) / 2
    labels = {SLICES[name][0] for name in judged}  # the judged slices' labels (outcomes may predate newer slices)
    paired = (
        candidate is not None
        and production is not None
        and labels <= set(candidate.columns)
        and {"transfer_id", "exact"} <= set(production.columns)
    )
    out: dict[str, dict] = {}
    if paired:
        a, b = _paired(candidate, production)
        weights = _bootstrap_weights(len(a), samples, seed)
        diff = b["exact"].to_numpy(dtype=float) - a["exact"].to_numpy(dtype=float)
    for name in judged:
        c, p = candidate_slices[name], production_slices[name]
        n = int(c.get("n_transfers", 0))
        drop = p["exact_set_accuracy"] - c["exact_set_accuracy"]
        if paired:
            col, value = SLICES[name]
            member = (a[col] == value).to_numpy(dtype=float)
            counts = weights @ member
            drops = np.divide(weights @ (diff * member), counts, out=np.zeros(len(counts)), where=counts > 0)
            lower, upper = float(np.quantile(drops, alpha)), float(np.quantile(drops, 1 - alpha))
            method = "paired bootstrap"
        else:
            pc, pp = c["exact_set_accuracy"], p["exact_set_accuracy"]
            lower, upper = unpaired_interval(
                drop, pp, int(p.get("n_transfers", n)), pc, n, NormalDist().inv_cdf(1 - alpha)
            )
            method = "normal approximation, unpaired"
        out[name] = {
            "candidate": c["exact_set_accuracy"],
            "production": p["exact_set_accuracy"],
            "drop": drop,
            "lower": lower,
            "upper": upper,
            "n_transfers": n,
            "confidence": level,
            "method": method,
        }
    return out


def _interval(x: dict, key: str = "gain") -> str:
    return f"{x[key]:+.4f} [{x['lower']:+.4f}, {x['upper']:+.4f}] ({x['confidence']:.0%} interval)"


def _out_of_time_evidence(
    challenge: dict, metric: str, min_delta: float, min_drop: float, confidence: float
) -> tuple[list[str], str | None]:
    """Reasons for the fresh-month evidence, and the evidence that shows retraining helps (None: none does).

    Either the paired comparison on the fresh month is a significant gain (a newer version beats production,
    or production beat its predecessor), or the same model fell significantly, by at least ``min_drop``, from
    its previous fresh month (the world moved; only the candidate has trained on the new month).
    """
    reasons, decisive = [], None
    won = challenge["gain"] >= min_delta and challenge["lower"] > 0
    interval = _interval({"confidence": confidence, **challenge})
    if challenge.get("kind") == "learning curve":
        fresh = (
            f"out-of-time on {challenge['month']}: production (version {challenge.get('production')}) vs its "
            f"predecessor version {challenge['challenger']}, {challenge.get('metric', metric)} gain {interval}"
        )
        verdict = (
            "the last month of training data helped on fresh data, so retraining helps"
            if won
            else "no significant gain from the last month of training data"
        )
    else:
        fresh = (
            f"out-of-time on {challenge['month']}: version {challenge['challenger']} vs production, "
            f"{challenge.get('metric', metric)} gain {interval}"
        )
        verdict = "retraining helps on fresh data" if won else "no significant gain on fresh data"
    reasons.append(f"{fresh}: {verdict}")
    decisive = fresh if won else None
    fall = challenge.get("degradation")
    if fall:
        moved = fall["drop"] >= min_drop and fall["lower"] > 0
        text = (
            f"out-of-time on {fall['month']}: version {fall['version']} fell from {fall['before']:.4f} "
            f"({fall['from_month']}) to {fall['now']:.4f}, exact-set accuracy drop {_interval(fall, 'drop')}"
        )
        reasons.append(
            f"{text}: "
            + (
                "the world moved under the model, and only the candidate has trained on the new month"
                if moved
                else f"not a significant fall of at least {min_drop:g}"
            )
        )
        decisive = decisive or (text if moved else None)
    return reasons, decisive


@dataclass
class Decision:
    promote: bool
    reasons: list[str]
    checks: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


def unpaired_interval(drop: float, p0: float, n0: int, p1: float, n1: int, z: float) -> tuple[float, float]:
    """``drop`` (p0 - p1) give or take ``z`` standard errors of the difference of two independent proportions:
    the interval when the two accuracies were measured on different transfers, so no pairing is possible."""
    se = max(p0 * (1 - p0) / max(n0, 1) + p1 * (1 - p1) / max(n1, 1), 0.0) ** 0.5
    return drop - z * se, drop + z * se


def decide(candidate, production, rules, cfg: dict, challenge: dict | None = None) -> Decision:
    """Apply the promotion rule. ``candidate``/``production``/``rules`` are ``Evaluation``s (production may be None).

    ``challenge``: the out-of-time comparison of the newest challenger with production on a fresh month
    (a ``paired_bootstrap`` result plus ``month`` and ``challenger``), or None. ``cfg`` keys (all optional):
    primary_metric, min_delta, bootstrap_samples, confidence, seed, slice_tolerance, min_slice_size,
    frozen_margin, degradation_drop.
    """
    metric = cfg.get("primary_metric", "pair_f1")
    cand = candidate.metrics[metric]
    if production is None:
        base = rules.metrics[metric]
        ok = cand > base
        reason = f"first model: {metric} {cand:.4f} {'beats' if ok else 'does not beat'} the rules baseline {base:.4f}"
        checks = {"first_run": True, "candidate": cand, "rules": base, "route": "first run" if ok else None}
        return Decision(ok, [reason], {**checks, "decided_by": f"frozen test: rules baseline {metric} {base:.4f}"})

    samples, confidence, seed = cfg.get("bootstrap_samples", 1000), cfg.get("confidence", 0.95), cfg.get("seed", 0)
    prod = production.metrics[metric]
    gain = cand - prod
    boot = paired_bootstrap(candidate.outcomes, production.outcomes, metric, samples, confidence, seed)
    reasons = []

    # primary gate (frozen test): a gain that is large enough and not noise
    min_delta = cfg.get("min_delta", 0.002)
    gain_ok = gain >= min_delta
    boot_ok = boot["lower"] > 0
    primary = f"frozen test: {metric} gain {_interval(boot)}"
    reasons.append(
        f"{primary}: "
        + (f"gain >= min_delta {min_delta}" if gain_ok else f"gain < min_delta {min_delta}")
        + (", interval above 0" if boot_ok else ", interval includes 0: noise-level")
    )

    # slice gates (frozen test): block only on a drop beyond tolerance that is not noise
    tol = cfg.get("slice_tolerance", 0.02)
    slices = slice_drops(
        candidate.outcomes,
        production.outcomes,
        candidate.slices,
        production.slices,
        cfg.get("min_slice_size", 30),
        samples,
        confidence,
        seed,
    )
    for name, s in slices.items():
        s["blocks"] = bool(s["drop"] > tol and s["lower"] > 0)
    blockers = [n for n, s in slices.items() if s["blocks"]]
    for name, s in slices.items():
        if s["blocks"]:
            reasons.append(
                f"slice '{name}' exact-set accuracy drops by {_interval(s, 'drop')}, n={s['n_transfers']}: "
                f"more than tolerance {tol} and the interval is above 0: a real regression"
            )
        elif s["drop"] > tol:
            reasons.append(
                f"slice '{name}' drops by {_interval(s, 'drop')}, n={s['n_transfers']}: more than tolerance {tol} "
                "but the interval includes 0: noise-level, does not block"
            )
    if not blockers:
        worst = max(slices.items(), key=lambda kv: kv[1]["drop"], default=None)
        reasons.append(
            f"no slice drops by more than {tol} beyond noise"
            + (f" (largest drop: '{worst[0]}' {_interval(worst[1], 'drop')})" if worst else "")
        )

    passed = gain_ok and boot_ok and not blockers
    route = decided_by = None
    if passed:
        route, decided_by = "frozen test", primary
    elif blockers:
        decided_by = f"slice '{blockers[0]}' drop {_interval(slices[blockers[0]], 'drop')}"
    else:
        decided_by = primary
    if not passed and challenge is not None:
        fresh_reasons, evidence = _out_of_time_evidence(
            challenge, metric, min_delta, cfg.get("degradation_drop", 0.03), confidence
        )
        reasons += fresh_reasons
        # non-inferior within noise: the frozen test vetoes only a loss beyond the margin even at the interval's
        # upper end (the data show the loss exceeds the margin), as the fresh month already showed a real gain
        margin = cfg.get("frozen_margin", 0.01)
        worse = boot["upper"] < -margin
        frozen = f"frozen test: {metric} change {_interval(boot)}"
        if evidence:
            reasons.append(
                f"{frozen}: "
                + (
                    f"the whole interval lies below -{margin:g}: worse on the frozen test"
                    if worse
                    else f"the interval reaches above -{margin:g}: non-inferior within noise"
                )
            )
        if evidence and not worse and not blockers:
            passed, route = True, "out-of-time"
            decided_by = f"{evidence}; {frozen}, non-inferior within noise"
        elif evidence and worse:
            decided_by = f"{frozen}, worse beyond the margin -{margin:g}"
        elif not evidence and not blockers:
            decided_by = f"{primary}; no out-of-time evidence that retraining helps"
    reasons.append(("promoted by " if passed else "kept production; decided by ") + decided_by)
    return Decision(
        passed,
        reasons,
        {
            "first_run": False,
            "candidate": cand,
            "production": prod,
            "gain": gain,
            "bootstrap": boot,
            "slices": slices,
            "slice_tolerance": tol,
            "route": route,
            "decided_by": decided_by,
            "challenge": challenge,
        },
    )
