"""The HTTP stack's own limit, for ``benchmarks/serving.py``: a BentoML service that answers ``POST /match`` without
matching.

It is served like the real one (``bentoml serve``, the same worker count, the same middleware: JSON only, body
size, server id) and does everything but the matching: the body is validated into the same ``MatchRequest``
(``refusals.parse_body`` with the deployment's ``Limits``), and a ``MatchResponse`` of the same shape is built
from it (the first ``top_k`` candidates ranked in the order given, nothing chosen). So its throughput is what
BentoML, Starlette, pydantic and the JSON round trip allow on this machine, and ``/match`` is measured against it.
"""

from __future__ import annotations

import bentoml

from ledgerlink.serving.bento_io import RawBody, raw_json_input
from ledgerlink.serving.limits import TRAFFIC_TIMEOUT_S, Limits
from ledgerlink.serving.middleware import BodySizeLimit, JsonOnly, ServerIdentity
from ledgerlink.serving.refusals import Refusal, parse_body
from ledgerlink.serving.schemas import MatchRequest, MatchResponse, RankedInvoice


@bentoml.service(name="ledgerlink", traffic={"timeout": TRAFFIC_TIMEOUT_S})  # the name the worker setting names
class NoopMatch:
    @bentoml.api(route="/match", input_spec=raw_json_input(MatchRequest))
    async def match(self, body: RawBody) -> MatchResponse:
        try:
            request = parse_body(MatchRequest, body.data, Limits.from_env())
        except Refusal as refusal:
            return refusal.response("POST /match")
        return MatchResponse(
            transfer_id=request.transfer.transfer_id,
            decision="review",
            confidence=0.0,
            auto_threshold=1.0,
            reasons=["not matched: the no-op service only measures the HTTP stack"],
            chosen=[],
            ranked=[
                RankedInvoice(invoice_id=c.invoice_id, probability=0.0, rank=k + 1)
                for k, c in enumerate(request.candidates[: request.top_k])
            ],
            unscored_invoice_ids=[],
            model="noop",
        )


NoopMatch.add_asgi_middleware(JsonOnly, paths=("/match",))
NoopMatch.add_asgi_middleware(BodySizeLimit)
NoopMatch.add_asgi_middleware(ServerIdentity)
