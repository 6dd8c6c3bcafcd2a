"""Pair features: one function, ``pair_features``, used by fit, match and serving (no train/serve skew).

Input is a frame of candidate pairs (positions ``t`` into the prepared transfers, ``i`` into the prepared
invoices). Features that look across a transfer's candidates (ambiguity, subset sums, rank) are computed
within the given pair set, so scoring the same pairs gives the same features wherever it runs.
Missing evidence is NaN (xgboost learns a direction for it), not a made-up zero.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from rapidfuzz import fuzz, process
from rapidfuzz.distance import Levenshtein

from .arrays import csr, eq_join, expand, rank_min_desc, run_starts, segment_reduce
from .runtime import check_deadline

FEE_TOLERANCE = 0.02  # fees/discounts: a transfer may be up to 2% below the invoice (set) amount
CENT = 0.005
SUBSET_K = 8  # subsets are searched among the top-k candidates of a transfer
PARALLEL_MIN_ROWS = 20000  # string comparisons run on n_jobs threads from this many pairs up

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


# --------------------------------------------------------------------------------------------------------------
# Memory


@dataclass
class Exclusion:
    """What leave-one-out takes out of memory for the training transfers: their own links and title words."""

    own: pd.DataFrame  # t, name_key of each training transfer's true links
    counted: np.ndarray  # bool per transfer: its title words were counted in memory
    linked: np.ndarray  # bool per transfer: it pays something
    own_alloc: pd.DataFrame  # t, i, a: each training transfer's own allocations


def _title_words(tr: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Distinct title words (>= 3 letters) per transfer, in order: (t, word) arrays sorted by t."""
    ts, ws = [], []
    for t, text in enumerate(tr["title_words"].tolist()):
        seen = set()
        for w in text.split():
            if len(w) >= 3 and w not in seen:
                seen.add(w)
                ts.append(t)
                ws.append(w)
    return np.asarray(ts, np.int64), np.asarray(ws, dtype=object)


def _table(columns: list[str], rows=()) -> pd.DataFrame:
    """A memory table with fixed dtypes (text keys, float counts), also when empty."""
    df = rows[columns] if isinstance(rows, pd.DataFrame) else pd.DataFrame(list(rows), columns=columns)
    return df.reset_index(drop=True).astype(
        {c: (object if c in ("key", "name_key", "word", "invoice_id") else np.float64) for c in columns}
    )


PAID_COLUMNS = ["invoice_id", "day", "paid", "n"]


def _day(dates: np.ndarray) -> np.ndarray:
    return np.asarray(dates).astype("datetime64[D]").astype(np.int64)


@dataclass
class Memory:
    """What the training links teach beyond one pair: which contractors (invoice ``name_key``) each payer
    account / payer name has paid, how often a title word ("refund", "odsetki", "Gehalt") comes with a
    payment at all, and how much of each invoice was paid by which day (duplicates, remainders of partial
    payments). Counts are distinct training transfers. ``lookup(..., exclude=...)`` leaves each training
    transfer's own contribution out, so training pairs do not see their own label through memory.
    ``paid_before`` counts only payments booked strictly before the transfer being matched: a transfer never
    sees its own payment, nor a later one (in fit and on a frozen test set older than some training months).
    """

    account: pd.DataFrame = field(default_factory=lambda: _table(["key", "name_key", "n"]))
    payer: pd.DataFrame = field(default_factory=lambda: _table(["key", "name_key", "n"]))
    words: pd.DataFrame = field(default_factory=lambda: _table(["word", "n", "n_linked"]))
    paid: pd.DataFrame = field(default_factory=lambda: _table(PAID_COLUMNS))
    link_rate: float = 0.9
    _index: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    @staticmethod
    def own_links(inv: pd.DataFrame, tr: pd.DataFrame, links_ti: pd.DataFrame) -> pd.DataFrame:
        """Distinct (t, name_key) of each transfer's true links; ``links_ti`` has positions t, i."""
        own = pd.DataFrame(
            {"t": links_ti["t"].to_numpy(), "name_key": inv["name_key"].to_numpy()[links_ti["i"].to_numpy()]}
        )
        return own[own["name_key"] != ""].drop_duplicates()

    @classmethod
    def exclusion(cls, inv, tr, links_ti, counted: np.ndarray | None = None) -> Exclusion:
        counted = np.ones(len(tr), bool) if counted is None else counted
        linked = np.zeros(len(tr), bool)
        linked[links_ti["t"].to_numpy()] = True
        own = cls.own_links(inv, tr, links_ti)
        alloc = links_ti[counted[links_ti["t"].to_numpy()]]
        alloc = alloc.assign(a=alloc["a"] if "a" in alloc else inv["amount"].to_numpy()[alloc["i"].to_numpy()])
        return Exclusion(
            own=own[counted[own["t"].to_numpy()]],
            counted=counted,
            linked=linked,
            own_alloc=alloc[["t", "i", "a"]].reset_index(drop=True),
        )

    @classmethod
    def learn(
        cls, inv: pd.DataFrame, tr: pd.DataFrame, links_ti: pd.DataFrame, counted: np.ndarray | None = None
    ) -> "Memory":
        """Learn from the transfers in ``counted`` (default all) and their links."""
        ex = cls.exclusion(inv, tr, links_ti, counted)
        tables = {}
        for side, col in (("account", "account"), ("payer", "payer")):
            k = ex.own.assign(key=tr[col].to_numpy()[ex.own["t"].to_numpy()])
            k = k[k["key"] != ""]
            tables[side] = _table(
                ["key", "name_key", "n"],
                k.groupby(["key", "name_key"], as_index=False).size().rename(columns={"size": "n"}),
            )
        wt, ww = _title_words(tr)
        w = pd.DataFrame({"t": wt, "word": ww})
        w = w[ex.counted[w["t"].to_numpy()]].assign(linked=lambda d: ex.linked[d["t"].to_numpy()].astype(np.int64))
        words = _table(
            ["word", "n", "n_linked"],
            w.groupby("word", as_index=False).agg(n=("t", "size"), n_linked=("linked", "sum")),
        )
        rate = float(ex.linked[ex.counted].mean()) if ex.counted.any() else 0.9
        pa = ex.own_alloc.assign(
            invoice_id=inv["invoice_id"].to_numpy()[ex.own_alloc["i"].to_numpy()],
            day=_day(tr["booked_at"].to_numpy()[ex.own_alloc["t"].to_numpy()]),
        )
        paid = pa.groupby(["invoice_id", "day"], as_index=False).agg(paid=("a", "sum"), n=("t", "size"))
        return cls(**tables, words=words, paid=_table(PAID_COLUMNS, paid), link_rate=rate)

    def _cached(self, name: str, build):
        """Lookup structures built once per Memory (it is not changed after learn/from_dict): serving calls
        reuse them instead of re-sorting the training tables on every request."""
        if name not in self._index:
            self._index[name] = build()
        return self._index[name]

    def _paid_index(self):
        tab = self.paid
        codes = pd.Index(tab["invoice_id"].unique())
        tab = tab.assign(code=codes.get_indexer(tab["invoice_id"])).sort_values(["code", "day"])
        code, day = tab["code"].to_numpy(np.int64), tab["day"].to_numpy().astype(np.int64)
        return {
            "codes": codes,
            "code": code,
            "day": day,
            "key": code * (1 << 24) + day,
            "cum_paid": tab.groupby("code")["paid"].cumsum().to_numpy(np.float64),
            "cum_n": tab.groupby("code")["n"].cumsum().to_numpy(np.float64),
        }

    def paid_before(self, inv: pd.DataFrame, pairs: pd.DataFrame, tr: pd.DataFrame):
        """(amount, number of transfers) allocated to each pair's invoice by training transfers booked strictly
        before the pair's transfer (so never by the transfer itself)."""
        n_pairs = len(pairs)
        if len(self.paid) == 0 or n_pairs == 0:
            return np.zeros(n_pairs), np.zeros(n_pairs)
        ix = self._cached("paid", self._paid_index)
        code = ix["codes"].get_indexer(inv["invoice_id"].to_numpy()[pairs["i"].to_numpy()])
        day = _day(tr["booked_at"].to_numpy()[pairs["t"].to_numpy()])
        pos = np.searchsorted(ix["key"], code.astype(np.int64) * (1 << 24) + day, side="left") - 1
        ok = (code >= 0) & (pos >= 0)
        ok[ok] &= ix["code"][pos[ok]] == code[ok]
        return np.where(ok, ix["cum_paid"][np.maximum(pos, 0)], 0.0), np.where(ok, ix["cum_n"][np.maximum(pos, 0)], 0.0)

    def settled_by(self, inv: pd.DataFrame) -> np.ndarray:
        """Per invoice: the first day from which training payments booked before it settle it (int day; a huge
        number when never). An invoice settled before every transfer being matched is not a candidate at all."""
        out = np.full(len(inv), np.iinfo(np.int64).max // 4, np.int64)
        if len(self.paid) == 0 or len(inv) == 0:
            return out
        ix = self._cached("paid", self._paid_index)
        code = ix["codes"].get_indexer(inv["invoice_id"].to_numpy())
        found = np.flatnonzero(code >= 0)
        lo = np.searchsorted(ix["code"], code[found], side="left")
        cnt = np.searchsorted(ix["code"], code[found], side="right") - lo
        rows = expand(lo, cnt)
        owner = np.repeat(found, cnt)
        done = is_settled(inv["amount"].to_numpy()[owner], ix["cum_paid"][rows])
        first = np.full(len(inv), np.iinfo(np.int64).max, np.int64)
        np.minimum.at(first, owner[done], ix["day"][rows[done]] + 1)  # settled for transfers booked after that day
        return np.where(first < np.iinfo(np.int64).max, first, out)

    def _key_index(self, side: str):
        table = self.account if side == "acc" else self.payer
        keys = pd.Index(table["key"].unique())
        code = keys.get_indexer(table["key"])
        order, off = csr(code, len(keys))
        return {
            "keys": keys,
            "order": order,
            "off": off,
            "name_key": table["name_key"].to_numpy(),
            "n": table["n"].to_numpy(np.float64),
        }

    def lookup(self, tr: pd.DataFrame, exclude: Exclusion | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
        """(pairs, totals): pairs = t, name_key, acc_n, pay_n (sorted by t, name_key); totals = t, acc_total,
        pay_total (all transfers)."""
        n_t = len(tr)
        totals = {"t": np.arange(n_t)}
        per = []
        for side, col in (("acc", "account"), ("pay", "payer")):
            ix = self._cached(side, lambda s=side: self._key_index(s))
            key = tr[col].to_numpy()
            code = ix["keys"].get_indexer(key)
            code[key == ""] = -1
            t = np.flatnonzero(code >= 0)
            lo, hi = ix["off"][code[t]], ix["off"][code[t] + 1]
            rows = ix["order"][expand(lo, hi - lo)]
            t = np.repeat(t, hi - lo)
            nk, n = ix["name_key"][rows], ix["n"][rows]
            if exclude is not None and len(t):
                own_t, _ = eq_join([t, nk], [exclude.own["t"].to_numpy(), exclude.own["name_key"].to_numpy()])
                n = n - np.bincount(own_t, minlength=len(t))
                keep = n > 0
                t, nk, n = t[keep], nk[keep], n[keep]
            totals[f"{side}_total"] = np.bincount(t, weights=n, minlength=n_t).astype(np.float64)
            per.append((t, nk, n))
        # the outer join of both sides, sorted by (t, name_key) as pandas' outer merge sorts
        t = np.r_[per[0][0], per[1][0]].astype(np.int64)
        nk = np.concatenate([per[0][1], per[1][1]]).astype(object)
        if len(t):
            code, uniq = pd.factorize(nk)  # hashing, then only the distinct names are sorted
            uniq = np.asarray(uniq, dtype=object)
            by_name = np.argsort(uniq.astype(str), kind="stable")
            rank = np.empty(len(uniq), np.int64)
            rank[by_name] = np.arange(len(uniq))
            uniq, code = uniq[by_name], rank[code]
            keys, where = np.unique(t * (len(uniq) + 1) + code, return_inverse=True)
            where = where.reshape(-1)
            acc, pay = np.zeros(len(keys)), np.zeros(len(keys))
            acc[where[: len(per[0][0])]] = per[0][2]
            pay[where[len(per[0][0]) :]] = per[1][2]
            pt, pk = keys // (len(uniq) + 1), uniq[keys % (len(uniq) + 1)]
        else:
            pt, pk, acc, pay = np.zeros(0, np.int64), np.zeros(0, object), np.zeros(0), np.zeros(0)
        pairs = pd.DataFrame({"t": pt.astype(np.int64), "name_key": pk.astype(object), "acc_n": acc, "pay_n": pay})
        return pairs, pd.DataFrame(totals)

    def _word_index(self):
        return {
            "words": pd.Index(self.words["word"]),
            "n": self.words["n"].to_numpy(np.float64),
            "n_linked": self.words["n_linked"].to_numpy(np.float64),
        }

    def word_rates(self, tr: pd.DataFrame, exclude: Exclusion | None = None, prior: float = 2.0) -> pd.DataFrame:
        """Per transfer: the lowest and the mean smoothed link rate of its title words (NaN without words)."""
        t, words = _title_words(tr)
        ix = self._cached("words", self._word_index)
        code = ix["words"].get_indexer(words) if len(words) else np.zeros(0, np.int64)
        known = code >= 0
        n = np.where(known, ix["n"][np.maximum(code, 0)], 0.0) if len(ix["n"]) else np.zeros(len(t))
        n_linked = np.where(known, ix["n_linked"][np.maximum(code, 0)], 0.0) if len(ix["n"]) else np.zeros(len(t))
        if exclude is not None and len(t):
            own = exclude.counted[t] & (n > 0)
            n = n - own
            n_linked = n_linked - (own & exclude.linked[t])
        rate = (n_linked + prior * self.link_rate) / (n + prior)
        off = np.searchsorted(t, np.arange(len(tr) + 1))
        cnt = np.diff(off)
        return pd.DataFrame(
            {
                "word_rate_min": segment_reduce(np.minimum, rate, off),
                "word_rate_mean": segment_reduce(np.add, rate, off) / np.where(cnt > 0, cnt, 1),
            }
        )

    def to_dict(self) -> dict:
        return {
            "account": self.account[["key", "name_key", "n"]].values.tolist(),
            "payer": self.payer[["key", "name_key", "n"]].values.tolist(),
            "words": self.words[["word", "n", "n_linked"]].values.tolist(),
            "paid": self.paid[PAID_COLUMNS].values.tolist(),
            "link_rate": self.link_rate,
        }

    @classmethod
    def from_dict(cls, raw: dict) -> "Memory":
        return cls(
            account=_table(["key", "name_key", "n"], raw.get("account", [])),
            payer=_table(["key", "name_key", "n"], raw.get("payer", [])),
            words=_table(["word", "n", "n_linked"], raw.get("words", [])),
            paid=_table(PAID_COLUMNS, raw.get("paid", [])),
            link_rate=float(raw.get("link_rate", 0.9)),
        )


# --------------------------------------------------------------------------------------------------------------
# helpers


def _cdist(a, b, scorer, workers: int) -> np.ndarray:
    """Element-wise string similarity of two equal-length sequences, vectorised in rapidfuzz's C++. Each distinct
    (a, b) is scored once: a contractor's name meets the same payer name on many of its invoices."""
    if len(a) == 0:
        return np.zeros(0, dtype=np.float32)
    workers = workers if len(a) >= PARALLEL_MIN_ROWS else 1  # a thread pool costs more than 50 comparisons
    ca, ua = pd.factorize(np.asarray(a, dtype=object))
    cb, ub = pd.factorize(np.asarray(b, dtype=object))
    key = ca.astype(np.int64) * (len(ub) + 1) + cb
    uk, inverse = np.unique(key, return_inverse=True)
    if len(uk) > 0.7 * len(key):
        return process.cpdist(list(a), list(b), scorer=scorer, workers=workers, dtype=np.float32)
    sa, sb = ua[uk // (len(ub) + 1)], ub[uk % (len(ub) + 1)]
    return process.cpdist(list(sa), list(sb), scorer=scorer, workers=workers, dtype=np.float32)[inverse.ravel()]


def common_suffix_len(a: np.ndarray, b: np.ndarray, width: int = 16) -> np.ndarray:
    """Length of the common suffix of two string arrays, in numpy (the sequence part of an invoice number)."""
    if len(a) == 0:
        return np.zeros(0, dtype=np.int64)
    ra = np.array([s[::-1][:width].ljust(width, "\0") for s in a], dtype=f"U{width}").view(np.uint32).reshape(-1, width)
    rb = (
        np.array([s[::-1][:width].ljust(width, "\x01") for s in b], dtype=f"U{width}")
        .view(np.uint32)
        .reshape(-1, width)
    )
    return np.cumprod(ra == rb, axis=1).sum(axis=1)


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


def subset_sums(
    t: np.ndarray, score: np.ndarray, t_amount: np.ndarray, i_amount: np.ndarray, k: int = SUBSET_K
) -> dict[str, np.ndarray]:
    """For each pair: is it in a subset (size>=2) of its transfer's top-k candidates (by ``score``) whose
    invoice amounts sum to the transfer amount exactly / within the fee tolerance; and the smallest such size.

    All transfers at once: an (n_transfers x 2^k) matrix of subset sums, no Python loop over transfers.
    """
    n = len(t)
    out = {
        "subset_exact": np.zeros(n, np.float32),
        "subset_fee": np.zeros(n, np.float32),
        "subset_size": np.full(n, np.nan, np.float32),
    }
    if n == 0:
        return out
    slots, tpos, order = top_k_slots(t, score, k)
    n_t = len(tpos)
    amounts = np.zeros((n_t, k))
    amounts[slots[:, 0], slots[:, 1]] = i_amount[order]
    present = np.zeros((n_t, k), bool)
    present[slots[:, 0], slots[:, 1]] = True
    masks = subset_masks(k).astype(np.float64)  # float matrices: products run in BLAS (integer ones do not)
    sizes = masks.sum(1)
    multi = sizes >= 2
    sums = amounts @ masks.T  # n_t x 2^k
    valid = (present.astype(np.float64) @ masks.T == sizes) & multi  # only subsets of present candidates
    target = t_amount[tpos][:, None]
    exact = valid & (np.abs(sums - target) <= CENT * sizes + 1e-9)
    fee = valid & amount_fits(target, sums, sizes)
    # pair j (slot s) is in a matching subset if any matching subset contains s
    in_exact = (exact.astype(np.float64) @ masks) > 0  # n_t x k
    in_fee = (fee.astype(np.float64) @ masks) > 0
    best_size = np.full((n_t, k), 99)
    for size in range(k, 1, -1):  # the smallest matching subset containing the slot: smaller sizes overwrite
        best_size[((fee & (sizes == size)).astype(np.float64) @ masks) > 0] = size
    r, s = slots[:, 0], slots[:, 1]
    out["subset_exact"][order] = in_exact[r, s]
    out["subset_fee"][order] = in_fee[r, s]
    bs = best_size[r, s].astype(np.float32)
    out["subset_size"][order] = np.where(bs < 99, bs, np.nan)
    return out


def is_settled(amount: np.ndarray, paid: np.ndarray) -> np.ndarray:
    """Payments ``paid`` cover ``amount`` (same sign, up to the fee tolerance): nothing is left to pay."""
    return (
        (paid != 0) & (np.sign(paid) == np.sign(amount)) & (np.abs(paid) >= np.abs(amount) * (1 - FEE_TOLERANCE) - 0.01)
    )


def amount_fits(target, sums, sizes):
    """A transfer pays a set when it equals the set's sum, or is at most FEE_TOLERANCE below it (fees)."""
    tol = CENT * sizes + 1e-9
    same_sign = np.sign(target) == np.sign(sums)
    gap = (np.abs(sums) - np.abs(target)) * same_sign
    return same_sign & (gap >= -tol) & (gap <= FEE_TOLERANCE * np.abs(sums) + tol)


_MASKS: dict[int, np.ndarray] = {}


def subset_masks(k: int) -> np.ndarray:
    """All 2^k subsets of k slots as a boolean (2^k x k) matrix; row 0 is the empty set."""
    if k not in _MASKS:
        _MASKS[k] = ((np.arange(2**k)[:, None] >> np.arange(k)[None, :]) & 1).astype(bool)
    return _MASKS[k]


def top_k_slots(t: np.ndarray, score: np.ndarray, k: int):
    """Rows of each transfer's top-k by score: (slots [row_of_transfer, slot], unique transfers, row indices)."""
    order = np.lexsort((-score, t))
    ts = t[order]
    start = np.r_[0, np.flatnonzero(np.diff(ts)) + 1]
    counts = np.diff(np.r_[start, len(ts)])
    rank = np.arange(len(ts)) - np.repeat(start, counts)
    keep = rank < k
    tpos = ts[start]
    row_of = np.repeat(np.arange(len(start)), counts)
    return np.c_[row_of[keep], rank[keep]], tpos, order[keep]


MAX_GROUP = 12  # exact set sums are searched among all open invoices of one contractor when it has at most this many
MAX_SET = 6  # ... over sets of 2..MAX_SET invoices
_SET_MASKS: dict[tuple[int, int], np.ndarray] = {}


def set_masks(n: int, max_size: int = MAX_SET) -> np.ndarray:
    """The subsets of n slots with 2..max_size members, as a boolean (n_sets x n) matrix."""
    if (n, max_size) not in _SET_MASKS:
        m = subset_masks(n)
        size = m.sum(1)
        _SET_MASKS[(n, max_size)] = m[(size >= 2) & (size <= max_size)]
    return _SET_MASKS[(n, max_size)]


def group_sets(
    key: np.ndarray,
    cents: np.ndarray,
    target: np.ndarray | None = None,
    max_n: int = MAX_GROUP,
    max_size: int = MAX_SET,
):
    """Sets of rows that share a key (a contractor), for keys with 2..max_n rows: every subset of 2..max_size.

    Yields, per group size n, (rows: keys x n row indices, masks: sets x n, sums: keys x sets in cents) with
    ``target`` None, or only the exact hits (rows, masks, hit_key_index, hit_set_index) when ``target`` (cents
    per row's key, given per row) is set. Cost is sum over keys of 2^n, bounded by max_n; no Python loop over keys.
    """
    key = np.asarray(key)
    ok = key >= 0
    order = np.flatnonzero(ok)[np.argsort(key[ok], kind="stable")]
    ks = key[order]
    if len(ks) == 0:
        return
    start = np.r_[0, np.flatnonzero(np.diff(ks)) + 1]
    count = np.diff(np.r_[start, len(ks)])
    for n in range(2, max_n + 1):
        st = start[count == n]
        if len(st) == 0:
            continue
        rows = order[st[:, None] + np.arange(n)[None, :]]
        masks = set_masks(n, max_size)
        sums = cents[rows].astype(np.float64) @ masks.T.astype(np.float64)  # exact: cents < 2^53
        check_deadline("subset search")
        if target is None:
            yield rows, masks, sums
        else:
            hk, hs = np.nonzero(sums == target[rows[:, 0]].astype(np.float64)[:, None])
            if len(hk):
                yield rows, masks, hk, hs


def group_set_features(t: np.ndarray, group: np.ndarray, ia: np.ndarray, ta: np.ndarray) -> pd.DataFrame:
    """Per pair: is it in a set of 2..MAX_SET candidates of the same transfer and contractor (``group``, -1: none)
    whose invoices sum exactly (to the cent) to the transfer amount; the size of the smallest such set; and how
    many such sets the transfer has (several: ambiguous). Only (transfer, contractor) pairs with <= MAX_GROUP
    candidates are searched: with more, an exact sum of 4-6 invoices is no longer evidence."""
    n = len(t)
    out = pd.DataFrame(
        {
            "grp_set": np.zeros(n, np.float32),
            "grp_set_size": np.full(n, np.nan, np.float32),
            "grp_sets_in_transfer": np.zeros(n, np.float32),
        }
    )
    if n == 0:
        return out
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
    out["grp_set"] = in_set.astype(np.float32)
    out["grp_set_size"] = np.where(size < 99, size, np.nan).astype(np.float32)
    out["grp_sets_in_transfer"] = per_t.astype(np.float32)
    return out


# --------------------------------------------------------------------------------------------------------------
# the feature function


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
    suf = common_suffix_len(di, dt)
    vals = {
        "ref_exact": inv_chunks["alnum"].to_numpy()[ci] == tr_chunks["alnum"].to_numpy()[ct],
        "ref_digits_exact": di == dt,
        # the whole number inside the title chunk, or a truncated number (title chunk is its prefix, >= 4 digits)
        "ref_contains": np.array([x in y or (len(y) >= 4 and x.startswith(y)) for x, y in zip(di, dt)], bool),
        "ref_lev": _cdist(di, dt, Levenshtein.normalized_similarity, n_jobs),
        "ref_partial": _cdist(di, dt, fuzz.partial_ratio, n_jobs) / 100.0,
        "ref_groups": _cdist(
            inv_chunks["groups"].to_numpy()[ci], tr_chunks["groups"].to_numpy()[ct], fuzz.token_set_ratio, n_jobs
        )
        / 100.0,
        "ref_suffix": suf,
        "ref_suffix_frac": suf / np.maximum(np.fromiter(map(len, di), np.int64, len(di)), 1),
    }
    has = np.flatnonzero(m > 0)
    starts = (np.cumsum(m) - m)[has]
    for c in _REF_COLS:
        v = np.asarray(vals[c])
        out[c][has] = np.maximum.reduceat(v.astype(np.float64) if v.dtype == bool else v, starts).astype(np.float32)
    return out


def pair_features(
    pairs: pd.DataFrame,
    inv: pd.DataFrame,
    inv_chunks: pd.DataFrame,
    tr: pd.DataFrame,
    tr_chunks: pd.DataFrame,
    memory: Memory | None = None,
    exclude: Exclusion | None = None,
    n_jobs: int = 1,
) -> pd.DataFrame:
    """Feature matrix (columns FEATURE_NAMES, float32) for ``pairs`` (columns t, i), row for row.

    ``inv``/``tr`` and the chunk frames come from normalize.prepare_*; ``exclude`` (Memory.exclusion) makes
    memory leave-one-out for the training transfers in fit. Numpy throughout: one request's 50 pairs cost
    milliseconds, and a month's million pairs stay vectorised.
    """
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
    tset = _cdist(iname, tname, fuzz.token_set_ratio, n_jobs) / 100.0
    part = _cdist(iname, tname, fuzz.partial_ratio, n_jobs) / 100.0
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
    ra, rb = eq_join([t, name_key], [mpairs["t"].to_numpy(), mpairs["name_key"].to_numpy()])
    acc_n[ra] = mpairs["acc_n"].to_numpy()[rb]
    pay_n[ra] = mpairs["pay_n"].to_numpy()[rb]
    acc_total = mtot["acc_total"].to_numpy()[t]
    pay_total = mtot["pay_total"].to_numpy()[t]
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
    F["currency_eq"] = (tr["currency"].to_numpy()[t] == inv["currency"].to_numpy()[i]).astype(np.float32)

    # --- dates
    booked = tr["booked_at"].to_numpy()[t]
    F["days_since_issue"] = (booked - inv["issued_at"].to_numpy()[i]).astype("timedelta64[D]").astype(np.float32)
    F["days_to_due"] = (inv["due_at"].to_numpy()[i] - booked).astype("timedelta64[D]").astype(np.float32)
    # the month the title mentions vs the invoice's issue month, in [-6, 5] months (0: the same month)
    issued_m = inv["issued_at"].to_numpy()[i].astype("datetime64[M]").astype(np.int64) % 12 + 1
    F["title_month_diff"] = (issued_m - tr["title_month"].to_numpy()[t] + 6) % 12 - 6

    # --- already paid: a duplicate payment, or the remainder of a partial payment
    paid, npaid = memory.paid_before(inv, pd.DataFrame({"t": t, "i": i}), tr)
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
    one_named[anchor_completions(t, ia, tr["amount"].to_numpy(), named)["c"].to_numpy()] = True
    F["completes_named_exact"] = (all_named | one_named).astype(np.float32)
    F["completes_pair"] = _pair_completion(t, ia, rest, ~named & (np.abs(rest) >= 0.01))
    # among candidates of equal amount, the older invoice is usually the one paid first
    F["same_amount_age_rank"] = rank_min_desc(t, np.where(F["amt_eq"] > 0, F["days_since_issue"], np.nan))

    # --- exact sets among one contractor's candidates (multi-invoice payments without numbers)
    group = np.where(name_key != "", pd.factorize(name_key)[0], -1)
    check_deadline("pair features: memory and amounts")
    gs = group_set_features(t, group, ia, ta)
    for c in gs.columns:
        F[c] = gs[c].to_numpy()
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


def anchor_completions(t: np.ndarray, ia: np.ndarray, ta_by_t: np.ndarray, named: np.ndarray) -> pd.DataFrame:
    """(a, c) row pairs: ``a`` is named in the title exactly, ``c`` is not, and together they are the transfer amount
    to the cent. A typo can turn one of two numbers into another real invoice's number; the amount says which
    invoice was meant. An equality join on cents, no product of candidates."""
    cents = np.round(ia * 100).astype(np.int64)
    target = np.round(ta_by_t[t] * 100).astype(np.int64)
    a, c = np.flatnonzero(named), np.flatnonzero(~named)
    ra, rc = eq_join([t[a], target[a] - cents[a]], [t[c], cents[c]])
    return pd.DataFrame({"a": a[ra], "c": c[rc]})


def _pair_completion(t: np.ndarray, ia: np.ndarray, rest: np.ndarray, open_: np.ndarray) -> np.ndarray:
    """1 where this invoice and another open candidate of the transfer sum to ``rest`` to the cent
    (an equality self-join on cents, not a product of candidates)."""
    cents, rest_c = np.round(ia * 100).astype(np.int64), np.round(rest * 100).astype(np.int64)
    idx = np.flatnonzero(open_)
    ra, rb = eq_join([t[idx], cents[idx]], [t[idx], rest_c[idx] - cents[idx]])
    ra, rb = idx[ra], idx[rb]
    out = np.zeros(len(t), np.float32)
    out[ra[ra != rb]] = 1.0
    return out


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
