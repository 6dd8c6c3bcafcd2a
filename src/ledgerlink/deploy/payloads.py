"""JSON request bodies for the BentoML service, built from data-contract frames.

The deploy smoke test, the HTTP tests and the serving benchmark all send ``POST /match`` bodies made
here from real rows: one transfer and a list of candidate invoices (its own invoices, if it pays any,
plus open invoices of the same currency from the weeks before it, as a finance system would offer).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

INVOICE_FIELDS = (
    "invoice_id",
    "issued_at",
    "due_at",
    "amount",
    "currency",
    "invoice_number",
    "counterparty_name",
    "description",
)
TRANSFER_FIELDS = (
    "transfer_id",
    "booked_at",
    "amount",
    "currency",
    "title",
    "counterparty_name",
    "counterparty_account",
)
_DATES = {"issued_at", "due_at", "booked_at"}


def _value(name: str, v: Any) -> Any:
    if v is None or (isinstance(v, float) and math.isnan(v)) or v is pd.NaT:
        return None
    if name in _DATES:
        return str(pd.Timestamp(v).date())
    if name == "amount":
        return round(float(v), 2)
    if hasattr(v, "item"):  # numpy scalars
        v = v.item()
    return str(v) if not isinstance(v, (int, float)) else v


def _row_json(row: Any, fields: tuple[str, ...]) -> dict[str, Any]:
    get = row.get if isinstance(row, (dict, pd.Series)) else (lambda k, d=None: getattr(row, k, d))
    out = {}
    for f in fields:
        v = _value(f, get(f, None))
        if v is not None:  # optional text absent: leave the field out, as a client would
            out[f] = v
    return out


def invoice_json(row: Any) -> dict[str, Any]:
    """An ``Invoice`` body from a contract row (Series, namedtuple or dict)."""
    return _row_json(row, INVOICE_FIELDS)


def transfer_json(row: Any) -> dict[str, Any]:
    """A ``Transfer`` body from a contract row."""
    return _row_json(row, TRANSFER_FIELDS)


def candidate_invoices(
    transfer: pd.Series,
    invoices: pd.DataFrame,
    links: pd.DataFrame | None,
    n: int,
    *,
    lookback_days: int = 120,
    seed: int = 0,
) -> pd.DataFrame:
    """Up to ``n`` candidate invoices for ``transfer``: the invoices it pays (if present in ``invoices``),
    then others of the same currency issued in the ``lookback_days`` before it was booked (nearest first
    in time, ties broken by a seeded shuffle)."""
    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}")
    own_ids: list[str] = []
    if links is not None and len(links):
        own_ids = links.loc[links["transfer_id"] == transfer["transfer_id"], "invoice_id"].astype(str).tolist()
    own = invoices[invoices["invoice_id"].astype(str).isin(own_ids)]
    booked = pd.Timestamp(transfer["booked_at"])
    issued = pd.to_datetime(invoices["issued_at"])
    window = (
        (invoices["currency"] == transfer["currency"])
        & (issued <= booked)
        & (issued >= booked - pd.Timedelta(days=lookback_days))
        & ~invoices["invoice_id"].astype(str).isin(own_ids)
    )
    others = invoices[window]
    rng = np.random.default_rng(seed)
    order = np.lexsort((rng.random(len(others)), (booked - issued[window]).dt.days.to_numpy()))
    others = others.iloc[order]
    return pd.concat([own.head(n), others.head(max(0, n - len(own)))]).reset_index(drop=True)


def match_request(transfer: pd.Series, candidates: pd.DataFrame, top_k: int = 10) -> dict[str, Any]:
    return {
        "transfer": transfer_json(transfer),
        "candidates": [invoice_json(r) for _, r in candidates.iterrows()],
        "top_k": int(top_k),
    }


def pick_transfers(tables: dict[str, pd.DataFrame], kind: str = "multi", n: int = 1) -> pd.DataFrame:
    """Transfers of one kind from contract tables: ``multi`` (pays 2+ invoices, falling back to ``single``),
    ``single`` (pays one), ``none`` (pays nothing) or ``any`` (paying ones first)."""
    tr, links = tables["transfers"], tables["links"]
    count = links.groupby("transfer_id").size()
    paid = tr["transfer_id"].map(count).fillna(0).astype(int)
    if kind == "multi":
        chosen = tr[paid >= 2]
        if len(chosen) < n:
            chosen = pd.concat([chosen, tr[paid == 1]])
    elif kind == "single":
        chosen = tr[paid == 1]
    elif kind == "none":
        chosen = tr[paid == 0]
    elif kind == "any":
        chosen = tr.iloc[np.argsort(-paid.to_numpy(), kind="stable")]
    else:
        raise ValueError(f"kind must be multi, single, none or any, got {kind!r}")
    return chosen.head(n).reset_index(drop=True)


def request_frames(request: dict[str, Any]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(invoices, transfers) frames of a ``POST /match`` body, with the columns the service builds."""
    inv_cols, tr_cols = [*INVOICE_FIELDS, "month"], [*TRANSFER_FIELDS, "month"]
    invoices = pd.DataFrame([{c: i.get(c) for c in inv_cols} for i in request["candidates"]], columns=inv_cols)
    transfers = pd.DataFrame([{c: request["transfer"].get(c) for c in tr_cols}], columns=tr_cols)
    return invoices, transfers


def inprocess_answer(matcher, request: dict[str, Any]) -> dict[str, Any]:
    """What the service should answer to ``request``, computed here with ``matcher.match(..., explain=True)`` (the
    same library call the service makes): chosen invoices with allocations and reasons, ranked invoices with
    probabilities, the decision and its reasons."""
    invoices, transfers = request_frames(request)
    result = matcher.match(invoices, transfers, explain=True)
    tid = request["transfer"]["transfer_id"]
    links = result.links[result.links["transfer_id"] == tid]
    cands = result.candidates[result.candidates["transfer_id"] == tid].sort_values("rank")
    dec = result.decisions[result.decisions["transfer_id"] == tid]
    return {
        "transfer_id": tid,
        "chosen": [[str(r.invoice_id), round(float(r.allocated_amount), 2)] for r in links.itertuples()],
        "chosen_reasons": [list(r.reasons) for r in links.itertuples()],
        "reasons": list(dec["reasons"].iloc[0]) if len(dec) else [],
        "ranked": [
            [str(r.invoice_id), float(r.probability)] for r in cands.head(request.get("top_k", 10)).itertuples()
        ],
        "decision": str(dec["decision"].iloc[0]) if len(dec) else "review",
        "confidence": float(dec["confidence"].iloc[0]) if len(dec) else 0.0,
    }


def same_answer(served: dict[str, Any], expected: dict[str, Any], tol: float = 1e-6) -> list[str]:
    """Differences between a served ``/match`` answer and ``inprocess_answer`` (empty: the same)."""
    diffs = []
    got_chosen = [[c["invoice_id"], round(float(c["allocated_amount"]), 2)] for c in served.get("chosen", [])]
    if got_chosen != expected["chosen"]:
        diffs.append(f"chosen {got_chosen} != in-process {expected['chosen']}")
    # the words are computed from the same contributions and values: the same to the letter
    got_reasons = [c.get("reasons") for c in served.get("chosen", [])]
    if got_chosen == expected["chosen"] and got_reasons != expected["chosen_reasons"]:
        diffs.append(f"chosen reasons {got_reasons} != in-process {expected['chosen_reasons']}")
    if served.get("reasons") != expected["reasons"]:
        diffs.append(f"reasons {served.get('reasons')} != in-process {expected['reasons']}")
    got = [(r["invoice_id"], float(r["probability"])) for r in served.get("ranked", [])]
    exp = [(str(e[0]), float(e[1])) for e in expected["ranked"]]
    worst = max((abs(g[1] - e[1]) for g, e in zip(got, exp)), default=0.0)
    if len(got) != len(exp) or worst > tol:
        diffs.append(f"ranked {got} != in-process {exp}")
    else:
        # the same invoices at the same probabilities; equal probabilities may come in either order, and a tie
        # at the top-k cut-off may keep either invoice
        cut = exp[-1][1] if exp else 0.0

        def key(items):
            return sorted((round(p / tol), i) for i, p in items if p > cut + tol)

        if key(got) != key(exp):
            diffs.append(f"ranked {[g[0] for g in got]} != in-process {[e[0] for e in exp]}")
    if (
        served.get("decision") != expected["decision"]
        or abs(float(served.get("confidence", -1)) - expected["confidence"]) > tol
    ):
        diffs.append(
            f"decision {served.get('decision')}/{served.get('confidence')} != in-process "
            f"{expected['decision']}/{expected['confidence']}"
        )
    return diffs


def smoke_request(
    tables: dict[str, pd.DataFrame], n_candidates: int = 20, seed: int = 0, matcher=None
) -> dict[str, Any]:
    """One realistic ``POST /match`` body from contract tables (e.g. the frozen test split): a transfer that
    pays several invoices if there is one, with its invoices among ``n_candidates`` candidates.

    With ``matcher``, only a request that ``matcher`` answers in process is returned (the in-process answer is
    what the served one is compared with)."""
    if not len(tables.get("transfers", ())) or not len(tables.get("invoices", ())):
        raise ValueError("smoke_request needs non-empty transfers and invoices tables")
    errors = []
    for kind in ("multi", "any"):
        for _, t in pick_transfers(tables, kind, n=25).iterrows():
            cands = candidate_invoices(t, tables["invoices"], tables.get("links"), n_candidates, seed=seed)
            if not len(cands):
                continue
            request = match_request(t, cands)
            if matcher is not None:
                try:
                    inprocess_answer(matcher, request)
                except Exception as exc:  # noqa: BLE001 - a library bug for this transfer; try another
                    errors.append(f"{t['transfer_id']}: {type(exc).__name__}: {exc}")
                    continue
            return request
    raise ValueError(
        "no transfer in the tables gives a request the model can answer"
        + (
            f"; in-process errors: {errors[:3]}"
            if errors
            else ": none has a candidate invoice of its currency issued before it"
        )
    )


def adversarial_batch(n_transfers: int = 1000, n_payers: int = 1666, per_payer: int = 12) -> dict[str, Any]:
    """The legal ``POST /match_batch`` that took a worker down (issue 11.1): ``n_transfers`` transfers of 406-415
    EUR titled "as agreed" from the payer "someone", against ``n_payers`` payers with ``per_payer`` invoices each
    of 100-111 EUR and no invoice numbers (3.2 MB of JSON by default, within the default size limits). Every
    payer's invoices hold dozens of 4-invoice sets summing exactly to each transfer's amount, so the set search
    explodes."""
    day = pd.Timestamp("2025-02-01")
    invoices = []
    for k in range(n_payers * per_payer):
        issued = day + pd.Timedelta(days=k % 28)
        invoices.append(
            {
                "invoice_id": f"INV-{k:06d}",
                "issued_at": str(issued.date()),
                "due_at": str((issued + pd.Timedelta(days=30)).date()),
                "amount": 100.0 + k % per_payer,
                "currency": "EUR",
                "counterparty_name": f"Customer {k // per_payer:04d}",
            }
        )
    transfers = [
        {
            "transfer_id": f"TRF-{j:05d}",
            "booked_at": str((pd.Timestamp("2025-03-01") + pd.Timedelta(days=j % 28)).date()),
            "amount": 406.0 + j % 10,
            "currency": "EUR",
            "title": "as agreed",
            "counterparty_name": "someone",
        }
        for j in range(n_transfers)
    ]
    return {"transfers": transfers, "invoices": invoices}
