"""BentoML 1.4 service: "which open invoices does this transfer pay, how sure, and is it safe to auto-match?"

Routes (port 3000):
- ``POST /match``: one transfer and its candidate invoices -> ranked invoices with probabilities, the
  chosen set with allocated amounts, and ``auto`` / ``review`` from the model's stored threshold, each chosen
  invoice and the decision with its ``reasons`` in words (``match(..., explain=True)``). Concurrent
  requests are matched together (``MicroBatcher``; ``LEDGERLINK_MAX_MATCH_BATCH``, 1 turns it off), with the
  same answers as one by one.
- ``POST /match_batch``: many transfers and the open invoices -> the assignment for each transfer, with reasons.
- ``GET /model``: model name, version, stage, metrics, training months, image tag.
- BentoML's own ``/livez``, ``/healthz``, ``/readyz`` (ready once the model is loaded), ``/metrics``.

The model is the BentoML model ``$LEDGERLINK_MODEL_TAG`` (default ``ledgerlink:latest``); scoring is
``ledgerlink.matching.Matcher.match`` (``/match_batch``, in the worker: ``n_workers`` 1), and for ``/match``
``ledgerlink.matching.single.match_one`` when a request is alone (the fast path: the request is checked once,
by its schema) or ``Matcher.match_many`` for requests that wait together; each answer equals ``match`` on that
request alone (the tests and the serving benchmark check it), the code training evaluates, so serving cannot skew.

This module only wires the parts of ``ledgerlink.serving`` together: validation (``schemas``, with the
``Limits`` as context), refusals with an ``ErrorResponse`` and one log line (``refusals``), batching
(``batching``), the request deadline (``deadline``), body size, JSON-only and the server id (``middleware``).

Every request gets a deadline at arrival, ``LEDGERLINK_REQUEST_DEADLINE_S`` (default 30 s) before BentoML's
traffic timeout (60 s): the matcher stops cooperatively at it (``MatchTimeout``), the caller gets a 503 that
names the limit, and the memory of the stopped work is given back.
"""

from __future__ import annotations

import os

import bentoml
from anyio import CapacityLimiter, to_thread
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from ledgerlink.deploy.bento import MATCHER_SUBDIR, MODEL_NAME, MODEL_TAG_ENV, model_info
from ledgerlink.deploy.local import SERVICE_NAME
from ledgerlink.matching.base import MatchTimeout
from ledgerlink.matching.parallel import available_cpus, threads_per_process
from ledgerlink.matching.single import SingleMatch, match_one
from ledgerlink.serving import answers
from ledgerlink.serving.batching import MicroBatcher
from ledgerlink.serving.bento_io import DocumentedService, RawBody, raw_json_input
from ledgerlink.serving.deadline import release_memory, stopped_at_deadline
from ledgerlink.serving.limits import TRAFFIC_TIMEOUT_S, Limits
from ledgerlink.serving.middleware import BodySizeLimit, JsonOnly, ServerIdentity
from ledgerlink.serving.refusals import Refusal, parse_body
from ledgerlink.serving.schemas import BatchRequest, BatchResponse, MatchRequest, MatchResponse

API_ROUTES = ("/match", "/match_batch")


def model_tag() -> str:
    """Read at load time, not import time: `bentoml build` imports this module under another tag."""
    return os.environ.get(MODEL_TAG_ENV) or f"{MODEL_NAME}:latest"


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
# Process settings
# ------------------------------------------------------------------------------------------------

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


def _matcher_threads() -> int:
    """The matcher's threads (xgboost, string comparisons) in this server worker: the CPUs shared among the
    service's workers (BentoML's ``services.ledgerlink.workers``, ``BENTOML_CONFIG_OVERRIDES`` included). With the
    saved n_jobs (2) in each of 2 workers on 2 CPUs, up to 4 threads shared 2 cores: one /match request took
    17.5 ms in process with 2 threads, 15.0 ms with one (benchmarks/serving.py)."""
    from bentoml._internal.configuration.containers import BentoMLContainer

    workers = (BentoMLContainer.config.services.get().get(SERVICE_NAME) or {}).get("workers") or 1
    return threads_per_process(available_cpus() if workers == "cpu_count" else int(workers))


# ------------------------------------------------------------------------------------------------
# Service
# ------------------------------------------------------------------------------------------------


@bentoml.asgi_app(info_app, path="/", name="model_info")
@bentoml.service(name=SERVICE_NAME, traffic={"timeout": TRAFFIC_TIMEOUT_S}, service_class=DocumentedService)
class LedgerLink:
    def __init__(self) -> None:
        from ledgerlink.matching.base import load_matcher

        stored = bentoml.models.get(model_tag())
        self.model_tag = str(stored.tag)
        self.matcher = load_matcher(stored.path_of(MATCHER_SUBDIR))
        self.matcher.n_workers = 1  # a /match_batch runs in this worker: BentoML's workers are the processes
        self.matcher.set_threads(_matcher_threads())
        _quiet_garbage_collector()
        self.threshold = float(self.matcher.auto_threshold_)
        self.empty_confidence = float(getattr(self.matcher, "empty_confidence_", 0.0))
        self.model_currencies = stored.info.metadata.get("currencies") or None  # recorded at training, if known
        self.batcher = MicroBatcher(
            self._match_requests,
            max_batch=lambda: Limits.from_env().max_match_batch,
            observe=_batch_size_histogram().observe,
            no_rerun=(MatchTimeout,),
            linger=lambda: Limits.from_env().match_linger_ms / 1000.0,
        )
        # One /match_batch at a time per worker: its memory grows with the request, and two at once would
        # double the peak; the others wait, their deadlines running (a 503 if one passes before its turn).
        self.batch_slots = CapacityLimiter(1)

    def limits(self) -> Limits:
        """This request's limits; the validation context (read per request: env changes apply at once)."""
        return Limits.from_env(self.model_currencies)

    def _match_requests(self, requests: list[MatchRequest], deadline: float | None) -> list[SingleMatch]:
        """The matcher's explained answer for each validated ``/match`` request: a lone one on the fast path,
        several in one ``match_many`` call (the same answers; the fixed cost of a call is paid once per batch)."""
        if len(requests) == 1:
            request = requests[0]
            return [match_one(self.matcher, request.transfer, request.candidates, deadline, explain=True)]
        problems = [answers.match_problem(r) for r in requests]
        results = self.matcher.match_many(problems, deadline=deadline, explain=True)
        return [SingleMatch.of_result(res, r.transfer.transfer_id) for res, r in zip(results, requests)]

    @bentoml.api(route="/match", input_spec=raw_json_input(MatchRequest))
    async def match(self, body: RawBody) -> MatchResponse:
        limits = self.limits()
        deadline = limits.deadline()  # from arrival: waiting for a batch counts
        try:
            request = parse_body(MatchRequest, body.data, limits)
            if not request.candidates:
                return answers.no_candidates(
                    request.transfer.transfer_id, self.empty_confidence, self.threshold, self.model_tag
                )
            with stopped_at_deadline(limits):
                if limits.max_match_batch > 1:
                    result = await self.batcher.submit(request, deadline)
                else:
                    result = (await to_thread.run_sync(self._match_requests, [request], deadline))[0]
        except Refusal as refusal:
            return refusal.response("POST /match")
        return answers.match_answer(result, request, self.threshold, self.model_tag)

    @bentoml.api(route="/match_batch", input_spec=raw_json_input(BatchRequest))
    async def match_batch(self, body: RawBody) -> BatchResponse:
        limits = self.limits()
        deadline = limits.deadline()  # from arrival: waiting behind another batch counts
        try:
            return await to_thread.run_sync(self._match_batch, body, limits, deadline, limiter=self.batch_slots)
        except Refusal as refusal:
            return refusal.response("POST /match_batch")

    def _match_batch(self, body: RawBody, limits: Limits, deadline: float) -> BatchResponse:
        request = parse_body(BatchRequest, body.data, limits)
        if not request.invoices:
            return answers.batch_without_invoices(request, self.empty_confidence, self.threshold, self.model_tag)
        with stopped_at_deadline(limits):
            result = self.matcher.match(*answers.batch_problem(request), deadline=deadline, explain=True)
        try:
            return answers.batch_answer(result, request, self.threshold, self.model_tag)
        finally:
            del result
            release_memory()  # a batch's arrays are large: give the pages back before the next one


LedgerLink.add_asgi_middleware(JsonOnly, paths=API_ROUTES)
LedgerLink.add_asgi_middleware(BodySizeLimit)
LedgerLink.add_asgi_middleware(ServerIdentity)
