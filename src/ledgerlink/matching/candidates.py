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
hit (a multi-invoice payment with no number from a busy contractor needs all of that contractor's invoices);
a title that lists MANY_NAMED or more references (a remittance advice: 10-25) keeps all it names plus
``max_candidates_weak`` more, for the invoices it leaves out.

Only rows of one currency meet (``currency_scopes``): every channel runs per (problem, currency) scope, in fit and
in match alike, so an amount, a number or a name never pairs a EUR transfer with a PLN invoice.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import pandas as pd

from .arrays import eq_join, expand, run_starts
from .memory import Exclusion, Memory
from .normalize import Prepared, string_ngrams
from .runtime import check_deadline, checked_map
from .subsets import sets_paying
from .tolerances import FEE_TOLERANCE, ISSUE_AFTER_BOOKING_DAYS, PARTIAL_MAX, PARTIAL_MIN, is_settled

NGRAM = 4
MAX_NAMES = 3  # contractor names a transfer's payer/title words may point to
MAX_NAMES_PER_TOKEN = 100  # a name word shared by more contractors than this is too common to look up
MAX_REF_PER_TRANSFER = 60  # reference-number hits kept per transfer (best IDF mass first)
PER_NAME_BELOW, PER_NAME_ABOVE, PER_NAME_SMALL = 96, 48, 16  # a named contractor's invoices nearest the amount
WINDOW_GROWTH = 4  # windows and the weak cap grow with the contractor's open invoices, up to this many times
MAX_MEMORY_NAMES = 10  # contractors a payer account/name paid before, most often paid first
MAX_FUZZY_WORD = 32  # longer words get no one-deletion variants (quadratic in the length: a 2,000-letter "word"
# gives 4 MB of variants); real names' words are far shorter
MANY_NAMED = 4  # a title naming this many invoices gets room for all of them beyond the candidate cap
SET_HITS_PER_ROW = 16  # set channel: (transfer, set) hits kept per weak transfer and live invoice, in all
# Transfers blocked at a time: the channels' pairs before the cap (~180 per transfer, 11 columns, and the sorts
# that merge them) are made and merged for so many transfers at once, and capped at once for transfers with a
# strong hit; only the others' wait for the set channel. A 25k batch of a 100k month peaked 1.7 GB above its start
# in blocking done at once, 0.67 GB in chunks of 8192 (4096 halves a chunk's temporaries, in every worker). The
# answers are the same for any size (the chunks share the batch's live invoices and its set channel; the golden
# check passes with 100).
BLOCK_CHUNK = 4096

# Channels pass pairs around as plain columns ({"t": ..., "i": ..., score columns}): numpy all the way, one
# DataFrame at the end. A pandas operation costs tens of microseconds whatever its size, which dominated a
# one-transfer request; at scale the same numpy sorts and joins are as fast as pandas merges and groupbys.
Pairs = dict[str, np.ndarray]


def _empty(cols: list[str]) -> Pairs:
    return {c: np.zeros(0, np.int64 if c in ("t", "i") else np.float64) for c in cols}


def _take(pairs: Pairs, rows: np.ndarray) -> Pairs:
    return {c: v[rows] for c, v in pairs.items()}


def _rank_in_run(keys: np.ndarray) -> np.ndarray:
    """0-based position of each row within its run of equal values in sorted ``keys``."""
    start = run_starts(keys)
    return np.arange(len(keys)) - np.repeat(start, np.diff(np.append(start, len(keys))))


def _top_per_t(t: np.ndarray, score: np.ndarray, k: int) -> np.ndarray:
    """Rows (in their order) of the ``k`` highest ``score`` of each transfer ``t`` (all of them when fewer); ties
    by position."""
    order = np.lexsort((-score, t))
    return np.sort(order[_rank_in_run(t[order]) < k])


def _expand(lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(row, position) for every position in each row's range [lo, hi)."""
    n = np.maximum(hi - lo, 0)
    rows = np.repeat(np.arange(len(lo)), n)
    return rows, np.repeat(lo, n) + (np.arange(n.sum()) - np.repeat(np.cumsum(n) - n, n))


def _first_rows(*keys: np.ndarray) -> np.ndarray:
    """Rows where each combination of ``keys`` (small non-negative integers: positions, codes) first occurs, in
    order: drop_duplicates."""
    code = keys[0].astype(np.int64)
    for k in keys[1:]:
        code = code * (int(k.max(initial=0)) + 1) + k
    return np.sort(np.unique(code, return_index=True)[1])


def _scoped(codes: np.ndarray, scope: np.ndarray | None) -> np.ndarray:
    """Codes that also tell the scope apart (independent problems blocked in one call): a token, amount or name
    of one problem never meets another's. First-appearance order, like ``pd.factorize``; unchanged with one
    scope."""
    if scope is None:
        return codes
    return pd.factorize(codes.astype(np.int64) * (int(scope.max(initial=0)) + 1) + scope)[0]


def _group_sum(group: np.ndarray, values: np.ndarray, n_groups: int) -> np.ndarray:
    """Per group (0..n_groups-1), the sum of finite ``values`` as pandas' groupby sum computes it: Kahan-
    compensated, rows in order. Scores summed here are compared to thresholds and ranked, so they must stay the
    same to the last bit. One vectorised step per row position; rows before a group's second nonzero value leave
    the sum exact and the compensation zero, so the steps start there."""
    order = np.argsort(group, kind="stable")
    g, v = group[order], values[order].astype(np.float64)
    total, comp = np.zeros(n_groups), np.zeros(n_groups)
    nz = np.flatnonzero(v != 0)
    rank = _rank_in_run(g[nz])
    total[g[nz[rank == 0]]] = v[nz[rank == 0]]
    start = nz[rank == 1]  # each group's second nonzero row
    end = np.searchsorted(g, g[start], side="right")
    for step in range(int((end - start).max(initial=0))):
        active = start + step < end
        start, end = start[active], end[active]
        rows = start + step
        k = g[rows]
        y = v[rows] - comp[k]
        s = total[k] + y
        comp[k] = (s - total[k]) - y
        total[k] = s
    return total


def _deletions(digits: str, prefix2: bool) -> list[str]:
    """The digit string and its one-deletion variants (symmetric-deletion index): a typo, transposition, missing
    digit or one-digit truncation on either side leaves the two strings sharing one variant. Invoices also
    index the string cut by two digits (two-digit truncation in the title)."""
    out = {digits} | {digits[:k] + digits[k + 1 :] for k in range(len(digits))} if len(digits) >= 4 else {digits}
    if prefix2 and len(digits) >= 6:
        out.add(digits[:-2])
    return sorted(out)  # sorted, not set order: string hashing is salted per process, results must not be


# Per-string token lists are cached: a service sees the same open invoices and contractors request after request.
# About 1.3 kB an entry, so each cache stays under ~6 MB; texts longer than CACHED_TEXT_CHARS (a bank title holds
# 140) are not cached, so a request of 2,000-character texts does not leave hundreds of MB behind.
_CACHE = 1 << 12
CACHED_TEXT_CHARS = 256
# Names are looked up in the first 512 characters of a payer name + title (a bank title holds 140) and of an invoice's
# name: 1,000 transfers of 4,000-character texts took 9 s and 0.9 GB of name tokens, capped ~1 s.
NAME_TEXT_CHARS = 512


@lru_cache(maxsize=_CACHE)
def _digit_tokens(digits: str, invoice_side: bool) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """A chunk's digit 4-gram tokens and one-deletion variant tokens."""
    grams = string_ngrams([digits], NGRAM)[1]
    return tuple("n" + g for g in grams), tuple("d" + v for v in _deletions(digits, invoice_side))


def _ref_tokens(
    keys: np.ndarray, digits: list[str], runs: list[list[str]], invoice_side: bool
) -> tuple[np.ndarray, list[str], np.ndarray]:
    """(key, tok, kind) per token of each chunk (``key``, ``digits``, digit ``runs``): digit 4-grams (kind 0),
    digit runs (1), one-deletion variants (2), the exact digits (3), kind by kind; a token repeated for the same
    key is still there."""
    tokens = checked_map(lambda d: _digit_tokens(d, invoice_side), digits, "blocking: reference tokens")
    grams, dels = zip(*tokens) if digits else ((), ())
    blocks = [grams, [["g" + r for r in rs] for rs in runs], dels, [["x" + d] for d in digits]]
    toks = [tok for block in blocks for chunk in block for tok in chunk]
    sizes = [[len(chunk) for chunk in block] for block in blocks]
    pos = np.concatenate([np.repeat(np.arange(len(digits)), n) for n in sizes])
    return keys[pos], toks, np.repeat(np.arange(4, dtype=np.int8), [sum(n) for n in sizes])


def _string_hashes(values: np.ndarray) -> np.ndarray:
    """A uint64 hash of each string (an object array): pandas' SipHash under its fixed key, the same in every
    process (Python's own ``hash`` of a string is salted per process, and the vocabulary is hashed in the parent)."""
    return pd.util.hash_array(values, categorize=False)


@dataclass(frozen=True)
class RefTokens:
    """The invoice side of the reference channel, tokenised once: per (invoice, token), its first row in
    ``inv_chunks`` (``chunk``), its ``kind`` and its ``code``. A month matched in batches blocks every batch against
    the same invoices; tokenising 220k open invoices again for each of ten batches cost more than the rest of
    blocking. The vocabulary is a numpy string array (``tokens``) in the order of their hashes (``token_hashes``,
    sorted), with each one's code in ``token_codes``: a transfer's token is found by a binary search over integers
    and one string comparison. As a dict, the 1.35M distinct tokens of 220k invoices held 0.33 GB, in every worker
    process; as arrays, 65 MB + 11 MB of hashes. A binary search over the sorted strings themselves cost ~12 CPU s
    of each 50k-transfer batch of a 100k month (~21 string comparisons per token)."""

    chunk: np.ndarray
    kind: np.ndarray
    code: np.ndarray
    tokens: np.ndarray  # the distinct tokens (numpy unicode strings), ordered by ...
    token_hashes: np.ndarray  # ... their hash (uint64, sorted; equal hashes in code order)
    token_codes: np.ndarray  # the code of each of ``tokens``

    @classmethod
    def of(cls, inv_chunks: pd.DataFrame, rows: np.ndarray | None = None) -> "RefTokens":
        """The tokens of the chunks at ``rows`` (all chunks when None), in ``_ref_tokens``' order."""
        rows = np.arange(len(inv_chunks)) if rows is None else rows
        chunk, toks, kind = _ref_tokens(
            rows,
            inv_chunks["digits"].to_numpy()[rows].tolist(),
            inv_chunks["long_groups"].to_numpy()[rows].tolist(),
            True,
        )
        code, uniques = pd.factorize(np.array(toks, dtype=object))
        # each (invoice, token) once, its first row: document frequency, and an IDF mass per invoice (an invoice is
        # live or not as a whole, so keeping the first rows of all invoices keeps those of the live ones)
        keep = _first_rows(inv_chunks["i"].to_numpy(np.int64)[chunk], code)
        hashes = _string_hashes(np.asarray(uniques, dtype=object))  # the code of uniques[k] is k
        by_hash = np.argsort(hashes, kind="stable")
        words = np.array(uniques.tolist(), dtype=str)
        codes = by_hash.astype(np.int64)
        return cls(chunk[keep], kind[keep], code[keep].astype(np.int64), words[by_hash], hashes[by_hash], codes)

    def codes_of(self, tokens: list[str]) -> np.ndarray:
        """Codes of other tokens (a transfer's) in the same space; a token no invoice has gets a new code. Only
        equality of codes matters downstream (counts, joins, first rows), never their order."""
        n = len(self.tokens)
        if not tokens:
            return np.zeros(0, np.int64)
        query = np.array(tokens, dtype=object)
        wanted = _string_hashes(query)
        pos = np.minimum(np.searchsorted(self.token_hashes, wanted), max(n - 1, 0))
        out = np.full(len(query), -1, np.int64)
        if n:
            rows = np.flatnonzero(self.token_hashes[pos] == wanted)
            same = self.tokens[pos[rows]] == np.array(query[rows].tolist(), dtype=str)
            out[rows[same]] = self.token_codes[pos[rows[same]]]
            for r in rows[~same]:  # a hash shared by two strings (~1e-7 for a vocabulary): the strings decide
                k = pos[r] + 1
                while k < n and self.token_hashes[k] == wanted[r]:
                    if self.tokens[k] == query[r]:
                        out[r] = self.token_codes[k]
                        break
                    k += 1
        new = out < 0
        out[new] = n + pd.factorize(query[new])[0]  # new tokens, numbered in order of first appearance
        return out


@dataclass(frozen=True)
class InvoiceIndex:
    """What blocking computes from the invoices and memory alone: computed once per ``match`` call and shared
    by all its batches (``generate_candidates(..., invoice_index=)``)."""

    ref: RefTokens
    settled: np.ndarray | None  # Memory.settled_by of every invoice (None: no memory)

    @classmethod
    def of(cls, P: Prepared, memory: Memory | None) -> "InvoiceIndex":
        return cls(RefTokens.of(P.inv_chunks), memory.settled_by(P.inv) if memory is not None else None)


@dataclass(frozen=True)
class RefPostings:
    """The invoice side of ``ref_channel`` for one batch's live invoices and scopes: each live (invoice, token)'s
    code, invoice, kind and IDF weight (tokens in more than ``max_df`` invoices of their scope dropped) and each
    invoice's IDF mass. It depends on the invoices alone, so the chunks of a batch's transfers share it: computed
    again in every 4,096-transfer chunk, it cost ~1 s of each chunk's ~5 s in the reference channel of a 100k month
    (301k open invoices, ~8M tokens). Codes are (token, scope) keys numbered densely; a transfer's tokens are looked
    up in them (``codes_of``). Only their equality matters downstream (counts, joins, first rows), so the pairs,
    scores and their order are those of tokenising and counting per chunk."""

    ic: np.ndarray  # per kept posting, in code order: code, invoice, kind, weight
    ii: np.ndarray
    kind: np.ndarray
    w: np.ndarray
    wsum: np.ndarray  # per invoice: the IDF mass of its kept tokens
    keys: np.ndarray  # the (token, scope) keys of the codes, sorted ...
    key_codes: np.ndarray  # ... and the code of each
    n_scopes: int  # scope numbers are below it (a key is token code * n_scopes + scope)

    @classmethod
    def of(cls, inv_chunks, live, tokens: RefTokens, max_df: int, inv_scope, n_scopes: int) -> "RefPostings | None":
        """None when no live invoice has a reference token."""
        sel = np.isin(inv_chunks["i"].to_numpy(), live)
        if not sel.any():
            return None
        rows = sel[tokens.chunk]  # the live chunks' tokens, in the order tokenising only them gives
        ii = inv_chunks["i"].to_numpy(np.int64)[tokens.chunk[rows]]
        kind = tokens.kind[rows]
        scope = np.zeros(len(ii), np.int64) if inv_scope is None else np.asarray(inv_scope, np.int64)[ii]
        ic, uniq = pd.factorize(tokens.code[rows].astype(np.int64) * n_scopes + scope)
        n_codes = len(uniq)
        df = np.bincount(ic, minlength=n_codes)
        with_tokens = np.flatnonzero(np.bincount(ii))  # the live invoices with reference tokens, in order
        if inv_scope is None:
            n = max(len(with_tokens), 1)
        else:  # invoices with reference tokens, per scope, for each code's scope
            per_scope = np.bincount(np.asarray(inv_scope, np.int64)[with_tokens], minlength=n_scopes)
            code_scope = np.zeros(n_codes, np.int64)
            code_scope[ic] = scope
            n = np.maximum(per_scope[code_scope], 1)
        idf = np.log1p(n / np.maximum(df, 1))
        ok = df[ic] <= max_df
        ic, ii, kind = ic[ok], ii[ok], kind[ok]
        w = idf[ic]
        wsum = np.bincount(ii, weights=w, minlength=int(ii.max(initial=0)) + 1)
        # the postings by code, once: each chunk's join is then two binary searches, not a sort of all postings (a
        # stable argsort of ~8M codes in every chunk). Each (invoice, token) is one posting, so a pair's weights are
        # still summed in its transfer's token order.
        by_code = np.argsort(ic, kind="stable")
        by_key = np.argsort(uniq, kind="stable")
        return cls(
            ic[by_code],
            ii[by_code],
            kind[by_code],
            w[by_code],
            wsum,
            np.asarray(uniq)[by_key],
            by_key.astype(np.int64),
            n_scopes,
        )

    def codes_of(self, token_codes: np.ndarray, scope: np.ndarray | None) -> np.ndarray:
        """Codes of (token, scope) keys of transfers' tokens; a key no live invoice has gets a new code (the same
        for equal keys)."""
        key = token_codes.astype(np.int64) * self.n_scopes + (0 if scope is None else scope)
        pos = np.minimum(np.searchsorted(self.keys, key), max(len(self.keys) - 1, 0))
        found = self.keys[pos] == key if len(self.keys) else np.zeros(len(key), bool)
        out = np.empty(len(key), np.int64)
        out[found] = self.key_codes[pos[found]]
        out[~found] = len(self.keys) + pd.factorize(key[~found])[0]
        return out


def ref_channel(
    inv_chunks,
    tr_chunks,
    live: np.ndarray,
    max_df: int,
    inv_scope=None,
    tr_scope=None,
    tokens: RefTokens | None = None,
    postings: RefPostings | None = None,
) -> Pairs:
    """(t, i, ref_score, ref_share): IDF mass of shared rare reference tokens, and its share of the invoice's.
    Tokens are integer codes (one code space for both sides), so counting and joining are numpy sorts.
    With scopes, frequencies and joins stay within each scope. ``tokens``: the invoice side already tokenised
    (``RefTokens.of(inv_chunks)``); the live invoices' tokens are taken from it. ``postings``: their
    ``RefPostings`` (with ``tokens``; ``live``, ``max_df`` and the invoice scopes as given here), when the same
    invoices meet several chunks of transfers."""
    cols = ["t", "i", "ref_score", "ref_share", "ref_near", "ref_exact"]
    if len(tr_chunks) == 0:
        return _empty(cols)
    if postings is None:  # the invoice side counted for this call alone
        sel = np.isin(inv_chunks["i"].to_numpy(), live)
        if not sel.any():
            return _empty(cols)
        if tokens is None:
            tokens = RefTokens.of(inv_chunks, np.flatnonzero(sel))
        n_scopes = 1 if inv_scope is None else int(max(inv_scope.max(initial=0), tr_scope.max(initial=0))) + 1
        postings = RefPostings.of(inv_chunks, live, tokens, max_df, inv_scope, n_scopes)
        if postings is None:
            return _empty(cols)
    tt, ttok, _ = _ref_tokens(
        tr_chunks["t"].to_numpy(np.int64), tr_chunks["digits"].tolist(), tr_chunks["long_groups"].tolist(), False
    )
    tcode = postings.codes_of(tokens.codes_of(ttok), None if tr_scope is None else tr_scope[tt])
    keep = _first_rows(tt, tcode)
    p = postings
    return _ref_pairs(tt[keep], tcode[keep], p.ic, p.ii, p.kind, p.w, p.wsum)


def _ref_pairs(tt, tcode, ic, ii, kind, w, wsum) -> Pairs:
    """``ref_channel``'s pairs: each transfer token (``tt``, ``tcode``: each once per transfer) meets the invoice
    postings of that token (``ic``, in code order, ``ii``, ``kind``, weight ``w``; ``wsum``: each invoice's IDF
    mass), at most one per (invoice, token)."""
    cols = ["t", "i", "ref_score", "ref_share", "ref_near", "ref_exact"]
    lo = np.searchsorted(ic, tcode, side="left")
    cnt = np.searchsorted(ic, tcode, side="right") - lo
    rows, idx = np.repeat(np.arange(len(tcode)), cnt), expand(lo, cnt)
    if len(rows) == 0:
        return _empty(cols)
    mt, mi, mw = tt[rows], ii[idx], w[idx]
    key = mt * (int(mi.max()) + 1) + mi
    o = np.argsort(key, kind="stable")  # per pair, weights summed in the transfer's token order
    st = run_starts(key[o])
    score = np.add.reduceat(mw[o], st)
    near = np.maximum.reduceat((kind[idx] == 2).astype(np.float64)[o], st)
    exact = np.maximum.reduceat((kind[idx] == 3).astype(np.float64)[o], st)
    out = {
        "t": mt[o][st],
        "i": mi[o][st],
        "ref_score": score,
        "ref_share": np.minimum(score / np.maximum(wsum[mi[o][st]], 1e-9), 1.0),
        "ref_near": near,
        "ref_exact": exact,
    }
    return _take(out, _top_per_t(out["t"], score + 10 * exact + 5 * near, MAX_REF_PER_TRANSFER))


@dataclass(frozen=True)
class AmountPostings:
    """The invoice side of ``amount_channel`` for one batch's live invoices: those whose signed amount in cents
    (nonzero) at most ``max_df`` live invoices of their scope share, with their cents and scopes. It depends on the
    invoices alone, so the chunks of a batch's transfers share it (counted in each 4,096-transfer chunk, it sorted
    the amounts of a 100k month's 301k open invoices 25 times)."""

    pos: np.ndarray
    cents: np.ndarray
    scope: np.ndarray | None

    @classmethod
    def of(cls, inv, live: np.ndarray, max_df: int, inv_scope=None) -> "AmountPostings":
        cents = inv["cents"].to_numpy()[live]
        nonzero = cents != 0
        pos, cents = live[nonzero], cents[nonzero]
        scope = None if inv_scope is None else np.asarray(inv_scope, np.int64)[pos]
        key = cents if scope is None else _scoped(pd.factorize(cents)[0], scope)  # (scope, cents) codes
        _, which, count = np.unique(key, return_inverse=True, return_counts=True)
        rare = count[which.ravel()] <= max_df
        return cls(pos[rare], cents[rare], None if scope is None else scope[rare])


def amount_channel(
    inv, tr, live: np.ndarray, max_df: int, inv_scope=None, tr_scope=None, postings: AmountPostings | None = None
) -> Pairs:
    """(t, i): exact signed amount in cents (skipping zero and amounts shared by too many invoices). ``postings``:
    the invoice side (``AmountPostings.of`` with the same ``live``, ``max_df`` and ``inv_scope``), when the same
    invoices meet several chunks of transfers."""
    p = postings if postings is not None else AmountPostings.of(inv, live, max_df, inv_scope)
    t_cents = tr["cents"].to_numpy()
    if p.scope is None:
        rows, idx = eq_join([t_cents], [p.cents])
    else:
        rows, idx = eq_join([t_cents, np.asarray(tr_scope, np.int64)], [p.cents, p.scope])
    return {"t": rows, "i": p.pos[idx], "amt_exact": np.ones(len(rows))}


_DIGIT_RE = re.compile(r"\d")  # names and title words are folded to ASCII: the same test as str.isdigit


def _words(text: str, min_len: int) -> list[str]:
    return [w for w in text.split() if len(w) >= min_len and not _DIGIT_RE.search(w)]


def _text_name_tokens(text: str) -> tuple[str, ...]:
    return _name_tokens_of(text) if len(text) > CACHED_TEXT_CHARS else _cached_name_tokens(text)


def _text_fuzzy_tokens(text: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    return _fuzzy_tokens_of(text) if len(text) > CACHED_TEXT_CHARS else _cached_fuzzy_tokens(text)


def _name_tokens_of(text: str) -> tuple[str, ...]:
    """Words (>= 3 letters) and adjacent word pairs, each once: "drew handel" is rare even when "drew" and
    "handel" are not."""
    ws = _words(text, 3)
    return tuple(dict.fromkeys(ws + [a + "_" + b for a, b in zip(ws, ws[1:])]))


def _fuzzy_tokens_of(text: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(src, tok): each word (>= 4 letters), its one-deletion variants and its 4-letter prefix, with the word they
    come from: a payer name with a typo, a dropped letter or an abbreviation ("NWAK TRADIG", "NORT SOFT") still
    shares a variant with the invoice's name."""
    srcs, toks = [], []
    for x in dict.fromkeys(_words(text, 4)):
        deletions = {x[:k] + x[k + 1 :] for k in range(len(x))} if len(x) <= MAX_FUZZY_WORD else set()
        variants = sorted({x, x[:4]} | deletions)
        srcs += [x] * len(variants)
        toks += variants
    return tuple(srcs), tuple(toks)


_cached_name_tokens = lru_cache(maxsize=_CACHE)(_name_tokens_of)
_cached_fuzzy_tokens = lru_cache(maxsize=_CACHE)(_fuzzy_tokens_of)


def _name_tokens(texts: list[str]) -> tuple[np.ndarray, list[str]]:
    """(position, tok) of every text's _text_name_tokens."""
    per = checked_map(_text_name_tokens, texts, "blocking: name tokens")
    return np.repeat(np.arange(len(texts)), [len(toks) for toks in per]), [tok for toks in per for tok in toks]


def _fuzzy_tokens(texts: list[str]) -> tuple[np.ndarray, list[str], list[str]]:
    """(position, src, tok) of every text's _text_fuzzy_tokens."""
    per = checked_map(_text_fuzzy_tokens, texts, "blocking: name tokens")
    pos = np.repeat(np.arange(len(texts)), [len(toks) for _, toks in per])
    return pos, [src for srcs, _ in per for src in srcs], [tok for _, toks in per for tok in toks]


def _value_counts(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(distinct values, counts) in the order of ``pd.Series(values).value_counts()``, exactly (most frequent first,
    ties as its quicksort of the reversed counts leaves them), without its Series, Index and inference: ~93 -> ~12 us
    on a /match request's 50 names (the same order on 20,000 random inputs of up to 300k values)."""
    codes, uniq = pd.factorize(values)
    counts = np.bincount(codes, minlength=len(uniq))
    order = np.arange(len(counts))[::-1][counts[::-1].argsort(kind="quicksort")][::-1]  # pandas' nargsort, descending
    return uniq[order], counts[order]


class _Vocabulary:
    """Codes of (token, scope) keys: the tokens' distinct strings hashed once (a pandas Index), each key's code in a
    sorted integer array. A transfer's tokens are looked up in it (``codes_of``)."""

    def __init__(self, words: np.ndarray, code_word: np.ndarray, code_scope: np.ndarray, n_scopes: int):
        self.words = pd.Index(words, dtype=object)  # the code of (words[w], s) is that of key w * n_scopes + s
        keys = code_word.astype(np.int64) * n_scopes + code_scope
        self.key_codes = np.argsort(keys, kind="stable")
        self.keys = keys[self.key_codes]
        self.n_scopes = n_scopes

    def codes_of(self, tokens: list[str], scope: np.ndarray) -> np.ndarray:
        """The code of each token in its scope; -1 for a (token, scope) no invoice has."""
        if not tokens or len(self.keys) == 0:
            return np.full(len(tokens), -1, np.int64)
        w = self.words.get_indexer(np.array(tokens, dtype=object))
        key = w.astype(np.int64) * self.n_scopes + (scope if self.n_scopes > 1 else 0)
        pos = np.minimum(np.searchsorted(self.keys, key), len(self.keys) - 1)
        return np.where((w >= 0) & (self.keys[pos] == key), self.key_codes[pos], -1)


def _vocabulary(
    tokens: list[str], scope: np.ndarray, scoped: bool, n_scopes: int
) -> tuple[np.ndarray, _Vocabulary, np.ndarray]:
    """(code of each token, the vocabulary of the codes, each code's position in ``vocabulary.words``): one code per
    (token, scope) with ``scoped``, per token without."""
    raw, words = pd.factorize(np.array(tokens, dtype=object))
    code = _scoped(raw, scope if scoped else None)
    n_codes = int(code.max(initial=-1)) + 1
    code_scope, code_word = np.zeros(n_codes, np.int64), np.zeros(n_codes, np.int64)
    code_scope[code], code_word[code] = (scope if scoped else 0), raw  # each code's scope and word
    vocabulary = _Vocabulary(np.asarray(words, dtype=object), code_word, code_scope, n_scopes if scoped else 1)
    return code, vocabulary, code_word


@dataclass(frozen=True)
class NamePostings:
    """The invoice side of ``name_channel`` for one batch's live invoices and scopes: the distinct names and their
    IDF masses, the postings of their words and word pairs (``ex_*``) and of their words' fuzzy variants (``fz_*``)
    that are rare enough to count, and each named invoice's name and cents for the amount windows. It depends on the
    invoices alone, so the chunks of a batch's transfers share it: counted again in every 4,096-transfer chunk, the
    names of a 100k month's 301k open invoices were counted, tokenised and hashed 25 times. Codes are only compared
    for equality downstream, so the pairs and scores are those of counting per chunk."""

    n_names: int
    wsum: np.ndarray  # per name: the IDF mass of its tokens
    idf: np.ndarray  # per exact token code
    exact: _Vocabulary
    ex_name: np.ndarray  # the useful exact postings: name, code
    ex_code: np.ndarray
    fuzzy: _Vocabulary
    fz_name: np.ndarray  # the useful fuzzy postings: name, variant code, the exact code of the word it comes from
    fz_code: np.ndarray
    fz_src: np.ndarray
    rank: np.ndarray  # per exact code of a fuzzy source word: its alphabetical rank among them ...
    n_words: int  # ... and their number
    name_of_inv: np.ndarray  # per live invoice with a name: that name ...
    inv_pos: np.ndarray  # ... its position ...
    inv_cents: np.ndarray  # ... and cents

    @classmethod
    def of(cls, inv, live: np.ndarray, max_share: float, inv_scope, n_scopes: int) -> "NamePostings | None":
        """None when no live invoice has a name."""
        names = inv["name"].to_numpy()[live]
        live_scope = np.zeros(len(live), np.int64) if inv_scope is None else inv_scope[live]
        # distinct names with their invoice counts, scope by scope (a name in two problems is two names)
        uniq, cnt, uniq_scope = [], [], []
        for sc in np.unique(live_scope):
            own_uniq, own_cnt = _value_counts(names[(live_scope == sc) & (names != "")])
            uniq += own_uniq.tolist()
            cnt.append(own_cnt)
            uniq_scope.append(np.full(len(own_cnt), sc))
        if not uniq:
            return None
        cnt, uniq_scope = np.concatenate(cnt), np.concatenate(uniq_scope)
        n_names = len(uniq)
        n_inv = np.bincount(uniq_scope, weights=cnt, minlength=n_scopes)  # invoices per scope
        limit = np.maximum(50, max_share * n_inv)
        name_text = [u[:NAME_TEXT_CHARS] for u in uniq]
        nt_name, nt_tok = _name_tokens(name_text)
        fz_name, fz_src, fz_tok = _fuzzy_tokens(name_text)
        scoped = inv_scope is not None
        # exact words and word pairs (and the words fuzzy variants come from) as one token code space
        tok_scope = np.concatenate([uniq_scope[nt_name], uniq_scope[fz_name]])
        code, exact, code_word = _vocabulary(nt_tok + fz_src, tok_scope, scoped, n_scopes)
        n_codes = len(exact.keys)
        code_scope = np.zeros(n_codes, np.int64)
        code_scope[code] = tok_scope
        nt_code, src_code = code[: len(nt_tok)], code[len(nt_tok) :]
        df = np.bincount(nt_code, weights=cnt[nt_name], minlength=n_codes)  # invoices per token
        names_per_tok = np.bincount(nt_code, minlength=n_codes)
        idf = np.log1p(n_inv[code_scope] / np.maximum(df, 1))
        wsum = _group_sum(nt_name, idf[nt_code], n_names)
        useful = (df > 0) & (df <= limit[code_scope]) & (names_per_tok <= MAX_NAMES_PER_TOKEN)
        ok = useful[nt_code]
        # typo-tolerant: each invoice-name word counts once, at 80% of its weight, if a variant of it matches
        fscope = uniq_scope[fz_name]
        fcode, fuzzy, _ = _vocabulary(fz_tok, fscope, scoped, n_scopes)
        n_fcodes = len(fuzzy.keys)
        fcode_scope = np.zeros(n_fcodes, np.int64)
        fcode_scope[fcode] = fscope
        once = _first_rows(fz_name, fcode)  # (name, variant) counted once though two words may share it
        fz_df = np.bincount(fcode[once], weights=cnt[fz_name[once]], minlength=n_fcodes)
        fz_names = np.bincount(fcode[once], minlength=n_fcodes)
        fz_ok = ((fz_df <= limit[fcode_scope]) & (fz_names <= MAX_NAMES_PER_TOKEN))[fcode] & useful[src_code]
        # per (transfer, name): each matched source word once, summed in alphabetical order as a groupby sums them
        words = np.unique(src_code[fz_ok])
        rank = np.zeros(n_codes, np.int64)
        rank[words[np.argsort(exact.words.to_numpy()[code_word[words]], kind="stable")]] = np.arange(len(words))
        # each named contractor's invoices nearest to the transfer amount (a busy contractor has thousands)
        name_code = _scoped(
            pd.factorize(np.concatenate([np.array(uniq, dtype=object), names]))[0],
            None if inv_scope is None else np.concatenate([uniq_scope, live_scope]),
        )
        name_of_inv = name_code[n_names:]  # the (scope, name) pairs of uniq are the first n_names codes
        named = name_of_inv < n_names
        return cls(
            n_names,
            wsum,
            idf,
            exact,
            nt_name[ok],
            nt_code[ok],
            fuzzy,
            fz_name[fz_ok],
            fcode[fz_ok],
            src_code[fz_ok],
            rank,
            len(words),
            name_of_inv[named],
            live[named],
            inv["cents"].to_numpy()[live[named]],
        )


def name_channel(
    inv, tr, live: np.ndarray, max_share: float, inv_scope=None, tr_scope=None, postings: NamePostings | None = None
) -> Pairs:
    """(t, i, name_share): share of the invoice name's IDF mass found among the payer name / title words.

    Rarity is counted over live invoices, so a big contractor's name stays usable while words in every
    description ("services", month names) drop out; tokens in more than ``max_share`` of invoices are ignored.
    ``postings``: the invoice side (``NamePostings.of`` with the same ``live``, ``max_share`` and invoice scopes),
    when the same invoices meet several chunks of transfers.
    """
    if postings is None:
        top = 0 if inv_scope is None else max(np.max(inv_scope, initial=0), np.max(tr_scope, initial=0))
        postings = NamePostings.of(inv, live, max_share, inv_scope, int(top) + 1)
    if postings is None:
        return _empty(["t", "i", "name_share"])
    p, n_names = postings, postings.n_names
    t_scope = np.zeros(len(tr), np.int64) if tr_scope is None else np.asarray(tr_scope, np.int64)
    tr_text = [(a + " " + b)[:NAME_TEXT_CHARS] for a, b in zip(tr["name"].tolist(), tr["title_words"].tolist())]
    tt_t, tt_tok = _name_tokens(tr_text)
    ft_t, _, ft_tok = _fuzzy_tokens(tr_text)
    # the transfers' tokens no live invoice name has meet nothing: left out before the joins
    tt_code = p.exact.codes_of(tt_tok, t_scope[tt_t])
    known = tt_code >= 0
    tt_t, tt_code = tt_t[known], tt_code[known]
    rows, idx = eq_join([tt_code], [p.ex_code])
    ex_t, ex_name, ex_w = tt_t[rows], p.ex_name[idx], p.idf[p.ex_code[idx]]
    ft_code = p.fuzzy.codes_of(ft_tok, t_scope[ft_t])
    known = ft_code >= 0
    ft_t, ft_code = ft_t[known], ft_code[known]
    keep = _first_rows(ft_t, ft_code)
    rows, idx = eq_join([ft_code[keep]], [p.fz_code])
    f_t, f_name, f_src = ft_t[keep][rows], p.fz_name[idx], p.fz_src[idx]
    # per (transfer, name): each matched source word once, summed in alphabetical order as a groupby sums them
    key = (f_t * n_names + f_name) * max(p.n_words, 1) + p.rank[f_src]
    first = np.flatnonzero(~pd.Series(key).duplicated().to_numpy())  # hashing first: the join has many repeats
    trip = first[np.argsort(key[first], kind="stable")]  # = np.unique(key, return_index=True)[1]
    f_t, f_name, f_w = f_t[trip], f_name[trip], 0.8 * p.idf[f_src[trip]]
    # exact and fuzzy sums per (transfer, name), the better of the two
    pair_key = np.concatenate([ex_t * n_names + ex_name, f_t * n_names + f_name])
    keys, which = np.unique(pair_key, return_inverse=True)
    which = which.ravel()
    n_ex = len(ex_t)
    w = np.maximum(_group_sum(which[:n_ex], ex_w, len(keys)), _group_sum(which[n_ex:], f_w, len(keys)))
    m_t, m_name = keys // n_names, keys % n_names
    share = w / p.wsum[m_name]
    # most of the name, or one specific word (a long description dilutes the share of its name part)
    strong = (share >= 0.25) | (w >= 4.0)
    m = {"t": m_t[strong], "name_id": m_name[strong], "name_share": share[strong]}
    # the few best names per transfer: a common word ("trading") must not pull in every contractor that has it
    m = _take(m, _top_per_t(m["t"], w[strong] + m["name_share"], MAX_NAMES))
    return _expand_by_amount(
        m,
        p.name_of_inv,
        p.inv_pos,
        p.inv_cents,
        tr["cents"].to_numpy(),
        PER_NAME_BELOW,
        PER_NAME_ABOVE,
        PER_NAME_SMALL,
    )


def set_channel(
    inv: pd.DataFrame, tr: pd.DataFrame, live: np.ndarray, weak: np.ndarray, inv_scope=None, tr_scope=None
) -> Pairs:
    """(t, i, set_hit): for transfers without a strong hit, the invoices of any contractor with few open invoices
    (subsets.MAX_GROUP) that form a set of 2..MAX_SET summing exactly to the transfer amount. Finds a
    multi-invoice payment with no number by a payer never seen with that contractor (a factor, "as agreed").

    Work budget: at most ``SET_HITS_PER_ROW`` (transfer, set) hits per weak transfer and live invoice in all
    (``subsets.sets_paying``). Ordinary months stay far below it (a 10k-transfer month: 9,113 hits against a budget
    of 333k; at most 883 for one transfer); an input whose amounts make every contractor's invoices add up to
    every transfer (issue 11.1) is cut to it, keeping each transfer's smallest sets."""
    if len(weak) == 0 or len(live) == 0:
        return _empty(["t", "i", "set_hit"])
    keys = inv["name_key"].to_numpy()[live]
    code = np.where(keys != "", _scoped(pd.factorize(keys)[0], None if inv_scope is None else inv_scope[live]), -1)
    hit_t, hit_row = sets_paying(
        code,
        inv["cents"].to_numpy()[live],
        tr["cents"].to_numpy()[weak],
        budget=SET_HITS_PER_ROW * (len(weak) + len(live)),
        key_scope=None if inv_scope is None else inv_scope[live],
        t_scope=None if tr_scope is None else tr_scope[weak],
    )
    return {"t": weak[hit_t], "i": live[hit_row], "set_hit": np.ones(len(hit_t))}


def _expand_by_amount(
    m,
    group_of_inv: np.ndarray,
    inv_pos: np.ndarray,
    inv_cents: np.ndarray,
    t_cents: np.ndarray,
    below: int,
    above: int,
    small: int = 0,
    key: str = "name_id",
) -> Pairs:
    """(t, i, + m's other columns) for the (t, ``key``) rows of ``m`` (columns, or a DataFrame): the group's
    invoices nearest to the transfer amount, ``below`` at or under it (a single or fee-reduced payment, parts of
    a multi-invoice payment) and ``above`` over it (partial payments), and the ``small`` ones nearest zero
    (credit notes and small invoices offset inside a multi-invoice payment). Searchsorted windows, so a group's
    size costs nothing beyond its windows.

    The windows grow with the group's open invoices (``scaled``): a half of them below, a quarter above, up to
    WINDOW_GROWTH times the base sizes. A customer with 600 open invoices in a 10k-transfers-a-month ledger pays
    several of them without a number in one transfer; fixed windows of 96 + 48 lost them. With these windows and
    the weak cap scaled alike, blocking recall at 10k transfers a month: later month 0.960 -> 0.964, frozen test
    0.976 -> 0.978; the 800-a-month world's frozen test 0.994 -> 0.997."""
    other = [c for c in m.keys() if c not in ("t", key)]
    mt, mg = np.asarray(m["t"], np.int64), np.asarray(m[key], np.int64)
    if len(mt) == 0 or len(inv_pos) == 0:
        return _empty(["t", "i"] + other)
    shift = np.int64(1) << 40
    order = np.lexsort((inv_cents, group_of_inv))
    g, c = group_of_inv[order].astype(np.int64), inv_cents[order].astype(np.int64)
    keys = g * (shift << 1) + c + shift
    bounds = np.searchsorted(g, np.arange(max(int(g.max()), int(mg.max())) + 2))  # a group may have none

    def window(cents: np.ndarray, lo_n, hi_n) -> tuple[np.ndarray, np.ndarray]:
        pos = np.searchsorted(keys, mg * (shift << 1) + cents + shift, side="right")
        return _expand(np.maximum(bounds[mg], pos - lo_n), np.minimum(bounds[mg + 1], pos + hi_n))

    size = bounds[mg + 1] - bounds[mg]
    parts = [window(t_cents[mt], scaled(size // 2, below), scaled(size // 4, above))]
    if small:
        parts.append(window(np.zeros(len(mt), np.int64), small // 2, small - small // 2))
    rows, idx = np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])
    first = _first_rows(mt[rows], order[idx])  # a pair in both windows once
    rows, i = rows[first], inv_pos[order[idx[first]]]
    return {"t": mt[rows], "i": i, **{col: np.asarray(m[col])[rows] for col in other}}


def scaled(wanted: np.ndarray, base: int) -> np.ndarray:
    """A window or cap of ``base`` that grows to ``wanted`` (from the number of open invoices), at most
    WINDOW_GROWTH times ``base``: bounded work however busy a contractor is."""
    return np.clip(wanted, base, WINDOW_GROWTH * base)


def memory_channel(
    inv, tr, live: np.ndarray, memory: Memory | None, exclude: Exclusion | None, inv_scope=None, tr_scope=None
) -> Pairs:
    """(t, i, mem): invoices of contractors this payer account/name paid before."""
    if memory is None:
        return _empty(["t", "i", "mem"])
    pairs, _ = memory.lookup(tr, exclude=exclude)
    if len(pairs["t"]) == 0:
        return _empty(["t", "i", "mem"])
    t, name_key = pairs["t"], pairs["name_key"]
    mem = pairs["acc_n"] + pairs["pay_n"]
    top = _top_per_t(t, mem, MAX_MEMORY_NAMES)  # the contractors it paid most often
    t, name_key, mem = t[top], name_key[top], mem[top]
    # one code space: the paid contractors first, so an invoice's code below their number is one of them
    code = _scoped(
        pd.factorize(np.concatenate([name_key, inv["name_key"].to_numpy()[live]]))[0],
        None if inv_scope is None else np.concatenate([tr_scope[t], inv_scope[live]]),
    )
    inv_code = code[len(name_key) :]
    ok = inv_code <= code[: len(name_key)].max()
    return _expand_by_amount(
        {"t": t, "key": code[: len(name_key)], "mem": mem},
        inv_code[ok],
        live[ok],
        inv["cents"].to_numpy()[live[ok]],
        tr["cents"].to_numpy(),
        PER_NAME_BELOW,
        PER_NAME_ABOVE,
        PER_NAME_SMALL,
        key="key",
    )


def generate_candidates(
    P: Prepared,
    memory: Memory | None = None,
    exclude: Exclusion | None = None,
    max_candidates: int = 30,
    max_candidates_weak: int | None = None,
    lookback_days: int = 180,
    ref_max_df: int = 50,
    amount_max_df: int = 50,
    name_max_share: float = 0.15,
    inv_scope: np.ndarray | None = None,
    tr_scope: np.ndarray | None = None,
    invoice_index: InvoiceIndex | None = None,
) -> pd.DataFrame:
    """Candidate pairs (t, i, prescore, channel scores), at most ``max_candidates`` per transfer.

    ``invoice_index``: ``InvoiceIndex.of(P, memory)`` when the same invoices are blocked again (the batches of one
    ``match`` call); the candidates are the same with or without it.

    ``inv_scope``/``tr_scope`` (ints per invoice / transfer): independent problems blocked in one call (the
    service's batch of requests). Each problem's pairs, statistics and date window are its own, so its candidates
    are exactly those it gets alone."""
    inv, inv_chunks, tr, tr_chunks = P.inv, P.inv_chunks, P.tr, P.tr_chunks
    inv_scope, tr_scope = currency_scopes(inv, tr, inv_scope, tr_scope)
    cols = [
        "t",
        "i",
        "prescore",
        "ref_score",
        "ref_share",
        "ref_near",
        "ref_exact",
        "amt_exact",
        "name_share",
        "mem",
        "completes",
    ]
    if len(tr) == 0 or len(inv) == 0:
        return pd.DataFrame(_empty(cols))
    booked = tr["booked_at"].to_numpy()
    issued = inv["issued_at"].to_numpy()
    day = booked.astype("datetime64[D]").astype(np.int64)
    if inv_scope is None:
        first, last = day.min(), day.max()
    else:  # each problem's own booking window; an invoice of a problem without transfers is not live
        n_scopes = int(max(inv_scope.max(initial=0), tr_scope.max(initial=0))) + 1
        first_s, last_s = np.full(n_scopes, np.iinfo(np.int64).max // 4), np.full(n_scopes, np.iinfo(np.int64).min // 4)
        np.minimum.at(first_s, tr_scope, day)
        np.maximum.at(last_s, tr_scope, day)
        first, last = first_s[inv_scope], last_s[inv_scope]
    issued_day = issued.astype("datetime64[D]").astype(np.int64)
    # invoices settled by training payments before the first transfer is booked are no candidates at all
    if invoice_index is not None and invoice_index.settled is not None:
        settled = invoice_index.settled
    else:
        settled = memory.settled_by(inv) if memory is not None else np.zeros(len(inv), np.int64) + (1 << 40)
    live = np.flatnonzero(
        (issued_day >= first - lookback_days) & (issued_day <= last + ISSUE_AFTER_BOOKING_DAYS) & (settled > first)
    )
    ref_tokens = invoice_index.ref if invoice_index is not None else None
    postings: RefPostings | None = None  # the reference channel's invoice side, once the first chunk needs it
    n_scopes = 1 if inv_scope is None else int(max(inv_scope.max(initial=0), tr_scope.max(initial=0))) + 1
    # the amount and name channels' invoice sides, shared by the chunks (None: no live invoice has a name)
    amounts = AmountPostings.of(inv, live, amount_max_df, inv_scope)
    names = NamePostings.of(inv, live, name_max_share, inv_scope, n_scopes)

    def channels(lo: int, hi: int) -> list[Pairs]:
        """The four channels' pairs of the transfers lo..hi-1 (t: their positions in ``tr``). A channel's
        statistics (token and name rarity, amount counts) come from the live invoices alone, so a transfer's pairs
        do not depend on which other transfers are blocked with it."""
        nonlocal ref_tokens, postings
        whole = lo == 0 and hi == len(tr)
        c_tr = tr if whole else tr.iloc[lo:hi].reset_index(drop=True)
        if whole:
            c_chunks = tr_chunks
        else:
            ct = tr_chunks["t"].to_numpy()
            c_chunks = tr_chunks[(ct >= lo) & (ct < hi)].assign(t=lambda d: d["t"] - lo).reset_index(drop=True)
        if ref_tokens is None and len(c_chunks):
            # the live invoices tokenised once for all chunks, as ref_channel tokenises them (the same tokens):
            # done per chunk, a 20k-transfer month without an InvoiceIndex (one batch, or fit) tokenised its 58k
            # open invoices five times, 80% of its blocking
            sel = np.flatnonzero(np.isin(inv_chunks["i"].to_numpy(), live))
            ref_tokens = RefTokens.of(inv_chunks, sel) if len(sel) else None
        scopes = {"inv_scope": inv_scope, "tr_scope": None if tr_scope is None else tr_scope[lo:hi]}
        c_exclude = exclude if whole or exclude is None else exclude.of_transfers(lo, hi)
        if postings is None and ref_tokens is not None and len(c_chunks):  # None again: no live invoice has tokens
            postings = RefPostings.of(inv_chunks, live, ref_tokens, ref_max_df, inv_scope, n_scopes)
        ref = ref_channel(inv_chunks, c_chunks, live, ref_max_df, **scopes, tokens=ref_tokens, postings=postings)
        parts = [ref]
        check_deadline("blocking: reference channel")
        parts.append(amount_channel(inv, c_tr, live, amount_max_df, **scopes, postings=amounts))
        if names is None:  # no live invoice has a name
            parts.append(_empty(["t", "i", "name_share"]))
        else:
            parts.append(name_channel(inv, c_tr, live, name_max_share, **scopes, postings=names))
        check_deadline("blocking: name channel")
        parts.append(memory_channel(inv, c_tr, live, memory, c_exclude, **scopes))
        check_deadline("blocking: memory channel")
        for part in parts:
            part["t"] = part["t"] + lo
        return parts

    def usable(c: Pairs) -> Pairs:
        """The pairs inside the date window whose invoice is still open."""
        days = (booked[c["t"]] - issued[c["i"]]).astype("timedelta64[D]").astype(np.int64)
        c = _take(c, (days >= -ISSUE_AFTER_BOOKING_DAYS) & (days <= lookback_days))
        if memory is not None and len(memory.paid):
            c = _take(c, _open_for(c, inv, tr, memory))
        return c

    def settle(parts: list[Pairs]) -> Pairs:
        """Best score per pair over channels; drop pairs outside the date window or already settled."""
        c = _max_per_pair(parts, cols[3:] + ["set_hit"], len(inv))
        check_deadline("blocking: merging channels")
        return usable(c)

    # what the caps read beyond a transfer's own pairs: each live invoice's contractor's number of open invoices,
    # and each transfer's number of reference chunks in its title
    key = inv["name_key"].to_numpy()
    code = np.where(key[live] != "", pd.factorize(key[live])[0], -1)
    per_contractor = np.zeros(len(inv), np.int64)
    per_contractor[live[code >= 0]] = np.bincount(code[code >= 0])[code[code >= 0]]
    caps = {
        "per_contractor": per_contractor,
        "title_refs": np.bincount(tr_chunks["t"].to_numpy(np.int64), minlength=len(tr)),
    }
    # chunk by chunk: a transfer with a strong hit is final at once (the set channel is for the others); the pairs
    # of the others wait for the set channel, which looks at all of them at once (its work budget is the batch's)
    has_strong = np.zeros(len(tr), bool)
    done, waiting, n_pairs = [], [], 0
    for lo in range(0, len(tr), BLOCK_CHUNK):
        c = settle(channels(lo, min(lo + BLOCK_CHUNK, len(tr))))  # in (t, i) order
        n_pairs += len(c["t"])
        # a strong hit: a number in the title, or the exact amount of an invoice of the payer
        who = (c["name_share"] > 0) | (c["mem"] > 0)
        strong = ((c["ref_exact"] + c["ref_near"]) > 0) | ((c["amt_exact"] > 0) & who)
        has_strong[c["t"][strong]] = True
        final = has_strong[c["t"]]
        done.append(_capped(_take(c, final), inv, tr, has_strong, caps, cols, max_candidates, max_candidates_weak))
        waiting.append(_take(c, ~final))
    check_deadline("blocking: merging channels")
    if n_pairs == 0 and len(live) == 0:
        return pd.DataFrame(_empty(cols))
    c = {col: np.concatenate([w[col] for w in waiting]) for col in waiting[0]}
    sets = set_channel(inv, tr, live, np.flatnonzero(~has_strong), inv_scope=inv_scope, tr_scope=tr_scope)
    check_deadline("blocking: set channel")
    if len(sets["t"]):
        # the merged pairs are c's (usable already) and the set channel's: only the new ones need the checks
        c = _max_per_pair([c, usable(sets)], cols[3:] + ["set_hit"], len(inv))
        check_deadline("blocking: merging the set channel")
    done.append(_capped(c, inv, tr, has_strong, caps, cols, max_candidates, max_candidates_weak))
    # transfer by transfer, as one cap over all pairs orders them (a transfer's rows all come from one part)
    t = np.concatenate([d["t"] for d in done])
    order = np.argsort(t, kind="stable")
    return pd.DataFrame({col: np.concatenate([d[col] for d in done])[order] for col in cols}, copy=False)


def _capped(c: Pairs, inv, tr, has_strong, caps, cols, max_candidates, max_candidates_weak) -> Pairs:
    """The pairs ``c`` (one row per (t, i), in that order) with their prescore, at most ``max_candidates`` per
    transfer (``max_candidates_weak`` for one without a strong hit, grown with its payer's open invoices; more for
    a title listing many invoices), each transfer's best first. ``caps``: ``per_contractor`` (per invoice, its
    contractor's open invoices) and ``title_refs`` (per transfer, its title's reference chunks)."""
    if len(c["t"]) == 0:  # one of the two parts is empty for a lone transfer (a /match request): ~40 numpy calls
        return _empty(cols)
    booked, issued = tr["booked_at"].to_numpy(), inv["issued_at"].to_numpy()
    t, i = c["t"], c["i"]
    # what the name and memory channels know of a contractor holds for every candidate invoice of it: an invoice
    # found only by its number (a busy customer's, outside the name channel's amount windows) is still the payer's
    name_share, mem = _per_contractor_max(t, inv["name_key"].to_numpy()[i], c["name_share"], c["mem"])
    days = (booked[t] - issued[i]).astype("timedelta64[D]").astype(np.int64)
    ta, ia = tr["amount"].to_numpy()[t], inv["amount"].to_numpy()[i]
    same_sign = np.sign(ta) == np.sign(ia)
    gap = (np.abs(ia) - np.abs(ta)) / np.maximum(np.abs(ia), 0.01)
    near = same_sign & (np.abs(gap) <= FEE_TOLERANCE + 1e-9)
    # part of a multi-invoice payment: smaller than the transfer, or a credit note offset inside it
    fits_in = np.abs(ia) <= np.abs(ta) * (1 + FEE_TOLERANCE)
    who = (name_share > 0) | (mem > 0)
    # a partial payment is 30-70% of its invoice; an invoice several times the transfer is neither part nor whole
    ratio = np.abs(ta) / np.maximum(np.abs(ia), 0.01)
    partial = same_sign & (ratio >= PARTIAL_MIN) & (ratio <= PARTIAL_MAX)
    too_big = ratio < PARTIAL_MIN
    # most invoices are paid in the second part of their payment term, few long after it
    term = (inv["due_at"].to_numpy()[i] - issued[i]).astype("timedelta64[D]").astype(np.int64)
    in_term = (days >= 0.25 * term) & (days <= term + 3)
    long_overdue = days > term + 60
    c["completes"] = np.maximum(_completions(t, c["ref_exact"], ta, ia), c["set_hit"])
    sibling = _sibling_of_named(t, inv["name_key"].to_numpy()[i], c["ref_exact"] > 0)
    c["prescore"] = (
        4 * c["ref_share"]
        + 2 * c["ref_near"]
        + 3 * c["ref_exact"]
        + 0.05 * np.minimum(c["ref_score"], 40)
        + 4 * c["amt_exact"]
        + 2 * name_share
        + 2 * (mem > 0)
        + 1.5 * (near & who)
        + 0.5 * (fits_in & who)
        + 0.3 * (partial & who)
        - 0.5 * too_big
        + 3 * c["completes"]
        + 1.5 * sibling
        + 0.8 * in_term
        - 0.8 * long_overdue
        - 0.004 * np.clip(days, 0, None)
        - 0.5 * (days < 0)
    )
    order = np.lexsort((-c["prescore"], t))
    cap = np.full(len(tr), max_candidates)
    if max_candidates_weak is not None and max_candidates_weak > max_candidates:
        # no number, no exact amount: all of the payer's open invoices, however many a busy contractor has
        payer_open = np.zeros(len(tr), np.int64)
        np.maximum.at(payer_open, t[who], caps["per_contractor"][i[who]])
        cap[~has_strong] = scaled(payer_open // 2, max_candidates_weak)[~has_strong]
    # a title that names or lists many invoices (a remittance advice: 10-25 numbers, in any form) keeps every one it
    # names, and room for the ones it leaves out
    named = np.bincount(t, weights=c["ref_exact"] > 0, minlength=len(tr)).astype(np.int64)
    listed = np.maximum(named, caps["title_refs"])
    room = max(max_candidates, max_candidates_weak or 0)  # a busy customer's remittance: its open invoices
    cap = np.where(listed >= MANY_NAMED, np.maximum(cap, listed + room), cap)
    order = order[_rank_in_run(t[order]) < cap[t[order]]]
    return {col: c[col][order] for col in cols}


def currency_scopes(inv: pd.DataFrame, tr: pd.DataFrame, inv_scope, tr_scope):
    """Problem scopes refined by currency: a transfer is paired only with invoices of its own currency, in fit and in
    match (an amount, a reference or a name means nothing across currencies, and the service refuses such a
    request). Every channel's statistics and date window are then per currency. Unchanged with one currency."""
    ic, tc = inv["currency"].to_numpy(), tr["currency"].to_numpy()
    both = np.concatenate([ic, tc])
    if len(both) == 0 or (both == both[0]).all():  # one currency (a /match request): no hashing (~40 us)
        return inv_scope, tr_scope
    codes, uniq = pd.factorize(both)
    if len(uniq) <= 1:
        return inv_scope, tr_scope
    base_i = np.zeros(len(ic), np.int64) if inv_scope is None else np.asarray(inv_scope, np.int64)
    base_t = np.zeros(len(tc), np.int64) if tr_scope is None else np.asarray(tr_scope, np.int64)
    joint = np.concatenate([base_i, base_t]) * len(uniq) + codes
    scope = pd.factorize(joint)[0]
    return scope[: len(ic)], scope[len(ic) :]


def _per_contractor_max(t: np.ndarray, name_key: np.ndarray, *values: np.ndarray) -> list[np.ndarray]:
    """Each of ``values`` raised to its maximum over the transfer's candidates of the same contractor (invoices
    without a contractor name keep their own)."""
    known = name_key != ""
    code = pd.factorize(name_key)[0]
    key = t.astype(np.int64) * (int(code.max(initial=0)) + 1) + code
    group = pd.factorize(key[known])[0]
    out = []
    for v in values:
        v = np.asarray(v, np.float64).copy()
        if known.any():
            top = np.full(int(group.max()) + 1, -np.inf)
            np.maximum.at(top, group, v[known])
            v[known] = top[group]
        out.append(v)
    return out


def _sibling_of_named(t: np.ndarray, name_key: np.ndarray, named: np.ndarray) -> np.ndarray:
    """1 for an unnamed candidate of the contractor whose invoices the title names (an invoice a remittance advice
    leaves out, or writes with a typo, belongs to the same customer as the ones it lists)."""
    known = name_key != ""
    code = pd.factorize(name_key)[0]
    rows, _ = eq_join([t[~named & known], code[~named & known]], [t[named & known], code[named & known]])
    out = np.zeros(len(t))
    out[np.flatnonzero(~named & known)[np.unique(rows)]] = 1.0
    return out


def _open_for(c: Pairs, inv: pd.DataFrame, tr: pd.DataFrame, memory: Memory) -> np.ndarray:
    """Per pair: is the invoice still open when the transfer is booked (training payments before it do not
    settle it)? Paying a settled invoice again is a duplicate payment, which pays nothing."""
    paid, _ = memory.paid_before(inv, c, tr)
    return ~is_settled(inv["amount"].to_numpy()[c["i"]], paid)


def _max_per_pair(parts: list[Pairs], cols: list[str], n_inv: int) -> Pairs:
    """One row per (t, i), in (t, i) order, with each column's maximum over the pair's rows in ``parts`` (missing
    counts as 0); one sort and one reduceat over all columns."""
    key = np.concatenate([p["t"].astype(np.int64) * (n_inv + 1) + p["i"].astype(np.int64) for p in parts])
    order = np.argsort(key)  # any order among a pair's rows: only their maximum is kept
    ks = key[order]
    start = run_starts(ks)
    values = np.zeros((len(cols), len(key)))
    at = 0
    for p in parts:
        for j, col in enumerate(cols):
            if col in p:
                values[j, at : at + len(p["t"])] = p[col]
        at += len(p["t"])
    values = np.nan_to_num(np.take(values, order, axis=1), copy=False, nan=0.0)
    best = np.maximum.reduceat(values, start, axis=1) if len(ks) else values
    return {"t": ks[start] // (n_inv + 1), "i": ks[start] % (n_inv + 1), **{col: best[j] for j, col in enumerate(cols)}}


def _completions(t: np.ndarray, ref_exact: np.ndarray, ta: np.ndarray, ia: np.ndarray) -> np.ndarray:
    """1 for invoices that complete the amount: what is left of the transfer after the invoices its title names
    exactly (all of it when none) is paid by this one invoice (within the fee tolerance) or by this one and
    another candidate (to the cent). Finds unnamed invoices and credit notes of multi-invoice payments.
    Pairs are counted, not built: a candidate completes with another when some other candidate of its transfer
    has the cents it leaves."""
    named = ref_exact > 0
    groups, which = np.unique(t, return_inverse=True)
    which = which.ravel()
    rest = ta - _group_sum(which, np.where(named, ia, 0.0), len(groups))[which]
    open_ = ~named & (np.abs(rest) >= 0.01)
    single = open_ & (np.abs(ia - rest) <= FEE_TOLERANCE * np.abs(ia) + 0.01)
    rows = np.flatnonzero(open_)
    cents = np.round(ia * 100).astype(np.int64)[rows]
    need = np.round(rest * 100).astype(np.int64)[rows] - cents  # the cents another invoice must have
    # (transfer, cents) as one integer code, for what each candidate has and what it needs
    value = pd.factorize(np.concatenate([cents, need]))[0]
    key = np.tile(which[rows], 2) * (int(value.max(initial=0)) + 1) + value
    code = np.unique(key, return_inverse=True)[1].ravel()
    has, wants = code[: len(rows)], code[len(rows) :]
    n_has, n_wants = np.bincount(has, minlength=len(key)), np.bincount(wants, minlength=len(key))
    itself = has == wants  # its cents are half the rest: it does not pair with itself
    in_pair = (n_wants[has] - itself > 0) | (n_has[wants] - itself > 0)
    out = single.astype(np.float64)
    out[rows[in_pair]] = 1.0
    return out
