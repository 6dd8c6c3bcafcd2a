"""Refusing a request: the status, the ``ErrorResponse`` body and the one log line.

Every refusal of the service goes through ``Refusal``, so each has a body that matches the published OpenAPI
schema (BentoML's own 400 put a list where its schema says a string: schemathesis ST108) and is logged as one
line that names where the request was wrong and never what it held. BentoML logged each 400 with a traceback
whose pydantic message quoted the input, payer names included.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from typing import Any

from pydantic import BaseModel, ValidationError

from .limits import Limits
from .schemas import ErrorResponse

logger = logging.getLogger("ledgerlink.serving")


class Refusal(Exception):
    """A request the service answers with ``status`` and an ``ErrorResponse`` instead of a match."""

    def __init__(
        self,
        status: int,
        error: str,
        detail: Iterable[dict] = (),
        *,
        limit: str | None = None,
        kind: str,
        note: str = "",
    ):
        super().__init__(error)
        self.status, self.error, self.limit, self.kind = status, error, limit, kind
        self.detail = [dict(d) for d in detail]
        self.note = note  # for the log line only (e.g. where the matcher stopped); never request data

    def body(self) -> dict[str, Any]:
        return ErrorResponse(error=self.error, detail=self.detail, limit=self.limit).model_dump(exclude_none=True)

    def body_bytes(self) -> bytes:
        return json.dumps(self.body()).encode()

    def log_line(self, route: str) -> str:
        """Where and what kind, never a value: ``loc`` holds field names and list positions only."""
        where = ", ".join(f"{'.'.join(map(str, d['loc'])) or 'body'} ({d['type']})" for d in self.detail[:10])
        more = f" and {len(self.detail) - 10} more" if len(self.detail) > 10 else ""
        limit = f" [{self.limit}]" if self.limit else ""
        note = f"; {self.note}" if self.note else ""
        return f"refused {route}: {self.status} {self.kind}{limit}: {where or '-'}{more}{note}"

    def log(self, route: str) -> None:
        logger.warning(self.log_line(route))

    def response(self, route: str):
        """The Starlette response (logged once here)."""
        from starlette.responses import JSONResponse

        self.log(route)
        return JSONResponse(self.body(), status_code=self.status)


def invalid(exc: ValidationError) -> Refusal:
    """400 for a body that fails validation; ``loc``, ``msg`` and ``type`` of each error (never its input)."""
    errors = exc.errors(include_url=False, include_input=False)
    detail = [{"loc": list(e["loc"]), "msg": e["msg"], "type": e["type"]} for e in errors]
    settings = {e["ctx"]["setting"] for e in errors if isinstance(e.get("ctx", {}).get("setting"), str)}
    limit = settings.pop() if len(settings) == 1 else None
    first = detail[0]
    where = ".".join(map(str, first["loc"])) or "body"
    more = f" (and {len(detail) - 1} more)" if len(detail) > 1 else ""
    return Refusal(400, f"{where}: {first['msg']}{more}", detail, limit=limit, kind="invalid")


def not_json(error: str) -> Refusal:
    """400 for a body that is not JSON at all."""
    return Refusal(400, error, [{"loc": ["body"], "msg": error, "type": "json_invalid"}], kind="invalid")


def unsupported_media_type(content_type: str) -> Refusal:
    msg = f"content type {content_type!r} is not accepted; send the request as application/json"
    return Refusal(415, msg, [{"loc": ["body"], "msg": msg, "type": "unsupported_media_type"}], kind="media_type")


def body_too_large(limit: int, size: int | None, setting: str) -> Refusal:
    got = f"{size} bytes" if size is not None else "the streamed body is"
    msg = f"request body too large: {got} over the limit of {limit} bytes ({setting})"
    return Refusal(
        413, msg, [{"loc": ["body"], "msg": "request body too large", "type": "too_large"}], limit=setting, kind="size"
    )


def deadline_passed(limits: Limits, setting: str, stage: str, late_by: float) -> Refusal:
    """503: the request's work was stopped at its deadline (the matcher stops cooperatively and frees its memory).
    ``stage``: where the matcher stopped ("start": before any work, e.g. after waiting behind another request)."""
    when = "before its work could start" if stage == "start" else "and its work was stopped"
    msg = (
        f"the request reached its deadline of {limits.deadline_s:g} s ({setting}) {when}; "
        "send a smaller request (fewer transfers or invoices) or retry later"
    )
    detail = [{"loc": ["body"], "msg": msg, "type": "deadline_exceeded"}]
    note = f"stopped during {stage}, {late_by:.1f} s late"
    return Refusal(503, msg, detail, limit=setting, kind="deadline", note=note)


def matcher_refused(exc: Exception) -> Refusal:
    """400 for input the matcher itself refused although validation passed it (a gap in validation: its type is
    logged; the message, which may quote values, only goes back to the caller)."""
    msg = f"the matcher refused the request: {exc}"
    return Refusal(400, msg, [{"loc": ["body"], "msg": msg, "type": type(exc).__name__}], kind="matcher")


def parse_body(model: type[BaseModel], body: bytes, limits: Limits) -> BaseModel:
    """``model`` validated from the raw JSON ``body`` with ``limits`` as the validation context, or a ``Refusal``."""
    try:
        return model.model_validate_json(body or b"{}", context=limits)
    except ValidationError as exc:
        errors = exc.errors(include_url=False)
        if len(errors) == 1 and errors[0]["type"] == "json_invalid":
            raise not_json(f"the body is not valid JSON: {errors[0]['msg']}") from None
        raise invalid(exc) from None
