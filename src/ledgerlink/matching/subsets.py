"""Subset search: which sets of a transfer's candidate invoices add up to its amount.

Two searches, both vectorised over all transfers (no Python loop over transfers):
- among each transfer's ``TOP_K`` most plausible candidates: every subset, as (transfers x 2^TOP_K) matrices
  (``top_k_slots``, ``subset_masks``, ``subset_sums``; the set model's multi-invoice sets);
- among all open invoices of one contractor with at most ``MAX_GROUP`` of them: every set of 2..``MAX_SET``
  (``group_sets``; blocking's set channel, the contractor-set features and sets);
- among a transfer's candidates of one contractor with more of them (up to ``LARGE_GROUP``): sets of
  2..``PAIRED_MAX_SET``, by a meet in the middle on cents (``paired_sets``; the set enumeration).
Plus equality joins on cents for the sets that complete what a title names (``anchor_completions``,
``pair_completion``), which never build a product of candidates.
"""

from __future__ import annotations

import numpy as np

from .arrays import eq_join, expand, run_starts
from .runtime import check_deadline
from .tolerances import CENT, amount_fits

TOP_K = 8  # subsets are searched among the top-k candidates of a transfer (2^8 = 256 per transfer)
MAX_GROUP = 12  # exact set sums are searched among all open invoices of one contractor when it has at most this many
MAX_SET = 6  # ... over sets of 2..MAX_SET invoices
CELLS_PER_CHUNK = 1 << 20  # subset sums computed at once (8 MB of float64, milliseconds of BLAS); deadline between


def subset_sums(
    t: np.ndarray, score: np.ndarray, t_amount: np.ndarray, i_amount: np.ndarray, k: int = TOP_K
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


_SET_MASKS: dict[tuple[int, int], np.ndarray] = {}


def set_masks(n: int, max_size: int = MAX_SET) -> np.ndarray:
    """The subsets of n slots with 2..max_size members, as a boolean (n_sets x n) matrix."""
    if (n, max_size) not in _SET_MASKS:
        m = subset_masks(n)
        size = m.sum(1)
        _SET_MASKS[(n, max_size)] = m[(size >= 2) & (size <= max_size)]
    return _SET_MASKS[(n, max_size)]


def _key_runs(key: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(order, start, count): the rows with a key (>= 0) sorted by key (stable), each key's first position in
    ``order`` and its number of rows."""
    key = np.asarray(key)
    ok = key >= 0
    order = np.flatnonzero(ok)[np.argsort(key[ok], kind="stable")]
    ks = key[order]
    start = np.r_[0, np.flatnonzero(np.diff(ks)) + 1] if len(ks) else np.zeros(0, np.int64)
    return order, start, np.diff(np.r_[start, len(ks)])


def _size_bounds(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per row of ``values`` (keys x n cents), column s-1: the smallest and the largest sum of s of its members. A
    set of s members can only sum to an amount between them (exact, in integer cents)."""
    v = np.sort(values, axis=1)
    return np.cumsum(v, axis=1), np.cumsum(v[:, ::-1], axis=1)


def group_sets(
    key: np.ndarray,
    cents: np.ndarray,
    target: np.ndarray | None = None,
    max_n: int = MAX_GROUP,
    max_size: int = MAX_SET,
):
    """Sets of rows that share a key (a contractor), for keys with 2..max_n rows: every subset of 2..max_size.

    Yields, per chunk of keys of one group size n, (rows: keys x n row indices, masks: sets x n, sums: keys x sets
    in cents) with ``target`` None, or only the exact hits (rows, masks, hit_key_index, hit_set_index) when
    ``target`` (cents per row's key, given per row) is set; then keys whose target no set size can reach (below
    the sum of its smallest members, above the sum of its largest) are skipped. Cost is the sum over keys of 2^n,
    bounded by max_n; no Python loop over keys. Chunks hold at most ``CELLS_PER_CHUNK`` sums, in key order (the
    hits come in the order one matrix would give), with a deadline check between them.
    """
    order, start, count = _key_runs(key)
    for n in range(2, max_n + 1):
        st = start[count == n]
        if len(st) == 0:
            continue
        rows = order[st[:, None] + np.arange(n)[None, :]]
        masks = set_masks(n, max_size)
        if target is not None:
            want = target[rows[:, 0]][:, None]
            lo, hi = _size_bounds(cents[rows])
            size = slice(1, min(n, max_size))
            rows = rows[((lo[:, size] <= want) & (want <= hi[:, size])).any(1)]
        per = max(1, CELLS_PER_CHUNK // len(masks))
        for lo in range(0, len(rows), per):
            r = rows[lo : lo + per]
            sums = cents[r].astype(np.float64) @ masks.T.astype(np.float64)  # exact: cents < 2^53
            check_deadline("subset search")
            if target is None:
                yield r, masks, sums
            else:
                hk, hs = np.nonzero(sums == target[r[:, 0]].astype(np.float64)[:, None])
                if len(hk):
                    yield r, masks, hk, hs


def fill_to_budget(count: np.ndarray, budget: int) -> np.ndarray:
    """How many of its ``count`` items each owner keeps when all of them together may keep ``budget``: everything
    when it fits; else the largest common cap that fits (water-filling), so owners with few items keep all of
    them and only the ones with very many are cut."""
    count = np.asarray(count, np.int64)
    if count.sum() <= budget:
        return count
    lo, hi = 0, int(count.max())  # the cap: sum(min(count, lo)) <= budget < sum(min(count, hi))
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if np.minimum(count, mid).sum() <= budget:
            lo = mid
        else:
            hi = mid
    return np.minimum(count, lo)


def sets_paying(
    key: np.ndarray,
    cents: np.ndarray,
    t_cents: np.ndarray,
    budget: int,
    key_scope: np.ndarray | None = None,
    t_scope: np.ndarray | None = None,
    max_n: int = MAX_GROUP,
    max_size: int = MAX_SET,
) -> tuple[np.ndarray, np.ndarray]:
    """Sets of 2..max_size rows sharing a key (a contractor with 2..max_n rows) whose cents sum exactly to a
    target (a transfer amount, nonzero) of the same scope. Returns (target index, row) per member of each
    (target, set) hit.

    Bounded work, whatever the amounts: the sets of one key are at most 2^MAX_GROUP (2,497 of 2..6 members of
    12), and a set size is enumerated for a key only when some target lies between the sums of its smallest and
    its largest members (the search is pruned by amount first), in chunks. What could explode is the join: many
    contractors with many equal-ish amounts give every transfer thousands of exact sets (1,666 contractors x 12
    invoices of 100-111 EUR gave each of 1,000 transfers ~11,000 sets, 46M rows and 8 GB). So at most ``budget``
    (target, set) hits are kept in all, shared by water-filling (``fill_to_budget``); a target that is cut keeps
    its smallest sets first (fewer members: fewer coincidences), then in key order. The budget is sized by the
    caller from the input's size, so it never binds on ordinary data.
    """
    t_cents = np.asarray(t_cents, np.int64)
    targets = np.unique(t_cents[t_cents != 0])
    none = (np.zeros(0, np.int64), np.zeros(0, np.int64))
    if len(targets) == 0:
        return none
    order, start, count = _key_runs(key)
    groups = {}  # n -> (rows: keys x n, smallest and largest sums of s members)
    for n in range(2, max_n + 1):
        st = start[count == n]
        if len(st):
            rows = order[st[:, None] + np.arange(n)[None, :]]
            groups[n] = (rows, *_size_bounds(cents[rows]))
    # per hit: the target amount's position, its key's first row, and where to find its members: group size n,
    # set size s, the key's row in groups[n], the set's row in _sized_masks(n, s) (a few bytes a hit, not 12 rows)
    found: dict[str, list] = {"code": [], "owner": [], "n": [], "s": [], "key": [], "mask": []}
    for s in range(2, max_size + 1):  # smallest sets first: a target that is cut keeps these
        for n in range(s, max_n + 1):
            if n not in groups:
                continue
            rows, lo, hi = groups[n]
            reach = np.flatnonzero(
                np.searchsorted(targets, lo[:, s - 1], "left") < np.searchsorted(targets, hi[:, s - 1], "right")
            )
            masks = _sized_masks(n, s)
            per = max(1, CELLS_PER_CHUNK // len(masks))
            for c in range(0, len(reach), per):
                k = reach[c : c + per]
                sums = (cents[rows[k]].astype(np.float64) @ masks.T.astype(np.float64)).astype(np.int64)  # exact
                pos = np.minimum(np.searchsorted(targets, sums), len(targets) - 1)
                hk, hs = np.nonzero(targets[pos] == sums)
                for name, values in (("code", pos[hk, hs]), ("owner", rows[k[hk], 0]), ("key", k[hk]), ("mask", hs)):
                    found[name].append(values)
                found["n"].append(np.full(len(hk), n, np.int8))
                found["s"].append(np.full(len(hk), s, np.int8))
                check_deadline("subset search: contractor sets")
    if not found["code"]:
        return none
    f = {name: np.concatenate(values) for name, values in found.items()}
    code = f["code"].astype(np.int64)
    t_pos = np.searchsorted(targets, t_cents)
    t_ok = (t_cents != 0) & (targets[np.minimum(t_pos, len(targets) - 1)] == t_cents)
    if key_scope is not None:  # a set of one problem's invoices pays only that problem's transfers
        code = np.asarray(key_scope)[f["owner"]].astype(np.int64) * len(targets) + code
        t_pos = np.asarray(t_scope).astype(np.int64) * len(targets) + t_pos
    by_code = np.argsort(code, kind="stable")  # within a target amount: the order found, smallest sets first
    sorted_code = code[by_code]
    first = np.searchsorted(sorted_code, t_pos, "left")
    n_hits = np.where(t_ok, np.searchsorted(sorted_code, t_pos, "right") - first, 0)
    take = fill_to_budget(n_hits, budget)
    hit = by_code[expand(first, take)]
    hit_t = np.repeat(np.arange(len(t_cents)), take)
    out_t, out_row = [], []
    for n, s in sorted(set(zip(f["n"][hit].tolist(), f["s"][hit].tolist()))):
        sel = np.flatnonzero((f["n"][hit] == n) & (f["s"][hit] == s))
        members = groups[n][0][f["key"][hit[sel]]][_sized_masks(n, s)[f["mask"][hit[sel]]]]  # s rows per hit
        out_t.append(np.repeat(hit_t[sel], s))
        out_row.append(members)
    return (np.concatenate(out_t), np.concatenate(out_row)) if out_t else none


def _sized_masks(n: int, s: int) -> np.ndarray:
    """The subsets of n slots with exactly s members (rows of ``subset_masks(n)``, in its order)."""
    m = subset_masks(n)
    return m[m.sum(1) == s]


def anchor_completions(
    t: np.ndarray, ia: np.ndarray, ta_by_t: np.ndarray, named: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """(a, c) row pairs, as two arrays: ``a`` is named in the title exactly, ``c`` is not, and together they are the
    transfer amount to the cent. A typo can turn one of two numbers into another real invoice's number; the amount
    says which invoice was meant. An equality join on cents, no product of candidates (and no frame: ~0.1 ms of a
    /match request's two calls)."""
    cents = np.round(ia * 100).astype(np.int64)
    target = np.round(ta_by_t[t] * 100).astype(np.int64)
    a, c = np.flatnonzero(named), np.flatnonzero(~named)
    ra, rc = eq_join([t[a], target[a] - cents[a]], [t[c], cents[c]])
    return a[ra], c[rc]


def pair_completion(t: np.ndarray, ia: np.ndarray, rest: np.ndarray, open_: np.ndarray) -> np.ndarray:
    """1 where this invoice and another open candidate of the transfer sum to ``rest`` to the cent
    (an equality self-join on cents, not a product of candidates)."""
    cents, rest_c = np.round(ia * 100).astype(np.int64), np.round(rest * 100).astype(np.int64)
    idx = np.flatnonzero(open_)
    ra, rb = eq_join([t[idx], cents[idx]], [t[idx], rest_c[idx] - cents[idx]])
    ra, rb = idx[ra], idx[rb]
    out = np.zeros(len(t), np.float32)
    out[ra[ra != rb]] = 1.0
    return out


LARGE_GROUP = 96  # larger contractors (> MAX_GROUP candidates of one transfer): their LARGE_GROUP most probable ...
PAIRED_MAX_SET = 4  # ... are searched for exact sets of 2..PAIRED_MAX_SET members by joining pairs
PAIRED_HITS_PER_KEY = 64  # exact sets kept per key of the paired search (equal amounts: thousands would sum)
PAIRED_PAIRS_PER_CHUNK = 1 << 21  # pairs joined at a time (~100 bytes each in the joins): keys in chunks
_SHIFT = np.int64(1) << 40  # (key, cents) in one int64: |cents| < 2^40 (10^10 in currency units)


def paired_sets(
    key: np.ndarray,
    cents: np.ndarray,
    target: np.ndarray,
    min_n: int = MAX_GROUP + 1,
    max_n: int = LARGE_GROUP,
    max_size: int = PAIRED_MAX_SET,
    per_key: int = PAIRED_HITS_PER_KEY,
) -> np.ndarray:
    """Sets of 2..max_size (at most 4) rows sharing a key (a transfer's candidates of one contractor), for keys with
    min_n..max_n rows, whose cents sum exactly to the key's ``target`` (cents, given per row). Returns the member
    rows, one set per row (hits x max_size, padded with -1), smallest sets first, then key by key.

    ``group_sets`` enumerates every subset (2^n sums), which stops at MAX_GROUP rows; a customer with 60-90 open
    invoices pays 2-6 of them without a number. This search is a meet in the middle on cents: all pairs of a key
    (n(n-1)/2, 4,560 for 96 rows), a 3-set as a pair joined with a single on the cents it leaves, a 4-set as a pair
    joined with a pair (slots ordered a < b < c < d, so each set is found once). Bounded work: a join is sized
    before it is built, and a key keeps at most ``per_key`` sets of each size (batch-issued equal amounts make
    thousands of 4-sets sum; the first ones found are kept, and so many are no evidence anyway)."""
    none = np.zeros((0, max_size), np.int64)
    order, start, count = _key_runs(key)
    sel = (count >= min_n) & (count <= max_n)
    if not sel.any() or max_size < 2:
        return none
    starts, counts = start[sel], count[sel]
    # keys in the order their pairs are made (by size, then in order), PAIRED_PAIRS_PER_CHUNK pairs at a time
    by_size = np.argsort(counts, kind="stable")
    n_pairs = counts[by_size] * (counts[by_size] - 1) // 2
    chunk = (np.cumsum(n_pairs) - n_pairs) // PAIRED_PAIRS_PER_CHUNK  # a key's chunk: where its pairs start
    found: list[list[np.ndarray]] = [[] for _ in range(max_size - 1)]  # per set size, chunk by chunk
    for part in np.split(by_size, np.flatnonzero(np.diff(chunk)) + 1):
        for k, f in enumerate(_paired_sets_of(order, starts[part], counts[part], cents, target, max_size, per_key)):
            found[k].append(f)
    check_deadline("subset search: paired sets")
    return np.concatenate(
        [np.pad(f, ((0, 0), (0, max_size - f.shape[1])), constant_values=-1) for fs in found for f in fs]
    )


def _paired_sets_of(order, starts, counts, cents, target, max_size: int, per_key: int) -> list[np.ndarray]:
    """``paired_sets``' hits among the keys whose rows are ``order[starts[k] : starts[k] + counts[k]]`` (in order of
    ``counts``), one member matrix per set size. A key's sets are its own, so keys searched apart find the same sets
    in the same order; at once, a 50k-transfer batch of a 100k month joined ~20M pairs, 2.3 GB of temporaries."""
    g_of = np.repeat(np.arange(len(starts)), counts)  # singles: key number, slot, row, cents
    rows = order[expand(starts, counts)]
    slot = np.arange(len(rows)) - np.repeat(np.cumsum(counts) - counts, counts)
    c1 = np.asarray(cents, np.int64)[rows]
    want = np.asarray(target, np.int64)[rows[np.cumsum(counts) - counts]]  # per key
    pa, pb = [], []  # pairs of each key: positions into the singles
    first = np.cumsum(counts) - counts
    for n in np.unique(counts):
        ks = first[counts == n]
        ia, ib = np.triu_indices(int(n), 1)
        pa.append((ks[:, None] + ia[None, :]).ravel())
        pb.append((ks[:, None] + ib[None, :]).ravel())
        check_deadline("subset search: pairs")
    pa, pb = np.concatenate(pa), np.concatenate(pb)
    g2, c2 = g_of[pa], c1[pa] + c1[pb]
    found = []
    hit2 = np.flatnonzero(c2 == want[g2])
    found.append(_capped(np.c_[rows[pa[hit2]], rows[pb[hit2]]], g2[hit2], per_key))
    if max_size >= 3:  # pair + single: the single's slot after the pair's
        by, lo, cnt = _probe(_code(g_of, c1), _code(g2, want[g2] - c2))
        cnt = _cap_counts(g2, cnt, per_key * 4)
        p, s = np.repeat(np.arange(len(g2)), cnt), by[expand(lo, cnt)]
        ok = slot[s] > slot[pb[p]]
        p, s = p[ok], s[ok]
        found.append(_capped(np.c_[rows[pa[p]], rows[pb[p]], rows[s]], g2[p], per_key))
    if max_size >= 4:  # pair + pair: the second pair's slots after the first's
        by, lo, cnt = _probe(_code(g2, c2), _code(g2, want[g2] - c2))
        cnt = _cap_counts(g2, cnt, per_key * 4)
        p, q = np.repeat(np.arange(len(g2)), cnt), by[expand(lo, cnt)]
        ok = slot[pa[q]] > slot[pb[p]]
        p, q = p[ok], q[ok]
        found.append(_capped(np.c_[rows[pa[p]], rows[pb[p]], rows[pa[q]], rows[pb[q]]], g2[p], per_key))
    return found


def _code(group: np.ndarray, value: np.ndarray) -> np.ndarray:
    """(group, cents) as one sortable int64; cents outside +-2^39 (no real amount) become unmatched codes."""
    value = np.asarray(value, np.int64)
    inside = np.abs(value) < (_SHIFT >> 1)
    return np.where(inside, group * (_SHIFT << 1) + value + _SHIFT, -1 - np.arange(len(value)))


def _probe(codes: np.ndarray, probes: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(order sorting ``codes``, and per probe: the first position of its equal codes in that order, their count)."""
    by = np.argsort(codes, kind="stable")
    sc = codes[by]
    lo = np.searchsorted(sc, probes, "left")
    cnt = np.searchsorted(sc, probes, "right") - lo
    return by, lo, np.where(probes >= 0, cnt, 0)


def _cap_counts(group: np.ndarray, cnt: np.ndarray, cap: int) -> np.ndarray:
    """Matches kept per probe so that a group's probes (in order; each group's rows are one run) expand to at most
    ``cap`` rows in all."""
    before = np.cumsum(cnt) - cnt
    first = run_starts(group)
    base = np.repeat(before[first], np.diff(np.r_[first, len(group)]))
    return np.clip(cap - (before - base), 0, cnt)


def _capped(members: np.ndarray, group: np.ndarray, cap: int) -> np.ndarray:
    """The first ``cap`` sets of each group (each group's rows are one run)."""
    if len(group) == 0:
        return members
    first = run_starts(group)
    rank = np.arange(len(group)) - np.repeat(first, np.diff(np.r_[first, len(group)]))
    return members[rank < cap]
