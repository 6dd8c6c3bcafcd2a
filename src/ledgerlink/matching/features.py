"""Pair features: one function, ``pair_features``, used by fit, match and serving (no train/serve skew).

Input is a frame of candidate pairs (positions ``t`` into the prepared transfers, ``i`` into the prepared
invoices). Features that look across a transfer's candidates (ambiguity, subset sums, rank) are computed
within the given pair set, so scoring the same pairs gives the same features wherever it runs.
Missing evidence is NaN (xgboost learns a direction for it), not a made-up zero.

Reference features compare every reference chunk of the title with every chunk of the invoice, from its number
and from its description alike (``normalize.prepare_invoices``): a PO, contract or assignment number counts like
the invoice number. ``amt_in_title``: the invoice's amount is written in the title (a remittance advice lists
what it pays on each invoice).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from rapidfuzz import fuzz, process
from rapidfuzz.distance import Levenshtein

from .arrays import csr, eq_join, expand, first_max_per_group, rank_min_desc, run_starts
from .memory import Exclusion, Memory
from .normalize import Prepared
from .runtime import check_deadline
from .subsets import anchor_completions, group_sets, pair_completion, subset_sums
from .tolerances import CENT, FEE_TOLERANCE, amount_fits

# Up to so many pairs, every pair is compared (``_cdist``): finding the distinct ones first costs ~40 us a call, as
# much as comparing ~60 pairs (token set ratios of names: 20 pairs 69 -> 33 us, 50 pairs 70 -> 51 us, 100 pairs
# 73 -> 78 us); a /match request has 20 pairs when its transfer carries a number.
SMALL_COMPARE_ROWS = 64
PARALLEL_MIN_ROWS = 20000  # string comparisons run on n_jobs threads from this many pairs up
# Fuzzy scores read the first 256 characters of each side (a bank title holds at most 140). Partial ratios cost
# the product of the lengths: two 2,000-character texts took 0.7 s per pair.
MAX_COMPARED_CHARS = 256
COMPARE_BLOCK = 1 << 24  # characters x characters per rapidfuzz call (partial ratios: ~20 ns each, 0.3 s)

FEATURE_NAMES = [
    # reference numbers
    "ref_exact",
    "ref_digits_exact",
    "ref_contains",
    "ref_lev",
    "ref_partial",
    "ref_groups",
    "ref_suffix",
    "ref_suffix_frac",
    "ref_margin",
    "n_title_refs",
    "inv_has_ref",
    "n_exact_refs_in_transfer",
    # names
    "name_tset",
    "name_partial",
    "name_in_title",
    "payer_present",
    # memory learnt from training links: payer account / name -> contractor, title-word link rates, already paid
    "mem_acc_n",
    "mem_acc_share",
    "mem_acc_total",
    "mem_pay_n",
    "mem_pay_share",
    "mem_pay_total",
    "word_rate_min",
    "word_rate_mean",
    "inv_paid_frac",
    "inv_paid_n",
    "amt_eq_remaining",
    # amounts
    "amt_transfer_log",
    "amt_invoice_log",
    "amt_eq",
    "amt_ratio",
    "amt_absdiff",
    "amt_reldiff",
    "amt_fee",
    "amt_sign_agree",
    "amt_partial",
    "amt_over",
    "amt_in_title",
    "currency_eq",
    "subset_exact",
    "subset_fee",
    "subset_size",
    "n_same_amount",
    "named_sum_fits",
    "completes_named",
    "completes_named_exact",
    "completes_pair",
    "same_amount_age_rank",
    "grp_set",
    "grp_set_size",
    "grp_sets_in_transfer",
    # dates
    "days_since_issue",
    "days_to_due",
    "title_month_diff",
    # ambiguity
    "n_cands",
    "heur_rank",
    "heur_margin",
]

# Read from the payer memory. fit computes them leave-one-out; a transfer of a training month scored later sees
# its own link in memory, so between training months and a new month they differ by construction (drift views).
MEMORY_FEATURES = [
    "mem_acc_n",
    "mem_acc_share",
    "mem_acc_total",
    "mem_pay_n",
    "mem_pay_share",
    "mem_pay_total",
    "word_rate_min",
    "word_rate_mean",
]
VIEW_FEATURES = [c for c in FEATURE_NAMES if c not in MEMORY_FEATURES]
VIEW_MISSING = -1000.0  # missing evidence in a drift view: a value no feature takes, so a change in how often
# evidence is missing shows as drift (Evidently skips NaN, and fails on a column that is all NaN)


# --------------------------------------------------------------------------------------------------------------
# helpers


def _clipped(texts: np.ndarray) -> np.ndarray:
    """Texts cut to their first ``MAX_COMPARED_CHARS`` characters for fuzzy scores."""
    if not any(len(x) > MAX_COMPARED_CHARS for x in texts):
        return texts
    return np.array([x[:MAX_COMPARED_CHARS] for x in texts], dtype=object)


def _cdist(a, b, scorer, workers: int) -> np.ndarray:
    """Element-wise string similarity of two equal-length sequences, vectorised in rapidfuzz's C++. Each distinct
    (a, b) is scored once: a contractor's name meets the same payer name on many of its invoices."""
    return _cdists(a, b, [scorer], workers)[0]


def _distinct_pairs(a, b) -> tuple:
    """(ca, ua, cb, ub, ka, kb, inverse): each side's codes and distinct strings (``pd.factorize``), and the distinct
    (a, b) pairs as codes of each side (``ka``, ``kb``), ``inverse`` giving each row's distinct pair."""
    ca, ua = pd.factorize(np.asarray(a, dtype=object))
    cb, ub = pd.factorize(np.asarray(b, dtype=object))
    key = ca.astype(np.int64) * (len(ub) + 1) + cb
    uk, inverse = np.unique(key, return_inverse=True)
    return ca, ua, cb, ub, uk // (len(ub) + 1), uk % (len(ub) + 1), inverse.ravel()


def _cdists(a, b, scorers: list, workers: int, pairs: tuple | None = None) -> list[np.ndarray]:
    """``_cdist`` of each of ``scorers``, the distinct pairs found once for all of them (a month's 2.5M reference
    chunk pairs: two hashings and a sort of 0.5 CPU s). ``pairs``: ``_distinct_pairs(a, b)``, when the caller has
    them already."""
    if len(a) == 0:
        return [np.zeros(0, dtype=np.float32) for _ in scorers]
    workers = workers if len(a) >= PARALLEL_MIN_ROWS else 1  # a thread pool costs more than 50 comparisons
    if len(a) <= SMALL_COMPARE_ROWS:  # all compared: the same scores, without two hashings and a sort
        a, b = _clipped(np.asarray(a, dtype=object)), _clipped(np.asarray(b, dtype=object))
        la, lb = np.fromiter(map(len, a), np.int64, len(a)), np.fromiter(map(len, b), np.int64, len(b))
        return [_cpdist(a, b, la * lb, scorer, workers) for scorer in scorers]
    ca, ua, cb, ub, ka, kb, inverse = pairs if pairs is not None else _distinct_pairs(a, b)
    # lengths first: they tell whether any text needs clipping (a generator over every text cost more)
    la = np.fromiter(map(len, ua), np.int64, len(ua))
    lb = np.fromiter(map(len, ub), np.int64, len(ub))
    if la.max(initial=0) > MAX_COMPARED_CHARS:
        ua, la = _clipped(ua), np.minimum(la, MAX_COMPARED_CHARS)
    if lb.max(initial=0) > MAX_COMPARED_CHARS:
        ub, lb = _clipped(ub), np.minimum(lb, MAX_COMPARED_CHARS)
    if len(ka) > 0.7 * len(ca):
        a, b = ua[ca], ub[cb]
        cost = la[ca] * lb[cb]
        return [_cpdist(a, b, cost, scorer, workers) for scorer in scorers]
    a, b, cost = ua[ka], ub[kb], la[ka] * lb[kb]
    return [_cpdist(a, b, cost, scorer, workers)[inverse] for scorer in scorers]


def _cpdist(a: np.ndarray, b: np.ndarray, cost: np.ndarray, scorer, workers: int) -> np.ndarray:
    """rapidfuzz's element-wise scores, in blocks of at most ``COMPARE_BLOCK`` characters x characters (``cost``
    per pair) with a deadline check between them: one C++ call cannot be interrupted."""
    ends = np.cumsum(cost)
    if len(a) and ends[-1] < COMPARE_BLOCK:  # one block (every /match request): no cuts to find
        out = process.cpdist(list(a), list(b), scorer=scorer, workers=workers, dtype=np.float32)
        check_deadline("pair features: text similarity")
        return out
    cut = np.searchsorted(ends, np.arange(1, int(ends[-1] // COMPARE_BLOCK) + 1) * COMPARE_BLOCK) if len(a) else []
    out = []
    for lo, hi in zip(np.r_[0, cut], np.r_[cut, len(a)]):
        if hi > lo:
            out.append(process.cpdist(list(a[lo:hi]), list(b[lo:hi]), scorer=scorer, workers=workers, dtype=np.float32))
            check_deadline("pair features: text similarity")
    return np.concatenate(out) if out else np.zeros(0, np.float32)


def common_suffix_len(a: np.ndarray, b: np.ndarray, width: int = 16, factorized: tuple | None = None) -> np.ndarray:
    """Length of the common suffix of two string arrays, in numpy (the sequence part of an invoice number).
    ``factorized``: (ca, ua, cb, ub), each side's ``pd.factorize``, when the caller has them already."""
    if len(a) == 0:
        return np.zeros(0, dtype=np.int64)
    # each distinct string reversed once (a month's 2.5M chunk pairs hold ~100k distinct numbers), and the common
    # suffix as the first differing position (argmin) rather than a cumulative product: 2.3 -> 1.0 CPU s
    if factorized is None:
        factorized = (*pd.factorize(np.asarray(a, dtype=object)), *pd.factorize(np.asarray(b, dtype=object)))
    ca, ua, cb, ub = factorized
    ra = np.array([s[::-1][:width].ljust(width, "\0") for s in ua], dtype=f"U{width}").view(np.uint32)
    rb = np.array([s[::-1][:width].ljust(width, "\x01") for s in ub], dtype=f"U{width}").view(np.uint32)
    same = ra.reshape(-1, width)[ca] == rb.reshape(-1, width)[cb]
    return np.where(same.all(axis=1), width, same.argmin(axis=1)).astype(np.int64)


def rank_within(t: np.ndarray, score: np.ndarray) -> np.ndarray:
    """1-based rank of each row's ``score`` (highest first) among its transfer's rows; ties by position."""
    o = np.lexsort((-score, t))
    ts = t[o]
    start = np.r_[0, np.flatnonzero(np.diff(ts)) + 1] if len(ts) else np.zeros(0, np.int64)
    rank = np.empty(len(t), np.float64)
    rank[o] = np.arange(len(t)) - np.repeat(start, np.diff(np.r_[start, len(ts)])) + 1
    return rank


def _margin(t: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Value minus the best value among the transfer's other candidates (>0: clearly the best)."""
    v = np.asarray(v, np.float64)
    if len(t) == 0:
        return v
    o = np.lexsort((-v, t))
    ts = t[o]
    start = run_starts(ts)
    size = np.diff(np.r_[start, len(ts)])
    top = v[o][start]
    sec = np.where(size > 1, v[o][np.minimum(start + 1, len(t) - 1)], 0.0)
    grp = np.empty(len(t), np.int64)
    grp[o] = np.repeat(np.arange(len(start)), size)
    first = np.zeros(len(t), bool)
    first[o[start]] = True
    best_other = np.where(first, sec[grp], top[grp])
    return v - best_other


def amount_in_title(t: np.ndarray, ia: np.ndarray, title_amounts: np.ndarray) -> np.ndarray:
    """1 where the invoice's amount is written in the title (a remittance advice lists each invoice with its amount;
    "EUR 1200.00" names the amount paid), 0 where the title writes other amounts, NaN where it writes none."""
    n_per = np.fromiter(map(len, title_amounts), np.int64, len(title_amounts))
    out = np.where(n_per[t] > 0, 0.0, np.nan).astype(np.float32)
    if n_per.sum() == 0 or len(t) == 0:
        return out
    tt = np.repeat(np.arange(len(title_amounts)), n_per)
    cents = np.fromiter((c for a in title_amounts for c in a), np.int64, int(n_per.sum()))
    rows, _ = eq_join([t, np.abs(np.round(ia * 100)).astype(np.int64)], [tt, cents])
    out[rows] = 1.0
    return out


def group_set_features(t: np.ndarray, group: np.ndarray, ia: np.ndarray, ta: np.ndarray) -> dict[str, np.ndarray]:
    """Per pair: is it in a set of 2..MAX_SET candidates of the same transfer and contractor (``group``, -1: none)
    whose invoices sum exactly (to the cent) to the transfer amount; the size of the smallest such set; and how
    many such sets the transfer has (several: ambiguous). Only (transfer, contractor) pairs with <= MAX_GROUP
    candidates are searched: with more, an exact sum of 4-6 invoices is no longer evidence. Columns as arrays
    (name -> float32 array): pair_features copies them into its matrix, a frame cost a /match request ~0.1 ms."""
    n = len(t)
    if n == 0:
        return {
            "grp_set": np.zeros(n, np.float32),
            "grp_set_size": np.full(n, np.nan, np.float32),
            "grp_sets_in_transfer": np.zeros(n, np.float32),
        }
    g = np.asarray(group, np.int64)
    key = np.where(g >= 0, t.astype(np.int64) * (int(g.max()) + 2) + g, -1)
    cents = np.round(ia * 100).astype(np.int64)
    target = np.round(ta * 100).astype(np.int64)
    in_set = np.zeros(n, bool)
    size = np.full(n, 99.0)
    n_sets = np.zeros(n)
    for rows, masks, hk, hs in group_sets(key, cents, target=target):
        members = masks[hs]
        sz = members.sum(1)
        r = rows[hk]
        hit_rows = r[members]
        in_set[hit_rows] = True
        np.minimum.at(size, hit_rows, np.repeat(sz, sz).astype(np.float64))
        np.add.at(n_sets, r[:, 0], 1.0)  # counted on the first row of the key, spread per transfer below
    per_t = np.bincount(t, weights=n_sets)[t]
    return {
        "grp_set": in_set.astype(np.float32),
        "grp_set_size": np.where(size < 99, size, np.nan).astype(np.float32),
        "grp_sets_in_transfer": per_t.astype(np.float32),
    }


# --------------------------------------------------------------------------------------------------------------
# the feature function


def _contains(di: np.ndarray, dt: np.ndarray) -> np.ndarray:
    """The invoice's digits inside the title chunk's, or a truncated number (the title chunk is a prefix of the
    invoice's, >= 4 digits). numpy's string functions: a Python loop over ~1M chunk pairs cost ~2 CPU s per 10k
    transfers of a 100k month."""
    x, y = np.asarray(di, dtype=str), np.asarray(dt, dtype=str)
    return (np.strings.find(y, x) >= 0) | ((np.strings.str_len(y) >= 4) & np.strings.startswith(x, y))


_REF_COLS = [
    "ref_exact",
    "ref_digits_exact",
    "ref_contains",
    "ref_lev",
    "ref_partial",
    "ref_groups",
    "ref_suffix",
    "ref_suffix_frac",
]


def _ref_features(
    t: np.ndarray, i: np.ndarray, inv_chunks: pd.DataFrame, tr_chunks: pd.DataFrame, n_inv: int, n_tr: int, n_jobs: int
) -> dict[str, np.ndarray]:
    """Reference similarity of each pair: every (invoice chunk, title chunk) of the pair compared, best kept."""
    n = len(t)
    ci_order, ci_off = csr(inv_chunks["i"].to_numpy(), n_inv)
    ct_order, ct_off = csr(tr_chunks["t"].to_numpy(), n_tr)
    ni, nt = np.diff(ci_off)[i], np.diff(ct_off)[t]
    m = ni * nt  # chunk pairs of each pair
    out = {c: np.full(n, np.nan, np.float32) for c in _REF_COLS}
    if m.sum() == 0:
        return out
    p = np.repeat(np.arange(n), m)
    local = expand(np.zeros(n, np.int64), m)
    a, b = local // nt[p], local % nt[p]
    ci = ci_order[ci_off[i[p]] + a]
    ct = ct_order[ct_off[t[p]] + b]
    di, dt = inv_chunks["digits"].to_numpy()[ci], tr_chunks["digits"].to_numpy()[ct]
    gi, gt = inv_chunks["groups"].to_numpy()[ci], tr_chunks["groups"].to_numpy()[ct]
    # the digit strings of each side hashed once, and the distinct (invoice, title) digit pairs found once, for the
    # suffix, the two distances and the containment test
    pairs = _distinct_pairs(di, dt) if len(di) > SMALL_COMPARE_ROWS else None
    if pairs is None:
        suf = common_suffix_len(di, dt)
        contains = _contains(di, dt)
        n_digits = np.fromiter(map(len, di), np.int64, len(di))
    else:
        ca, ua, cb, ub, ka, kb, inverse = pairs
        suf = common_suffix_len(di, dt, factorized=(ca, ua, cb, ub))
        contains = _contains(np.asarray(ua, dtype=str)[ka], np.asarray(ub, dtype=str)[kb])[inverse]
        n_digits = np.fromiter(map(len, ua), np.int64, len(ua))[ca]
    lev, partial = _cdists(di, dt, [Levenshtein.normalized_similarity, fuzz.partial_ratio], n_jobs, pairs=pairs)
    vals = {
        "ref_exact": inv_chunks["alnum"].to_numpy()[ci] == tr_chunks["alnum"].to_numpy()[ct],
        # the same number: the same digits, or the same digit groups without their leading zeros ("FV/2025/3/142"
        # typed for "FV/2025/03/0142": a title without the padding lost 0.08 pair F1 before)
        "ref_digits_exact": (di == dt) | (gi == gt),
        # the whole number inside the title chunk, or a truncated number (title chunk is its prefix, >= 4 digits)
        "ref_contains": contains,
        "ref_lev": lev,
        "ref_partial": partial / 100.0,
        "ref_groups": _cdist(gi, gt, fuzz.token_set_ratio, n_jobs) / 100.0,
        "ref_suffix": suf,
        "ref_suffix_frac": suf / np.maximum(n_digits, 1),
    }
    has = np.flatnonzero(m > 0)
    starts = (np.cumsum(m) - m)[has]
    for c in _REF_COLS:
        v = np.asarray(vals[c])
        out[c][has] = np.maximum.reduceat(v.astype(np.float64) if v.dtype == bool else v, starts).astype(np.float32)
    return out


def pair_features(
    pairs: pd.DataFrame,
    P: Prepared,
    memory: Memory | None = None,
    exclude: Exclusion | None = None,
    n_jobs: int = 1,
) -> pd.DataFrame:
    """Feature matrix (columns FEATURE_NAMES, float32) for ``pairs`` (columns t, i), row for row.

    ``P``: both sides prepared (normalize.Prepared); ``exclude`` (Memory.exclusion) makes memory leave-one-out
    for the training transfers in fit. Numpy throughout: one request's 50 pairs cost milliseconds, and a month's
    million pairs stay vectorised.
    """
    inv, inv_chunks, tr, tr_chunks = P.inv, P.inv_chunks, P.tr, P.tr_chunks
    # work in (transfer, invoice_id) order so that ties break the same way however the pairs were given
    t0 = pairs["t"].to_numpy(np.int64)
    i0 = pairs["i"].to_numpy(np.int64)
    order = np.lexsort((inv["invoice_id"].to_numpy()[i0], t0))
    t, i = t0[order], i0[order]
    n = len(t)
    F: dict[str, np.ndarray] = {}
    nan = lambda x: np.nan_to_num(x, nan=0.0)  # noqa: E731

    # --- reference numbers
    F.update(_ref_features(t, i, inv_chunks, tr_chunks, len(inv), len(tr), n_jobs))
    check_deadline("pair features: references")
    F["n_title_refs"] = np.bincount(tr_chunks["t"].to_numpy(np.int64), minlength=len(tr))[t].astype(np.float64)
    F["inv_has_ref"] = np.isin(i, inv_chunks["i"].to_numpy()).astype(np.float32)
    F["ref_margin"] = _margin(t, nan(F["ref_lev"]))
    F["n_exact_refs_in_transfer"] = np.bincount(t, weights=(nan(F["ref_digits_exact"]) > 0), minlength=len(tr))[t]

    # --- names
    iname, payer = inv["name"].to_numpy()[i], tr["payer"].to_numpy()[t]
    words, tname = tr["title_words"].to_numpy()[t], tr["name"].to_numpy()[t]
    has_i, has_p = iname != "", tname != ""
    tset, part = (x / 100.0 for x in _cdists(iname, tname, [fuzz.token_set_ratio, fuzz.partial_ratio], n_jobs))
    F["name_tset"] = np.where(has_i & has_p, tset, np.nan)
    F["name_partial"] = np.where(has_i & has_p, part, np.nan)
    in_title = _cdist(iname, words, fuzz.partial_token_set_ratio, n_jobs) / 100.0
    F["name_in_title"] = np.where(has_i & (words != ""), in_title, np.nan)
    F["payer_present"] = (payer != "").astype(np.float32)
    check_deadline("pair features: names")

    # --- memory
    memory = memory or Memory()
    mpairs, mtot = memory.lookup(tr, exclude=exclude)
    name_key = inv["name_key"].to_numpy()[i]
    acc_n, pay_n = np.zeros(n), np.zeros(n)
    ra, rb = eq_join([t, name_key], [mpairs["t"], mpairs["name_key"]])
    acc_n[ra] = mpairs["acc_n"][rb]
    pay_n[ra] = mpairs["pay_n"][rb]
    acc_total = mtot["acc_total"][t]
    pay_total = mtot["pay_total"][t]
    known_key = name_key != ""
    F["mem_acc_n"] = np.where(known_key, acc_n, np.nan)
    F["mem_acc_share"] = np.where(known_key & (acc_total > 0), acc_n / np.maximum(acc_total, 1), np.nan)
    F["mem_acc_total"] = acc_total
    F["mem_pay_n"] = np.where(known_key, pay_n, np.nan)
    F["mem_pay_share"] = np.where(known_key & (pay_total > 0), pay_n / np.maximum(pay_total, 1), np.nan)
    F["mem_pay_total"] = pay_total
    wr = memory.word_rates(tr, exclude=exclude)
    F["word_rate_min"] = wr["word_rate_min"].to_numpy()[t]
    F["word_rate_mean"] = wr["word_rate_mean"].to_numpy()[t]

    # --- amounts
    ta, ia = tr["amount"].to_numpy()[t], inv["amount"].to_numpy()[i]
    F["amt_transfer_log"] = np.sign(ta) * np.log1p(np.abs(ta))
    F["amt_invoice_log"] = np.sign(ia) * np.log1p(np.abs(ia))
    F["amt_eq"] = (np.abs(ta - ia) < CENT).astype(np.float32)
    F["amt_ratio"] = np.where(ia != 0, ta / np.where(ia != 0, ia, 1), np.nan)
    F["amt_absdiff"] = np.abs(ta - ia)
    F["amt_reldiff"] = np.abs(ta - ia) / np.maximum(np.abs(ia), 0.01)
    same_sign = np.sign(ta) == np.sign(ia)
    gap = (np.abs(ia) - np.abs(ta)) / np.maximum(np.abs(ia), 0.01)
    F["amt_fee"] = (same_sign & (gap > 0) & (gap <= FEE_TOLERANCE + 1e-9) & ~(F["amt_eq"] > 0)).astype(np.float32)
    F["amt_sign_agree"] = same_sign.astype(np.float32)
    F["amt_partial"] = (same_sign & (gap > FEE_TOLERANCE)).astype(np.float32)
    F["amt_over"] = (same_sign & (gap < 0) & (np.abs(ta - ia) >= CENT)).astype(np.float32)
    F["amt_in_title"] = amount_in_title(t, ia, tr["title_amounts"].to_numpy())
    F["currency_eq"] = (tr["currency"].to_numpy()[t] == inv["currency"].to_numpy()[i]).astype(np.float32)

    # --- dates
    booked = tr["booked_at"].to_numpy()[t]
    F["days_since_issue"] = (booked - inv["issued_at"].to_numpy()[i]).astype("timedelta64[D]").astype(np.float32)
    F["days_to_due"] = (inv["due_at"].to_numpy()[i] - booked).astype("timedelta64[D]").astype(np.float32)
    # the month the title mentions vs the invoice's issue month, in [-6, 5] months (0: the same month)
    issued_m = inv["issued_at"].to_numpy()[i].astype("datetime64[M]").astype(np.int64) % 12 + 1
    F["title_month_diff"] = (issued_m - tr["title_month"].to_numpy()[t] + 6) % 12 - 6

    # --- already paid: a duplicate payment, or the remainder of a partial payment
    paid, npaid = memory.paid_before(inv, {"t": t, "i": i}, tr)
    F["inv_paid_frac"] = paid / np.where(ia != 0, ia, 1.0)
    F["inv_paid_n"] = npaid
    F["amt_eq_remaining"] = (
        (npaid > 0) & (np.abs(ta - (ia - paid)) <= FEE_TOLERANCE * np.abs(ia - paid) + CENT)
    ).astype(np.float32)

    # --- completing the amount: the invoices the title names exactly, plus this one (or this one and another)
    named = (nan(F["ref_digits_exact"]) > 0) | (nan(F["ref_exact"]) > 0)
    named_sum = np.bincount(t, weights=np.where(named, ia, 0.0))[t]
    any_named = np.bincount(t, weights=named.astype(np.float64))[t] > 0
    ones = np.ones(n)
    F["named_sum_fits"] = np.where(any_named, amount_fits(ta, named_sum, ones * 2), np.nan).astype(np.float32)
    rest = ta - named_sum
    F["completes_named"] = (~named & (np.abs(rest) >= 0.01) & amount_fits(ta, named_sum + ia, ones * 2)).astype(
        np.float32
    )
    all_named = any_named & ~named & (np.abs(rest) >= 0.01) & (np.abs(rest - ia) <= CENT)
    one_named = np.zeros(n, bool)
    one_named[anchor_completions(t, ia, tr["amount"].to_numpy(), named)[1]] = True
    F["completes_named_exact"] = (all_named | one_named).astype(np.float32)
    F["completes_pair"] = pair_completion(t, ia, rest, ~named & (np.abs(rest) >= 0.01))
    # among candidates of equal amount, the older invoice is usually the one paid first
    F["same_amount_age_rank"] = rank_min_desc(t, np.where(F["amt_eq"] > 0, F["days_since_issue"], np.nan))

    # --- exact sets among one contractor's candidates (multi-invoice payments without numbers)
    group = np.where(name_key != "", pd.factorize(name_key)[0], -1)
    check_deadline("pair features: memory and amounts")
    F.update(group_set_features(t, group, ia, ta))
    check_deadline("pair features: contractor sets")

    # --- ambiguity, and subsets among the transfer's most plausible candidates
    heur = heuristic_score(F)
    F["n_cands"] = np.bincount(t)[t].astype(np.float32)
    F["heur_rank"] = rank_within(t, heur)
    F["heur_margin"] = _margin(t, heur)
    F["n_same_amount"] = np.bincount(t, weights=F["amt_eq"].astype(np.float64))[t]
    F.update(subset_sums(t, heur, tr["amount"].to_numpy(), ia))
    back = np.empty(n, np.int64)
    back[order] = np.arange(n)
    matrix = (
        np.column_stack([np.asarray(F[c], np.float32) for c in FEATURE_NAMES])
        if n
        else np.zeros((0, len(FEATURE_NAMES)), np.float32)
    )
    return pd.DataFrame(matrix[back], columns=FEATURE_NAMES)


def heuristic_score(F) -> np.ndarray:
    """A cheap hand-weighted plausibility, only to rank a transfer's candidates for rank/subset features.
    ``F``: feature name -> array (a dict or a DataFrame)."""
    g = lambda c: np.asarray(F[c])  # noqa: E731 (in each column's own dtype: float32 sums rank as before)
    z = lambda c: np.nan_to_num(g(c), nan=0.0)  # noqa: E731
    name = np.fmax(z("name_tset"), z("name_in_title"))
    mem = np.fmax(z("mem_acc_share"), z("mem_pay_share"))
    ref = z("ref_lev") + z("ref_contains")
    days = g("days_since_issue")
    done = np.fmax(g("completes_named"), g("completes_pair")) + g("completes_named_exact")
    return (
        3 * ref
        + 2 * g("amt_eq")
        + g("amt_fee")
        + 1.5 * name
        + 1.5 * mem
        + 2 * done
        + 2 * g("grp_set")
        + 0.5 * g("amt_sign_agree")
        - 0.002 * np.abs(days)
    )


def best_pair_view(pairs: pd.DataFrame, X: pd.DataFrame, score: np.ndarray, transfer_ids: np.ndarray) -> pd.DataFrame:
    """The drift view of the pair features: one row per transfer with candidates, the features (VIEW_FEATURES) of
    its best candidate by ``score`` (the family's own ranking), indexed by transfer id.

    Why one row per transfer, the best candidate's: a transfer has 1 to 100 candidates (more when it carries no
    number), so pair rows would weigh transfers by their candidate count and mix a change in blocking with a
    change in the data; the best candidate is the pair the model acts on, and one row per transfer makes months
    of different sizes comparable. Memory features are left out (see MEMORY_FEATURES), missing evidence is
    VIEW_MISSING."""
    if len(pairs) == 0:
        return pd.DataFrame({c: np.zeros(0, np.float32) for c in VIEW_FEATURES}, index=pd.Index([], name="transfer_id"))
    t = pairs["t"].to_numpy()
    best = first_max_per_group(t, np.asarray(score, np.float64))
    view = X[VIEW_FEATURES].iloc[best].fillna(VIEW_MISSING)
    view.index = pd.Index(np.asarray(transfer_ids)[t[best]], name="transfer_id")
    return view
