"""Numpy building blocks for grouped work: joins and per-group reductions without pandas' per-call overhead.

The matcher runs the same code on one transfer with 50 candidates (an HTTP request, where each pandas merge
or groupby costs a fixed ~0.1-1 ms) and on a million transfers (where it must stay vectorised). Sorting,
``searchsorted`` and ``reduceat`` are cheap at both ends, so the hot paths are written with these.
"""

from __future__ import annotations

import numpy as np
import pandas as pd


def expand(lo: np.ndarray, cnt: np.ndarray) -> np.ndarray:
    """The concatenated ranges ``lo[k] .. lo[k] + cnt[k] - 1`` (one index array, no Python loop)."""
    cnt = np.asarray(cnt, np.int64)
    total = int(cnt.sum())
    if total == 0:
        return np.zeros(0, np.int64)
    return np.repeat(np.asarray(lo, np.int64) - (np.cumsum(cnt) - cnt), cnt) + np.arange(total)


def run_starts(sorted_keys: np.ndarray) -> np.ndarray:
    """Start index of each run of equal values in a sorted array."""
    if len(sorted_keys) == 0:
        return np.zeros(0, np.int64)
    # np.concatenate, not np.r_ (~4 us against ~1 us a call; a /match request asks ~25 times)
    return np.concatenate(([0], np.flatnonzero(sorted_keys[1:] != sorted_keys[:-1]) + 1))


def _codes(columns_a: list[np.ndarray], columns_b: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """One int64 key per row for multi-column keys, consistent between the two sides."""
    ka = np.zeros(len(columns_a[0]), np.int64)
    kb = np.zeros(len(columns_b[0]), np.int64)
    for ca, cb in zip(columns_a, columns_b):
        both = np.concatenate([np.asarray(ca), np.asarray(cb)])
        if both.dtype.kind in "iu" and len(columns_a) == 1:
            return np.asarray(ca, np.int64), np.asarray(cb, np.int64)
        inv, uniq = pd.factorize(both)  # hashing: strings are never sorted (slow in Python on millions)
        ka = ka * (len(uniq) + 1) + inv[: len(ka)]
        kb = kb * (len(uniq) + 1) + inv[len(ka) :]
    return ka, kb


def eq_join(columns_a: list[np.ndarray], columns_b: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Row pairs (ra, rb) whose key columns are all equal: an inner equality join, in the order pandas' inner
    merge gives (rows of ``a`` in order, each one's matches in ``b``'s order)."""
    if len(columns_a[0]) == 0 or len(columns_b[0]) == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    ka, kb = _codes(columns_a, columns_b)
    ob = np.argsort(kb, kind="stable")
    sb = kb[ob]
    lo = np.searchsorted(sb, ka, side="left")
    cnt = np.searchsorted(sb, ka, side="right") - lo
    return np.repeat(np.arange(len(ka)), cnt), ob[expand(lo, cnt)]


def csr(keys: np.ndarray, n_keys: int) -> tuple[np.ndarray, np.ndarray]:
    """(order, offsets): ``order`` sorts rows by ``keys`` (stable); key k's rows are order[offsets[k]:offsets[k+1]]."""
    keys = np.asarray(keys, np.int64)
    order = np.argsort(keys, kind="stable")
    return order, np.searchsorted(keys[order], np.arange(n_keys + 1))


def segment_reduce(ufunc, values: np.ndarray, offsets: np.ndarray, empty=np.nan) -> np.ndarray:
    """``ufunc.reduceat`` over the segments offsets[k]:offsets[k+1] of ``values`` (rows, for a matrix: each column
    reduced); ``empty`` for empty segments."""
    n = len(offsets) - 1
    out = np.full((n,) + values.shape[1:], empty, dtype=np.result_type(values.dtype, np.asarray(empty).dtype))
    size = np.diff(offsets)
    nz = size > 0
    if nz.any():
        out[nz] = ufunc.reduceat(values, offsets[:-1][nz], axis=0)
    return out


def first_max_per_group(group: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Row index of the first largest value of each group (groups 0..g-1 with at least one row), like argmax."""
    o = np.lexsort((np.arange(len(values)), -values, group))
    return o[run_starts(group[o])]


def rank_min_desc(group: np.ndarray, values: np.ndarray) -> np.ndarray:
    """1-based rank of each value within its group, highest first, ties sharing the lowest rank (pandas
    ``rank(method="min", ascending=False)``); NaN values stay NaN."""
    out = np.full(len(values), np.nan)
    valid = np.flatnonzero(~np.isnan(values))
    if len(valid) == 0:
        return out
    o = valid[np.lexsort((-values[valid], group[valid]))]
    g, v = group[o], values[o]
    pos = np.arange(len(o))
    new_group = np.concatenate(([True], g[1:] != g[:-1]))
    new_value = new_group | np.concatenate(([True], v[1:] != v[:-1]))
    g_start = np.maximum.accumulate(np.where(new_group, pos, 0))
    v_start = np.maximum.accumulate(np.where(new_value, pos, 0))
    out[o] = v_start - g_start + 1
    return out


def with_column(frame: pd.DataFrame, name: str, values: np.ndarray) -> pd.DataFrame:
    """``frame.assign(name=values)`` for a frame of numpy columns, built from its column arrays (no copy of them):
    ``assign`` copies every block first (a /match request's links, decisions and scored pairs: ~87 -> ~57 us each).
    The caller's frame is not changed."""
    columns = {c: frame[c].to_numpy() for c in frame.columns}
    return pd.DataFrame({**columns, name: values}, index=frame.index, copy=False)
