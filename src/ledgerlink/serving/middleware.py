"""ASGI middleware of the service: what is refused before the body is read or parsed, and who answers.

Plain ASGI classes (no BentoML import), so they are tested by calling them with hand-made ``scope``,
``receive`` and ``send``; the service adds them with ``add_asgi_middleware``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable

from .limits import MAX_BODY_BYTES, Limits
from .refusals import Refusal, body_too_large, unsupported_media_type

SERVER_ID_ENV = "LEDGERLINK_SERVER_ID"
SERVER_ID_HEADER = "x-ledgerlink-server"


async def _refuse(send, refusal: Refusal, route: str) -> None:
    refusal.log(route)
    body = refusal.body_bytes()
    await send(
        {
            "type": "http.response.start",
            "status": refusal.status,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})


def _header(scope, name: bytes) -> bytes | None:
    for k, v in scope.get("headers") or ():
        if k.lower() == name:
            return v
    return None


class BodySizeLimit:
    """413 for a body over ``LEDGERLINK_MAX_BODY_BYTES`` (read per request), by its Content-Length or as it
    streams in. BentoML reads the whole body before validating it, so without this a client could make a worker
    hold any amount of memory.

    The body is read here (BentoML would read all of it anyway) and handed on to the app; one that passes the
    limit never reaches the app, so no error is raised inside it (which BentoML logs with a traceback)."""

    def __init__(self, app, limits: Callable[[], Limits] = Limits.from_env):
        self.app, self.limits = app, limits

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        limit = self.limits().max_body_bytes
        route = f"{scope.get('method', '')} {scope.get('path', '')}"
        declared = _header(scope, b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            return await _refuse(send, body_too_large(limit, int(declared), MAX_BODY_BYTES), route)
        chunks, seen = [], 0
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client went away: let the app see it
                chunks = None
                break
            body = message.get("body", b"")
            seen += len(body)
            if seen > limit:
                return await _refuse(send, body_too_large(limit, None, MAX_BODY_BYTES), route)
            chunks.append(body)
            if not message.get("more_body", False):
                break
        if chunks is None:
            return await self.app(scope, receive, send)
        pending = [{"type": "http.request", "body": b"".join(chunks), "more_body": False}]

        async def replay():
            return pending.pop() if pending else await receive()

        return await self.app(scope, replay, send)


class JsonOnly:
    """415 for a POST to one of ``paths`` whose Content-Type is not JSON (``application/json``; none at all is read
    as JSON, as BentoML does). BentoML picked a parser by Content-Type: a multipart body without a boundary
    answered 500, a form was parsed into a request."""

    def __init__(self, app, paths: Iterable[str]):
        self.app, self.paths = app, frozenset(paths)

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and scope.get("method") == "POST" and scope.get("path") in self.paths:
            raw = _header(scope, b"content-type")
            media = (raw or b"").decode("latin-1").split(";")[0].strip().lower()
            if media not in ("", "application/json"):
                return await _refuse(send, unsupported_media_type(media), f"POST {scope['path']}")
        return await self.app(scope, receive, send)


class ServerIdentity:
    """Every response carries ``x-ledgerlink-server: $LEDGERLINK_SERVER_ID`` when that is set.

    ``BentoServer`` sets a fresh random id per server and accepts an answer only with it: two smoke tests that
    were given the same free port once got their answers from each other's model (the second ``bentoml serve``
    failed to bind, and the first answered its requests)."""

    def __init__(self, app, server_id: str | None = None):
        self.app = app
        value = server_id if server_id is not None else os.environ.get(SERVER_ID_ENV, "")
        self.header = (SERVER_ID_HEADER.encode(), value.encode("latin-1")) if value else None

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or self.header is None:
            return await self.app(scope, receive, send)

        async def tagged_send(message):
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), self.header]}
            await send(message)

        return await self.app(scope, receive, tagged_send)
