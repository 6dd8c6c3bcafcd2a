"""Blocking: which invoices are worth scoring for each transfer, without an all-pairs step.

Open invoices only: an invoice that training payments booked before the transfer already settle (memory) is
no candidate; paying it again is a duplicate payment, which pays nothing. Five indexes, each a token or key
join whose cost is the sum of posting-list sizes, every list bounded:
- reference: per reference chunk, its exact digit string, its one-deletion variants (symmetric-deletion:
  a typo, transposition, missing digit or truncation on either side still shares a variant), digit runs
  (>= 3 digits, leading zeros stripped: other formats) and digit 4-grams; IDF-weighted, tokens in more than
  ``ref_max_df`` invoices dropped (years and month numbers are in every invoice), integer-coded and joined
  with numpy sorts; the MAX_REF_PER_TRANSFER best hits per transfer;
- amount: exact signed amount in cents (amounts shared by more than ``amount_max_df`` invoices skipped);
- name: words and word pairs of the invoice's counterparty name (or a description's lead), rarity counted over
  the live invoices, matched (typo-tolerant) against the payer name and title words; the MAX_NAMES best names
  per transfer, each contributing its invoices nearest the transfer amount (a searchsorted window: a contractor
  with thousands of open invoices costs a window, not thousands of pairs);
- memory: payer account / payer name -> the contractors it paid most in the training links, windowed the same;
- sets: for a transfer with no strong hit (no number, no exact amount of its payer's invoice), the invoices of
  any contractor with few open invoices that form a set summing to the transfer amount to the cent (a factor
  paying five invoices "as agreed").
Then the date window (issued before booked + 7 days, within ``lookback_days``), a cheap prescore (incl.
"completes the amount": the invoice, alone or with one other, is what the title's named invoices leave
unpaid) and a cap of ``max_candidates`` per transfer, ``max_candidates_weak`` for transfers without a strong
hit (a multi-invoice payment with no number from a busy contractor needs all of that contractor's invoices).
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from .features import FEE_TOLERANCE, Exclusion, Memory, group_sets, is_settled
from .normalize import digit_ngrams

NGRAM = 4
ISSUE_AFTER_BOOKING_DAYS = 7
MAX_NAMES = 3               # contractor names a transfer's payer/title words may point to
MAX_NAMES_PER_TOKEN = 100   # a name word shared by more contractors than this is too common to look up
MAX_REF_PER_TRANSFER = 60   # reference-number hits kept per transfer (best IDF mass first)
PER_NAME_BELOW, PER_NAME_ABOVE, PER_NAME_SMALL = 96, 48, 16  # a named contractor's invoices nearest the amount
MAX_MEMORY_NAMES = 10       # contractors a payer account/name paid before, most often paid first


def _top_per_t(df: pd.DataFrame, score: np.ndarray, k: int) -> pd.DataFrame:
    """The ``k`` rows with the highest ``score`` of each transfer ``t`` (all of them when fewer)."""
    if len(df) == 0:
        return df
    order = np.lexsort((-score, df["t"].to_numpy()))
    ts = df["t"].to_numpy()[order]
    start = np.r_[0, np.flatnonzero(np.diff(ts)) + 1]
    rank = np.arange(len(ts)) - np.repeat(start, np.diff(np.r_[start, len(ts)]))
    return df.iloc[np.sort(order[rank < k])].reset_index(drop=True)


def _deletions(digits: str, prefix2: bool) -> list[str]:
    """The digit string and its one-deletion variants (symmetric-deletion index): a typo, transposition, missing
    digit or one-digit truncation on either side leaves the two strings sharing one variant. Invoices also
    index the string cut by two digits (two-digit truncation in the title)."""
    out = {digits} | {digits[:k] + digits[k + 1:] for k in range(len(digits))} if len(digits) >= 4 else {digits}
    if prefix2 and len(digits) >= 6:
        out.add(digits[:-2])
    return sorted(out)  # sorted, not set order: string hashing is salted per process, results must not be


def _ref_tokens(chunks: pd.DataFrame, key: str, invoice_side: bool) -> pd.DataFrame:
    """(key, tok, kind): digit 4-grams (kind 0), digit runs (1), one-deletion variants (2), the exact digits (3)."""
    if chunks.empty:
        return pd.DataFrame({key: np.zeros(0, np.int64), "tok": np.zeros(0, object), "kind": np.zeros(0, np.int8)})
    grams = digit_ngrams(chunks["digits"], NGRAM)
    g = pd.DataFrame({key: chunks[key].to_numpy()[grams["pos"].to_numpy()], "tok": "n" + grams["gram"], "kind": 0})
    runs = chunks[[key, "long_groups"]].explode("long_groups").dropna()
    r = pd.DataFrame({key: runs[key].to_numpy(), "tok": "g" + runs["long_groups"].astype(str), "kind": 1})
    dels = chunks["digits"].map(lambda s: _deletions(s, invoice_side)).explode()
    d = pd.DataFrame({key: chunks[key].to_numpy()[dels.index.to_numpy()], "tok": "d" + dels.to_numpy().astype(str), "kind": 2})
    x = pd.DataFrame({key: chunks[key].to_numpy(), "tok": "x" + chunks["digits"].astype(str).to_numpy(), "kind": 3})
    out = pd.concat([g, r, d, x], ignore_index=True).drop_duplicates([key, "tok"])
    return out.astype({"kind": np.int8})


def _name_tokens(names: pd.Series, key: np.ndarray, key_name: str) -> pd.DataFrame:
    """Words (>= 3 letters) and adjacent word pairs: "drew handel" is rare even when "drew" and "handel" are not."""
    words = names.reset_index(drop=True).str.split()
    words = words.map(lambda ws: [w for w in ws if len(w) >= 3 and not any(ch.isdigit() for ch in w)])
    toks = words.map(lambda ws: ws + [a + "_" + b for a, b in zip(ws, ws[1:])]).explode().dropna()
    out = pd.DataFrame({key_name: key[toks.index.to_numpy()], "tok": toks.to_numpy()})
    return out.drop_duplicates()


def _fuzzy_tokens(names: pd.Series, key: np.ndarray, key_name: str) -> pd.DataFrame:
    """Each word (>= 4 letters), its one-deletion variants and its 4-letter prefix, with the word they come from:
    a payer name with a typo, a dropped letter or an abbreviation ("NWAK TRADIG", "NORT SOFT") still shares a
    variant with the invoice's name."""
    words = names.reset_index(drop=True).str.split().explode().dropna()
    words = words[(words.str.len() >= 4) & ~words.str.contains(r"\d", regex=True)]
    w = pd.DataFrame({key_name: key[words.index.to_numpy()], "src": words.to_numpy()}).drop_duplicates()
    w["tok"] = w["src"].map(lambda x: sorted({x, x[:4]} | {x[:k] + x[k + 1:] for k in range(len(x))}))
    return w.explode("tok").drop_duplicates().reset_index(drop=True)


def ref_channel(inv_chunks, tr_chunks, live: np.ndarray, max_df: int) -> pd.DataFrame:
    """(t, i, ref_score, ref_share): IDF mass of shared rare reference tokens, and its share of the invoice's.
    Tokens are integer codes (one factorisation of both sides), so counting and joining are numpy sorts."""
    cols = ["t", "i", "ref_score", "ref_share", "ref_near", "ref_exact"]
    it = _ref_tokens(inv_chunks[np.isin(inv_chunks["i"].to_numpy(), live)].reset_index(drop=True), "i", True)
    if it.empty or tr_chunks.empty:
        return _empty(cols)
    tt = _ref_tokens(tr_chunks.reset_index(drop=True), "t", False)
    codes, uniq = pd.factorize(pd.concat([it["tok"], tt["tok"]], ignore_index=True))
    ic, tcode = codes[:len(it)], codes[len(it):]
    ii, kind = it["i"].to_numpy(np.int64), it["kind"].to_numpy()
    df = np.bincount(ic, minlength=len(uniq))  # (i, tok) rows are distinct: document frequency
    n = max(len(np.unique(ii)), 1)
    idf = np.log1p(n / np.maximum(df, 1))
    ok = (df[ic] <= max_df)
    ic, ii, kind = ic[ok], ii[ok], kind[ok]
    w = idf[ic]
    wsum = np.bincount(ii, weights=w, minlength=int(ii.max(initial=0)) + 1)
    # join transfer tokens to invoice postings: sort postings by token, expand each transfer token's range
    order = np.argsort(ic, kind="stable")
    ic_s, ii_s, kind_s, w_s = ic[order], ii[order], kind[order], w[order]
    lo = np.searchsorted(ic_s, tcode, side="left")
    hi = np.searchsorted(ic_s, tcode, side="right")
    cnt = hi - lo
    if cnt.sum() == 0:
        return _empty(cols)
    rows = np.repeat(np.arange(len(tcode)), cnt)
    idx = np.repeat(lo, cnt) + (np.arange(cnt.sum()) - np.repeat(np.cumsum(cnt) - cnt, cnt))
    m = pd.DataFrame({"t": tt["t"].to_numpy(np.int64)[rows], "i": ii_s[idx], "w": w_s[idx],
                      "near": (kind_s[idx] == 2).astype(np.float64), "exact": (kind_s[idx] == 3).astype(np.float64)})
    key = m["t"].to_numpy() * (int(m["i"].max()) + 1) + m["i"].to_numpy()
    o = np.argsort(key, kind="stable")
    ks = key[o]
    st = np.r_[0, np.flatnonzero(np.diff(ks)) + 1]
    out = pd.DataFrame({"t": m["t"].to_numpy()[o][st], "i": m["i"].to_numpy()[o][st],
                        "ref_score": np.add.reduceat(m["w"].to_numpy()[o], st),
                        "ref_near": np.maximum.reduceat(m["near"].to_numpy()[o], st),
                        "ref_exact": np.maximum.reduceat(m["exact"].to_numpy()[o], st)})
    out["ref_share"] = np.minimum(out["ref_score"].to_numpy() / np.maximum(wsum[out["i"].to_numpy()], 1e-9), 1.0)
    out = out[cols]
    return _top_per_t(out, out["ref_score"].to_numpy() + 10 * out["ref_exact"].to_numpy() + 5 * out["ref_near"].to_numpy(),
                      MAX_REF_PER_TRANSFER)


def amount_channel(inv, tr, live: np.ndarray, max_df: int) -> pd.DataFrame:
    """(t, i): exact signed amount in cents (skipping zero and amounts shared by too many invoices)."""
    ia = pd.DataFrame({"i": live, "cents": inv["cents"].to_numpy()[live]})
    ia = ia[ia["cents"] != 0]
    common = ia["cents"].value_counts()
    ia = ia[~ia["cents"].isin(common.index[common > max_df])]
    ta = pd.DataFrame({"t": np.arange(len(tr)), "cents": tr["cents"].to_numpy()})
    return ta.merge(ia, on="cents")[["t", "i"]].assign(amt_exact=1.0)


def name_channel(inv, tr, live: np.ndarray, max_share: float) -> pd.DataFrame:
    """(t, i, name_share): share of the invoice name's IDF mass found among the payer name / title words.

    Rarity is counted over live invoices, so a big contractor's name stays usable while words in every
    description ("services", month names) drop out; tokens in more than ``max_share`` of invoices are ignored.
    """
    names = pd.Series(inv["name"].to_numpy()[live])
    counts = names[names != ""].value_counts()
    if counts.empty:
        return _empty(["t", "i", "name_share"])
    uniq = pd.Series(counts.index.to_numpy())
    nt = _name_tokens(uniq, np.arange(len(uniq)), "name_id")
    nt["cnt"] = counts.to_numpy()[nt["name_id"].to_numpy()]
    n_inv = int(counts.sum())
    df = nt.groupby("tok")["cnt"].sum()
    idf = np.log1p(n_inv / df)
    wsum = nt.assign(w=idf.reindex(nt["tok"]).to_numpy()).groupby("name_id")["w"].sum()
    names_per_tok = nt.groupby("tok")["name_id"].nunique()
    idf = idf[(df <= max(50, max_share * n_inv)) & (names_per_tok.reindex(df.index).to_numpy() <= MAX_NAMES_PER_TOKEN)]
    nt = nt[nt["tok"].isin(idf.index)]
    nt = nt.assign(w=idf.reindex(nt["tok"]).to_numpy())
    tr_text = pd.Series(tr["name"].to_numpy() + " " + tr["title_words"].to_numpy())
    tt = _name_tokens(tr_text, np.arange(len(tr)), "t")
    m = tt.merge(nt[["name_id", "tok", "w"]], on="tok").groupby(["t", "name_id"], as_index=False)["w"].sum()
    # typo-tolerant: each invoice-name word counts once, at 80% of its weight, if a variant of it matches
    fz = _fuzzy_tokens(uniq, np.arange(len(uniq)), "name_id")
    fz["cnt"] = counts.to_numpy()[fz["name_id"].to_numpy()]
    fz_u = fz.drop_duplicates(["name_id", "tok"])
    fz_df = fz_u.groupby("tok")["cnt"].sum()
    fz_names = fz_u.groupby("tok").size()
    ok_tok = fz_df.index[(fz_df <= max(50, max_share * n_inv)) & (fz_names <= MAX_NAMES_PER_TOKEN)]
    fz = fz[fz["tok"].isin(ok_tok) & fz["src"].isin(idf.index)]
    fz = fz.assign(w=0.8 * idf.reindex(fz["src"]).to_numpy())
    ft = _fuzzy_tokens(tr_text, np.arange(len(tr)), "t")[["t", "tok"]].drop_duplicates()
    mf = ft.merge(fz[["name_id", "src", "tok", "w"]], on="tok").groupby(["t", "name_id", "src"], as_index=False)["w"].max()
    mf = mf.groupby(["t", "name_id"], as_index=False)["w"].sum()
    m = pd.concat([m, mf], ignore_index=True).groupby(["t", "name_id"], as_index=False)["w"].max()
    m["name_share"] = m["w"].to_numpy() / wsum.reindex(m["name_id"]).to_numpy()
    # most of the name, or one specific word (a long description dilutes the share of its name part)
    m = m[(m["name_share"] >= 0.25) | (m["w"] >= 4.0)]
    # the few best names per transfer: a common word ("trading") must not pull in every contractor that has it
    m = _top_per_t(m, m["w"].to_numpy() + m["name_share"].to_numpy(), MAX_NAMES)
    # each named contractor's invoices nearest to the transfer amount (a busy contractor has thousands)
    name_of_inv = pd.Index(uniq).get_indexer(names.to_numpy())
    ok = name_of_inv >= 0
    return _expand_by_amount(m, name_of_inv[ok], live[ok], inv["cents"].to_numpy()[live[ok]],
                             tr["cents"].to_numpy(), PER_NAME_BELOW, PER_NAME_ABOVE, PER_NAME_SMALL)


def set_channel(inv: pd.DataFrame, tr: pd.DataFrame, live: np.ndarray, weak: np.ndarray) -> pd.DataFrame:
    """(t, i, set_hit): for transfers without a strong hit, the invoices of any contractor with few open invoices
    (features.MAX_GROUP) that form a set of 2..MAX_SET summing exactly to the transfer amount. Finds a
    multi-invoice payment with no number by a payer never seen with that contractor (a factor, "as agreed").
    The contractors' set sums are one table (sum over contractors of 2^n rows), joined on cents."""
    if len(weak) == 0 or len(live) == 0:
        return _empty(["t", "i", "set_hit"])
    keys = pd.Series(inv["name_key"].to_numpy()[live])
    code = np.where(keys.to_numpy() != "", pd.factorize(keys)[0], -1)
    cents = inv["cents"].to_numpy()[live]
    tables = []
    for b, (rows, masks, sums) in enumerate(group_sets(code, cents)):
        kk, ss = np.meshgrid(np.arange(sums.shape[0]), np.arange(sums.shape[1]), indexing="ij")
        tables.append((rows, masks, pd.DataFrame({"b": b, "k": kk.ravel(), "s": ss.ravel(),
                                                  "cents": np.round(sums.ravel()).astype(np.int64)})))
    if not tables:
        return _empty(["t", "i", "set_hit"])
    table = pd.concat([tb for _, _, tb in tables], ignore_index=True)
    table = table[table["cents"] != 0]
    hits = pd.DataFrame({"t": weak, "cents": tr["cents"].to_numpy()[weak]}).merge(table, on="cents")
    out = []
    for b, g in hits.groupby("b"):
        rows, masks, _ = tables[b]
        members = masks[g["s"].to_numpy()]
        r = rows[g["k"].to_numpy()]
        out.append(pd.DataFrame({"t": np.repeat(g["t"].to_numpy(), members.sum(1)), "i": live[r[members]]}))
    if not out:
        return _empty(["t", "i", "set_hit"])
    return pd.concat(out, ignore_index=True).drop_duplicates().assign(set_hit=1.0)


def _expand_by_amount(m: pd.DataFrame, group_of_inv: np.ndarray, inv_pos: np.ndarray, inv_cents: np.ndarray,
                      t_cents: np.ndarray, below: int, above: int, small: int = 0, key: str = "name_id") -> pd.DataFrame:
    """(t, i, + m's other columns) for the (t, ``key``) rows of ``m``: the group's invoices nearest to the transfer
    amount, ``below`` at or under it (a single or fee-reduced payment, parts of a multi-invoice payment) and
    ``above`` over it (partial payments), and the ``small`` ones nearest zero (credit notes and small invoices
    offset inside a multi-invoice payment). Searchsorted windows, so a group's size does not matter."""
    if small:
        near = _expand_by_amount(m, group_of_inv, inv_pos, inv_cents, np.zeros_like(t_cents), small // 2,
                                 small - small // 2, 0, key)
        wide = _expand_by_amount(m, group_of_inv, inv_pos, inv_cents, t_cents, below, above, 0, key)
        return pd.concat([wide, near], ignore_index=True).drop_duplicates(["t", "i"]).reset_index(drop=True)
    if len(m) == 0 or len(inv_pos) == 0:
        return _empty(["t", "i"] + [c for c in m.columns if c not in ("t", key)])
    shift = np.int64(1) << 40
    order = np.lexsort((inv_cents, group_of_inv))
    g, c = group_of_inv[order].astype(np.int64), inv_cents[order].astype(np.int64)
    keys = g * (shift << 1) + c + shift
    mg = m[key].to_numpy(np.int64)
    bounds = np.searchsorted(g, np.arange(max(int(g.max()), int(mg.max(initial=0))) + 2))  # a group may have none
    probe = mg * (shift << 1) + t_cents[m["t"].to_numpy()] + shift
    pos = np.searchsorted(keys, probe, side="right")
    lo = np.maximum(bounds[mg], pos - below)
    hi = np.minimum(bounds[mg + 1], pos + above)
    n = np.maximum(hi - lo, 0)
    rows = np.repeat(np.arange(len(m)), n)
    idx = np.repeat(lo, n) + (np.arange(n.sum()) - np.repeat(np.cumsum(n) - n, n))
    out = m.drop(columns=[key]).iloc[rows].reset_index(drop=True)
    out["i"] = inv_pos[order[idx]]
    return out


def memory_channel(inv, tr, live: np.ndarray, memory: Memory | None, exclude: Exclusion | None) -> pd.DataFrame:
    """(t, i, mem): invoices of contractors this payer account/name paid before."""
    if memory is None:
        return _empty(["t", "i", "mem"])
    pairs, _ = memory.lookup(tr, exclude=exclude)
    if pairs.empty:
        return _empty(["t", "i", "mem"])
    pairs = pairs.assign(mem=pairs["acc_n"] + pairs["pay_n"])[["t", "name_key", "mem"]]
    pairs = _top_per_t(pairs, pairs["mem"].to_numpy(), MAX_MEMORY_NAMES)  # the contractors it paid most often
    keys = inv["name_key"].to_numpy()[live]
    idx = pd.Index(pd.unique(pairs["name_key"]))
    code = idx.get_indexer(keys)
    ok = code >= 0
    pairs = pairs.assign(key=idx.get_indexer(pairs["name_key"]))[["t", "key", "mem"]]
    return _expand_by_amount(pairs, code[ok], live[ok], inv["cents"].to_numpy()[live[ok]], tr["cents"].to_numpy(),
                             PER_NAME_BELOW, PER_NAME_ABOVE, PER_NAME_SMALL, key="key")


def generate_candidates(inv: pd.DataFrame, inv_chunks: pd.DataFrame, tr: pd.DataFrame, tr_chunks: pd.DataFrame,
                        memory: Memory | None = None, exclude: Exclusion | None = None, max_candidates: int = 30,
                        max_candidates_weak: int | None = None,
                        lookback_days: int = 180, ref_max_df: int = 50, amount_max_df: int = 50,
                        name_max_share: float = 0.15) -> pd.DataFrame:
    """Candidate pairs (t, i, prescore, channel scores), at most ``max_candidates`` per transfer."""
    cols = ["t", "i", "prescore", "ref_score", "ref_share", "ref_near", "ref_exact", "amt_exact", "name_share", "mem",
            "completes"]
    if len(tr) == 0 or len(inv) == 0:
        return _empty(cols)
    booked = tr["booked_at"].to_numpy()
    issued = inv["issued_at"].to_numpy()
    lo = booked.min() - np.timedelta64(lookback_days, "D")
    hi = booked.max() + np.timedelta64(ISSUE_AFTER_BOOKING_DAYS, "D")
    # invoices settled by training payments before the first transfer is booked are no candidates at all
    settled = memory.settled_by(inv) if memory is not None else np.zeros(len(inv), np.int64) + (1 << 40)
    live = np.flatnonzero((issued >= lo) & (issued <= hi) & (settled > booked.astype("datetime64[D]").astype(np.int64).min()))
    parts = [
        ref_channel(inv_chunks, tr_chunks, live, ref_max_df),
        amount_channel(inv, tr, live, amount_max_df),
        name_channel(inv, tr, live, name_max_share),
        memory_channel(inv, tr, live, memory, exclude),
    ]
    parts = [p for p in parts if len(p)] or [_empty(["t", "i"])]

    def settle(c: pd.DataFrame) -> pd.DataFrame:
        """Best score per pair over channels; drop pairs outside the date window or already settled."""
        c = _max_per_pair(c, cols[3:] + ["set_hit"], len(inv))
        t, i = c["t"].to_numpy(np.int64), c["i"].to_numpy(np.int64)
        days = (booked[t] - issued[i]).astype("timedelta64[D]").astype(np.int64)
        keep = (days >= -ISSUE_AFTER_BOOKING_DAYS) & (days <= lookback_days)
        c = c[keep].reset_index(drop=True)
        if memory is not None and len(memory.paid):
            c = c[_open_for(c, inv, tr, memory)].reset_index(drop=True)
        return c

    c = settle(pd.concat(parts, ignore_index=True))
    if len(c) == 0 and len(live) == 0:
        return _empty(cols)
    # a strong hit: a number in the title, or the exact amount of an invoice of the payer
    who = (c["name_share"].to_numpy() > 0) | (c["mem"].to_numpy() > 0)
    strong = ((c["ref_exact"] + c["ref_near"]).to_numpy() > 0) | ((c["amt_exact"].to_numpy() > 0) & who)
    has_strong = np.zeros(len(tr), bool)
    has_strong[c["t"].to_numpy()[strong]] = True
    sets = set_channel(inv, tr, live, np.flatnonzero(~has_strong))
    if len(sets):
        c = settle(pd.concat([c, sets], ignore_index=True))
    t, i = c["t"].to_numpy(np.int64), c["i"].to_numpy(np.int64)
    days = (booked[t] - issued[i]).astype("timedelta64[D]").astype(np.int64)
    ta, ia = tr["amount"].to_numpy()[t], inv["amount"].to_numpy()[i]
    same_sign = np.sign(ta) == np.sign(ia)
    gap = (np.abs(ia) - np.abs(ta)) / np.maximum(np.abs(ia), 0.01)
    near = same_sign & (np.abs(gap) <= FEE_TOLERANCE + 1e-9)
    # part of a multi-invoice payment: smaller than the transfer, or a credit note offset inside it
    fits_in = np.abs(ia) <= np.abs(ta) * (1 + FEE_TOLERANCE)
    who = (c["name_share"].to_numpy() > 0) | (c["mem"].to_numpy() > 0)
    # a partial payment is 30-70% of its invoice; an invoice several times the transfer is neither part nor whole
    ratio = np.abs(ta) / np.maximum(np.abs(ia), 0.01)
    partial = same_sign & (ratio >= 0.28) & (ratio <= 0.72)
    too_big = ratio < 0.28
    # most invoices are paid in the second part of their payment term, few long after it
    term = (inv["due_at"].to_numpy()[i] - issued[i]).astype("timedelta64[D]").astype(np.int64)
    in_term = (days >= 0.25 * term) & (days <= term + 3)
    long_overdue = days > term + 60
    c["completes"] = np.maximum(_completions(c, ta, ia), c["set_hit"].to_numpy())
    c["prescore"] = (4 * c["ref_share"] + 2 * c["ref_near"] + 3 * c["ref_exact"] + 0.05 * np.minimum(c["ref_score"], 40)
                     + 4 * c["amt_exact"] + 2 * c["name_share"] + 2 * (c["mem"] > 0) + 1.5 * (near & who)
                     + 0.5 * (fits_in & who) + 0.3 * (partial & who) - 0.5 * too_big + 3 * c["completes"]
                     + 0.8 * in_term - 0.8 * long_overdue - 0.004 * np.clip(days, 0, None) - 0.5 * (days < 0))
    c = c.sort_values(["t", "prescore"], ascending=[True, False], kind="stable")
    cap = np.full(len(tr), max_candidates)
    if max_candidates_weak is not None and max_candidates_weak > max_candidates:
        cap[~has_strong] = max_candidates_weak  # no number, no exact amount: all of the payer's open invoices
    c = c[c.groupby("t").cumcount().to_numpy() < cap[c["t"].to_numpy()]]
    return c[cols].reset_index(drop=True)


def _open_for(c: pd.DataFrame, inv: pd.DataFrame, tr: pd.DataFrame, memory: Memory) -> np.ndarray:
    """Per pair: is the invoice still open when the transfer is booked (training payments before it do not
    settle it)? Paying a settled invoice again is a duplicate payment, which pays nothing."""
    paid, _ = memory.paid_before(inv, c[["t", "i"]], tr)
    return ~is_settled(inv["amount"].to_numpy()[c["i"].to_numpy()], paid)


def _max_per_pair(c: pd.DataFrame, cols: list[str], n_inv: int) -> pd.DataFrame:
    """One row per (t, i) with each column's maximum over the rows of that pair (missing counts as 0); a sort and
    a reduceat, several times faster than a pandas groupby on two keys."""
    key = c["t"].to_numpy(np.int64) * (n_inv + 1) + c["i"].to_numpy(np.int64)
    order = np.argsort(key, kind="stable")
    ks = key[order]
    start = np.r_[0, np.flatnonzero(np.diff(ks)) + 1] if len(ks) else np.zeros(0, np.int64)
    out = {"t": ks[start] // (n_inv + 1), "i": ks[start] % (n_inv + 1)}
    for col in cols:
        v = np.nan_to_num(c[col].to_numpy(np.float64)[order], nan=0.0) if col in c else np.zeros(len(ks))
        out[col] = np.maximum.reduceat(v, start) if len(ks) else np.zeros(0)
    return pd.DataFrame(out)


def _empty(cols: list[str]) -> pd.DataFrame:
    return pd.DataFrame({c: np.zeros(0, np.int64 if c in ("t", "i") else np.float64) for c in cols})


def _completions(c: pd.DataFrame, ta: np.ndarray, ia: np.ndarray) -> np.ndarray:
    """1 for invoices that complete the amount: what is left of the transfer after the invoices its title names
    exactly (all of it when none) is paid by this one invoice (within the fee tolerance) or by this one and
    another candidate (to the cent). Finds unnamed invoices and credit notes of multi-invoice payments.
    Pair sums are an equality self-merge on cents per transfer, so no candidate x candidate product is built."""
    t = c["t"].to_numpy()
    named = c["ref_exact"].to_numpy() > 0
    s = pd.Series(np.where(named, ia, 0.0)).groupby(t).transform("sum").to_numpy()
    rest = ta - s
    open_ = ~named & (np.abs(rest) >= 0.01)
    single = open_ & (np.abs(ia - rest) <= FEE_TOLERANCE * np.abs(ia) + 0.01)
    cents = np.round(ia * 100).astype(np.int64)
    rest_c = np.round(rest * 100).astype(np.int64)
    a = pd.DataFrame({"t": t[open_], "cents": cents[open_], "row": np.flatnonzero(open_)})
    b = pd.DataFrame({"t": t[open_], "cents": rest_c[open_] - cents[open_], "row2": np.flatnonzero(open_)})
    pairs = a.merge(b, on=["t", "cents"])
    pairs = pairs[pairs["row"] != pairs["row2"]]
    out = single.astype(np.float64)
    out[pairs["row"].to_numpy()] = 1.0
    out[pairs["row2"].to_numpy()] = 1.0
    return out


def blocking_recall(candidates: pd.DataFrame, links: pd.DataFrame) -> float:
    """Share of true (transfer_id, invoice_id) links present in ``candidates``."""
    if len(links) == 0:
        return 1.0
    key = ["transfer_id", "invoice_id"]
    hit = links[key].drop_duplicates().merge(candidates[key].drop_duplicates(), on=key, how="left", indicator=True)
    return float((hit["_merge"] == "both").mean())
