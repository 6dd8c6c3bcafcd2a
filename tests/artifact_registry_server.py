"""A local HTTP server that plays the Artifact Registry REST API's tag methods, for the real
``ArtifactRegistryClient`` (REST transport, anonymous credentials, ``api_endpoint=http://127.0.0.1:PORT``).

It holds the repository's images (digest -> tags) and answers what ``ledgerlink.deploy.artifact_registry`` sends:

- ``POST /v1/projects/P/locations/L/repositories/R/packages/PKG/tags?tagId=T`` with body ``{"name", "version"}``:
  200 with the tag; 409 when the tag exists; 404 when the version (digest) is not in the repository;
- ``GET .../tags/T``; ``PATCH .../tags/T?updateMask=version``.

Every request is kept (method, path, query, body) so a test asserts the exact request. ``deny`` answers 403.
"""

from __future__ import annotations

import http.server
import json
from urllib.parse import parse_qs, unquote, urlsplit

from tests.helpers import LoopbackServer


class FakeArtifactRegistry(LoopbackServer):
    def __init__(self, package: str, digests: dict[str, list[str]] | None = None, deny: bool = False):
        """``package``: the package's resource name as the API spells it (``projects/../packages/ledgerlink``)."""
        self.package, self.deny = package, deny
        self.tags: dict[str, str] = {}  # tag -> version resource name
        self.versions = {f"{package}/versions/{d}" for d in (digests or {})}
        for digest, tags in (digests or {}).items():
            for t in tags:
                self.tags[t] = f"{package}/versions/{digest}"
        self.requests: list[dict] = []
        fake = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def _reply(self, code: int, payload: dict) -> None:
                body = json.dumps(payload).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _error(self, code: int, status: str, message: str) -> None:
                self._reply(code, {"error": {"code": code, "message": message, "status": status}})

            def _record(self, method: str) -> dict:
                raw = self.rfile.read(int(self.headers.get("Content-Length", 0) or 0))
                url = urlsplit(self.path)
                req = {
                    "method": method,
                    "path": url.path,
                    "query": {k: v[0] for k, v in parse_qs(url.query).items() if not k.startswith("$")},
                    "body": json.loads(raw) if raw else None,
                }
                fake.requests.append(req)
                return req

            def _tag_name(self, path: str) -> str | None:
                prefix = f"/v1/{fake.package}/tags/"
                return unquote(path[len(prefix) :]) if path.startswith(prefix) else None

            def do_POST(self):  # noqa: N802
                req = self._record("POST")
                if fake.deny:
                    return self._error(403, "PERMISSION_DENIED", "Permission 'artifactregistry.tags.create' denied")
                if req["path"] != f"/v1/{fake.package}/tags":
                    return self._error(404, "NOT_FOUND", f"unexpected path {req['path']}")
                tag, body = req["query"].get("tagId"), req["body"] or {}
                if not tag or body.get("name") != f"{fake.package}/tags/{tag}":
                    return self._error(400, "INVALID_ARGUMENT", f"tag name {body.get('name')!r} does not match {tag!r}")
                if body.get("version") not in fake.versions:
                    return self._error(404, "NOT_FOUND", f"Requested entity was not found: {body.get('version')}")
                if tag in fake.tags:
                    return self._error(409, "ALREADY_EXISTS", f"tag {tag} already exists")
                fake.tags[tag] = body["version"]
                self._reply(200, {"name": body["name"], "version": body["version"]})

            def do_GET(self):  # noqa: N802
                req = self._record("GET")
                tag = self._tag_name(req["path"])
                if tag is None or tag not in fake.tags:
                    return self._error(404, "NOT_FOUND", f"no tag at {req['path']}")
                self._reply(200, {"name": f"{fake.package}/tags/{tag}", "version": fake.tags[tag]})

            def do_PATCH(self):  # noqa: N802
                req = self._record("PATCH")
                tag, body = self._tag_name(req["path"]), req["body"] or {}
                if tag is None or tag not in fake.tags or body.get("version") not in fake.versions:
                    return self._error(404, "NOT_FOUND", f"no tag or version at {req['path']}")
                fake.tags[tag] = body["version"]
                self._reply(200, {"name": f"{fake.package}/tags/{tag}", "version": body["version"]})

            def log_message(self, *args):
                pass

        self.serve(Handler)
