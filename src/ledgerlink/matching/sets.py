"""Set choice scored as whole sets: which invoices (none, one, several, part of one) a transfer pays.

Pair probabilities say how likely each invoice is paid; they cannot say that five invoices of one contractor
summing to the cent are paid together, nor how sure the choice is when twenty open invoices all cost 999.00.
So each transfer's plausible sets are enumerated and scored by a small second model (the *set model*):

- the empty set (pays nothing);
- each of the top ``SINGLE_K`` candidates alone (full, fee-reduced or partial payment);
- subsets of 2..k of the top ``subsets.TOP_K`` candidates whose amounts sum to the transfer amount within the fee
  tolerance, the ``MAX_MULTI`` most probable under independence;
- sets of 2..MAX_SET invoices of one contractor that sum to the transfer amount to the cent, searched among
  all of the transfer's candidates of that contractor (``subsets.group_sets``), so a set needs no member in
  the top k; where it has more than MAX_GROUP of them, sets of 2..PAIRED_MAX_SET among its LARGE_GROUP most
  probable (``subsets.paired_sets``);
- the invoices the title names, all of them (and those of the contractor most of them belong to), however many:
  a remittance advice names 10-25 invoices, far past the top k, and one of them may be paid only in part, so
  their sum need not fit; with each invoice that completes the amount they leave.

``set_features`` describes each set (its pair probabilities, how its amount relates to the transfer, the
evidence of its weakest member, the alternatives, the transfer's own traits) and the set model returns
q(S) = P(S is exactly the set the transfer pays). ``choose_sets`` takes the best set per transfer, with
confidence q normalised over the transfer's sets, and settles invoices claimed by two transfers: an invoice
is given to two transfers only when their allocations fit in its amount (paid in parts).
All transfers are enumerated at once as (transfers x 2^k) matrices, in chunks; no Python loop over transfers.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from .arrays import eq_join, expand, first_max_per_group, run_starts, segment_reduce
from .runtime import check_deadline
from .subsets import (
    LARGE_GROUP,
    MAX_GROUP,
    TOP_K,
    anchor_completions,
    fill_to_budget,
    group_sets,
    paired_sets,
    subset_masks,
    top_k_slots,
)
from .tolerances import CENT, FEE_TOLERANCE, PARTIAL_MAX, PARTIAL_MIN, amount_fits

SINGLE_K = 6  # single-invoice sets: the top few candidates
MAX_MULTI = 12  # feasible multi-invoice sets kept per transfer
MAX_GROUP_SETS = 1024  # exact contractor sets kept per transfer: all of one contractor's (at most C(12, 6) = 924)
GROUP_SETS_PER_ROW = 4  # ... and per transfer and candidate pair, in all (ordinary months: 0.01-0.03)
SURE_CLAIM = 0.8  # among claims on one invoice at least this sure, the earliest booking is the payment, later ones
# duplicates (a duplicate quotes the number and amount exactly, so it often looks surer than the real payment)
PROBABLE = 0.5  # pair probability from which a candidate joins the "probable" set (when two or more are)
NAMED_REST_SETS = 8  # sets "named invoices + unnamed ones making up the rest" kept per transfer
EPS = 1e-6
INCLUDE_AT = 0.5  # a set's expected precision above which choosing it raises pair F1 (``set_gain``)
REMNANT_MIN = 2  # a set that lost invoices in a conflict keeps the rest when at least this many are left
CHUNK = 20000  # transfers per enumeration chunk (memory: chunk x 2^TOP_K)

# pair features summarised over a set's members (min: the weakest member decides; max: any member)
_MEMBER_MIN = [
    "ref_lev",
    "ref_contains",
    "ref_partial",
    "name_tset",
    "name_in_title",
    "mem_acc_share",
    "mem_pay_share",
    "days_to_due",
    "amt_in_title",
]
_MEMBER_MAX = [
    "ref_exact",
    "ref_digits_exact",
    "days_since_issue",
    "inv_paid_frac",
    "amt_eq_remaining",
    "same_amount_age_rank",
    "inv_has_ref",
]
_TRANSFER = [
    "word_rate_min",
    "word_rate_mean",
    "n_title_refs",
    "payer_present",
    "amt_transfer_log",
    "n_cands",
    "mem_acc_total",
    "mem_pay_total",
    "n_same_amount",
]
# The pair features the set choice reads (``named_rows``, the completers of ``enumerate_sets``, ``set_features``): at
# volume a batch keeps only these once the pair model has scored its pairs (``Matcher._scored_features``).
SET_PAIR_COLUMNS = list(
    dict.fromkeys(["ref_exact", "ref_digits_exact", "completes_named_exact", *_MEMBER_MIN, *_MEMBER_MAX, *_TRANSFER])
)
SET_FEATURE_NAMES = (
    [
        "size",
        "is_empty",
        "logp",
        "logp_rank",
        "logp_gap",
        "p_min",
        "p_max",
        "p_mean",
        "p_out_max",
        "p_out_sum",
        "p_top1",
        "p_top2",
        "amt_exact",
        "amt_fits",
        "amt_ratio",
        "amt_partial",
        "amt_over",
        "n_groups",
        "grp_exact",
        "n_exact_sets",
        "n_fit_sets",
        "member_credit",
        "named_frac",
        "named_cover",
    ]
    + [f"min_{c}" for c in _MEMBER_MIN]
    + [f"max_{c}" for c in _MEMBER_MAX]
    + _TRANSFER
)


@dataclass
class SetTable:
    """Enumerated sets: ``sets`` (one row per set: t, size, hash of its members) and ``members`` (sid, row into
    the pairs, sorted by sid)."""

    sets: pd.DataFrame
    members: pd.DataFrame

    def member_lists(self) -> pd.Series:
        """Each set's member rows (for inspection; the hot paths use offsets)."""
        off = np.searchsorted(self.members["sid"].to_numpy(), np.arange(len(self.sets) + 1))
        rows = self.members["row"].to_numpy()
        return pd.Series([rows[off[k] : off[k + 1]] for k in range(len(self.sets))], index=self.sets.index)


def named_rows(X: pd.DataFrame) -> np.ndarray:
    """Per pair: the title names this invoice, exactly (letters and digits, or all of its digits)."""
    return (X["ref_exact"].to_numpy() > 0) | (X["ref_digits_exact"].to_numpy() > 0)  # NaN > 0 is False


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, EPS, 1 - EPS)
    return np.log(p) - np.log1p(-p)


def enumerate_sets(
    t: np.ndarray,
    p: np.ndarray,
    ia: np.ndarray,
    ta_by_t: np.ndarray,
    group: np.ndarray,
    named: np.ndarray | None = None,
    completer: np.ndarray | None = None,
    k: int = TOP_K,
    single_k: int = SINGLE_K,
    max_multi: int = MAX_MULTI,
    max_group_sets: int = MAX_GROUP_SETS,
) -> SetTable:
    """All plausible sets of each transfer that has candidates (``t``, ``p``, ``ia``, ``group`` per pair row).

    ``named`` (the title names the invoice exactly) and ``completer`` (it is what the named invoices leave
    unpaid, to the cent) add the sets "all named invoices + one completer", whatever their probabilities."""
    t = np.asarray(t, np.int64)
    p = np.clip(np.asarray(p, np.float64), EPS, 1 - EPS)
    n = len(t)
    if n == 0:
        return SetTable(
            pd.DataFrame({"t": np.zeros(0, np.int64), "size": np.zeros(0, np.int64), "hash": np.zeros(0, np.int64)}),
            pd.DataFrame({"sid": np.zeros(0, np.int64), "row": np.zeros(0, np.int64)}),
        )
    logit = _logit(p)
    slots, tpos, order = top_k_slots(t, p, k)
    n_t = len(tpos)
    row_at = np.full((n_t, k), -1, np.int64)
    row_at[slots[:, 0], slots[:, 1]] = order
    masks = subset_masks(k)
    sizes = masks.sum(1)
    set_t, set_rows = [], []  # per chunk: transfer of each set, member matrix (sets x k rows, -1 = none)
    for lo in range(0, n_t, CHUNK):
        ra = row_at[lo : lo + CHUNK]
        present = ra >= 0
        L = np.where(present, logit[np.maximum(ra, 0)], 0.0)
        A = np.where(present, ia[np.maximum(ra, 0)], 0.0)
        score = L @ masks.T
        ok = (present.astype(np.float64) @ masks.T) == sizes  # float: BLAS
        target = ta_by_t[tpos[lo : lo + CHUNK]][:, None]
        multi = ok & (sizes >= 2)[None, :] & amount_fits(target, A @ masks.T, sizes)
        score_m = np.where(multi, score, -np.inf)
        keep = min(max_multi, score_m.shape[1])
        top = np.argpartition(-score_m, keep - 1, axis=1)[:, :keep]
        r_m, c_m = np.nonzero(np.isfinite(np.take_along_axis(score_m, top, 1)))
        m_ids = top[r_m, c_m]
        # singles: the top single_k slots that are present
        r_s, s_s = np.nonzero(present[:, :single_k])
        s_ids = (1 << s_s).astype(np.int64)
        rows = np.r_[np.arange(len(ra)), r_s, r_m]
        mids = np.r_[np.zeros(len(ra), np.int64), s_ids, m_ids]
        mem = np.where(masks[mids], ra[rows], -1)
        set_t.append(tpos[lo : lo + CHUNK][rows])
        set_rows.append(mem)
        check_deadline("set enumeration: top-k subsets")
    st = np.concatenate(set_t)
    mem = np.concatenate(set_rows)
    sid_m, slot_m = np.nonzero(mem >= 0)
    m_sid, m_row = [sid_m.astype(np.int64)], [mem[sid_m, slot_m]]
    # exact sets of one contractor among all of the transfer's candidates
    g = np.asarray(group, np.int64)
    key = np.where(g >= 0, t * (int(g.max(initial=0)) + 2) + g, -1)
    cents = np.round(ia * 100).astype(np.int64)
    target = np.round(ta_by_t[t] * 100).astype(np.int64)
    extra_t = []
    next_sid = len(st)
    budget = GROUP_SETS_PER_ROW * (n_t + n)
    g_t, g_members = _contractor_sets(t, logit, key, cents, target, max_group_sets, budget)
    if len(g_t):
        has = g_members >= 0
        extra_t.append(g_t)
        m_sid.append(next_sid + np.repeat(np.arange(len(g_t)), has.sum(1)))
        m_row.append(g_members[has])
        next_sid += len(g_t)
    if named is not None and completer is not None and np.any(completer):
        nm, cp = np.flatnonzero(named), np.flatnonzero(completer)
        cp_sid = next_sid + np.arange(len(cp))
        rc, rn = eq_join([t[cp]], [t[nm]])
        extra_t.append(t[cp])
        m_sid += [cp_sid[rc], cp_sid]
        m_row += [nm[rn], cp]
        next_sid += len(cp)
    # what the title names, and what the pair model finds probable (a title that names invoices in a form no
    # exact test reads, "faktury 1488, 1263, ..."), each as a set, and with what makes up the rest of the amount
    probable = p >= PROBABLE
    probable &= np.bincount(t, weights=probable, minlength=int(t.max()) + 1)[t] >= 2
    anchors = [a for a in (named, probable) if a is not None and np.any(a)]
    for anchor in anchors:
        for n_t_sets, n_members, n_rows in (
            _named_sets(t, anchor, g),
            _named_rest_sets(t, logit, anchor, g, cents, target),
        ):
            if len(n_t_sets):
                extra_t.append(n_t_sets)
                m_sid.append(next_sid + n_members)
                m_row.append(n_rows)
                next_sid += len(n_t_sets)
    if named is not None and np.any(named):
        ac_a, ac_c = anchor_completions(t, ia, ta_by_t, named)
        if len(ac_a):
            sid = next_sid + np.arange(len(ac_a))
            extra_t.append(t[ac_a])
            m_sid.append(np.r_[sid, sid])
            m_row.append(np.r_[ac_a, ac_c])
            next_sid += len(ac_a)
    if extra_t:
        st = np.r_[st, np.concatenate(extra_t)]
    return _dedupe(st, np.concatenate(m_sid).astype(np.int64), np.concatenate(m_row).astype(np.int64), n)


def _named_sets(t: np.ndarray, named: np.ndarray, group: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(transfer of each set, set number of each member, member rows) of the sets "every invoice the title names"
    for transfers that name at least two, and "every named invoice of the contractor most of them belong to" where
    that differs (a typo turned one number into another contractor's invoice). Linear in the named rows."""
    nm = np.flatnonzero(named)
    per_t = np.bincount(t[nm], minlength=int(t.max(initial=-1)) + 1)
    nm = nm[per_t[t[nm]] >= 2]
    if len(nm) == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.int64)
    ts, first_of = np.unique(t[nm], return_inverse=True)
    first_of = first_of.ravel()
    # the contractor with the most named rows per transfer (-1: no contractor counts as its own group)
    key = t[nm] * (int(group.max(initial=0)) + 2) + group[nm] + 1
    uk, kidx, kcount = np.unique(key, return_inverse=True, return_counts=True)
    kidx = kidx.ravel()
    best = first_max_per_group(np.searchsorted(ts, uk // (int(group.max(initial=0)) + 2)), kcount.astype(np.float64))
    in_major = np.isin(kidx, best)
    major_count = np.bincount(first_of, weights=in_major.astype(np.float64), minlength=len(ts))
    differs = (major_count >= 2) & (major_count < np.bincount(first_of, minlength=len(ts)))
    sub = in_major & differs[first_of]
    sub_id = np.cumsum(differs) - 1  # numbering of the second kind of set, after the first
    members = np.r_[first_of, len(ts) + sub_id[first_of[sub]]]
    rows = np.r_[nm, nm[sub]]
    set_t = np.r_[ts, ts[differs]]
    return set_t, members, rows


def _majority_group(t: np.ndarray, rows: np.ndarray, group: np.ndarray) -> dict:
    """Per transfer of ``rows``: the group (contractor) most of those rows belong to (first on ties)."""
    width = int(group.max(initial=0)) + 2
    key = t[rows] * width + group[rows] + 1
    uk, count = np.unique(key, return_counts=True)
    best = first_max_per_group(pd.factorize(uk // width)[0], count.astype(np.float64))
    return dict(zip((uk[best] // width).tolist(), (uk[best] % width - 1).tolist()))


def _named_rest_sets(
    t: np.ndarray, logit: np.ndarray, named: np.ndarray, group: np.ndarray, cents: np.ndarray, target: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(transfer of each set, set number of each member, member rows) of the sets "every invoice the title names,
    plus 2..MAX_SET unnamed ones of the same contractor that make up the rest of the amount to the cent": a remittance
    advice that leaves a few numbers out. The unnamed ones are searched among the transfer's MAX_GROUP most probable
    unnamed candidates of that contractor (``subsets.group_sets``: at most 2^MAX_GROUP sums per transfer); each
    transfer keeps its NAMED_REST_SETS most probable such sets."""
    empty = (np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.int64))
    nm = np.flatnonzero(named)
    if len(nm) == 0:
        return empty
    n_t = int(t.max()) + 1
    rest = target[nm[np.unique(t[nm], return_index=True)[1]]]  # per transfer with named rows: its amount ...
    has = np.zeros(n_t, bool)
    has[t[nm]] = True
    rest_t = np.zeros(n_t, np.int64)
    rest_t[np.unique(t[nm])] = rest
    np.subtract.at(rest_t, t[nm], cents[nm])  # ... less what the named invoices ask
    major = _majority_group(t, nm, group)
    major_t = np.full(n_t, -2, np.int64)
    major_t[list(major)] = list(major.values())
    cand = np.flatnonzero(~named & has[t] & (rest_t[t] != 0) & (group == major_t[t]) & (group >= 0))
    if len(cand) < 2:
        return empty
    slots, _, order = top_k_slots(t[cand], logit[cand], MAX_GROUP)
    rows_u = cand[order]
    key = np.full(len(t), -1, np.int64)
    key[rows_u] = t[rows_u]
    found_t, found_score, found_m = [], [], []
    for rows, masks, hk, hs in group_sets(key, cents, target=rest_t[t]):
        hit_t, score, wide = _found_sets(t, logit, rows, masks, hk, hs)
        found_t.append(hit_t)
        found_score.append(score)
        found_m.append(wide)
    if not found_t:
        return empty
    hit_t, score, wide = np.concatenate(found_t), np.concatenate(found_score), np.concatenate(found_m)
    o = np.lexsort((-score, hit_t))
    keep = o[np.arange(len(o)) - np.searchsorted(hit_t[o], hit_t[o]) < NAMED_REST_SETS]
    hit_t, wide = hit_t[keep], wide[keep]
    # members: the transfer's named rows, then the unnamed ones found
    rn, nn = eq_join([hit_t], [t[nm]])
    has_m = wide >= 0
    members = np.r_[rn, np.repeat(np.arange(len(hit_t)), has_m.sum(1))]
    rows = np.r_[nm[nn], wide[has_m]]
    return hit_t, members, rows


def _contractor_sets(
    t: np.ndarray, logit: np.ndarray, key: np.ndarray, cents: np.ndarray, target: np.ndarray, cap: int, budget: int
) -> tuple[np.ndarray, np.ndarray]:
    """(transfer, member rows padded with -1) of each exact set of one contractor's candidates, in the order
    ``_exact_set_chunks`` finds them.

    Work budget: a transfer keeps at most ``cap`` sets, and all transfers together at most ``budget`` (shared by
    water-filling, ``subsets.fill_to_budget``); a transfer that is cut keeps its most probable sets (by the sum
    of its members' logits, as for the top-k subsets). The sets are counted in a first pass, which also keeps them
    while they fit in the budget (ordinary months: all of them); past it they are found again in a second pass
    that cuts as it goes, so a request whose transfers each meet four contractors with twelve equal invoices
    (1,980 sets each) never holds them all in memory."""
    n_t = int(t.max(initial=-1)) + 1
    count = np.zeros(n_t, np.int64)
    found: list | None = []
    for hit in _exact_set_chunks(t, logit, key, cents, target):
        count += np.bincount(hit[0], minlength=n_t)
        found = found if found is not None and count.sum() <= budget else None
        if found is not None:
            found.append(hit)
    limit = fill_to_budget(np.minimum(count, cap), budget)
    if found is not None:  # one chunk of everything found
        found = [tuple(np.concatenate(part) for part in zip(*found))] if found else []
    chunks = found if found is not None else _exact_set_chunks(t, logit, key, cents, target)
    kept_t, kept_score, kept_m = np.zeros(0, np.int64), np.zeros(0), np.zeros((0, MAX_GROUP), np.int64)
    for new_t, new_score, new_m in chunks:
        kept_t, kept_score = np.r_[kept_t, new_t], np.r_[kept_score, new_score]
        kept_m = np.concatenate([kept_m, new_m])
        if (np.bincount(kept_t, minlength=n_t) > limit).any():  # each transfer's best, in the order found
            o = np.lexsort((np.arange(len(kept_t)), -kept_score, kept_t))
            start = run_starts(kept_t[o])
            rank = np.arange(len(o)) - np.repeat(start, np.diff(np.r_[start, len(o)]))
            keep = np.sort(o[rank < limit[kept_t[o]]])
            kept_t, kept_score, kept_m = kept_t[keep], kept_score[keep], kept_m[keep]
    return kept_t, kept_m


def _exact_set_chunks(t, logit, key, cents, target):
    """(transfer, score, members padded with -1) of the exact sets of one contractor's candidates, chunk by chunk:
    every subset where the transfer has at most MAX_GROUP candidates of the contractor (``group_sets``), sets of
    2..PAIRED_MAX_SET among its LARGE_GROUP most probable ones where it has more (``paired_sets``)."""
    for hit in group_sets(key, cents, target=target):
        yield _found_sets(t, logit, *hit)
    top = _top_per_key(key, logit, LARGE_GROUP)
    members = paired_sets(top, cents, target)
    if len(members):  # only sets that few others of their size could match by chance: C(n, size) below the cents
        # candidates per (transfer, contractor) key, counted over the keys that occur (a bincount over the key range
        # would be as long as transfers x contractors: gigabytes for a large month)
        keys, counts = np.unique(top[top >= 0], return_counts=True)
        n = counts[np.searchsorted(keys, top[members[:, 0]])].astype(np.float64)
        size = (members >= 0).sum(1)
        log_comb = sum(np.where(j < size, np.log10(np.maximum(n - j, 1.0) / (j + 1)), 0.0) for j in range(size.max()))
        members = members[log_comb < np.log10(np.maximum(np.abs(target[members[:, 0]]), 1))]
    if len(members):
        wide = np.full((len(members), MAX_GROUP), -1, np.int64)
        wide[:, : members.shape[1]] = members
        yield t[members[:, 0]], np.where(members >= 0, logit[np.maximum(members, 0)], 0.0).sum(1), wide


def _top_per_key(key: np.ndarray, score: np.ndarray, k: int) -> np.ndarray:
    """``key`` with -1 (no key) for rows outside the ``k`` best by ``score`` of their key."""
    o = np.lexsort((-score, key))
    start = run_starts(key[o])
    rank = np.empty(len(key), np.int64)
    rank[o] = np.arange(len(o)) - np.repeat(start, np.diff(np.r_[start, len(o)]))
    return np.where(rank < k, key, -1)


def _found_sets(t, logit, rows_g, masks_g, hk, hs) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(transfer, score: the members' logit sum, members padded with -1) of group_sets' exact hits."""
    mm = masks_g[hs]
    r = rows_g[hk]
    wide = np.full((len(hk), MAX_GROUP), -1, np.int64)
    wide[:, : r.shape[1]] = np.where(mm, r, -1)
    return t[r[:, 0]], np.where(mm, logit[r], 0.0).sum(1), wide


def _dedupe(st: np.ndarray, sid: np.ndarray, row: np.ndarray, n_rows: int) -> SetTable:
    """Drop repeated sets of a transfer (a group set may also be a top-k subset); renumber sids 0..n-1.
    A set is identified by the xor of random 62-bit hashes of its member rows."""
    h = np.random.default_rng(0).integers(1, 2**62, n_rows, dtype=np.int64)
    sh = np.zeros(len(st), np.int64)
    np.bitwise_xor.at(sh, sid, h[row])
    o = np.lexsort((sh, st))  # stable: the first of equal (t, hash) sets comes first
    first = np.zeros(len(st), bool)
    first[o[np.r_[True, (st[o][1:] != st[o][:-1]) | (sh[o][1:] != sh[o][:-1])]] if len(o) else o] = True
    new_id = np.cumsum(first) - 1
    keep = first[sid]
    sid, row = new_id[sid[keep]], row[keep]
    size = np.bincount(sid, minlength=int(first.sum()))
    sets = pd.DataFrame({"t": st[first], "size": size.astype(np.int64), "hash": sh[first]})
    om = np.lexsort((row, sid))
    return SetTable(sets, pd.DataFrame({"sid": sid[om], "row": row[om]}))


def set_labels(table: SetTable, pair_i: np.ndarray, true_ti: pd.DataFrame) -> np.ndarray:
    """Two labels per set, the set model's two outputs: (1) it is exactly the transfer's true set (the empty set for
    a transfer that pays nothing); (2) its precision: the share of its members that the transfer really pays (the
    empty set: 1 when the transfer pays nothing, else 0; the choice does not read it).

    Why two: when no enumerated set is exactly right (a remittance advice that leaves two numbers out, one of them
    partly paid), every set's first label is 0 and a model of it prefers paying nothing; the second says that the
    twenty named invoices are all right. ``choose_sets`` chooses by expected precision, the confidence stays the
    probability of being exactly right."""
    S, M = table.sets, table.members
    n_i = int(max(np.max(pair_i, initial=0), np.max(true_ti["i"].to_numpy(), initial=0))) + 1
    h = np.random.default_rng(1).integers(1, 2**62, n_i, dtype=np.int64)
    sid, mi = M["sid"].to_numpy(), pair_i[M["row"].to_numpy()]
    sh = np.zeros(len(S), np.int64)
    np.bitwise_xor.at(sh, sid, h[mi])
    st = S["t"].to_numpy()
    true_t, true_i = true_ti["t"].to_numpy(), true_ti["i"].to_numpy()
    n_t = int(max(np.max(st, initial=0), np.max(true_t, initial=0))) + 1
    th = np.zeros(n_t, np.int64)
    np.bitwise_xor.at(th, true_t, h[true_i])
    exact = sh == th[st]
    # true positives per set: its members that are true links of its transfer
    rows, _ = eq_join([st[sid], mi], [true_t, true_i])
    tp = np.bincount(sid[rows], minlength=len(S)).astype(np.float64)
    size = S["size"].to_numpy().astype(np.float64)
    pays_nothing = np.bincount(true_t, minlength=n_t)[st] == 0
    precision = np.where(size > 0, tp / np.maximum(size, 1), pays_nothing.astype(np.float64))
    return np.column_stack([exact, precision]).astype(np.float32)


def set_gain(size: np.ndarray, precision: np.ndarray) -> np.ndarray:
    """What choosing a set is worth to pair F1, against choosing nothing: its expected true members less
    ``INCLUDE_AT`` per member. Adding a set of s members, e of them expected true, to a matching at pair F1 f moves F1
    by about (e - f/2 * s) / (2TP + FP + FN): a set is worth including when more than about half of it is right
    (f near 1), so among ten look-alike invoices none is chosen, while twenty named ones are, even with a few of the
    remittance left out. The empty set is worth 0."""
    return np.where(size > 0, size * (precision - INCLUDE_AT), 0.0)


def set_features(
    table: SetTable,
    t: np.ndarray,
    p: np.ndarray,
    ia: np.ndarray,
    ta_by_t: np.ndarray,
    group: np.ndarray,
    X: pd.DataFrame,
) -> pd.DataFrame:
    """Feature matrix (SET_FEATURE_NAMES) of the enumerated sets; ``X`` is the pair feature matrix, row per pair.
    Members are sorted by set, so per-set reductions are ``reduceat`` over offsets (no groupby)."""
    S, M = table.sets, table.members
    ns = len(S)
    if ns == 0:
        return pd.DataFrame({c: np.zeros(0, np.float32) for c in SET_FEATURE_NAMES})
    F = _FeatureMatrix(ns)
    t = np.asarray(t, np.int64)
    st = S["t"].to_numpy()
    sid, row = M["sid"].to_numpy(), M["row"].to_numpy()
    off = _csr(table)
    p = np.clip(np.asarray(p, np.float64), EPS, 1 - EPS)
    size = S["size"].to_numpy()
    F["size"] = size
    F["is_empty"] = (size == 0).astype(np.float32)
    n_t = int(max(t.max(initial=-1), st.max(initial=-1))) + 1
    base = np.bincount(t, weights=np.log1p(-p), minlength=n_t)
    lsum = np.bincount(sid, weights=_logit(p)[row], minlength=ns)
    logp = base[st] + lsum
    F["logp"] = logp
    # rank within the transfer, and the best / second best log-probability (one sort, no per-group Python)
    o = np.lexsort((-logp, st))
    st_o = st[o]
    start = run_starts(st_o)
    n_sets_t = np.diff(np.r_[start, len(st_o)])
    rank = np.empty(ns, np.float64)
    rank[o] = np.arange(ns) - np.repeat(start, n_sets_t) + 1
    F["logp_rank"] = rank
    best_t = logp[o][start]
    second_t = np.where(n_sets_t > 1, logp[o][np.minimum(start + 1, ns - 1)], -np.inf)
    grp = np.empty(ns, np.int64)
    grp[o] = np.repeat(np.arange(len(start)), n_sets_t)
    best, second = best_t[grp], second_t[grp]
    F["logp_gap"] = np.clip(np.where(rank == 1, logp - second, logp - best), -50, 50)
    pm, am = p[row], ia[row]
    count = np.diff(off)
    F["p_min"] = segment_reduce(np.minimum, pm, off)
    F["p_max"] = segment_reduce(np.maximum, pm, off)
    p_sum = segment_reduce(np.add, pm, off)
    F["p_mean"] = p_sum / np.where(count > 0, count, 1)
    a_sum = np.nan_to_num(segment_reduce(np.add, am, off))
    # distinct contractors among the members (-1, "no contractor", counts as one)
    g = np.asarray(group)[row]
    og = np.lexsort((g, sid))
    new = np.r_[True, (sid[og][1:] != sid[og][:-1]) | (g[og][1:] != g[og][:-1])] if len(og) else np.zeros(0, bool)
    n_groups = np.bincount(sid[og][new], minlength=ns).astype(np.float64)
    credit = np.nan_to_num(segment_reduce(np.maximum, (am < 0).astype(np.float64), off))
    # the strongest candidate left out, and the mass left out
    F["p_out_sum"] = np.bincount(t, weights=p, minlength=n_t)[st] - np.nan_to_num(p_sum)
    ot = np.lexsort((-p, t))
    ts = t[ot]
    rank_p = np.arange(len(ts)) - np.repeat(run_starts(ts), np.diff(np.r_[run_starts(ts), len(ts)]))
    row_top = np.full((n_t, 3), -1, np.int64)
    keep = rank_p < 3
    row_top[ts[keep], rank_p[keep]] = ot[keep]
    F["p_top1"] = np.where(row_top[st, 0] >= 0, p[row_top[st, 0]], np.nan)
    F["p_top2"] = np.where(row_top[st, 1] >= 0, p[row_top[st, 1]], 0.0)
    key = np.sort(sid.astype(np.int64) * (len(t) + 1) + row)
    p_out_max = np.zeros(ns)
    for r in (2, 1, 0):  # the best of the top-3 that is not in the set (the first one not in it wins)
        rr = row_top[st, r]
        has = rr >= 0
        rr_i = np.where(has, rr, 0)
        probe = np.arange(ns, dtype=np.int64) * (len(t) + 1) + rr_i
        pos = np.searchsorted(key, probe)
        member = (pos < len(key)) & (key[np.minimum(pos, len(key) - 1)] == probe)
        p_out_max = np.where(has & ~member, p[rr_i], p_out_max)
    F["p_out_max"] = p_out_max
    # amounts
    ta = ta_by_t[st]
    sz = np.maximum(size, 1)
    nonempty = size > 0
    F["amt_exact"] = (nonempty & (np.abs(a_sum - ta) <= CENT * sz + 1e-9)).astype(np.float32)
    F["amt_fits"] = (nonempty & amount_fits(ta, a_sum, sz)).astype(np.float32)
    ratio = np.where(nonempty & (a_sum != 0), ta / np.where(a_sum != 0, a_sum, 1.0), np.nan)
    F["amt_ratio"] = ratio
    F["amt_partial"] = ((size == 1) & (ratio >= PARTIAL_MIN) & (ratio <= PARTIAL_MAX)).astype(np.float32)
    F["amt_over"] = (nonempty & (np.abs(ta) > np.abs(a_sum) + CENT * sz)).astype(np.float32)
    F["n_groups"] = n_groups
    F["grp_exact"] = ((size >= 2) & (n_groups == 1) & (F["amt_exact"] > 0)).astype(np.float32)
    F["n_exact_sets"] = np.bincount(st, weights=F["amt_exact"], minlength=n_t)[st]
    F["n_fit_sets"] = np.bincount(st, weights=F["amt_fits"], minlength=n_t)[st]
    F["member_credit"] = credit
    # how much of the set the title names, and how much of what the title names is in the set
    nm = named_rows(X).astype(np.float64)
    n_named_set = np.bincount(sid, weights=nm[row], minlength=ns)
    n_named_t = np.bincount(t, weights=nm, minlength=n_t)[st]
    F["named_frac"] = np.where(size > 0, n_named_set / np.maximum(size, 1), np.nan)
    F["named_cover"] = np.where(n_named_t > 0, n_named_set / np.maximum(n_named_t, 1), np.nan)
    # the members' evidence (NaN-skipping, like pandas' min/max)
    rows_of = _rows_reader(X)
    lo = segment_reduce(np.fmin, rows_of(row, _MEMBER_MIN), off)
    hi = segment_reduce(np.fmax, rows_of(row, _MEMBER_MAX), off)
    F.update({f"min_{c}": lo[:, k] for k, c in enumerate(_MEMBER_MIN)})
    F.update({f"max_{c}": hi[:, k] for k, c in enumerate(_MEMBER_MAX)})
    # the transfer's own traits (constant over its pairs): from each transfer's first pair
    first_row = np.full(n_t, -1, np.int64)
    first_row[t[::-1]] = np.arange(len(t))[::-1]
    fr = first_row[st]
    traits = np.where((fr >= 0)[:, None], rows_of(np.maximum(fr, 0), _TRANSFER), np.nan)
    F.update({c: traits[:, k] for k, c in enumerate(_TRANSFER)})
    return pd.DataFrame(F.matrix(), columns=SET_FEATURE_NAMES)


class _FeatureMatrix:
    """``set_features``' columns, each written as float32 into one (sets x SET_FEATURE_NAMES) matrix as soon as it
    is computed. Kept as a dict of float64 columns and stacked at the end, a 50k-transfer batch of a 100k month
    (millions of sets) held every column twice, and the stack a third time: that was a match worker's peak.
    Each value is rounded to float32 once, as the stack did, so the matrix is the same to the bit; a column read
    back is the stored float32 (the 0/1 flags read back are exact)."""

    def __init__(self, n_sets: int):
        self._where = {c: k for k, c in enumerate(SET_FEATURE_NAMES)}
        self._values = np.empty((n_sets, len(SET_FEATURE_NAMES)), np.float32)
        self._written: set[str] = set()

    def __setitem__(self, name: str, column) -> None:
        self._values[:, self._where[name]] = np.asarray(column, np.float32)
        self._written.add(name)

    def __getitem__(self, name: str) -> np.ndarray:
        if name not in self._written:
            raise KeyError(name)
        return self._values[:, self._where[name]]

    def update(self, columns: dict) -> None:
        for name, column in columns.items():
            self[name] = column

    def matrix(self) -> np.ndarray:
        missing = [c for c in SET_FEATURE_NAMES if c not in self._written]
        if missing:
            raise KeyError(f"set features not computed: {missing}")
        return self._values


def _rows_reader(X: pd.DataFrame):
    """``rows_of(rows, names)`` = ``X[names].to_numpy()[rows]``. The pair features are one float32 matrix, so the
    columns are positions in it: pandas' selection of columns cost a /match request ~0.4 ms in its three calls. A
    frame of several dtypes (a family's added column) goes through pandas."""
    if len(set(X.dtypes.tolist())) != 1:
        return lambda rows, names: X[names].to_numpy()[rows]
    values, where = X.to_numpy(), {c: k for k, c in enumerate(X.columns)}
    return lambda rows, names: values[np.ix_(rows, [where[c] for c in names])]


def allocate(t_amount: float, inv_amounts: np.ndarray) -> np.ndarray:
    """``allocate_all`` for one transfer."""
    return allocate_all(np.zeros(len(inv_amounts), np.int64), np.array([t_amount]), np.asarray(inv_amounts, float))


def allocate_all(t: np.ndarray, ta: np.ndarray, ia: np.ndarray) -> np.ndarray:
    """What each chosen invoice gets of its transfer (rows of one transfer contiguous in ``t``; ``ta`` per transfer).

    A transfer larger than its invoices (an overpayment: the surplus stays on account) allocates each invoice its
    amount. Otherwise one invoice takes the whole transfer (a fee-reduced or partial payment) and several share it
    in proportion to their amounts (a fee spread over them), the cents residue on the largest allocation, so the
    allocations sum to the transfer amount."""
    if len(t) == 0:
        return np.zeros(0)
    start = np.r_[0, np.flatnonzero(np.diff(t)) + 1]
    size = np.diff(np.r_[start, len(t)])
    total = np.add.reduceat(ia, start)
    target = ta[t[start]]
    over = (np.sign(target) == np.sign(total)) & (np.abs(target) > np.abs(total) + CENT * size)
    ratio = np.where(total != 0, target / np.where(total != 0, total, 1.0), 0.0)
    alloc = np.round(ia * np.repeat(ratio, size), 2)
    residue = np.round(target - np.add.reduceat(alloc, start), 2)
    grp = np.repeat(np.arange(len(start)), size)
    absval = np.abs(alloc)
    big = first_max_per_group(grp, absval)  # first of the largest, as np.argmax
    alloc[big] += residue
    single = np.repeat(size == 1, size)
    out = np.where(single, ta[t], np.round(alloc, 2))
    return np.where(np.repeat(over, size), np.round(ia, 2), out)


def _csr(table: SetTable) -> np.ndarray:
    """Offsets of each set's members in ``table.members`` (sorted by sid)."""
    return np.searchsorted(table.members["sid"].to_numpy(), np.arange(len(table.sets) + 1))


def set_preference(sets: pd.DataFrame, q: np.ndarray, n_transfers: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(qn, sure, order) of the set model's scores ``q`` (one column, or two: see ``choose_sets``): qn the
    probability of being exactly right, normalised where a transfer's sum over 1 (the confidence); sure what settles
    conflicts (the expected precision with two outputs); order each transfer's sets, best first (by ``set_gain``
    with two outputs, then qn).

    The gain reads the precision as qn + (1 - qn) * precision: a set exactly right with probability qn has all its
    members right then. The two outputs are learnt apart, and for a remittance they disagreed: "22 named invoices +
    the one that makes up the amount to the cent" was exactly right at q 0.93 but had a lower precision estimate
    (0.970) than the 22 named alone (0.996), so the 22 were chosen. quality.py 6 (xgboost), pair F1 frozen / later:
    seed 7 0.941 / 0.953 -> 0.943 / 0.957, seed 11 0.974 / 0.971 -> 0.982 / 0.973."""
    st = sets["t"].to_numpy()
    q = np.clip(np.asarray(q, np.float64), 0.0, 1.0)
    q, precision = (q[:, 0], q[:, 1]) if q.ndim == 2 else (q, None)
    z = np.maximum(np.bincount(st, weights=q, minlength=n_transfers)[st], 1.0)
    qn = q / z
    # two outputs: choose by what the set is worth to pair F1, settle conflicts by the surer claim
    gain = qn if precision is None else set_gain(sets["size"].to_numpy(), qn + (1.0 - qn) * precision)
    sure = qn if precision is None else precision
    return qn, sure, np.lexsort((-qn, -gain, st))


def first_choices(sets: pd.DataFrame, q: np.ndarray) -> np.ndarray:
    """Each transfer's best set (rows of ``sets``) by the set model alone, before conflicts."""
    st = sets["t"].to_numpy()
    _, _, order = set_preference(sets, q, int(st.max(initial=-1)) + 1)
    return order[run_starts(st[order])]


def choose_sets(
    table: SetTable,
    q: np.ndarray,
    pair_t: np.ndarray,
    pair_i: np.ndarray,
    pair_p: np.ndarray,
    t_amount: np.ndarray,
    i_amount: np.ndarray,
    n_transfers: int,
    booked: np.ndarray | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Best set per transfer by the set model's q, then conflicts. ``q``: one column (the probability that the set is
    exactly right: it chooses and is the confidence) or two (that, and the set's expected precision: the choice
    maximises ``set_gain``).

    Returns (links: t, i, allocated_amount, confidence; decisions: t, n_invoices, confidence) with a decision row
    for every transfer 0..n_transfers-1 (a transfer without sets: the empty set, confidence NaN: the caller knows
    how sure "no candidate" is). Confidence is q of the chosen set, normalised when the transfer's q sum over 1.
    Conflicts (an invoice allocated beyond its amount) are settled by confidence (to 0.01), then booking date
    (the first of two equally sure payments is the payment, the later a duplicate): the loser takes its best set
    without the lost invoice. Two strong claims on one invoice mean one of them is wrong, so the winner's
    confidence is multiplied by (1 - p) of its strongest rival's claim.
    """
    S = table.sets
    conf = np.full(n_transfers, np.nan)
    chosen_sid = np.full(n_transfers, -1, np.int64)
    if len(S):
        st = S["t"].to_numpy()
        qn, sure, order = set_preference(S, q, n_transfers)
        first = np.r_[True, st[order][1:] != st[order][:-1]]
        best = order[first]
        conf[st[best]] = qn[best]
        chosen_sid[st[best]] = best
        off = _csr(table)
        rows_all = table.members["row"].to_numpy()
        remnants = _settle_conflicts(
            chosen_sid,
            conf,
            order,
            st,
            off,
            rows_all,
            qn,
            sure,
            pair_t,
            pair_i,
            pair_p,
            t_amount,
            i_amount,
            booked,
            n_transfers,
        )
        has = np.flatnonzero(chosen_sid >= 0)
        sid = chosen_sid[has]
        n = off[sid + 1] - off[sid]
        lt = np.repeat(has, n)
        lr = rows_all[np.repeat(off[sid], n) + (np.arange(n.sum()) - np.repeat(np.cumsum(n) - n, n))]
        if remnants:
            rt = np.array(sorted(remnants), np.int64)
            lt = np.r_[lt, np.repeat(rt, [len(remnants[x]) for x in rt.tolist()])]
            lr = np.r_[lr, np.concatenate([remnants[x] for x in rt.tolist()])]
            o = np.argsort(lt, kind="stable")  # allocate_all: each transfer's rows together
            lt, lr = lt[o], lr[o]
    else:
        lt, lr = np.zeros(0, np.int64), np.zeros(0, np.int64)
    conf = np.where(np.isnan(conf), np.nan, np.clip(conf, 0.0, 1.0 - EPS))
    li = pair_i[lr] if len(lr) else np.zeros(0, np.int64)
    alloc = allocate_all(lt, t_amount, i_amount[li]) if len(lt) else np.zeros(0)
    paid = np.abs(alloc) >= CENT  # a link of 0.00 pays nothing (and breaks the data contract): none is made
    lt, li, alloc = lt[paid], li[paid], alloc[paid]
    by_ti = np.lexsort((li, lt))  # stable, as sort_values(["t", "i"], kind="stable"), without its ~0.5 ms
    links = pd.DataFrame(
        {
            "t": lt.astype(np.int64)[by_ti],
            "i": li.astype(np.int64)[by_ti],
            "allocated_amount": alloc.astype(np.float64)[by_ti],
            "confidence": conf[lt][by_ti] if len(lt) else np.zeros(0),
        }
    )
    n_inv = np.bincount(lt, minlength=n_transfers).astype(np.int64)
    decisions = pd.DataFrame({"t": np.arange(n_transfers), "n_invoices": n_inv, "confidence": conf})
    return links, decisions


def _surely_too_big(sids, off, rows_all, pair_i, ta: float, i_amount: np.ndarray, room: np.ndarray) -> np.ndarray:
    """Per set of one transfer: does some member surely get more than the ``room`` left on its invoice? A lower
    bound of each member's ``allocate`` share (its part of ``ta`` less the cents rounding can move: half a cent per
    member and for the remainder) against the room, for all the transfer's sets at once. The exact check then
    runs only on sets that might fit: 1,000 transfers contesting one contractor's 12 invoices no longer try each
    of their 500 sets one by one in Python (7 s)."""
    n = off[sids + 1] - off[sids]
    if len(sids) == 0 or n.sum() == 0:
        return np.zeros(len(sids), bool)
    seg = np.repeat(np.arange(len(sids)), n)
    inv = pair_i[rows_all[expand(off[sids], n)]]
    ia = i_amount[inv]
    total = np.bincount(seg, weights=ia, minlength=len(sids))
    ratio = np.where(total != 0, ta / np.where(total != 0, total, 1.0), 0.0)
    over = (np.sign(total) == np.sign(ta)) & (abs(ta) > np.abs(total) + CENT * n)  # overpaid: each gets its amount
    size = n[seg]
    share = np.where(over[seg], np.abs(ia), np.where(size == 1, abs(ta), np.abs(ia * ratio[seg])))
    slack = CENT * (size + 2) + 1e-9 * (share + abs(ta))
    return np.bincount(seg, weights=(share - slack > room[inv]), minlength=len(sids)) > 0


def _settle_conflicts(
    chosen_sid,
    conf,
    order,
    st,
    off,
    rows_all,
    qn,
    sure,
    pair_t,
    pair_i,
    pair_p,
    t_amount,
    i_amount,
    booked,
    n_transfers,
) -> dict[int, np.ndarray]:
    """Greedy over the (few) transfers whose chosen invoices are over-allocated: sure claims (``sure``: the chosen
    set's expected precision, or its confidence for a one-output set model, at least SURE_CLAIM) before the others,
    the earlier booking first among them, then the surer; updates chosen_sid and conf.

    A set that loses invoices keeps the rest (its *remnant*: the members whose allocations still fit) when that is
    worth more to pair F1 (``set_gain`` at the set's own expected precision) than its best set that fits: a
    remittance naming 21 invoices that loses two of them to a look-alike exact sum still pays the other 19, where
    the best enumerated set left was a single invoice. Returns {transfer: member rows} of the remnants chosen
    (their chosen_sid is -1)."""
    remnants: dict[int, np.ndarray] = {}
    has = np.flatnonzero(chosen_sid >= 0)
    if len(has) == 0:
        return remnants
    sid = chosen_sid[has]
    n = off[sid + 1] - off[sid]
    ut = np.repeat(has, n)
    ur = rows_all[np.repeat(off[sid], n) + (np.arange(n.sum()) - np.repeat(np.cumsum(n) - n, n))]
    ui = pair_i[ur]
    ua = np.abs(allocate_all(ut, t_amount, i_amount[ui]))
    cap = np.abs(i_amount) * (1 + FEE_TOLERANCE) + CENT
    total = np.bincount(ui, weights=ua, minlength=len(i_amount))
    over = total > cap
    if not over[ui].any():
        return remnants
    day = booked.astype("datetime64[D]").astype(np.int64) if booked is not None else np.zeros(n_transfers, np.int64)
    chosen_sure = np.where(chosen_sid >= 0, sure[np.maximum(chosen_sid, 0)], 0.0)
    involved = sorted(
        set(ut[over[ui]].tolist()), key=lambda tt: (chosen_sure[tt] < SURE_CLAIM, day[tt], -chosen_sure[tt], tt)
    )
    inv_set = set(involved)
    contested = over[ui]
    p_of = dict(zip(zip(pair_t.tolist(), pair_i.tolist()), pair_p.tolist()))
    claims: dict[int, list] = {}
    for tt, j in zip(ut[contested].tolist(), ui[contested].tolist()):
        claims.setdefault(j, []).append((tt, p_of[(tt, j)]))
    remaining = np.abs(i_amount).astype(np.float64)
    fixed = ~np.isin(ut, list(inv_set))
    np.subtract.at(remaining, ui[fixed], ua[fixed])
    tol = FEE_TOLERANCE * np.abs(i_amount) + CENT
    st_sorted = st[order]
    t_start = np.searchsorted(st_sorted, np.arange(n_transfers + 1))
    for tt in involved:
        prev = chosen_sid[tt]
        pick = -1
        own = order[t_start[tt] : t_start[tt + 1]]
        own = own[~_surely_too_big(own, off, rows_all, pair_i, t_amount[tt], i_amount, remaining + tol)]
        for s_ in own:  # the best set whose allocations still fit
            rows = rows_all[off[s_] : off[s_ + 1]]
            alloc = np.abs(allocate(t_amount[tt], i_amount[pair_i[rows]])) if len(rows) else np.zeros(0)
            if np.all(alloc <= remaining[pair_i[rows]] + tol[pair_i[rows]]):
                pick = s_
                break
        rows = rows_all[off[pick] : off[pick + 1]] if pick >= 0 else np.zeros(0, np.int64)
        if pick != prev:
            conf[tt] = qn[pick] if pick >= 0 else conf[tt]  # it lost an invoice: as sure as its next best set
            kept = _remnant(rows_all[off[prev] : off[prev + 1]], pair_i, t_amount[tt], i_amount, remaining + tol)
            worth = set_gain(np.array([len(kept), len(rows)]), np.array([sure[prev], sure[pick] if pick >= 0 else 1.0]))
            if len(kept) >= REMNANT_MIN and worth[0] > worth[1]:
                lost = set(pair_i[rows_all[off[prev] : off[prev + 1]]].tolist()) - set(pair_i[kept].tolist())
                taken = [q for j in lost for u, q in claims.get(j, []) if u != tt]
                conf[tt] = qn[prev] * (1.0 - min(max(taken, default=0.0), 1.0))
                remnants[tt] = kept
                rows, pick = kept, -1
        chosen_sid[tt] = pick
        if len(rows):
            np.subtract.at(remaining, pair_i[rows], np.abs(allocate(t_amount[tt], i_amount[pair_i[rows]])))
            for r in rows:
                rivals = [q for u, q in claims.get(int(pair_i[r]), []) if u != tt]
                if rivals:
                    conf[tt] *= 1.0 - min(max(rivals), 1.0)
    return remnants


def _remnant(rows: np.ndarray, pair_i: np.ndarray, ta: float, i_amount: np.ndarray, room: np.ndarray) -> np.ndarray:
    """The members of a set (pair rows) whose allocations fit in the ``room`` left on their invoices, dropping the
    ones that do not until the rest fits (allocations change as members go: what is no longer shared out is
    surplus, ``allocate``); empty when nothing fits."""
    keep = rows
    while len(keep):
        fits = np.abs(allocate(ta, i_amount[pair_i[keep]])) <= room[pair_i[keep]]
        if fits.all():
            return keep
        keep = keep[fits]
    return keep
