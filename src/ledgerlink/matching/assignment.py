"""Assignment from independent pair probabilities: the fallback set choice of a Matcher fitted without
cross-fitting (``validation_fraction=0`` or too little data for a set model); ``sets.py`` is the main path.

Pair probabilities p_j are treated as independent, so the probability that a set S is exactly right is
    P(S) = prod_{j in S} p_j * prod_{j not in S} (1 - p_j)
over all of the transfer's candidates (the empty set included). The chosen set maximises P(S) among the
feasible sets: the empty set, any single invoice (full, fee-reduced or partial payment), and subsets
(size 2..k) of the top-k candidates whose amounts sum to the transfer amount within the fee tolerance.
P(S) is the transfer's confidence. All transfers are solved at once as an (n_transfers x 2^k) matrix.
An invoice is then given to two transfers only when their allocations fit in its amount (paid in parts);
otherwise transfers are settled greedily by confidence and the later one re-chooses without it.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .sets import allocate
from .subsets import TOP_K, subset_masks, top_k_slots
from .tolerances import CENT, FEE_TOLERANCE, amount_fits

EPS = 1e-6


def _solve(
    t: np.ndarray,
    p: np.ndarray,
    i_amount: np.ndarray,
    t_amount_by_t: np.ndarray,
    k: int,
    log_none_by_t: np.ndarray | None = None,
):
    """Best feasible set per transfer. Returns (tpos, chosen row indices per transfer, log P(S)).

    ``log_none_by_t``: log P(pays nothing) from the transfer-level model; the empty set gets the smaller of it
    and prod(1 - p_j), so "surely pays something, unsure which" is not read as "pays nothing"."""
    p = np.clip(p, EPS, 1 - EPS)
    logit = np.log(p) - np.log1p(-p)
    base = pd.Series(np.log1p(-p)).groupby(t).sum()
    slots, tpos, order = top_k_slots(t, p, k)
    n_t = len(tpos)
    L = np.full((n_t, k), -np.inf)
    A = np.zeros((n_t, k))
    present = np.zeros((n_t, k), bool)
    r, s = slots[:, 0], slots[:, 1]
    L[r, s], A[r, s], present[r, s] = logit[order], i_amount[order], True
    masks = subset_masks(k)
    sizes = masks.sum(1)
    Lz = np.where(present, L, 0.0)
    score = Lz @ masks.T
    all_present = (present.astype(np.float64) @ masks.T) == sizes  # float: BLAS
    target = t_amount_by_t[tpos][:, None]
    feasible = all_present & ((sizes <= 1)[None, :] | amount_fits(target, A @ masks.T, sizes))
    score = np.where(feasible, score, -np.inf)
    base_t = base.reindex(tpos).to_numpy()
    if log_none_by_t is not None:
        ln = log_none_by_t[tpos]
        score[:, 0] = np.where(np.isnan(ln), 0.0, np.minimum(0.0, ln - base_t))
    best = score.argmax(1)
    row_at = np.full((n_t, k), -1)
    row_at[r, s] = order
    chosen = [row_at[j][masks[best[j]]] for j in range(n_t)]
    logp = base_t + score[np.arange(n_t), best]
    return tpos, chosen, logp


def assign(
    cands: pd.DataFrame,
    t_amount: np.ndarray,
    i_amount: np.ndarray,
    n_transfers: int,
    k: int = TOP_K,
    booked: np.ndarray | None = None,
    p_none: np.ndarray | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Choose each transfer's invoice set.

    ``cands``: columns t, i, probability (positions into the prepared transfers/invoices); ``p_none``: per
    transfer, P(pays nothing) from the transfer-level model (NaN or None: unknown). Returns
    (links: t, i, allocated_amount, confidence; decisions: t, n_invoices, confidence) with a decision row for
    every transfer 0..n_transfers-1 (no candidates -> the empty set, confidence 1).
    Conflicts are settled by confidence (to 0.01), then by booking date (``booked``: the first of two equally
    sure payments is the payment, the later a duplicate). The loser keeps the lost invoice's (1 - p) in its
    confidence; the winner's confidence is multiplied by (1 - p) of its strongest rival, because two strong
    claims on one invoice (duplicate payment, advance, refund) mean one of them is wrong: both go to review.
    """
    k = min(k, TOP_K)
    cands = cands[["t", "i", "probability"]].reset_index(drop=True)
    t, i, p = cands["t"].to_numpy(np.int64), cands["i"].to_numpy(np.int64), cands["probability"].to_numpy(np.float64)
    ia = i_amount[i]
    conf = np.ones(n_transfers)
    sets: dict[int, np.ndarray] = {}
    if len(cands):
        log_none = None
        if p_none is not None:
            with np.errstate(divide="ignore"):
                log_none = np.log(np.clip(p_none, EPS, 1.0))
        tpos, chosen, logp = _solve(t, p, ia, t_amount, k, log_none)
        conf[tpos] = np.exp(logp)
        sets = {int(tt): ch for tt, ch in zip(tpos, chosen) if len(ch)}

    # --- conflicts: invoices whose allocations over all transfers exceed their amount
    def alloc_of(tt, rows):
        return allocate(t_amount[tt], ia[rows])

    allocs = {tt: alloc_of(tt, rows) for tt, rows in sets.items()}
    used = pd.DataFrame(
        [(i[r], abs(a), tt) for tt, rows in sets.items() for r, a in zip(rows, allocs[tt])], columns=["i", "a", "t"]
    )
    if len(used):
        cap = np.abs(i_amount) * (1 + FEE_TOLERANCE) + CENT
        total = used.groupby("i")["a"].sum()
        over = total.index[total.to_numpy() > cap[total.index.to_numpy()]]
        day = booked.astype("datetime64[D]").astype(np.int64) if booked is not None else np.zeros(n_transfers, np.int64)
        involved = sorted(set(used.loc[used["i"].isin(over), "t"]), key=lambda tt: (-round(conf[tt], 2), day[tt], tt))
        # p of every first-round claim on a contested invoice: the winner is only as sure as its rivals are unsure
        p_of = pd.Series(p, index=pd.MultiIndex.from_arrays([t, i]))
        contested = used[used["i"].isin(over)]
        claims = {j: [(int(tt), float(p_of[(tt, j)])) for tt in g["t"]] for j, g in contested.groupby("i")}
        if involved:
            remaining = np.abs(i_amount).astype(np.float64)
            fixed = used[~used["t"].isin(involved)]
            np.subtract.at(remaining, fixed["i"].to_numpy(), fixed["a"].to_numpy())
            rows_of = pd.Series(np.arange(len(cands))).groupby(t).apply(np.asarray)
            for tt in involved:
                banned: set[int] = set()
                while True:
                    rows = sets.get(tt, np.array([], np.int64))
                    a = alloc_of(tt, rows) if len(rows) else np.array([])
                    bad = [
                        i[r]
                        for r, x in zip(rows, a)
                        if abs(x) > remaining[i[r]] + FEE_TOLERANCE * abs(i_amount[i[r]]) + CENT
                    ]
                    if not bad:
                        break
                    banned.update(bad)
                    all_rows = rows_of[tt]
                    is_banned = np.isin(i[all_rows], list(banned))
                    cand_rows, lost = all_rows[~is_banned], all_rows[is_banned]
                    lost_logp = float(np.log1p(-np.clip(p[lost], EPS, 1 - EPS)).sum())
                    ln_tt = None if log_none is None else log_none[[tt]] - lost_logp
                    if len(cand_rows) == 0:
                        sets.pop(tt, None)
                        conf[tt] = float(
                            np.exp(lost_logp if ln_tt is None or np.isnan(ln_tt[0]) else min(0.0, ln_tt[0]) + lost_logp)
                        )
                        continue
                    _, ch, lp = _solve(
                        np.zeros(len(cand_rows), np.int64), p[cand_rows], ia[cand_rows], t_amount[[tt]], k, ln_tt
                    )
                    conf[tt] = float(np.exp(lp[0] + lost_logp))
                    if len(ch[0]):
                        sets[tt] = cand_rows[ch[0]]
                    else:
                        sets.pop(tt, None)
                if tt in sets:
                    allocs[tt] = a
                    np.subtract.at(remaining, i[sets[tt]], np.abs(a))
                    for r in sets[tt]:
                        rivals = [q for u, q in claims.get(int(i[r]), []) if u != tt]
                        if rivals:
                            conf[tt] *= 1.0 - min(max(rivals), 1.0)
                else:
                    allocs.pop(tt, None)

    conf = np.clip(conf, 0.0, 1.0 - EPS)
    rows = [
        (tt, int(i[r]), float(x), float(conf[tt]))
        for tt, rs in sets.items()
        for r, x in zip(rs, allocs[tt])
        if abs(x) >= CENT  # a link of 0.00 pays nothing (the data contract refuses it)
    ]
    links = (
        pd.DataFrame(rows, columns=["t", "i", "allocated_amount", "confidence"])
        .astype({"t": np.int64, "i": np.int64, "allocated_amount": np.float64, "confidence": np.float64})
        .sort_values(["t", "i"])
    )
    n_inv = np.bincount(links["t"].to_numpy(), minlength=n_transfers).astype(np.int64)
    decisions = pd.DataFrame({"t": np.arange(n_transfers), "n_invoices": n_inv, "confidence": conf})
    return links.reset_index(drop=True), decisions
