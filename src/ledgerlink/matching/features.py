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

FEE_TOLERANCE = 0.02  # fees/discounts: a transfer may be up to 2% below the invoice (set) amount
CENT = 0.005
SUBSET_K = 8  # subsets are searched among the top-k candidates of a transfer

FEATURE_NAMES = [
    # reference numbers
    "ref_exact", "ref_digits_exact", "ref_contains", "ref_lev", "ref_partial", "ref_groups", "ref_suffix",
    "ref_suffix_frac", "ref_margin", "n_title_refs", "inv_has_ref", "n_exact_refs_in_transfer",
    # names
    "name_tset", "name_partial", "name_in_title", "payer_present",
    # memory (payer account / payer name -> contractor, learnt from training links)
    "mem_acc_n", "mem_acc_share", "mem_acc_total", "mem_pay_n", "mem_pay_share", "mem_pay_total",
    # amounts
    "amt_transfer_log", "amt_invoice_log", "amt_eq", "amt_ratio", "amt_absdiff", "amt_reldiff", "amt_fee",
    "amt_sign_agree", "amt_partial", "amt_over", "currency_eq", "subset_exact", "subset_fee", "subset_size",
    "n_same_amount",
    # dates
    "days_since_issue", "days_to_due",
    # ambiguity
    "n_cands", "heur_rank", "heur_margin",
]


# --------------------------------------------------------------------------------------------------------------
# Memory


@dataclass
class Memory:
    """Which contractors (invoice ``name_key``) each payer account / payer name has paid in the training links.

    Counts are distinct training transfers. ``lookup(..., exclude=links)`` leaves each transfer's own links out
    (leave-one-out), so training pairs do not see their own label through memory.
    """

    account: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=["key", "name_key", "n"]))
    payer: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=["key", "name_key", "n"]))

    @staticmethod
    def own_links(inv: pd.DataFrame, tr: pd.DataFrame, links_ti: pd.DataFrame) -> pd.DataFrame:
        """Distinct (t, name_key) of each transfer's true links; ``links_ti`` has positions t, i."""
        own = pd.DataFrame({"t": links_ti["t"].to_numpy(), "name_key": inv["name_key"].to_numpy()[links_ti["i"].to_numpy()]})
        return own[own["name_key"] != ""].drop_duplicates()

    @classmethod
    def learn(cls, inv: pd.DataFrame, tr: pd.DataFrame, links_ti: pd.DataFrame) -> "Memory":
        own = cls.own_links(inv, tr, links_ti)
        tables = {}
        for side, col in (("account", "account"), ("payer", "payer")):
            k = own.assign(key=tr[col].to_numpy()[own["t"].to_numpy()])
            k = k[k["key"] != ""]
            tables[side] = k.groupby(["key", "name_key"], as_index=False).size().rename(columns={"size": "n"})
        return cls(**tables)

    def lookup(self, tr: pd.DataFrame, exclude: pd.DataFrame | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
        """(pairs, totals): pairs = t, name_key, acc_n, pay_n; totals = t, acc_total, pay_total (all transfers)."""
        per, totals = [], pd.DataFrame({"t": np.arange(len(tr))})
        for side, col in (("acc", "account"), ("pay", "payer")):
            table = self.account if side == "acc" else self.payer
            keys = pd.DataFrame({"t": np.arange(len(tr)), "key": tr[col].to_numpy()})
            m = keys.merge(table, on="key")[["t", "name_key", "n"]]
            if exclude is not None and len(m):
                m = m.merge(exclude.assign(_own=1), on=["t", "name_key"], how="left")
                m["n"] = m["n"] - m.pop("_own").fillna(0)
                m = m[m["n"] > 0]
            tot = m.groupby("t")["n"].sum()
            totals[f"{side}_total"] = tot.reindex(totals["t"]).fillna(0).to_numpy()
            per.append(m.rename(columns={"n": f"{side}_n"}))
        pairs = per[0].merge(per[1], on=["t", "name_key"], how="outer").fillna({"acc_n": 0, "pay_n": 0})
        return pairs, totals

    def to_dict(self) -> dict:
        return {side: getattr(self, side)[["key", "name_key", "n"]].values.tolist() for side in ("account", "payer")}

    @classmethod
    def from_dict(cls, raw: dict) -> "Memory":
        mk = lambda rows: pd.DataFrame(rows, columns=["key", "name_key", "n"]).astype({"n": "int64"})
        return cls(account=mk(raw.get("account", [])), payer=mk(raw.get("payer", [])))


# --------------------------------------------------------------------------------------------------------------
# helpers


def _cdist(a, b, scorer, workers: int) -> np.ndarray:
    """Element-wise string similarity of two equal-length sequences, vectorised in rapidfuzz's C++."""
    if len(a) == 0:
        return np.zeros(0, dtype=np.float32)
    return process.cpdist(list(a), list(b), scorer=scorer, workers=workers, dtype=np.float32)


def common_suffix_len(a: np.ndarray, b: np.ndarray, width: int = 16) -> np.ndarray:
    """Length of the common suffix of two string arrays, in numpy (the sequence part of an invoice number)."""
    if len(a) == 0:
        return np.zeros(0, dtype=np.int64)
    ra = np.array([s[::-1][:width].ljust(width, "\0") for s in a], dtype=f"U{width}").view(np.uint32).reshape(-1, width)
    rb = np.array([s[::-1][:width].ljust(width, "\x01") for s in b], dtype=f"U{width}").view(np.uint32).reshape(-1, width)
    return np.cumprod(ra == rb, axis=1).sum(axis=1)


def _margin(df: pd.DataFrame, col: str) -> np.ndarray:
    """Value minus the best value among the transfer's other candidates (>0: clearly the best)."""
    s = df[["t", col]].copy()
    s["_r"] = s.groupby("t")[col].rank(method="first", ascending=False)
    top = s[s["_r"] == 1].set_index("t")[col]
    sec = s[s["_r"] == 2].set_index("t")[col]
    t = s["t"]
    best_other = np.where(s["_r"].to_numpy() == 1, sec.reindex(t).to_numpy(), top.reindex(t).to_numpy())
    best_other = np.nan_to_num(best_other, nan=0.0)
    return df[col].to_numpy() - best_other


def subset_sums(pairs: pd.DataFrame, score: np.ndarray, t_amount: np.ndarray, i_amount: np.ndarray,
                k: int = SUBSET_K) -> pd.DataFrame:
    """For each pair: is it in a subset (size>=2) of its transfer's top-k candidates (by ``score``) whose
    invoice amounts sum to the transfer amount exactly / within the fee tolerance; and the smallest such size.

    All transfers at once: an (n_transfers x 2^k) matrix of subset sums, no Python loop over transfers.
    """
    n = len(pairs)
    out = pd.DataFrame({"subset_exact": np.zeros(n, np.float32), "subset_fee": np.zeros(n, np.float32),
                        "subset_size": np.full(n, np.nan, np.float32)})
    if n == 0:
        return out
    slots, tpos, order = top_k_slots(pairs["t"].to_numpy(), score, k)
    n_t = len(tpos)
    amounts = np.zeros((n_t, k))
    amounts[slots[:, 0], slots[:, 1]] = i_amount[order]
    present = np.zeros((n_t, k), bool)
    present[slots[:, 0], slots[:, 1]] = True
    masks = subset_masks(k)
    sizes = masks.sum(1)
    multi = sizes >= 2
    sums = amounts @ masks.T  # n_t x 2^k
    valid = (present.astype(np.int64) @ masks.T == sizes) & multi  # only subsets of present candidates
    target = t_amount[tpos][:, None]
    exact = valid & (np.abs(sums - target) <= CENT * sizes + 1e-9)
    fee = valid & amount_fits(target, sums, sizes)
    size_exact = np.where(fee, sizes[None, :], 99)
    # pair j (slot s) is in a matching subset if any matching subset contains s
    in_exact = (exact.astype(np.int64) @ masks) > 0  # n_t x k
    in_fee = (fee.astype(np.int64) @ masks) > 0
    best_size = np.where(masks[None, :, :] & fee[:, :, None], size_exact[:, :, None], 99).min(axis=1)
    r, s = slots[:, 0], slots[:, 1]
    out.loc[order, "subset_exact"] = in_exact[r, s].astype(np.float32)
    out.loc[order, "subset_fee"] = in_fee[r, s].astype(np.float32)
    bs = best_size[r, s].astype(np.float32)
    out.loc[order, "subset_size"] = np.where(bs < 99, bs, np.nan)
    return out


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
        _MASKS[k] = ((np.arange(2 ** k)[:, None] >> np.arange(k)[None, :]) & 1).astype(bool)
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


# --------------------------------------------------------------------------------------------------------------
# the feature function


def pair_features(pairs: pd.DataFrame, inv: pd.DataFrame, inv_chunks: pd.DataFrame, tr: pd.DataFrame,
                  tr_chunks: pd.DataFrame, memory: Memory | None = None, exclude: pd.DataFrame | None = None,
                  n_jobs: int = 1) -> pd.DataFrame:
    """Feature matrix (columns FEATURE_NAMES, float32) for ``pairs`` (columns t, i), row for row.

    ``inv``/``tr`` and the chunk frames come from normalize.prepare_*; ``exclude`` = (t, name_key) of the
    training transfers' own links, for leave-one-out memory in fit.
    """
    pairs = pairs[["t", "i"]].reset_index(drop=True)
    t, i = pairs["t"].to_numpy(), pairs["i"].to_numpy()
    n = len(pairs)
    F = pd.DataFrame(index=pd.RangeIndex(n))
    F["t"] = t

    # --- reference numbers: every (invoice chunk, title chunk) of the pair, best over them
    ref = pairs.reset_index().rename(columns={"index": "p"})
    ref = ref.merge(inv_chunks[["i", "alnum", "digits", "groups"]], on="i").merge(
        tr_chunks[["t", "alnum", "digits", "groups"]], on="t", suffixes=("_i", "_t"))
    if len(ref):
        di, dt = ref["digits_i"].to_numpy(), ref["digits_t"].to_numpy()
        ref["ref_exact"] = ref["alnum_i"].to_numpy() == ref["alnum_t"].to_numpy()
        ref["ref_digits_exact"] = di == dt
        # the whole number inside the title chunk, or a truncated number (title chunk is its prefix, >= 4 digits)
        ref["ref_contains"] = [a in b or (len(b) >= 4 and a.startswith(b)) for a, b in zip(di, dt)]
        ref["ref_lev"] = _cdist(di, dt, Levenshtein.normalized_similarity, n_jobs)
        ref["ref_partial"] = _cdist(di, dt, fuzz.partial_ratio, n_jobs) / 100.0
        ref["ref_groups"] = _cdist(ref["groups_i"], ref["groups_t"], fuzz.token_set_ratio, n_jobs) / 100.0
        suf = common_suffix_len(di, dt)
        ref["ref_suffix"] = suf
        ref["ref_suffix_frac"] = suf / np.maximum(ref["digits_i"].str.len().to_numpy(), 1)
        cols = ["ref_exact", "ref_digits_exact", "ref_contains", "ref_lev", "ref_partial", "ref_groups",
                "ref_suffix", "ref_suffix_frac"]
        best = ref.groupby("p")[cols].max()
        for c in cols:
            F[c] = best[c].reindex(F.index).astype(np.float32).to_numpy()
    else:
        for c in ["ref_exact", "ref_digits_exact", "ref_contains", "ref_lev", "ref_partial", "ref_groups",
                  "ref_suffix", "ref_suffix_frac"]:
            F[c] = np.nan
    n_title = tr_chunks.groupby("t").size()
    F["n_title_refs"] = n_title.reindex(t).fillna(0).to_numpy()
    F["inv_has_ref"] = np.isin(i, inv_chunks["i"].to_numpy()).astype(np.float32)
    F["ref_margin"] = _margin(F.assign(_x=F["ref_lev"].fillna(0)), "_x")
    F["n_exact_refs_in_transfer"] = (F["ref_digits_exact"].fillna(0) > 0).groupby(F["t"]).transform("sum")

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

    # --- memory
    memory = memory or Memory()
    mpairs, mtot = memory.lookup(tr, exclude=exclude)
    key = pd.DataFrame({"t": t, "name_key": inv["name_key"].to_numpy()[i]})
    mk = key.merge(mpairs, on=["t", "name_key"], how="left")
    acc_total = mtot["acc_total"].to_numpy()[t]
    pay_total = mtot["pay_total"].to_numpy()[t]
    known_key = key["name_key"].to_numpy() != ""
    acc_n, pay_n = mk["acc_n"].fillna(0).to_numpy(), mk["pay_n"].fillna(0).to_numpy()
    F["mem_acc_n"] = np.where(known_key, acc_n, np.nan)
    F["mem_acc_share"] = np.where(known_key & (acc_total > 0), acc_n / np.maximum(acc_total, 1), np.nan)
    F["mem_acc_total"] = acc_total
    F["mem_pay_n"] = np.where(known_key, pay_n, np.nan)
    F["mem_pay_share"] = np.where(known_key & (pay_total > 0), pay_n / np.maximum(pay_total, 1), np.nan)
    F["mem_pay_total"] = pay_total

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
    F["amt_fee"] = (same_sign & (gap > 0) & (gap <= FEE_TOLERANCE + 1e-9) & ~(F["amt_eq"].to_numpy() > 0)).astype(np.float32)
    F["amt_sign_agree"] = same_sign.astype(np.float32)
    F["amt_partial"] = (same_sign & (gap > FEE_TOLERANCE)).astype(np.float32)
    F["amt_over"] = (same_sign & (gap < 0) & (np.abs(ta - ia) >= CENT)).astype(np.float32)
    F["currency_eq"] = (tr["currency"].to_numpy()[t] == inv["currency"].to_numpy()[i]).astype(np.float32)

    # --- dates
    booked = tr["booked_at"].to_numpy()[t]
    F["days_since_issue"] = (booked - inv["issued_at"].to_numpy()[i]).astype("timedelta64[D]").astype(np.float32)
    F["days_to_due"] = (inv["due_at"].to_numpy()[i] - booked).astype("timedelta64[D]").astype(np.float32)

    # --- ambiguity, and subsets among the transfer's most plausible candidates
    heur = heuristic_score(F)
    F["n_cands"] = F.groupby("t")["t"].transform("size").astype(np.float32)
    F["heur_rank"] = pd.Series(heur).groupby(t).rank(method="first", ascending=False).to_numpy()
    F["heur_margin"] = _margin(F.assign(_x=heur), "_x")
    F["n_same_amount"] = F.groupby("t")["amt_eq"].transform("sum")
    sub = subset_sums(pairs, heur, tr["amount"].to_numpy(), ia)
    for c in sub.columns:
        F[c] = sub[c].to_numpy()
    return F[FEATURE_NAMES].astype(np.float32)


def heuristic_score(F: pd.DataFrame) -> np.ndarray:
    """A cheap hand-weighted plausibility, only to rank a transfer's candidates for rank/subset features."""
    name = np.fmax(F["name_tset"].fillna(0).to_numpy(), F["name_in_title"].fillna(0).to_numpy())
    mem = np.fmax(F["mem_acc_share"].fillna(0).to_numpy(), F["mem_pay_share"].fillna(0).to_numpy())
    ref = F["ref_lev"].fillna(0).to_numpy() + F["ref_contains"].fillna(0).to_numpy()
    days = F["days_since_issue"].to_numpy()
    return (3 * ref + 2 * F["amt_eq"].to_numpy() + F["amt_fee"].to_numpy() + 1.5 * name + 1.5 * mem
            + 0.5 * F["amt_sign_agree"].to_numpy() - 0.002 * np.abs(days))
