"""Payer memory: what the training links teach beyond one pair (who paid which contractor, which title words
come with a payment, how much of each invoice was already paid by when), with leave-one-out for training."""

from __future__ import annotations

import weakref
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from .arrays import csr, eq_join, expand, segment_reduce
from .tolerances import is_settled


@dataclass
class Exclusion:
    """What leave-one-out takes out of memory for the training transfers: their own links and title words."""

    own: pd.DataFrame  # t, name_key of each training transfer's true links
    counted: np.ndarray  # bool per transfer: its title words were counted in memory
    linked: np.ndarray  # bool per transfer: it pays something
    own_alloc: pd.DataFrame  # t, i, a: each training transfer's own allocations

    def of_transfers(self, lo: int, hi: int) -> "Exclusion":
        """The same exclusion for the transfers at positions lo..hi-1, renumbered from 0 (blocking in chunks)."""

        def rows(df: pd.DataFrame) -> pd.DataFrame:
            t = df["t"].to_numpy()
            return df[(t >= lo) & (t < hi)].assign(t=lambda d: d["t"] - lo).reset_index(drop=True)

        return Exclusion(rows(self.own), self.counted[lo:hi], self.linked[lo:hi], rows(self.own_alloc))


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
Columns = dict[str, np.ndarray]  # a table as its columns, all of one length
# At most so many keys are looked up through a dict of the index (made once, when first needed): pandas'
# get_indexer costs ~22 us a call whatever the size, five calls of a /match request; a dict, ~1-3 us.
SMALL_LOOKUP = 256


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

    def _positions(self, name: str, index: pd.Index, keys) -> np.ndarray:
        """``index.get_indexer(keys)`` (the index's keys are distinct); few keys through a dict of it."""
        if len(keys) > SMALL_LOOKUP:
            return index.get_indexer(keys)
        where = self._cached(name + " positions", lambda: {k: n for n, k in enumerate(index)})
        return np.fromiter((where.get(k, -1) for k in keys), np.intp, len(keys))

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

    def paid_before(self, inv: pd.DataFrame, pairs, tr: pd.DataFrame):
        """(amount, number of transfers) allocated to each pair's invoice by training transfers booked strictly
        before the pair's transfer (so never by the transfer itself). ``pairs``: columns t, i (a DataFrame, or a
        dict of arrays: no frame needs to be built for the call)."""
        pt, pi = np.asarray(pairs["t"]), np.asarray(pairs["i"])
        n_pairs = len(pt)
        if len(self.paid) == 0 or n_pairs == 0:
            return np.zeros(n_pairs), np.zeros(n_pairs)
        ix = self._cached("paid", self._paid_index)
        invoices, which = np.unique(pi, return_inverse=True)  # a month's pairs share invoices
        code = self._positions("paid", ix["codes"], inv["invoice_id"].to_numpy()[invoices])[which.reshape(-1)]
        day = _day(tr["booked_at"].to_numpy()[pt])
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
        code = self._positions("paid", ix["codes"], inv["invoice_id"].to_numpy())
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

    def lookup(self, tr: pd.DataFrame, exclude: Exclusion | None = None) -> tuple[Columns, Columns]:
        """(pairs, totals), each a dict of numpy columns (a /match request's two frames cost ~0.18 ms; their readers
        take arrays): pairs = t, name_key, acc_n, pay_n (sorted by t, name_key); totals = t, acc_total, pay_total
        (all transfers). Blocking and the pair features ask for the same transfers one after the other:
        the last answer is kept for the same ``tr`` and ``exclude`` objects (callers only read it), which saves a
        /match request ~0.3 ms of pandas."""
        last = self.__dict__.get("_last_lookup")
        same_exclude = last is not None and (
            last[1] is None if exclude is None else last[1] is not None and last[1]() is exclude
        )
        if last is not None and last[0]() is tr and same_exclude:
            return last[2]
        out = self._lookup(tr, exclude)
        self._last_lookup = (weakref.ref(tr, self._forget), None if exclude is None else weakref.ref(exclude), out)
        return out

    def _forget(self, gone: weakref.ref) -> None:
        """The transfers of the last lookup are gone: so is its answer (a month's, after fit)."""
        last = self.__dict__.get("_last_lookup")
        if last is not None and last[0] is gone:
            self.__dict__.pop("_last_lookup", None)

    def __getstate__(self) -> dict:
        """Pickled without the last lookup (weak references, and a worker asks its own)."""
        state = dict(self.__dict__)
        state.pop("_last_lookup", None)
        return state

    def _lookup(self, tr: pd.DataFrame, exclude: Exclusion | None) -> tuple[Columns, Columns]:
        n_t = len(tr)
        totals = {"t": np.arange(n_t)}
        per = []
        for side, col in (("acc", "account"), ("pay", "payer")):
            ix = self._cached(side, lambda s=side: self._key_index(s))
            key = tr[col].to_numpy()
            code = self._positions(side, ix["keys"], key)
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
        pairs = {"t": pt.astype(np.int64), "name_key": pk.astype(object), "acc_n": acc, "pay_n": pay}
        return pairs, totals

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
        code = self._positions("words", ix["words"], words) if len(words) else np.zeros(0, np.int64)
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
