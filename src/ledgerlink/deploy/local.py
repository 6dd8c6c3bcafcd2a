"""The local deployer: serve the built Bento with ``bentoml serve`` on loopback and check that it answers.

There is no Docker engine and no cloud here, so "deploying" locally means: the Bento is built (by
``ledgerlink.deploy.deployers``), a real BentoML server is started from it as a subprocess on a free
127.0.0.1 port, ``/readyz`` must turn ready, one real ``POST /match`` made from the data must come back
with a well-formed answer from that very server (its id), and the server is stopped again (always; also when
this process is killed). The model is also exported to
``deploy.model_dir`` with a ``production.json`` pointer, and the command that serves it is printed.

``BentoServer`` is also what the HTTP tests, the serving benchmark and ``python run.py --serve`` use.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

SERVICE_NAME = "ledgerlink"  # @bentoml.service(name=...) in bentos/service.py
SERVE_HINT = "python run.py --serve"
SERVER_ID_ENV = "LEDGERLINK_SERVER_ID"  # ledgerlink.serving.middleware.ServerIdentity answers with it
SERVER_ID_HEADER = "x-ledgerlink-server"
PORT_ATTEMPTS = 5

# Run by the server's interpreter before it becomes `bentoml serve` (exec keeps the pid): the kernel sends it
# SIGTERM when its parent dies, so a SIGKILLed parent (a killed test, a killed pipeline) leaves no server behind.
# An exec wrapper rather than Popen(preexec_fn=...), which may deadlock in a parent with threads (ZenML has them).
_DIE_WITH_PARENT = """
import ctypes, os, signal, sys
prctl = getattr(ctypes.CDLL(None, use_errno=True), "prctl", None)  # Linux only
if prctl is not None:
    prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    if os.getppid() != int(sys.argv[1]):  # the parent died before prctl: nobody would stop us
        sys.exit(1)
os.execv(sys.argv[2], sys.argv[2:])
"""


class ServerError(RuntimeError):
    """The BentoML server did not start, did not get ready, or answered the smoke request wrongly."""


class PortTaken(ServerError):
    """Another server holds the port (``bentoml serve`` could not bind it, or someone else answered on it)."""


def free_port(host: str = "127.0.0.1") -> int:
    """A port that was free a moment ago. Another process may take it before ours binds it: ``BentoServer`` checks
    who answers (its server id) and moves to another port if it lost the race."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def serve_command(bento: str, host: str = "127.0.0.1", port: int = 3000) -> list[str]:
    """``bentoml serve`` with this interpreter, so the server runs in the same environment."""
    return [sys.executable, "-m", "bentoml", "serve", str(bento), "--host", host, "--port", str(port)]


def dies_with_parent(command: list[str]) -> list[str]:
    """``command`` run so that it gets SIGTERM when this process dies (Linux; elsewhere just ``command``)."""
    exe = shutil.which(command[0]) or command[0]
    return [sys.executable, "-c", _DIE_WITH_PARENT, str(os.getpid()), exe, *command[1:]]


def server_env(env: dict[str, str] | None = None, workers: int | None = None) -> dict[str, str]:
    """The server's environment: ours (``BENTOML_HOME`` included, so it sees the same stores), no usage
    tracking, ``env`` on top, and ``workers`` server processes if given."""
    out = dict(os.environ)
    out.setdefault("BENTOML_DO_NOT_TRACK", "True")
    out.setdefault("PYTHONUNBUFFERED", "1")  # log lines reach the log file as they are written
    out.update({k: str(v) for k, v in (env or {}).items()})
    if workers:
        overrides = json.loads(out.get("BENTOML_CONFIG_OVERRIDES") or "{}")
        overrides.setdefault("services", {}).setdefault(SERVICE_NAME, {})["workers"] = int(workers)
        out["BENTOML_CONFIG_OVERRIDES"] = json.dumps(overrides)
    return out


def bento_env(bento: str) -> dict[str, str]:
    """The run-time ``envs`` a Bento records (``LEDGERLINK_MODEL_TAG``: the model it was built for).

    A container gets them as ``ENV`` lines; ``bentoml serve <bento>`` on this machine does not apply them, so the
    service loaded ``ledgerlink:latest``, which was another run's model when two runs served at once."""
    import bentoml

    try:
        envs = bentoml.bentos.get(bento).info.envs
    except (bentoml.exceptions.NotFound, bentoml.exceptions.BentoMLException, ValueError):
        return {}  # not a Bento tag of the store (a path, an import string): nothing recorded
    return {e.name: str(e.value) for e in envs if e.value is not None and getattr(e, "stage", "all") != "build"}


def _parents() -> dict[int, int]:
    out = {}
    for d in Path("/proc").iterdir() if Path("/proc/self/stat").exists() else ():
        if d.name.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                out[int(d.name)] = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
    return out


def descendants(pid: int) -> set[int]:
    """The processes ``pid`` started, and theirs (Linux ``/proc``; empty elsewhere)."""
    children: dict[int, list[int]] = {}
    for child, parent in _parents().items():
        children.setdefault(parent, []).append(child)
    out, todo = set(), [pid]
    while todo:
        for child in children.get(todo.pop(), ()):
            if child not in out:
                out.add(child)
                todo.append(child)
    return out


def _is_bentoml(pid: int) -> bool:
    try:
        return b"bentoml" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


def logs_dir() -> Path:
    """``$LEDGERLINK_HOME/logs`` (default ``.ledgerlink/logs``): server logs, kept only when something failed."""
    return Path(os.environ.get("LEDGERLINK_HOME") or ".ledgerlink") / "logs"


def http_call(method: str, url: str, body: Any = None, timeout: float = 30.0) -> tuple[int, dict[str, str], Any]:
    """(status, headers with lower-case names, parsed JSON or text) with the standard library, 4xx/5xx included."""
    data = None if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
    req = urllib.request.Request(
        url, data=data, method=method, headers={"Content-Type": "application/json"} if data is not None else {}
    )
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            status, headers, raw = resp.status, resp.headers, resp.read()
    except urllib.error.HTTPError as exc:
        status, headers, raw = exc.code, exc.headers, exc.read()
    headers = {k.lower(): v for k, v in headers.items()}
    try:
        return status, headers, json.loads(raw)
    except ValueError:
        return status, headers, raw.decode(errors="replace")


def http_json(method: str, url: str, body: Any = None, timeout: float = 30.0) -> tuple[int, Any]:
    """(status, parsed JSON or text) with the standard library, 4xx/5xx included."""
    status, _, parsed = http_call(method, url, body, timeout)
    return status, parsed


class BentoServer:
    """``bentoml serve <bento>`` as a subprocess on loopback; a context manager that always stops it.

    ``bento`` is a Bento tag (``ledgerlink:abc123``) or anything ``bentoml serve`` takes.
    - The server runs in its own process group, so ``stop`` ends the BentoML supervisor and its workers, and
      nothing else; it gets SIGTERM when this process dies (``dies_with_parent``), even by SIGKILL. Linux ties
      that signal to the thread that started the server: start it from a thread that outlives it (the main
      thread, or the one that stops it, as ``serve_and_check`` does).
    - It gets a fresh ``server_id`` (``$LEDGERLINK_SERVER_ID``), which it sends back as ``x-ledgerlink-server``;
      it is ready only when ``/readyz`` answers with that id. If another server answers on the port, or ``bentoml
      serve`` cannot bind it, the server moves to another free port (unless ``port`` was given).
    - Its log is ``$LEDGERLINK_HOME/logs/serve-*.log``, removed when the server stops after a success and kept
      (the path is in every error) when it failed to start or the ``with`` block raised.
    """

    def __init__(
        self,
        bento: str,
        host: str = "127.0.0.1",
        port: int | None = None,
        *,
        env: dict[str, str] | None = None,
        workers: int | None = None,
        startup_timeout: float = 120.0,
        cwd: str | os.PathLike | None = None,
    ):
        self.bento, self.host, self.port = str(bento), host, port
        self.fixed_port = port is not None
        self.env, self.workers, self.startup_timeout = env, workers, startup_timeout
        self.cwd = cwd
        self.server_id = secrets.token_hex(8)
        self.proc: subprocess.Popen | None = None
        self.log_path: Path | None = None
        self.failed = False
        self._log = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def log_tail(self, lines: int = 30) -> str:
        if self._log is None:
            return ""
        self._log.flush()
        with open(self._log.name, "rb") as f:
            return "\n".join(f.read().decode(errors="replace").splitlines()[-lines:])

    def start(self) -> "BentoServer":
        if self.proc is not None:
            raise RuntimeError("server already started")
        for attempt in range(1, PORT_ATTEMPTS + 1):
            self.port = self.port if self.fixed_port else free_port(self.host)
            self._spawn()
            try:
                self.wait_ready()
                return self
            except PortTaken:
                self.stop(keep_log=False)
                if self.fixed_port or attempt == PORT_ATTEMPTS:
                    self.failed = True
                    raise
            except BaseException:
                self.failed = True
                self.stop()
                raise
        raise AssertionError("unreachable")

    def _spawn(self) -> None:
        folder = logs_dir()
        folder.mkdir(parents=True, exist_ok=True)
        stamp = time.strftime("%Y%m%d-%H%M%S")
        self.log_path = folder / f"serve-{stamp}-{os.getpid()}-{self.server_id}-{self.port}.log"
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            dies_with_parent(serve_command(self.bento, self.host, self.port)),
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=server_env({**bento_env(self.bento), **(self.env or {}), SERVER_ID_ENV: self.server_id}, self.workers),
            cwd=self.cwd,
            start_new_session=True,
        )

    def _answered_by_us(self, headers: dict[str, str]) -> bool:
        return headers.get(SERVER_ID_HEADER) == self.server_id

    def wait_ready(self) -> None:
        deadline = time.monotonic() + self.startup_timeout
        while True:
            if self.proc.poll() is not None:
                tail = self.log_tail()
                if "Address already in use" in tail or "[Errno 98]" in tail:
                    raise PortTaken(f"port {self.port} on {self.host} is taken by another process")
                raise ServerError(
                    f"`bentoml serve {self.bento}` exited with code {self.proc.returncode} before it was "
                    f"ready. Its log ({self.log_path}):\n{tail}"
                )
            with contextlib.suppress(OSError):
                status, headers, _ = http_call("GET", f"{self.url}/readyz", timeout=2)
                if status == 200 and self._answered_by_us(headers):
                    return
                if not self._answered_by_us(headers):  # someone else's server holds our port
                    raise PortTaken(
                        f"another server answered on {self.url} (server id {headers.get(SERVER_ID_HEADER)!r}, "
                        f"ours {self.server_id!r})"
                    )
            if time.monotonic() > deadline:
                raise ServerError(
                    f"`bentoml serve {self.bento}` on {self.url} was not ready after "
                    f"{self.startup_timeout:g}s. Its log ({self.log_path}):\n{self.log_tail()}"
                )
            time.sleep(0.2)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def worker_pids(self) -> list[int]:
        """The BentoML worker processes serving requests (Linux ``/proc``; empty elsewhere)."""
        if self.proc is None:
            return []
        out = []
        for pid in sorted(descendants(self.proc.pid)):
            with contextlib.suppress(OSError):
                if b"_bentoml_impl.worker" in Path(f"/proc/{pid}/cmdline").read_bytes():
                    out.append(pid)
        return out

    def stop(self, grace: float = 15.0, *, keep_log: bool | None = None) -> None:
        """Stop the server and its workers; remove its log unless something failed (``keep_log`` decides)."""
        proc, self.proc = self.proc, None
        if proc is not None:
            workers = descendants(proc.pid)  # circus starts each worker in a session of its own
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(grace)
                except subprocess.TimeoutExpired:
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait(5)
            # The supervisor is gone; nothing it started (its process group, its workers) may be left behind.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
            for pid in workers:  # orphans now, if the supervisor could not stop them
                if _is_bentoml(pid):  # still the worker, not a new process that got its pid
                    with contextlib.suppress(ProcessLookupError, PermissionError):
                        os.kill(pid, signal.SIGKILL)
        if self._log is not None:
            self._log.close()
            self._log = None
            if not (self.failed if keep_log is None else keep_log) and self.log_path is not None:
                with contextlib.suppress(OSError):
                    self.log_path.unlink()

    def __enter__(self) -> "BentoServer":
        return self.start()

    def __exit__(self, exc_type, *exc) -> None:
        if exc_type is not None:
            self.failed = True
        self.stop()


# --------------------------------------------------------------------------------------------
# Smoke check
# --------------------------------------------------------------------------------------------

_MATCH_KEYS = {
    "transfer_id",
    "decision",
    "confidence",
    "auto_threshold",
    "chosen",
    "ranked",
    "unscored_invoice_ids",
    "model",
}


def check_match_response(body: Any, request: dict[str, Any]) -> list[str]:
    """What is wrong with a ``POST /match`` answer to ``request`` (empty list: nothing)."""
    if not isinstance(body, dict):
        return [f"the answer is not a JSON object: {str(body)[:200]}"]
    problems = []
    missing = _MATCH_KEYS - set(body)
    if missing:
        return [f"the answer lacks {sorted(missing)}"]
    ids = {c["invoice_id"] for c in request["candidates"]}
    if body["transfer_id"] != request["transfer"]["transfer_id"]:
        problems.append(f"transfer_id {body['transfer_id']!r} is not the one sent")
    if body["decision"] not in ("auto", "review"):
        problems.append(f"decision {body['decision']!r} is neither auto nor review")
    conf, thr = body["confidence"], body["auto_threshold"]
    if not (isinstance(conf, (int, float)) and 0 <= conf <= 1):
        problems.append(f"confidence {conf!r} is not in [0, 1]")
    elif isinstance(thr, (int, float)) and body["decision"] != ("auto" if conf >= thr else "review"):
        problems.append(f"decision {body['decision']} contradicts confidence {conf} vs threshold {thr}")
    ranked = body["ranked"]
    if [r.get("rank") for r in ranked] != list(range(1, len(ranked) + 1)):
        problems.append("ranked is not numbered 1..n")
    probs = [r.get("probability") for r in ranked]
    if any(not isinstance(p, (int, float)) or not 0 <= p <= 1 for p in probs) or probs != sorted(probs, reverse=True):
        problems.append("ranked probabilities are not in [0, 1] and descending")
    if len(ranked) > request.get("top_k", 10):
        problems.append(f"{len(ranked)} ranked invoices for top_k={request.get('top_k', 10)}")
    for part in ("ranked", "chosen"):
        stray = {r.get("invoice_id") for r in body[part]} - ids
        if stray:
            problems.append(f"{part} names invoices that were not candidates: {sorted(map(str, stray))[:5]}")
    if set(body["unscored_invoice_ids"]) - ids:
        problems.append("unscored_invoice_ids names invoices that were not candidates")
    if not all(isinstance(c.get("allocated_amount"), (int, float)) for c in body["chosen"]):
        problems.append("a chosen invoice has no numeric allocated_amount")
    return problems


def smoke_check(
    url: str,
    request: dict[str, Any],
    expected_model: str | None = None,
    expected_answer: dict[str, Any] | None = None,
    timeout: float = 60.0,
    server_id: str | None = None,
) -> dict[str, Any]:
    """One real ``POST /match`` against a running server; raises ``ServerError`` unless the answer is well formed,
    comes from the server ``server_id`` (its ``x-ledgerlink-server`` header, if given) and ``expected_model`` (if
    given), and equals ``expected_answer`` (``payloads.inprocess_answer``: the same call in process; a difference
    is train/serve skew). Returns a short summary."""
    started = time.perf_counter()
    status, headers, body = http_call("POST", f"{url}/match", request, timeout=timeout)
    latency_ms = (time.perf_counter() - started) * 1000
    if server_id is not None and headers.get(SERVER_ID_HEADER) != server_id:
        raise ServerError(
            f"smoke request POST {url}/match was answered by another server (id {headers.get(SERVER_ID_HEADER)!r}, "
            f"expected {server_id!r})"
        )
    if status != 200:
        raise ServerError(f"smoke request POST {url}/match answered HTTP {status}: {str(body)[:500]}")
    problems = check_match_response(body, request)
    if expected_model and body.get("model") != expected_model:
        problems.append(f"served model {body.get('model')!r}, expected {expected_model!r}")
    if expected_answer is not None and not problems:
        from .payloads import same_answer

        problems += [f"train/serve skew: {d}" for d in same_answer(body, expected_answer)]
    if problems:
        raise ServerError(f"smoke request POST {url}/match got a malformed answer: {'; '.join(problems)}")
    status, ready = http_json("GET", f"{url}/readyz", timeout=timeout)
    if status != 200:
        raise ServerError(f"{url}/readyz answered HTTP {status} after the smoke request")
    return {
        "passed": True,
        "transfer_id": body["transfer_id"],
        "n_candidates": len(request["candidates"]),
        "chosen": [c["invoice_id"] for c in body["chosen"]],
        "decision": body["decision"],
        "confidence": round(float(body["confidence"]), 4),
        "latency_ms": round(latency_ms, 1),
        "same_as_in_process": expected_answer is not None,
    }


def serve_and_check(
    bento_tag: str,
    request: dict[str, Any],
    expected_model: str | None = None,
    expected_answer: dict[str, Any] | None = None,
    startup_timeout: float = 120.0,
) -> dict[str, Any]:
    """Start ``bentoml serve`` on a free loopback port, wait for ``/readyz``, smoke-check, stop (always). Only the
    server started here may answer (its server id is checked); its log is kept only if the check failed."""
    with BentoServer(bento_tag, startup_timeout=startup_timeout) as server:
        try:
            result = smoke_check(server.url, request, expected_model, expected_answer, server_id=server.server_id)
        except ServerError as exc:
            raise ServerError(f"{exc}\nServer log ({server.log_path}):\n{server.log_tail()}") from None
        return {**result, "url": server.url}


def serve_foreground(bento_tag: str, host: str = "127.0.0.1", port: int = 3000, workers: int | None = None) -> int:
    """Run ``bentoml serve`` in the foreground until Ctrl+C; returns its exit code."""
    print(
        f"Serving {bento_tag} on http://{host}:{port} (POST /match, /match_batch; GET /model, /readyz, /metrics)",
        flush=True,
    )
    proc = subprocess.Popen(
        dies_with_parent(serve_command(bento_tag, host, port)), env=server_env(bento_env(bento_tag), workers)
    )
    # SIGTERM (e.g. from a process manager) is passed on, and the kernel stops it if we are killed outright, so the
    # server never outlives us.
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: proc.send_signal(signal.SIGTERM))
    try:
        while True:
            try:
                return proc.wait()
            except KeyboardInterrupt:  # Ctrl+C: the terminal sent SIGINT to the server too; pass it on anyway
                proc.send_signal(signal.SIGINT)
                try:
                    return proc.wait(30)
                except subprocess.TimeoutExpired:
                    proc.kill()
    finally:
        signal.signal(signal.SIGTERM, previous)
        if proc.poll() is None:
            proc.kill()
            proc.wait()


# --------------------------------------------------------------------------------------------
# The deployer
# --------------------------------------------------------------------------------------------


def deploy_local(matcher, packaged, deploy_cfg: dict, echo=print) -> dict[str, Any]:
    """Export the model to ``deploy_cfg['model_dir']`` (``production.json`` points at it) and say how to serve it.

    ``packaged`` is the ``Packaged`` of ``ledgerlink.deploy.deployers.package`` (model already in the BentoML
    store, Bento built, smoke-checked if configured).
    """
    from .export import export_model

    info = packaged.info
    record = {
        "model_name": info.model_name,
        "version": info.version,
        "number": info.number,
        "model_version_id": info.model_version_id,
        "bento_tag": packaged.bento_tag,
        "bento_model_tag": packaged.model_tag,
    }
    path = export_model(matcher, deploy_cfg["model_dir"], info.model_name, info.number, record)
    echo(
        f"{info.model_name} version {info.number} exported to {path}. Serve it with `{SERVE_HINT}` "
        f"(or `bentoml serve {packaged.bento_tag}`)."
    )
    return {"model_path": str(Path(path)), "serve_command": SERVE_HINT}
