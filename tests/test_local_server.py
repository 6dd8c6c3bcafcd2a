"""``BentoServer``'s life: only its own server answers it, it dies with its parent, its logs go under
``$LEDGERLINK_HOME/logs`` and stay only when something failed. Real ``bentoml serve`` processes on 127.0.0.1."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from ledgerlink.deploy import bento as deploy  # noqa: E402
from ledgerlink.deploy import local  # noqa: E402
from ledgerlink.deploy.payloads import inprocess_answer, smoke_request  # noqa: E402
from ledgerlink.matching import Matcher  # noqa: E402
from ledgerlink.matching.base import save_matcher  # noqa: E402


@pytest.fixture(scope="module")
def two_bentos(small_world, tmp_path_factory):
    """Two Bentos of two different models: (bento tag, model tag, smoke request, in-process answer) each."""
    data, out = small_world, []
    for n_estimators in (20, 30):
        matcher = Matcher(n_estimators=n_estimators, n_jobs=1).fit(data["invoices"], data["transfers"], data["links"])
        d = tmp_path_factory.mktemp(f"matcher{n_estimators}")
        save_matcher(matcher, d)
        model_tag = deploy.save_to_model_store(d, metadata={"threshold": float(matcher.auto_threshold_)})
        request = smoke_request(data, matcher=matcher)
        out.append((str(deploy.build_bento(model_tag)), str(model_tag), request, inprocess_answer(matcher, request)))
    return out


def _logs() -> set[Path]:
    return set(local.logs_dir().glob("serve-*.log"))


def test_two_smoke_checks_given_the_same_port_are_each_answered_by_their_own_server(two_bentos, monkeypatch):
    """Two runs got the same free port and one was answered by the other's model: the loser's `bentoml serve`
    could not bind, and the winner answered its /readyz and /match."""
    real_free_port = local.free_port
    port = real_free_port()
    given = []

    def same_port_twice(host="127.0.0.1"):
        given.append(port if len(given) < 2 else real_free_port(host))
        return given[-1]

    monkeypatch.setattr(local, "free_port", same_port_twice)
    before = _logs()
    with ThreadPoolExecutor(2) as pool:
        runs = [
            pool.submit(local.serve_and_check, bento, req, model, answer) for bento, model, req, answer in two_bentos
        ]
        results = [r.result(timeout=600) for r in runs]
    assert all(r["passed"] and r["same_as_in_process"] for r in results)
    urls = {r["url"] for r in results}
    assert len(urls) == 2 and f"http://127.0.0.1:{port}" in urls, urls  # the loser moved to another port
    assert len(given) >= 3
    assert _logs() == before  # both succeeded: no log left behind


def test_a_server_dies_with_the_process_that_started_it(two_bentos):
    """A SIGKILLed smoke test left `bentoml serve` running. Its parent is killed here; the server and its workers
    must go."""
    script = (
        "import sys, time\n"
        "from ledgerlink.deploy.local import BentoServer\n"
        "server = BentoServer(sys.argv[1]).start()\n"
        "print(server.proc.pid, server.url, flush=True)\n"
        "time.sleep(600)\n"
    )
    parent = subprocess.Popen(
        [sys.executable, "-c", script, two_bentos[0][0]],
        stdout=subprocess.PIPE,
        text=True,
    )
    server: set[int] = set()
    try:
        line = parent.stdout.readline()
        assert line, "the parent exited before its server was ready"
        pid, url = int(line.split()[0]), line.split()[1]
        assert local.http_json("GET", f"{url}/readyz")[0] == 200
        server = {pid} | local.descendants(pid)
        assert len(server) >= 2, server  # the supervisor and at least one worker (in a session of its own)
        parent.send_signal(signal.SIGKILL)
        parent.wait(10)
        deadline = time.monotonic() + 60
        while _alive(server) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not _alive(server), f"left running after its parent was killed: {_alive(server)}"
        with pytest.raises(OSError):
            local.http_json("GET", f"{url}/readyz", timeout=2)
    finally:
        if parent.poll() is None:
            parent.kill()
        for left in _alive(server):  # a failed test leaves nothing running either
            os.kill(left, signal.SIGKILL)


def _alive(pids: set[int]) -> set[int]:
    """Those of ``pids`` that still run the server (not zombies, not a new process that got the pid)."""
    out = set()
    for pid in pids:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if state != "Z" and b"bentoml" in cmdline:
            out.add(pid)
    return out


def test_a_server_that_fails_keeps_its_log_under_ledgerlink_home():
    before = _logs()
    server = local.BentoServer("ledgerlink:does-not-exist", startup_timeout=60)
    with pytest.raises(local.ServerError) as err:
        server.start()
    assert server.log_path is not None and server.log_path.parent == Path(os.environ["LEDGERLINK_HOME"]) / "logs"
    assert server.log_path.is_file() and str(server.log_path) in str(err.value)
    assert _logs() - before == {server.log_path}
    server.log_path.unlink()


def test_a_server_stopped_after_an_error_keeps_its_log(two_bentos):
    before = _logs()
    with pytest.raises(RuntimeError, match="the caller failed"):
        with local.BentoServer(two_bentos[0][0]) as server:
            assert server.log_path in _logs()
            raise RuntimeError("the caller failed")
    assert not server.alive() and _logs() - before == {server.log_path}
    server.log_path.unlink()
    with local.BentoServer(two_bentos[0][0]) as server:
        assert server.log_path in _logs()
    assert server.log_path not in _logs()
