"""One transfer against the candidate invoices it comes with (``POST /match``): the fast path.

``match_one`` gives the answer ``Matcher.match(invoices, [transfer])`` gives, with the work the general path does
for arbitrary frames left out:
- the frame check (``base.check_frame``: dates parsed, amounts converted, ids made unique, in pandas): the
  service's request model has checked every field once already, so the records become numpy columns directly,
  which preparation reads without a DataFrame;
- the problem scopes and the result cut of ``match_many``, and the ``MatchResult`` frames: the answer is read from
  the batch's numpy columns.
What it does not leave out is the matching itself: ``Matcher._match_batch``, the code ``match`` runs on every batch
and training evaluates (blocking among the given candidates, pair features, the trees through ``inplace_predict``,
the set model and choice) and, with ``explain``, the same reasons (``explain.explain_batch``). One transfer has
no other transfer to peel invoices from, so the second pass finds nothing to redo. Same answers: tested against
``match`` on many requests, and the serving benchmark compares every HTTP answer with the in-process one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from ..data.contract import TABLES
from .explain import InvoiceTexts
from .normalize import Prepared
from .runtime import deadline_scope


@dataclass(frozen=True)
class SingleMatch:
    """The answer for one transfer: its decision, the chosen invoices, every scored candidate ranked, and the
    reasons (empty tuples when not explained)."""

    transfer_id: str
    decision: str  # "auto" | "review"
    confidence: float
    # (invoice_id, allocated_amount, confidence, reasons), in the matcher's order
    chosen: list[tuple[str, float, float, tuple[str, ...]]]
    ranked: list[tuple[str, float, int]]  # (invoice_id, probability, rank): most probable first
    scored: frozenset[str]  # the candidates blocking kept (the others were never scored)
    reasons: tuple[str, ...] = ()  # of the decision

    @classmethod
    def of_result(cls, result, transfer_id: str) -> "SingleMatch":
        """The same answer read from a ``MatchResult`` (``match`` / ``match_many``) of this transfer."""
        dec = result.decisions[result.decisions["transfer_id"] == transfer_id]
        links = result.links[result.links["transfer_id"] == transfer_id]
        cands = result.candidates[result.candidates["transfer_id"] == transfer_id].sort_values("rank", kind="stable")
        has = len(dec) > 0
        explained = "reasons" in result.decisions.columns
        link_reasons = links["reasons"].tolist() if explained else [()] * len(links)
        return cls(
            transfer_id=transfer_id,
            decision=str(dec["decision"].iloc[0]) if has else "review",
            confidence=float(dec["confidence"].iloc[0]) if has else 0.0,
            chosen=[
                (str(i), float(a), float(c), tuple(r))
                for i, a, c, r in zip(links["invoice_id"], links["allocated_amount"], links["confidence"], link_reasons)
            ],
            ranked=[
                (str(i), float(p), int(r)) for i, p, r in zip(cands["invoice_id"], cands["probability"], cands["rank"])
            ],
            scored=frozenset(cands["invoice_id"].tolist()),
            reasons=tuple(dec["reasons"].iloc[0]) if has and explained else (),
        )


def checked_columns(records: Sequence[Any], table: str) -> dict[str, np.ndarray]:
    """The contract columns (``data.contract.TABLES[table]``) of records whose fields are already checked
    (attributes named as the columns, dates as ``datetime.date``) as numpy arrays: what ``check_frame`` makes of
    the same rows, without a DataFrame (``normalize.Table``: preparation reads either)."""
    columns = {}
    for col in TABLES[table]:
        values = [getattr(r, col.name, None) for r in records]
        if col.kind == "date":
            columns[col.name] = np.array(values, dtype="datetime64[D]")
        elif col.kind == "money":
            columns[col.name] = np.array(values, dtype=np.float64)
        else:
            columns[col.name] = np.array(values, dtype=object)
    return columns


def match_one(
    matcher, transfer: Any, candidates: Sequence[Any], deadline: float | None = None, explain: bool = False
) -> SingleMatch:
    """``matcher``'s answer for ``transfer`` against ``candidates`` (checked records: the service's request
    models), as ``matcher.match`` would give it. ``deadline`` and ``explain``: as in ``match``."""
    matcher._check_fitted()
    with deadline_scope(deadline):
        invoices = checked_columns(candidates, "invoices")
        P = Prepared.of(invoices, checked_columns([transfer], "transfers"))
        scored, links, dec = matcher._match_batch(P, texts=InvoiceTexts.of(invoices) if explain else None)
    ids = P.inv["invoice_id"].to_numpy()
    i, p = scored["i"].to_numpy(), scored["probability"].to_numpy(np.float64)
    order = np.lexsort((i, -p))  # as Matcher._result ranks: most probable first, ties in the order given
    conf = dec["confidence"].to_numpy(np.float64)
    confidence = float(conf[0]) if len(conf) else 0.0
    link_i, link_amount, link_conf = (
        links[c].to_numpy(d) for c, d in (("i", None), ("allocated_amount", np.float64), ("confidence", None))
    )
    link_reasons = links["reasons"].tolist() if explain else [()] * len(link_i)
    # threshold 1.0 = nothing is safe enough (confidences are clipped below 1), as in Matcher._result
    decision = "auto" if len(conf) and confidence >= matcher.auto_threshold_ else "review"
    return SingleMatch(
        transfer_id=str(P.tr["transfer_id"].to_numpy()[0]),
        decision=decision,
        confidence=confidence,
        chosen=[
            (str(ids[k]), float(a), float(c), tuple(why))
            for k, a, c, why in zip(link_i, link_amount, link_conf, link_reasons)
        ],
        ranked=[(str(ids[i[k]]), float(p[k]), r + 1) for r, k in enumerate(order)],
        scored=frozenset(ids[i].tolist()),
        reasons=tuple(dec["reasons"].to_numpy()[0]) if explain and len(conf) else (),
    )
