"""Why the matcher chose what it chose: feature contributions of the chosen pairs and sets, put in words.

``match(..., explain=True)`` keeps a ``Trace`` of what each decision pass computed (pairs, pair features and
probabilities, the enumerated sets, their features and set-model scores; a second pass decides some transfers
again) and then explains only what was chosen, so the cost grows with the links, not with the candidates:
- each link: the pair model's feature contributions on that pair (xgboost's ``pred_contribs``, Saabas, log-odds;
  ``contributions.py``), the fold models' averaged as their probabilities are;
- each transfer: the set model's contributions on the set it chose (the empty set when it pays nothing); a link of
  a multi-invoice set starts with its set's reasons ("3 invoices sum to the amount ...");
- facts without a model: no candidate at all, a first choice lost to another transfer, a second-pass decision.
``reasons.py`` holds the words. Without ``explain`` nothing here runs and the results are what they were.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from . import reasons as R
from .arrays import eq_join, first_max_per_group, run_starts, with_column
from .contributions import contributions
from .normalize import Prepared, Table, n_rows
from .normalize import _chunk_parts as chunk_parts
from .sets import first_choices


@dataclass
class Pass:
    """One decision pass: its pairs (t, i), their features ``X`` and probabilities ``p``, its sets (``table``,
    features ``SX``, set-model scores ``q``; None without a set model), and the transfers it decides (``deciding``,
    a mask; None: all)."""

    pairs: pd.DataFrame
    X: pd.DataFrame | None = None
    p: np.ndarray | None = None
    deciding: np.ndarray | None = None
    table: object | None = None
    SX: pd.DataFrame | None = None
    q: np.ndarray | None = None


@dataclass
class Trace:
    """What ``Matcher._decide`` computed, kept only while explaining. ``deciding`` is set before a second pass."""

    passes: list[Pass] = field(default_factory=list)
    deciding: np.ndarray | None = None

    def add(self, pairs, X=None, p=None, table=None, SX=None, q=None) -> None:
        self.passes.append(Pass(pairs, X, p, self.deciding, table, SX, q))


_NUMBER_TOKEN = re.compile(r"[^\s,;:()]*\d[^\s,;:()]*")
_LEAD = re.compile(r"\s+[-–|]\s+")  # "Name - what - number": the lead that normalize.py reads a name from


@dataclass(frozen=True)
class InvoiceTexts:
    """The invoices' texts as written (row = invoice position of ``Prepared.inv``), for the phrases: the number,
    the contractor's name and the description (where a world without numbers keeps them)."""

    number: np.ndarray
    contractor: np.ndarray
    description: np.ndarray

    @classmethod
    def of(cls, invoices: Table) -> "InvoiceTexts":
        """From a contract frame or its columns (``normalize.Table``)."""

        def col(name):
            if name not in invoices:
                return np.full(n_rows(invoices), "", dtype=object)
            return np.array(["" if v is None or v != v else str(v).strip() for v in invoices[name]], dtype=object)

        return cls(col("invoice_number"), col("counterparty_name"), col("description"))

    def contractor_of(self, i: int, normalized: str) -> str:
        """The contractor's name as written; without one, the lead of a description "Name - what - number" (where
        the matcher found the name it compares), else the ``normalized`` name."""
        if self.contractor[i]:
            return self.contractor[i]
        lead = _LEAD.split(self.description[i], maxsplit=1)
        return lead[0].strip() if len(lead) == 2 and lead[0].strip() else normalized

    def number_of(self, i: int, title_digits: set[str]) -> str:
        """The invoice number as written; without one, the number in the description that the title carries (the
        first number of 3+ digits when none matches)."""
        if self.number[i]:
            return self.number[i]
        return self._description_number(i, title_digits, first_if_none=True)

    def reference_of(self, i: int, title_digits: set[str]) -> tuple[str, bool]:
        """(the reference to name, whether it is a reference of the description rather than the invoice number):
        the description's reference where the title carries it and not the invoice number (an assignment or PO
        number of an instalment plan), else ``number_of``."""
        number = self.number[i]
        if number and not title_digits.intersection(number_forms(number)):
            quoted = self._description_number(i, title_digits, first_if_none=False)
            if quoted:
                return quoted, True
        return self.number_of(i, title_digits), False

    def _description_number(self, i: int, title_digits: set[str], first_if_none: bool) -> str:
        first = ""
        for tok in _NUMBER_TOKEN.findall(self.description[i]):
            tok = tok.strip(".-/")
            digits = "".join(ch for ch in tok if ch.isdigit())
            if len(digits) < 3:
                continue
            if title_digits.intersection(number_forms(tok)):
                return tok
            first = first or tok
        return first if first_if_none else ""


GROUPS = "groups:"  # marks the second form of a number in a title's set of numbers


def number_forms(text: str) -> tuple[str, str]:
    """The two forms in which a number is the same number (``features.ref_digits_exact``): its digits, and its digit
    groups without their leading zeros ("FV/2025/3/142" is FV/2025/03/0142), as ``normalize`` makes them."""
    _, digits, groups, _ = chunk_parts(text)
    return digits, GROUPS + groups


SMALL_FRAME = 4096  # rows: a request's whole feature frame is one numpy copy, cheaper than a pandas row selection


def _rows(frame: pd.DataFrame, rows: np.ndarray) -> np.ndarray:
    """The ``rows`` of a feature frame as float64."""
    if len(frame) <= SMALL_FRAME:
        return frame.to_numpy(np.float64)[rows]
    return frame.iloc[rows].to_numpy(np.float64)


def object_column(items: list) -> np.ndarray:
    """A column of Python objects (tuples of phrases), one per item (numpy would make a 2-D array of equal tuples)."""
    out = np.empty(len(items), dtype=object)
    for k, v in enumerate(items):
        out[k] = v
    return out


def _rows_by(keys: np.ndarray, n: int):
    """``rows(k)``: the rows whose key is ``k`` (0..n-1), by one stable sort."""
    order = np.argsort(keys, kind="stable")
    starts = np.searchsorted(keys[order], np.arange(n + 1))
    return lambda k: order[starts[k] : starts[k + 1]]


class _Explainer:
    """Reasons for one batch: ``link_reasons`` (per link row) and ``dec_reasons`` (per transfer)."""

    def __init__(self, matcher, trace: Trace, P: Prepared, texts: InvoiceTexts, links: pd.DataFrame):
        self.m, self.trace, self.P, self.texts = matcher, trace, P, texts
        self.iid = P.inv["invoice_id"].to_numpy()
        self.inv_name = P.inv["name"].to_numpy()
        self.lt, self.li = links["t"].to_numpy(np.int64), links["i"].to_numpy(np.int64)
        self.link_reasons: list[tuple[str, ...]] = [()] * len(links)
        self.dec_reasons: dict[int, tuple[str, ...]] = {}
        self.links_of = _rows_by(self.lt, len(P.tr))
        self.paid_by: dict[int, set[int]] = {}  # invoice -> the transfers that pay it
        for t, i in zip(self.lt.tolist(), self.li.tolist()):
            self.paid_by.setdefault(i, set()).add(t)
        self.title_digits: dict[int, set[str]] = {}
        for t, d, g in zip(P.tr_chunks["t"].tolist(), P.tr_chunks["digits"].tolist(), P.tr_chunks["groups"].tolist()):
            self.title_digits.setdefault(t, set()).update((d, GROUPS + g))

    def run(self) -> None:
        owner = np.zeros(len(self.P.tr), np.int64)
        for k, ps in enumerate(self.trace.passes):
            if ps.deciding is None:
                owner[:] = k
            else:
                owner[np.asarray(ps.deciding, bool)] = k
        for k, ps in enumerate(self.trace.passes):
            mine = owner == k
            if mine.any():
                self._pass(k, ps, mine)

    def _contractor(self, i: int) -> str:
        return self.texts.contractor_of(i, str(self.inv_name[i]))

    # ------------------------------------------------------------------------------------------------------
    def _pass(self, k: int, ps: Pass, mine: np.ndarray) -> None:
        self.ps = ps
        pt, pi = ps.pairs["t"].to_numpy(np.int64), ps.pairs["i"].to_numpy(np.int64)
        has_pairs = np.bincount(pt, minlength=len(mine)) > 0
        for t in np.flatnonzero(mine & ~has_pairs).tolist():
            self.dec_reasons[t] = (R.NO_CANDIDATE if k == 0 else R.CANDIDATES_TAKEN,)
        lrows = np.flatnonzero(mine[self.lt])
        ra, rb = eq_join([self.lt[lrows], self.li[lrows]], [pt, pi])
        self.pair_row = np.full(len(self.lt), -1, np.int64)
        self.pair_row[lrows[ra]] = rb
        n_links = np.bincount(self.lt, minlength=len(mine))
        pair = dict(zip(lrows[ra].tolist(), self._pair_phrases(ps, rb, n_links[self.lt[lrows[ra]]])))
        best = self._best_candidates(ps, pt)
        decided = np.flatnonzero(mine & has_pairs)
        sets = self._set_phrases(ps, decided, pair, best) if ps.table is not None else {}
        lost = self._lost(ps, decided) if k > 0 else {}
        for t in decided.tolist():
            rows = self.links_of(t)
            own = sets.get(t)
            together = own[0] if own is not None and len(rows) >= 2 else []
            for r in rows.tolist():
                said = {g for _, _, g in together}
                mine_ = [text for text, _, g in pair.get(r, []) if not (g == "sums" and "sum" in said)]
                texts = [text for text, _, g in together if g != "own evidence"][: R.MAX_SET_REASONS] + mine_
                if not texts and self.pair_row[r] >= 0:  # no enumerated set (a remnant) and no phrase of its own
                    texts = [R.pair_model_choice(str(self.iid[self.li[r]]), float(ps.p[self.pair_row[r]]))]
                self.link_reasons[r] = tuple(dict.fromkeys(texts))[: R.MAX_LINK_REASONS]
            reasons = own[1] if own is not None else self._facts(t, rows, pair, best)
            if lost.get(t):
                reasons = reasons[: R.MAX_DECISION_REASONS - 1] + [R.decided_again(lost[t])]
            self.dec_reasons[t] = tuple(reasons[: R.MAX_DECISION_REASONS])

    def _lost(self, ps: Pass, decided: np.ndarray) -> dict[int, tuple[str, ...]]:
        """Per transfer decided again: the candidates (ids, at most 3) of the first pass it no longer has."""
        first = self.trace.passes[0]
        ft, fi = first.pairs["t"].to_numpy(np.int64), first.pairs["i"].to_numpy(np.int64)
        pt, pi = ps.pairs["t"].to_numpy(np.int64), ps.pairs["i"].to_numpy(np.int64)
        keep = np.isin(ft, decided)
        ft, fi = ft[keep], fi[keep]
        still, _ = eq_join([ft, fi], [pt, pi])
        gone = np.ones(len(ft), bool)
        gone[still] = False
        out: dict[int, tuple[str, ...]] = {}
        for t, i in zip(ft[gone].tolist(), fi[gone].tolist()):
            if len(out.get(t, ())) < 3:
                out[t] = out.get(t, ()) + (str(self.iid[i]),)
        return out

    def _best_candidates(self, ps: Pass, pt: np.ndarray) -> dict[int, tuple[int, float]]:
        """Each transfer's most probable candidate: (pair row, p)."""
        if ps.p is None or len(pt) == 0:
            return {}
        rows = first_max_per_group(pt, np.asarray(ps.p, np.float64))
        return {int(pt[r]): (int(r), float(ps.p[r])) for r in rows}

    # ------------------------------------------------------------------------------------------------------
    def _pair_phrases(self, ps: Pass, rows: np.ndarray, set_size: np.ndarray) -> list[list[tuple[str, float, str]]]:
        if len(rows) == 0:
            return []
        cols = list(ps.X.columns)
        index = {c: k for k, c in enumerate(cols)}
        values = _rows(ps.X, rows)
        C = contributions(self.m.pair_boosters_, values, cols)
        by_group = C @ R.group_matrix(R.PAIR_GROUPS, cols) + self._heuristic_shares(ps, rows, C, index)
        pt, pi = ps.pairs["t"].to_numpy(), ps.pairs["i"].to_numpy()
        ranked = R.ranked_groups(by_group)
        out = []
        for n, r in enumerate(rows.tolist()):
            i, t = int(pi[r]), int(pt[r])
            number, in_description = self.texts.reference_of(i, self.title_digits.get(t, set()))
            e = R.Evidence(
                x=R.Row(values[n], index),
                c=R.Row(C[n], index),
                number=number,
                number_in_description=in_description,
                contractor=self._contractor(i),
                set_size=int(set_size[n]),
            )
            out.append(R.phrases(R.PAIR_GROUPS, ranked[n], e, R.MAX_LINK_REASONS))
        return out

    def _heuristic_shares(self, ps: Pass, rows: np.ndarray, C: np.ndarray, index: dict[str, int]) -> np.ndarray:
        """(rows x groups) the heuristic features' contribution shared among the groups whose terms put the pair
        ahead of its transfer's best other candidate (by all of its terms when it has no other)."""
        names = [g.name for g in R.PAIR_GROUPS]
        out = np.zeros((len(rows), len(names)))
        h = C[:, [index[f] for f in R.HEURISTIC_FEATURES]].sum(axis=1)
        pt = ps.pairs["t"].to_numpy()
        scope = np.flatnonzero(np.isin(pt, pt[rows]))  # the rows of the explained transfers
        terms = R.heuristic_terms(R.Columns(_rows(ps.X, scope), index))
        T = np.column_stack(list(terms.values()))
        st = pt[scope]
        o = np.lexsort((np.arange(len(scope)), -T.sum(axis=1), st))
        starts = run_starts(st[o])
        size = np.diff(np.r_[starts, len(o)])
        top = np.full(int(st.max(initial=-1)) + 1, -1, np.int64)
        second = np.full(len(top), -1, np.int64)
        top[st[o][starts]] = o[starts]
        many = size > 1
        second[st[o][starts[many]]] = o[starts[many] + 1]
        local = np.searchsorted(scope, rows)
        tr = pt[rows]
        other = np.where(top[tr] == local, second[tr], top[tr])
        D = T[local] - np.where((other >= 0)[:, None], T[np.maximum(other, 0)], 0.0)
        side = np.where((h > 0)[:, None], D > 0, D < 0)
        part = np.where(side, D, 0.0)
        total = part.sum(axis=1)
        share = np.divide(part, total[:, None], out=np.zeros_like(part), where=total[:, None] != 0)
        out[:, [names.index(g) for g in terms]] = h[:, None] * share
        return out

    # ------------------------------------------------------------------------------------------------------
    def _set_phrases(self, ps: Pass, decided: np.ndarray, pair, best) -> dict[int, tuple[list, list[str]]]:
        """Per decided transfer: (the chosen set's phrases, the decision's reasons). The chosen set is found by
        its members (a hash of their invoices), the set model's first choice by its score."""
        S, M = ps.table.sets, ps.table.members
        st = S["t"].to_numpy(np.int64)
        pi = ps.pairs["i"].to_numpy(np.int64)
        h = np.random.default_rng(0).integers(1, 2**62, len(self.P.inv), dtype=np.int64)
        set_hash = np.zeros(len(S), np.int64)
        np.bitwise_xor.at(set_hash, M["sid"].to_numpy(), h[pi[M["row"].to_numpy()]])
        t_hash = np.zeros(len(self.P.tr), np.int64)
        np.bitwise_xor.at(t_hash, self.lt, h[self.li])
        n_links = np.bincount(self.lt, minlength=len(self.P.tr))
        ra, rb = eq_join([decided, t_hash[decided], n_links[decided]], [st, set_hash, S["size"].to_numpy()])
        chosen = dict(zip(decided[ra].tolist(), rb.tolist()))
        first_choice = first_choices(S, ps.q)  # the set model's, before conflicts
        top = dict(zip(st[first_choice].tolist(), first_choice.tolist()))
        sids = np.array(sorted(set(chosen.values())), np.int64)
        cols = list(ps.SX.columns)
        index = {c: k for k, c in enumerate(cols)}
        values = _rows(ps.SX, sids)
        C = contributions([self.m.set_booster_], values, cols)  # of P(exactly right), the decision's confidence
        ranked = R.ranked_groups(C @ R.group_matrix(R.SET_GROUPS, cols)) if len(sids) else []
        at = {s: n for n, s in enumerate(sids.tolist())}
        members_of = _rows_by(M["sid"].to_numpy(), len(S))
        mrows = M["row"].to_numpy()
        out = {}
        for t in decided.tolist():
            rows = self.links_of(t)
            set_texts: list = []
            reasons: list[str] = []
            if t in chosen:
                n = at[chosen[t]]
                b = best.get(t)
                e = R.Evidence(
                    x=R.Row(values[n], index),
                    c=R.Row(C[n], index),
                    contractor=self._contractor(int(self.li[rows[0]])) if len(rows) else "",
                    invoice_ids=tuple(str(x) for x in self.iid[self.li[rows]]),
                    best_candidate=str(self.iid[pi[b[0]]]) if b else "",
                    member_reasons=tuple(p[0][0] for p in (pair.get(int(r), []) for r in rows) if p),
                    set_size=len(rows),
                )
                set_texts = R.phrases(R.SET_GROUPS, ranked[n], e, R.MAX_DECISION_REASONS)
                reasons = [text for text, _, _ in set_texts]
            if t in top and top[t] != chosen.get(t):
                first = tuple(str(x) for x in self.iid[pi[mrows[members_of(top[t])]]])
                if first:
                    reasons.insert(0, R.conflict(first))
            out[t] = (set_texts, reasons or self._facts(t, rows, pair, best))
        return out

    def _facts(self, t: int, rows: np.ndarray, pair, best) -> list[str]:
        """Reasons that need no set model: the links' own first reasons, or, for a transfer that pays nothing, its
        best candidate: how likely, and whether another transfer pays it."""
        if len(rows):
            texts = list(dict.fromkeys(p[0][0] for p in (pair.get(int(r), []) for r in rows) if p))
            if texts:
                return texts
            r = int(rows[0])
            return [R.pair_model_choice(str(self.iid[self.li[r]]), float(self.ps.p[self.pair_row[r]]))]
        b = best.get(t)
        if b is None:
            return [R.NO_CANDIDATE]
        row, p = b
        i = int(self.ps.pairs["i"].to_numpy()[row])
        inv_id = str(self.iid[i])
        if p < 0.5:
            return [R.best_only(inv_id, p)]
        if self.paid_by.get(i, set()) - {t}:
            return [R.paid_by_other(inv_id, p)]
        return [R.nothing_likelier(inv_id, p)]


def explain_batch(matcher, trace: Trace, P: Prepared, texts: InvoiceTexts, links: pd.DataFrame, dec: pd.DataFrame):
    """``links`` (t, i, ...) and ``dec`` (t, ...) of one batch with a ``reasons`` column: a tuple of phrases per
    row, most important first."""
    ex = _Explainer(matcher, trace, P, texts, links)
    ex.run()
    return (
        with_column(links, "reasons", object_column(ex.link_reasons)),
        with_column(dec, "reasons", object_column([ex.dec_reasons.get(t, ()) for t in dec["t"].tolist()])),
    )
