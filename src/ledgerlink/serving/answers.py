"""From validated requests to the matcher's frames, and from its ``MatchResult`` to the API's answers.

No HTTP here: the service calls these around ``Matcher.match`` / ``match_many``, and the tests call them directly.
The frames have the columns the data contract names, so the matcher checks them as it checks training data.
The results must be explained (``explain=True``): every answer carries the matcher's reasons, the same words the
monthly suggestions write to the warehouse.
"""

from __future__ import annotations

import pandas as pd
from pydantic import BaseModel

from ..matching.reasons import NO_CANDIDATE_SENT
from .schemas import (
    INVOICE_COLUMNS,
    TRANSFER_COLUMNS,
    BatchRequest,
    BatchResponse,
    ChosenInvoice,
    Invoice,
    MatchRequest,
    MatchResponse,
    RankedInvoice,
    Transfer,
    TransferAssignment,
)


def _frame(rows: list[BaseModel], columns: list[str]) -> pd.DataFrame:
    return pd.DataFrame([r.model_dump() for r in rows], columns=columns)


def invoice_frame(invoices: list[Invoice]) -> pd.DataFrame:
    return _frame(invoices, INVOICE_COLUMNS)


def transfer_frame(transfers: list[Transfer]) -> pd.DataFrame:
    return _frame(transfers, TRANSFER_COLUMNS)


def match_problem(request: MatchRequest) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The (invoices, transfers) problem of one ``/match`` request, as ``Matcher.match_many`` takes it."""
    return invoice_frame(request.candidates), transfer_frame([request.transfer])


def batch_problem(request: BatchRequest) -> tuple[pd.DataFrame, pd.DataFrame]:
    return invoice_frame(request.invoices), transfer_frame(request.transfers)


def _reasons(row) -> list[str]:
    """A result row's reasons as a list (a ``KeyError`` naming the column when the result was not explained)."""
    try:
        return list(row["reasons"] if isinstance(row, (dict, pd.Series)) else row.reasons)
    except (KeyError, AttributeError):
        raise KeyError("the MatchResult has no 'reasons' column: match with explain=True") from None


def _chosen(rows: pd.DataFrame) -> list[ChosenInvoice]:
    return [
        ChosenInvoice(
            invoice_id=r.invoice_id,
            allocated_amount=float(r.allocated_amount),
            confidence=float(r.confidence),
            reasons=_reasons(r),
        )
        for r in rows.itertuples()
    ]


def no_candidates(transfer_id: str, empty_confidence: float, threshold: float, model: str) -> MatchResponse:
    """No invoices at all: the transfer pays none, as sure as the model is about "no candidates"."""
    return MatchResponse(
        transfer_id=transfer_id,
        decision="auto" if empty_confidence >= threshold else "review",
        confidence=empty_confidence,
        auto_threshold=threshold,
        reasons=[NO_CANDIDATE_SENT],
        chosen=[],
        ranked=[],
        unscored_invoice_ids=[],
        model=model,
    )


def match_answer(result, request: MatchRequest, threshold: float, model: str) -> MatchResponse:
    """The ``/match`` answer from the ``MatchResult`` of ``request``'s problem."""
    tid = request.transfer.transfer_id
    dec = result.decisions[result.decisions["transfer_id"] == tid]
    links = result.links[result.links["transfer_id"] == tid]
    cands = result.candidates[result.candidates["transfer_id"] == tid].sort_values("rank")
    scored = set(cands["invoice_id"])
    row = dec.iloc[0] if len(dec) else None
    return MatchResponse(
        transfer_id=tid,
        decision=str(row["decision"]) if row is not None else "review",
        confidence=float(row["confidence"]) if row is not None else 0.0,
        auto_threshold=threshold,
        reasons=_reasons(row) if row is not None else [],
        chosen=_chosen(links),
        ranked=[
            RankedInvoice(invoice_id=r.invoice_id, probability=float(r.probability), rank=int(r.rank))
            for r in cands.head(request.top_k).itertuples()
        ],
        unscored_invoice_ids=[c.invoice_id for c in request.candidates if c.invoice_id not in scored],
        model=model,
    )


def batch_answer(result, request: BatchRequest, threshold: float, model: str) -> BatchResponse:
    """The ``/match_batch`` answer: each transfer's decision and links, in the request's order."""
    by_transfer = {tid: g for tid, g in result.links.groupby("transfer_id")}
    decisions = result.decisions.set_index("transfer_id")
    out = []
    for t in request.transfers:
        links = by_transfer.get(t.transfer_id)
        has = t.transfer_id in decisions.index
        out.append(
            TransferAssignment(
                transfer_id=t.transfer_id,
                decision=str(decisions.at[t.transfer_id, "decision"]) if has else "review",
                confidence=float(decisions.at[t.transfer_id, "confidence"]) if has else 0.0,
                n_invoices=int(decisions.at[t.transfer_id, "n_invoices"]) if has else 0,
                reasons=_reasons(decisions.loc[t.transfer_id]) if has else [],
                links=[] if links is None else _chosen(links),
            )
        )
    return BatchResponse(results=out, auto_threshold=threshold, model=model)


def batch_without_invoices(request: BatchRequest, empty_confidence: float, threshold: float, model: str):
    decision = "auto" if empty_confidence >= threshold else "review"
    return BatchResponse(
        results=[
            TransferAssignment(
                transfer_id=t.transfer_id,
                decision=decision,
                confidence=empty_confidence,
                n_invoices=0,
                reasons=[NO_CANDIDATE_SENT],
                links=[],
            )
            for t in request.transfers
        ],
        auto_threshold=threshold,
        model=model,
    )
