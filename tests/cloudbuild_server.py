"""A local HTTP server that plays the Cloud Build REST API, for the real ``CloudBuildClient``.

The client (REST transport, anonymous credentials, ``api_endpoint=http://127.0.0.1:PORT``) POSTs the
build to ``/v1/projects/<project>/builds`` and polls ``GET /v1/operations/...``. The server checks the
exact JSON body it receives, answers ``create`` with a long-running Operation whose metadata is a
``BuildOperationMetadata`` and answers each poll from a script. Used by test_cloud_build.py and
test_deploy_step.py.
"""

from __future__ import annotations

import http.server
import json
import warnings
from typing import Any, Callable

from tests.helpers import LoopbackServer

warnings.filterwarnings("ignore", category=FutureWarning)

from google.api_core.client_options import ClientOptions  # noqa: E402
from google.auth.credentials import AnonymousCredentials  # noqa: E402
from google.cloud.devtools import cloudbuild_v1  # noqa: E402

PROJECT = "finanse-project"
BUILD_ID = "0c8a2c7e-1111-4a4a-9f9f-123456789abc"
OP_NAME = f"operations/build/{PROJECT}/MGM4YTJjN2UtMTExMQ"
LOG_URL = f"https://console.cloud.google.com/cloud-build/builds/{BUILD_ID}?project=123"
META_TYPE = "type.googleapis.com/google.devtools.cloudbuild.v1.BuildOperationMetadata"
BUILD_TYPE = "type.googleapis.com/google.devtools.cloudbuild.v1.Build"
S = cloudbuild_v1.Build.Status


def build_json(status: S, image: str, **extra) -> dict:
    # Enums as integers: the client asks for `$alt=json;enum-encoding=int`.
    return {"id": BUILD_ID, "projectId": PROJECT, "status": int(status), "logUrl": LOG_URL, "images": [image], **extra}


def op_json(status: S, done: bool, image: str, **extra) -> dict:
    return {
        "name": OP_NAME,
        "metadata": {"@type": META_TYPE, "build": build_json(status, image)},
        "done": done,
        **extra,
    }


def success_op(image: str, digest: str = "sha256:" + "a" * 64) -> dict:
    return {
        "name": OP_NAME,
        "done": True,
        "metadata": {"@type": META_TYPE, "build": build_json(S.SUCCESS, image)},
        "response": {
            "@type": BUILD_TYPE,
            **build_json(S.SUCCESS, image, results={"images": [{"name": image, "digest": digest}]}),
        },
    }


def failure_op(image: str, detail: str = "step 0 exited with 1") -> dict:
    failed = {
        **op_json(S.FAILURE, True, image),
        "error": {"code": 2, "message": "Build failed; check build logs for details"},
    }
    failed["metadata"]["build"]["statusDetail"] = detail
    return failed


class FakeCloudBuild(LoopbackServer):
    """Scripted Cloud Build: ``create`` is the answer to POST, ``polls`` the answers to each GET.

    ``expected_body``: the exact JSON the POST must carry (a dict), a predicate on it, or None (any); a body
    that does not match is answered 400 INVALID_ARGUMENT. ``polls`` may be a callable ``(posted_body) -> list``
    for answers that depend on the request (e.g. the image name the client chose).
    """

    def __init__(
        self,
        create: tuple[int, dict] | Callable[[dict], tuple[int, dict]],
        polls: list[dict] | Callable[[dict], list[dict]] | None = None,
        repeat_last: bool = False,
        expected_body: dict | Callable[[dict], bool] | None = None,
        project: str = PROJECT,
    ):
        self.create, self.polls, self.repeat_last = create, polls if callable(polls) else list(polls or []), repeat_last
        self.expected_body, self.project = expected_body, project
        self.requests: list[dict[str, Any]] = []
        fake = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def _reply(self, code: int, payload: dict) -> None:
                body = json.dumps(payload).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self):  # noqa: N802
                raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                posted = json.loads(raw or b"{}")
                fake.requests.append({"method": "POST", "path": self.path, "body": posted})
                if not self.path.startswith(f"/v1/projects/{fake.project}/builds?"):
                    return self._reply(
                        404, {"error": {"code": 404, "message": f"unexpected path {self.path}", "status": "NOT_FOUND"}}
                    )
                expected = fake.expected_body
                if expected is not None and not (expected(posted) if callable(expected) else posted == expected):
                    return self._reply(
                        400, {"error": {"code": 400, "message": "unexpected body", "status": "INVALID_ARGUMENT"}}
                    )
                if callable(fake.polls):
                    fake.polls = list(fake.polls(posted))
                self._reply(*(fake.create(posted) if callable(fake.create) else fake.create))

            def do_GET(self):  # noqa: N802
                fake.requests.append({"method": "GET", "path": self.path})
                if not self.path.startswith(f"/v1/{OP_NAME}"):
                    return self._reply(
                        404, {"error": {"code": 404, "message": f"unexpected path {self.path}", "status": "NOT_FOUND"}}
                    )
                if not fake.polls:
                    return self._reply(
                        500, {"error": {"code": 500, "message": "no more scripted polls", "status": "INTERNAL"}}
                    )
                answer = fake.polls[0] if (fake.repeat_last and len(fake.polls) == 1) else fake.polls.pop(0)
                self._reply(200, answer)

            def log_message(self, *args):  # keep pytest output clean
                pass

        self.serve(Handler)

    def client(self) -> cloudbuild_v1.CloudBuildClient:
        return cloudbuild_v1.CloudBuildClient(
            transport="rest",
            credentials=AnonymousCredentials(),
            client_options=ClientOptions(api_endpoint=self.endpoint),
        )
