"""How the service plugs into BentoML 1.4: who validates a request, and what the OpenAPI schema says about errors.

- ``raw_json_input(Model)``: an input spec that publishes ``Model``'s JSON schema (OpenAPI, schemathesis) but hands
  the API method the raw body. BentoML would validate the body itself, without a validation context, and answer a
  failure with a traceback in the log and a body its own schema does not allow; the service validates instead
  (``refusals.parse_body``, with the ``Limits`` as context) and answers with an ``ErrorResponse``.
- ``DocumentedService``: the ``bentoml.Service`` whose OpenAPI schema documents the refusals the service gives
  (400, 413, 415, 503 with ``ErrorResponse``) instead of BentoML's generic error schema.
"""

from __future__ import annotations

from dataclasses import dataclass
from http import HTTPStatus

import bentoml
from pydantic import BaseModel, ConfigDict

from .schemas import ErrorResponse

REF = "#/components/schemas/{model}"
REFUSALS = {
    400: "Invalid request: the body names each wrong field (detail[].loc), or a limit it passes (limit)",
    413: "The body is larger than LEDGERLINK_MAX_BODY_BYTES",
    415: "The body is not application/json",
    503: "The request reached its deadline (LEDGERLINK_REQUEST_DEADLINE_S); its work was stopped",
}


@dataclass(frozen=True)
class RawBody:
    """What the API method receives: the request body, not yet validated."""

    data: bytes


def raw_json_input(model: type[BaseModel]) -> type[bentoml.IODescriptor]:
    """A BentoML input spec with ``model``'s schema whose parsing only reads the body (``RawBody``)."""

    class Spec(bentoml.IODescriptor, model):
        __root_input__ = True  # BentoML passes what from_http_request returns as the method's one argument
        model_config = ConfigDict(title=model.__name__)

        @classmethod
        async def from_http_request(cls, request, serde) -> RawBody:
            return RawBody(await request.body())

    Spec.__name__ = Spec.__qualname__ = model.__name__
    return Spec


def _error_components() -> dict:
    from bentoml._internal.service.openapi.specification import Schema

    schema = ErrorResponse.model_json_schema(ref_template=REF)
    defs = schema.pop("$defs", {})
    return {"ErrorResponse": Schema(**schema), **{k: Schema(**v) for k, v in defs.items()}}


class DocumentedService(bentoml.Service):
    """``@bentoml.service(service_class=DocumentedService)``: the published OpenAPI schema documents the
    service's own refusals on every API route."""

    @property
    def openapi_spec(self):
        from bentoml._internal.service.openapi.specification import MediaType, Reference, Response

        spec = super().openapi_spec
        refusal = {
            status: Response(
                description=f"{HTTPStatus(status).phrase}. {text}",
                content={"application/json": MediaType(schema=Reference(REF.format(model="ErrorResponse")))},
            )
            for status, text in REFUSALS.items()
        }
        for api in self.apis.values():
            path = spec.paths.get(api.route)
            if path is not None and path.post is not None:
                responses = path.post["responses"] if isinstance(path.post, dict) else path.post.responses
                responses.pop(HTTPStatus.NOT_FOUND.value, None)  # an API route is never 404
                responses.update(refusal)
        spec.components.setdefault("schemas", {}).update(_error_components())
        return spec
