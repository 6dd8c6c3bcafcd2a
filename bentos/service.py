"""BentoML 1.4 service: "which open invoices does this transfer pay, how sure, and is it safe to auto-match?"

Routes (port 3000):
- ``POST /match``: one transfer and its candidate invoices -> ranked invoices with probabilities, the
  chosen set with allocated amounts, and ``auto`` / ``review`` from the model's stored threshold. Concurrent
  requests are matched together (``MicroBatcher``; ``LEDGERLINK_MAX_MATCH_BATCH``, 1 turns it off), with the
  same answers as one by one.
- ``POST /match_batch``: many transfers and the open invoices -> the assignment for each transfer.
- ``GET /model``: model name, version, stage, metrics, training months, image tag.
- BentoML's own ``/livez``, ``/healthz``, ``/readyz`` (ready once the model is loaded), ``/metrics``.

The model is the BentoML model ``$LEDGERLINK_MODEL_TAG`` (default ``ledgerlink:latest``); scoring is
``ledgerlink.matching.Matcher.match`` (``/match_batch``) and ``Matcher.match_many`` (``/match``, batched; each
answer equal to ``match`` on that request alone, which the tests and the serving benchmark check), the code
training evaluates, so serving cannot skew.

Bad requests get a 4xx whose body names the field (pydantic ``loc``): missing or wrong-typed fields,
unknown fields, non-positive ``top_k``, too many candidates/transfers/invoices (limits from env),
currencies that are not ISO codes or not allowed, duplicate ids, an oversized body (413).
"""

from __future__ import annotations

import json
import math
import os
from datetime import date
from typing import Annotated, Any, Literal

import bentoml
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints, ValidationInfo, field_validator
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from ledgerlink.deploy.bento import MATCHER_SUBDIR, MODEL_NAME, MODEL_TAG_ENV, model_info


def model_tag() -> str:
    """Read at load time, not import time: `bentoml build` imports this module under another tag."""
    return os.environ.get(MODEL_TAG_ENV) or f"{MODEL_NAME}:latest"


def _limit(name: str, default: int) -> int:
    """Request limits come from the environment at request time (Deployment env, tests)."""
    raw = os.environ.get(name, "")
    try:
        value = int(raw) if raw.strip() else default
    except ValueError:
        value = default
    return value if value > 0 else default


def max_candidates() -> int:
    return _limit("LEDGERLINK_MAX_CANDIDATES", 200)


def max_batch_transfers() -> int:
    return _limit("LEDGERLINK_MAX_BATCH_TRANSFERS", 1000)


def max_open_invoices() -> int:
    return _limit("LEDGERLINK_MAX_OPEN_INVOICES", 20000)


def max_body_bytes() -> int:
    return _limit("LEDGERLINK_MAX_BODY_BYTES", 5_000_000)


def max_match_batch() -> int:
    """Concurrent ``/match`` requests matched together (1: each alone)."""
    return _limit("LEDGERLINK_MAX_MATCH_BATCH", 16)


_MODEL_CURRENCIES: set[str] | None = None  # from the loaded model's metadata ("currencies"), if recorded


def allowed_currencies() -> set[str] | None:
    """``LEDGERLINK_CURRENCIES`` (comma-separated) if set, else the currencies the model was trained on,
    else any ISO 4217 code."""
    raw = os.environ.get("LEDGERLINK_CURRENCIES", "").strip()
    return {c.strip().upper() for c in raw.split(",") if c.strip()} or _MODEL_CURRENCIES


# ------------------------------------------------------------------------------------------------
# Request / response models
# ------------------------------------------------------------------------------------------------


def _check_currency(code: str) -> str:
    allowed = allowed_currencies()
    if allowed is not None and code not in allowed:
        raise ValueError(f"currency {code!r} is not one this model serves; allowed: {sorted(allowed)}")
    return code


def _finite(x: float) -> float:
    if not math.isfinite(x) or abs(x) >= 1e12:
        raise ValueError("amount must be a finite number below 1e12 in absolute value")
    return round(x, 2)


Id = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
Text = Annotated[str, StringConstraints(max_length=2000)]
Currency = Annotated[str, StringConstraints(pattern=r"^[A-Z]{3}$"), AfterValidator(_check_currency)]
Money = Annotated[float, Field(strict=True), AfterValidator(_finite)]  # strict: "12.50" as text is a type error
Month = Annotated[str, StringConstraints(pattern=r"^\d{4}-\d{2}$")]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")  # a misspelt field is an error, not silently ignored


class Invoice(_Strict):
    invoice_id: Id
    issued_at: date
    due_at: date
    amount: Money
    currency: Currency
    invoice_number: Text | None = None
    counterparty_name: Text | None = None
    description: Text | None = None
    month: Month | None = None

    @field_validator("due_at")
    @classmethod
    def _due_after_issue(cls, v: date, info: ValidationInfo) -> date:
        issued = info.data.get("issued_at")
        if issued is not None and v < issued:
            raise ValueError(f"due_at {v} is before issued_at {issued}")
        return v


class Transfer(_Strict):
    transfer_id: Id
    booked_at: date
    amount: Money
    currency: Currency
    title: Text | None = None
    counterparty_name: Text | None = None
    counterparty_account: Text | None = None
    month: Month | None = None


def _unique(items: list, key: str, what: str) -> None:
    seen: set[str] = set()
    dup: list[str] = []
    for it in items:
        k = getattr(it, key)
        if k in seen:
            dup.append(k)
        seen.add(k)
    if dup:
        raise ValueError(f"duplicate {what} {key}(s): {sorted(set(dup))[:5]}")


class MatchRequest(_Strict):
    transfer: Transfer
    candidates: list[Invoice]
    top_k: int = Field(10, ge=1, le=1000, description="how many ranked invoices to return")

    @field_validator("candidates")
    @classmethod
    def _candidates(cls, v: list[Invoice]) -> list[Invoice]:
        limit = max_candidates()
        if len(v) > limit:
            raise ValueError(f"too many candidates: {len(v)} > {limit} (LEDGERLINK_MAX_CANDIDATES)")
        _unique(v, "invoice_id", "candidate")
        return v


class BatchRequest(_Strict):
    transfers: list[Transfer] = Field(min_length=1)
    invoices: list[Invoice]

    @field_validator("transfers")
    @classmethod
    def _transfers(cls, v: list[Transfer]) -> list[Transfer]:
        limit = max_batch_transfers()
        if len(v) > limit:
            raise ValueError(f"too many transfers: {len(v)} > {limit} (LEDGERLINK_MAX_BATCH_TRANSFERS)")
        _unique(v, "transfer_id", "transfer")
        return v

    @field_validator("invoices")
    @classmethod
    def _invoices(cls, v: list[Invoice]) -> list[Invoice]:
        limit = max_open_invoices()
        if len(v) > limit:
            raise ValueError(f"too many invoices: {len(v)} > {limit} (LEDGERLINK_MAX_OPEN_INVOICES)")
        _unique(v, "invoice_id", "invoice")
        return v


class RankedInvoice(BaseModel):
    invoice_id: str
    probability: float
    rank: int


class ChosenInvoice(BaseModel):
    invoice_id: str
    allocated_amount: float
    confidence: float


class MatchResponse(BaseModel):
    transfer_id: str
    decision: Literal["auto", "review"]
    confidence: float
    auto_threshold: float
    chosen: list[ChosenInvoice]  # empty: the transfer pays none of the candidates
    ranked: list[RankedInvoice]
    unscored_invoice_ids: list[str]  # candidates the blocking stage ruled out (e.g. issued long before)
    model: str


class TransferAssignment(BaseModel):
    transfer_id: str
    decision: Literal["auto", "review"]
    confidence: float
    n_invoices: int
    links: list[ChosenInvoice]


class BatchResponse(BaseModel):
    results: list[TransferAssignment]
    auto_threshold: float
    model: str


# ------------------------------------------------------------------------------------------------
# Body size limit (BentoML reads the whole body before validating it)
# ------------------------------------------------------------------------------------------------


class BodySizeLimit:
    """ASGI middleware: 413 for bodies over ``LEDGERLINK_MAX_BODY_BYTES``, by header or as streamed."""

    def __init__(self, app):
        self.app = app

    @staticmethod
    def _response(limit: int, size: int | None) -> tuple[dict, dict]:
        got = f"{size} bytes" if size is not None else "the streamed body is"
        body = json.dumps(
            {
                "error": f"request body too large: {got} over the limit of {limit} bytes (LEDGERLINK_MAX_BODY_BYTES)",
                "detail": [{"loc": ["body"], "msg": "request body too large", "type": "too_large"}],
            }
        ).encode()
        start = {
            "type": "http.response.start",
            "status": 413,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
        }
        return start, {"type": "http.response.body", "body": body}

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        limit = max_body_bytes()
        headers = dict(scope.get("headers") or [])
        declared = headers.get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            start, body = self._response(limit, int(declared))
            await send(start)
            await send(body)
            return
        state = {"seen": 0, "over": False, "sent": False}

        async def limited_receive():
            message = await receive()
            if message["type"] == "http.request":
                state["seen"] += len(message.get("body", b""))
                if state["seen"] > limit:
                    state["over"] = True
                    raise ValueError("request body too large")
            return message

        async def guarded_send(message):
            if state["over"]:  # replace whatever error the app produced with the 413
                if not state["sent"]:
                    start, body = self._response(limit, None)
                    await send(start)
                    await send(body)
                    state["sent"] = True
                return
            await send(message)

        try:
            await self.app(scope, limited_receive, guarded_send)
        except ValueError:
            if not state["over"]:
                raise
            await guarded_send({})


# ------------------------------------------------------------------------------------------------
# GET /model (a plain Starlette route: BentoML API methods are POST-only)
# ------------------------------------------------------------------------------------------------


async def _model_route(request: Request) -> JSONResponse:
    try:
        return JSONResponse(model_info(model_tag()))
    except bentoml.exceptions.NotFound:
        return JSONResponse({"error": f"model {model_tag()} is not in the model store"}, status_code=503)


info_app = Starlette(routes=[Route("/model", _model_route, methods=["GET"])])


# ------------------------------------------------------------------------------------------------
# Service
# ------------------------------------------------------------------------------------------------


def _frame(rows: list[BaseModel], columns: list[str]):
    import pandas as pd

    return pd.DataFrame([r.model_dump() for r in rows], columns=columns)


_INVOICE_COLUMNS = list(Invoice.model_fields)
_TRANSFER_COLUMNS = list(Transfer.model_fields)


_BATCH_SIZES = None


def _batch_size_histogram():
    """``ledgerlink_match_batch_size`` on ``/metrics``. Made on first use, in the worker (BentoML sets up Prometheus'
    multiprocess directory after importing this module), and once per process (a registry refuses duplicates)."""
    global _BATCH_SIZES
    if _BATCH_SIZES is None:
        from prometheus_client import Histogram

        _BATCH_SIZES = Histogram(
            "ledgerlink_match_batch_size",
            "Concurrent /match requests matched in one call",
            buckets=(1, 2, 4, 8, 16, 32, 64),
        )
    return _BATCH_SIZES


def _quiet_garbage_collector() -> None:
    """Fewer, cheaper garbage collections in the serving process. A match call allocates thousands of short-lived
    containers, so the default gen-0 threshold (700) runs collections mid-request, and a full collection scans
    the model and libraries loaded at start. Freezing what exists after loading takes it out of every scan, and
    a higher threshold collects between requests rather than inside them. Measured on 2 cores, 2 workers, c8:
    p99 152 -> 69 ms, 130 -> 145 req/s (benchmarks/serving.py, medians of 3)."""
    import gc

    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 50, 100)


class MicroBatcher:
    """Adaptive batching for ``/match``: requests that arrive while a batch is being matched wait, and go
    together into the next ``Matcher.match_many`` call (up to ``max_match_batch()``).

    A lone request is matched at once (no batching window to wait out); under load the batch grows with the
    queue, so the fixed cost of a match call is paid once per batch. ``match_many`` answers each request as
    ``match`` would alone (blocking keeps the requests apart), so batching never changes an answer. BentoML's own
    batching (``batchable=True``) concatenates a list-valued request body; ``/match`` takes one transfer with its
    candidates, so it is batched here. If a batch fails (a request the library rejects), each of its requests is
    retried alone, so one bad request gets its own 400 and the others their answers."""

    def __init__(self, match_many, observe=None):
        self.match_many = match_many
        self.observe = observe  # called with each batch's size (the service's Prometheus histogram)
        self.queue: list[tuple[Any, Any]] = []
        self.draining = False
        self.sizes: list[int] = []  # batch sizes seen (the last 1000)

    async def submit(self, problem):
        import asyncio

        future = asyncio.get_running_loop().create_future()
        self.queue.append((problem, future))
        if not self.draining:
            self.draining = True
            asyncio.get_running_loop().create_task(self._drain())
        return await future

    async def _drain(self) -> None:
        from anyio import to_thread

        try:
            while self.queue:
                size = max_match_batch()
                batch, self.queue = self.queue[:size], self.queue[size:]
                self.sizes = (self.sizes + [len(batch)])[-1000:]
                if self.observe is not None:
                    self.observe(len(batch))
                problems = [p for p, _ in batch]
                try:
                    results = await to_thread.run_sync(self.match_many, problems)
                except Exception:  # noqa: BLE001 - find the request at fault: each alone
                    results = []
                    for p in problems:
                        try:
                            results.append((await to_thread.run_sync(self.match_many, [p]))[0])
                        except Exception as exc:  # noqa: BLE001 - handed to that request's caller
                            results.append(exc)
                for (_, future), result in zip(batch, results):
                    if future.cancelled():
                        continue
                    if isinstance(result, BaseException):
                        future.set_exception(result)
                    else:
                        future.set_result(result)
        finally:
            self.draining = False


def _bad_request(loc: list[Any], msg: str) -> JSONResponse:
    return JSONResponse({"error": msg, "detail": [{"loc": loc, "msg": msg, "type": "value_error"}]}, status_code=400)


@bentoml.asgi_app(info_app, path="/", name="model_info")
@bentoml.service(name="ledgerlink", traffic={"timeout": 60})
class LedgerLink:
    def __init__(self) -> None:
        from ledgerlink.matching.base import load_matcher

        stored = bentoml.models.get(model_tag())
        self.model_tag = str(stored.tag)
        self.matcher = load_matcher(stored.path_of(MATCHER_SUBDIR))
        _quiet_garbage_collector()
        self.threshold = float(self.matcher.auto_threshold_)
        global _MODEL_CURRENCIES
        currencies = stored.info.metadata.get("currencies")
        _MODEL_CURRENCIES = {str(c).upper() for c in currencies} if currencies else None
        self.batcher = MicroBatcher(self._match_many, observe=_batch_size_histogram().observe)

    def _match_many(self, requests: list[tuple[Transfer, list[Invoice]]]):
        return self.matcher.match_many(
            [
                (_frame(candidates, _INVOICE_COLUMNS), _frame([transfer], _TRANSFER_COLUMNS))
                for transfer, candidates in requests
            ]
        )

    def _run(self, invoices: list[Invoice], transfers: list[Transfer]):
        return self.matcher.match(_frame(invoices, _INVOICE_COLUMNS), _frame(transfers, _TRANSFER_COLUMNS))

    def _nothing_to_match(self) -> tuple[str, float]:
        """No invoices at all: the transfer pays none, as sure as the model is about "no candidates"."""
        conf = float(getattr(self.matcher, "empty_confidence_", 0.0))
        return ("auto" if conf >= self.threshold else "review"), conf

    @bentoml.api(route="/match", input_spec=MatchRequest)
    async def match(self, transfer: Transfer, candidates: list[Invoice], top_k: int = 10) -> MatchResponse:
        tid = transfer.transfer_id
        if not candidates:
            decision, conf = self._nothing_to_match()
            return MatchResponse(
                transfer_id=tid,
                decision=decision,
                confidence=conf,
                auto_threshold=self.threshold,
                chosen=[],
                ranked=[],
                unscored_invoice_ids=[],
                model=self.model_tag,
            )
        try:
            if max_match_batch() > 1:
                result = await self.batcher.submit((transfer, candidates))
            else:
                from anyio import to_thread

                result = await to_thread.run_sync(self._run, candidates, [transfer])
        except ValueError as exc:  # the library's boundary checks: still the caller's input
            return _bad_request(["body"], str(exc))
        dec = result.decisions[result.decisions["transfer_id"] == tid]
        links = result.links[result.links["transfer_id"] == tid]
        cands = result.candidates[result.candidates["transfer_id"] == tid].sort_values("rank")
        scored = set(cands["invoice_id"])
        row = dec.iloc[0] if len(dec) else None
        return MatchResponse(
            transfer_id=tid,
            decision=str(row["decision"]) if row is not None else "review",
            confidence=float(row["confidence"]) if row is not None else 0.0,
            auto_threshold=self.threshold,
            chosen=[
                ChosenInvoice(
                    invoice_id=r.invoice_id, allocated_amount=float(r.allocated_amount), confidence=float(r.confidence)
                )
                for r in links.itertuples()
            ],
            ranked=[
                RankedInvoice(invoice_id=r.invoice_id, probability=float(r.probability), rank=int(r.rank))
                for r in cands.head(top_k).itertuples()
            ],
            unscored_invoice_ids=[c.invoice_id for c in candidates if c.invoice_id not in scored],
            model=self.model_tag,
        )

    @bentoml.api(route="/match_batch", input_spec=BatchRequest)
    def match_batch(self, transfers: list[Transfer], invoices: list[Invoice]) -> BatchResponse:
        if not invoices:
            decision, conf = self._nothing_to_match()
            return BatchResponse(
                results=[
                    TransferAssignment(
                        transfer_id=t.transfer_id, decision=decision, confidence=conf, n_invoices=0, links=[]
                    )
                    for t in transfers
                ],
                auto_threshold=self.threshold,
                model=self.model_tag,
            )
        try:
            result = self._run(invoices, transfers)
        except ValueError as exc:
            return _bad_request(["body"], str(exc))
        by_transfer = {tid: g for tid, g in result.links.groupby("transfer_id")}
        decisions = result.decisions.set_index("transfer_id")
        out = []
        for t in transfers:
            links = by_transfer.get(t.transfer_id)
            has = t.transfer_id in decisions.index
            out.append(
                TransferAssignment(
                    transfer_id=t.transfer_id,
                    decision=str(decisions.at[t.transfer_id, "decision"]) if has else "review",
                    confidence=float(decisions.at[t.transfer_id, "confidence"]) if has else 0.0,
                    n_invoices=int(decisions.at[t.transfer_id, "n_invoices"]) if has else 0,
                    links=[]
                    if links is None
                    else [
                        ChosenInvoice(
                            invoice_id=r.invoice_id,
                            allocated_amount=float(r.allocated_amount),
                            confidence=float(r.confidence),
                        )
                        for r in links.itertuples()
                    ],
                )
            )
        return BatchResponse(results=out, auto_threshold=self.threshold, model=self.model_tag)


LedgerLink.add_asgi_middleware(BodySizeLimit)
