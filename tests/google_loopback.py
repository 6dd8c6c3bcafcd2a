"""One HTTP server on 127.0.0.1 that plays the Google APIs a Vertex submission calls, for the real clients.

What ZenML's GCP stack calls when ``python run.py --config configs/gcp.yaml [--schedule ...]`` submits:
- the OAuth token endpoint (``POST /token``): the service connector's service-account key names this
  server as its ``token_uri``, so google-auth signs a real JWT and trades it for a bearer token here;
- Cloud Build (``POST /v1/projects/<project>/builds``, polls at ``GET /v1/operations/...``): ZenML's GCP
  image builder builds the step image there;
- Vertex AI Pipelines (``POST .../pipelineJobs?pipelineJobId=``, ``GET .../pipelineJobs/<id>``) and the
  schedule service (``POST .../schedules``): aiplatform's ``PipelineJob.submit`` and ``create_schedule``.

Every request is recorded with its headers and JSON body, so tests check the exact request the real
client sent. ``fail(route, status, ...)`` scripts an error answer for a route, ``hang(route, seconds)`` a
server that never answers in time. Vertex is reached with ``aiplatform.init(api_endpoint=..., api_transport=
"rest")``; Cloud Build with ``CloudBuildClient(transport="rest", client_options={"api_endpoint": ...})``.
"""

from __future__ import annotations

import contextlib
import http.server
import json
import re
import threading
import time
import urllib.parse
from typing import Any

from tests.helpers import LoopbackServer

TOKEN = "ya29.loopback-token"
BUILD_ID = "5d1f3a8e-0000-4b7c-9e1d-2f6a7c8b9d0e"
DIGEST = "sha256:" + "b" * 64
BUILD_META = "type.googleapis.com/google.devtools.cloudbuild.v1.BuildOperationMetadata"
BUILD_TYPE = "type.googleapis.com/google.devtools.cloudbuild.v1.Build"
STATUS = {403: "PERMISSION_DENIED", 404: "NOT_FOUND", 409: "ALREADY_EXISTS", 500: "INTERNAL", 503: "UNAVAILABLE"}


class GoogleLoopback(LoopbackServer):
    """The server; use as a context manager. ``requests``: every request seen, in order."""

    def __init__(self, project: str, location: str, job_state: str = "PIPELINE_STATE_SUCCEEDED"):
        self.project, self.location, self.job_state = project, location, job_state
        self.requests: list[dict[str, Any]] = []
        self.faults: dict[str, tuple] = {}
        self.build_status = 3  # what every build ends in: 3 SUCCESS, 4 FAILURE (cloudbuild_v1.Build.Status)
        self.released = threading.Event()
        self.jobs: dict[str, dict] = {}
        self.builds: dict[str, dict] = {}
        parent = f"/v1/projects/{project}/locations/{location}"
        self.routes = [
            ("POST", re.compile(r"^/token$"), "token", self._token),
            ("POST", re.compile(rf"^/v1/projects/{project}/builds$"), "build.create", self._build_create),
            ("GET", re.compile(r"^/v1/operations/build/.+$"), "build.poll", self._build_poll),
            ("POST", re.compile(rf"^{parent}/pipelineJobs$"), "pipelineJob.create", self._job_create),
            ("GET", re.compile(rf"^{parent}/pipelineJobs/[^/]+$"), "pipelineJob.get", self._job_get),
            ("POST", re.compile(rf"^{parent}/schedules$"), "schedule.create", self._schedule_create),
        ]
        self.serve(self._handler())

    # -- scripting -------------------------------------------------------------------------------------
    def fail(self, route: str, status: int, message: str = "scripted failure") -> None:
        """Answer ``route`` (e.g. ``"schedule.create"``) with a Google API error of HTTP ``status``."""
        self.faults[route] = ("error", status, message)

    def hang(self, route: str, seconds: float) -> None:
        """Answer ``route`` only after ``seconds``, or when ``release()`` is called."""
        self.released.clear()
        self.faults[route] = ("hang", seconds)

    def release(self) -> None:
        """Let hanging requests go on now (and clear every scripted fault)."""
        self.faults.clear()
        self.build_status = 3
        self.released.set()

    def bodies(self, route: str) -> list[dict]:
        return [r["body"] for r in self.requests if r["route"] == route]

    # -- the APIs --------------------------------------------------------------------------------------
    def _token(self, body, query, path):
        return 200, {"access_token": TOKEN, "expires_in": 3600, "token_type": "Bearer"}

    def _build(self, body: dict, status: int, **extra) -> dict:
        # Enums as integers: the Cloud Build client asks for `$alt=json;enum-encoding=int`.
        return {
            "id": BUILD_ID,
            "projectId": self.project,
            "status": status,
            "logUrl": f"https://console.cloud.google.com/cloud-build/builds/{BUILD_ID}?project={self.project}",
            "images": body.get("images", []),
            **extra,
        }

    def _build_create(self, body, query, path):
        name = f"operations/build/{self.project}/{BUILD_ID}-{len(self.builds)}"
        self.builds[name] = body
        return 200, {"name": name, "done": False, "metadata": {"@type": BUILD_META, "build": self._build(body, 1)}}

    def _build_poll(self, body, query, path):
        name = path.removeprefix("/v1/")
        posted = self.builds[name]
        results = {"images": [{"name": image, "digest": DIGEST} for image in posted.get("images", [])]}
        done = self._build(posted, self.build_status, results=results)
        return 200, {
            "name": name,
            "done": True,
            "metadata": {"@type": BUILD_META, "build": done},
            "response": {"@type": BUILD_TYPE, **done},
        }

    def _job_create(self, body, query, path):
        job_id = query.get("pipelineJobId", ["job"])[0]
        name = f"projects/{self.project}/locations/{self.location}/pipelineJobs/{job_id}"
        job = {**body, "name": name, "state": "PIPELINE_STATE_PENDING", "createTime": "2026-11-29T03:00:00Z"}
        self.jobs[name] = job
        return 200, job

    def _job_get(self, body, query, path):
        name = path.removeprefix("/v1/")
        if name not in self.jobs:
            return 404, _error(404, f"pipeline job {name} not found")
        return 200, {**self.jobs[name], "state": self.job_state}

    def _schedule_create(self, body, query, path):
        name = f"projects/{self.project}/locations/{self.location}/schedules/{len(self.requests)}"
        return 200, {**body, "name": name, "state": "ACTIVE", "createTime": "2026-11-29T03:00:00Z"}

    # -- plumbing --------------------------------------------------------------------------------------
    def _handler(self):
        fake = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def _serve(self, method: str) -> None:
                url = urllib.parse.urlsplit(self.path)
                raw = self.rfile.read(int(self.headers.get("Content-Length", 0) or 0))
                try:
                    body = json.loads(raw) if raw and raw[:1] in b"{[" else urllib.parse.parse_qs(raw.decode())
                except ValueError:
                    body = raw.decode(errors="replace")
                for verb, pattern, route, answer in fake.routes:
                    if verb == method and pattern.match(url.path):
                        break
                else:
                    route, answer = None, None
                fake.requests.append(
                    {
                        "method": method,
                        "path": url.path,
                        "query": url.query,
                        "route": route,
                        "headers": dict(self.headers),
                        "body": body,
                    }
                )
                if answer is None:
                    return self._reply(404, _error(404, f"no such route: {method} {url.path}"))
                fault = fake.faults.get(route)
                if fault and fault[0] == "hang":
                    fake.released.wait(fault[1])
                elif fault:
                    return self._reply(fault[1], _error(fault[1], fault[2]))
                query = urllib.parse.parse_qs(url.query)
                try:
                    code, payload = answer(body, query, url.path)
                except Exception as exc:  # a test bug must not hang the client
                    code, payload = 500, _error(500, f"loopback server error: {exc!r}")
                self._reply(code, payload)

            def _reply(self, code: int, payload: dict) -> None:
                data = json.dumps(payload).encode()
                try:
                    self.send_response(code)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):  # the client gave up (a timeout test)
                    pass

            def do_POST(self):  # noqa: N802
                self._serve("POST")

            def do_GET(self):  # noqa: N802
                self._serve("GET")

            def log_message(self, *args):
                pass

        return Handler


def _error(status: int, message: str) -> dict:
    return {"error": {"code": status, "message": message, "status": STATUS.get(status, "UNKNOWN")}}


def service_account_key(token_uri: str, project: str, email: str) -> dict:
    """A service-account JSON key with a freshly generated RSA key, whose token endpoint is ``token_uri``."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    return {
        "type": "service_account",
        "project_id": project,
        "private_key_id": "loopback",
        "private_key": pem,
        "client_email": email,
        "client_id": "0",
        "auth_uri": "https://accounts.google.com/o/oauth2/auth",
        "token_uri": token_uri,
        "auth_provider_x509_cert_url": "https://www.googleapis.com/oauth2/v1/certs",
        "client_x509_cert_url": f"https://www.googleapis.com/robot/v1/metadata/x509/{email}",
    }


def load_register_gcp():
    """stacks/register_gcp.py as a module (it is a script, not a package)."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "stacks" / "register_gcp.py"
    spec = importlib.util.spec_from_file_location("register_gcp", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@contextlib.contextmanager
def gcs_emulator_process(bucket: str):
    """Stock gcp-storage-emulator as its own process on a free loopback port, with ``bucket``; yields its URL.

    Its own process, not a thread: ZenML's uploads (code archive, image build context) go through gcsfs's
    event loop, which a server in the same process would have to share."""
    import subprocess
    import sys
    import urllib.request
    from pathlib import Path

    from ledgerlink.deploy.local import free_port

    port = free_port()
    exe = Path(sys.executable).with_name("gcp-storage-emulator")
    cmd = [str(exe), "start", "--host", "127.0.0.1", "--port", str(port), "--in-memory", "--default-bucket", bucket]
    proc = subprocess.Popen([*cmd, "-q"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            try:
                urllib.request.urlopen(url + "/storage/v1/b", timeout=1).read()
                break
            except OSError:
                time.sleep(0.1)
        else:
            raise RuntimeError(f"gcp-storage-emulator did not answer on {url} within 30 s")
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=10)
