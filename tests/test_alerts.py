"""Alerts: the real slack_sdk webhook client against a local HTTP server that captures the payload."""

import json
import logging
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from ledgerlink.monitoring.alerts import Alert, Alerter


@pytest.fixture
def webhook():
    received, status = [], {"code": 200}

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers["Content-Length"]))
            received.append({"path": self.path, "headers": dict(self.headers), "body": json.loads(body)})
            self.send_response(status["code"])
            self.end_headers()
            self.wfile.write(b"ok" if status["code"] == 200 else b"invalid_token")

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/services/T000/B000/XXXX", received, status
    server.shutdown()
    server.server_close()


def test_alert_payload_reaches_the_webhook(webhook):
    url, received, _ = webhook
    alert = Alert(
        "promotion", "model v3 promoted to production", {"pair_f1": 0.9712, "gain": 0.0123}, run="training-42"
    )
    assert Alerter(url).send(alert) is True
    (req,) = received
    assert req["path"] == "/services/T000/B000/XXXX"
    assert req["headers"]["Content-Type"].startswith("application/json")
    assert req["body"]["text"] == alert.text()
    assert "pair_f1=0.9712" in req["body"]["text"] and "training-42" in req["body"]["text"]
    assert req["body"]["blocks"][0]["text"]["text"] == alert.text()


def test_failing_webhook_is_logged_not_raised(webhook, caplog):
    url, received, status = webhook
    status["code"] = 403
    with caplog.at_level(logging.WARNING, logger="ledgerlink.alerts"):
        assert Alerter(url).send(Alert("drift", "drift share 0.6 over threshold 0.3")) is False
    assert "HTTP 403" in caplog.text and len(received) == 1


def test_unreachable_webhook_is_logged_not_raised(caplog):
    with caplog.at_level(logging.WARNING, logger="ledgerlink.alerts"):
        assert Alerter("http://127.0.0.1:9/hook", timeout=1).send(Alert("run_failure", "training failed")) is False
    assert "not delivered" in caplog.text


def test_without_webhook_alerts_are_logged(monkeypatch, caplog):
    monkeypatch.delenv("LEDGERLINK_SLACK_WEBHOOK", raising=False)
    with caplog.at_level(logging.INFO, logger="ledgerlink.alerts"):
        assert Alerter().send(Alert("deployment", "skipped: not promoted")) is False
    assert "not sent" in caplog.text and "skipped: not promoted" in caplog.text


# ------------------------------------------------------------------------------------------------
# The webhook is a secret: not in logs, not in run records
# ------------------------------------------------------------------------------------------------


class FlakyWebhook:
    """A loopback webhook that drops the first connection without answering (slack_sdk then retries and logs
    the request URL) and answers 200 afterwards; records every request path."""

    def __init__(self, drop_first: bool = True):
        self.paths: list[str] = []
        self.bodies: list[dict] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                outer.paths.append(self.path)
                if drop_first and len(outer.paths) == 1:
                    self.close_connection = True  # no response: RemoteDisconnected on the client
                    return
                outer.bodies.append(json.loads(body))
                self.send_response(200)
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args):
                pass

        self.server = HTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_port
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


def test_the_webhook_never_reaches_a_log_even_at_debug_and_on_retries(caplog):
    import uuid

    token = f"XXXX{uuid.uuid4().hex}"
    with FlakyWebhook() as hook, caplog.at_level(logging.DEBUG):
        url = f"http://127.0.0.1:{hook.port}/services/T000/B000/{token}"
        alerter = Alerter(url)
        assert alerter.send(Alert("drift", "drift share 0.6 over threshold 0.3")) is True
    assert len(hook.paths) == 2 and hook.paths[1].endswith(token)  # retried after the dropped connection
    text = caplog.text
    assert "Sending a request" in text and "Going to retry" in text  # slack_sdk did log the request...
    assert token not in text and "<redacted webhook>" in text  # ...without the URL
    assert token not in repr(alerter)


def test_any_registered_secret_is_redacted_whatever_its_shape(caplog):
    import uuid

    from ledgerlink.monitoring.alerts import SLACK_LOG, protect

    secret = f"http://127.0.0.1:9/hook/{uuid.uuid4().hex}"
    protect(secret)
    with caplog.at_level(logging.DEBUG):
        SLACK_LOG.debug("url: %s", secret)
        logging.getLogger("ledgerlink.alerts").warning("failed: %s", secret)
        try:
            raise RuntimeError(f"cannot reach {secret}")
        except RuntimeError:
            logging.getLogger("ledgerlink.alerts").exception("alert failed")
    assert secret not in caplog.text and caplog.text.count("<redacted webhook>") >= 3


SECRET_RUN = r"""
import logging, os, sys
logging.basicConfig(level=logging.DEBUG, stream=sys.stderr)  # as verbose as anyone could make it

from zenml.client import Client
from ledgerlink.config import Config
from cli.runner import collect, train

home, mode, secret_url = sys.argv[1], sys.argv[2], sys.argv[3]
over = {
    "data_dir": home, "model_name": "secret_matcher",
    "synthetic": {"months": 1, "contractors": 30, "transfers_per_month": 120},
    "deploy": {"smoke_test": False},
    "model": {"params": {"n_estimators": 20}},
    "promotion": {"bootstrap_samples": 100},
}
if mode == "env":  # LEDGERLINK_SLACK_WEBHOOK is set by the caller
    collect(Config.parse(over))
    result = train(Config.parse(over))
    print("TRAINED", result.decision["promote"], result.deployment["deployed"])
else:  # the ZenML secret; a collection that fails, so the failure hook alerts
    Client().create_secret("ledgerlink", values={"slack_webhook": secret_url})
    broken = {**over, "warehouse": {"path": home + "/missing.duckdb", "seed_if_empty": False}}
    try:
        collect(Config.parse(broken))
    except Exception as exc:
        print("FAILED AS PLANNED", type(exc).__name__)
"""


@pytest.mark.slow
def test_a_planted_secret_is_nowhere_in_the_zenml_store_logs_or_artifacts(tmp_path):
    """A real training run alerts through a webhook from the environment, a real failing collection through the
    ZenML secret ``ledgerlink``. Then the whole ZenML config folder (SQL store with the runs' configurations,
    parameters and metadata, and the local artifact store with artifacts and step logs), the data folders and the
    captured output are searched for the secret parts of both URLs: they must not appear. (The ZenML secret itself
    is in the store's secrets table, base64-encoded as ZenML keeps it, so not in plain text either.)"""
    import os
    import subprocess
    import sys
    import uuid
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    env_token, zen_token = f"ENV{uuid.uuid4().hex}", f"ZEN{uuid.uuid4().hex}"
    script = tmp_path / "secret_run.py"  # a file: ZenML derives its source root from the main module
    script.write_text(SECRET_RUN)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ZENML_STORE_", "LEDGERLINK_SLACK"))}
    env.update(
        ZENML_CONFIG_PATH=str(tmp_path / "zenml"),
        ZENML_LOGGING_VERBOSITY="DEBUG",
        BENTOML_HOME=str(tmp_path / "bentoml"),
        LEDGERLINK_HOME=str(tmp_path / "ledgerlink"),
        PYTHONPATH=os.pathsep.join([str(root / "src"), str(root)]),
    )
    outputs = []
    with FlakyWebhook() as env_hook, FlakyWebhook(drop_first=False) as zen_hook:
        env_url = f"http://127.0.0.1:{env_hook.port}/services/T0ENV/B0ENV/{env_token}"
        zen_url = f"http://127.0.0.1:{zen_hook.port}/hook/{zen_token}"
        for mode, extra in (("env", {"LEDGERLINK_SLACK_WEBHOOK": env_url}), ("secret", {})):
            proc = subprocess.run(
                [sys.executable, str(script), str(tmp_path / "ledgerlink"), mode, zen_url],
                env={**env, **extra},
                cwd=root,
                capture_output=True,
                text=True,
                timeout=900,
            )
            outputs.append(proc.stdout + proc.stderr)
            assert proc.returncode == 0, outputs[-1][-5000:]
    assert "TRAINED True True" in outputs[0] and "FAILED AS PLANNED" in outputs[1], outputs[1][-3000:]
    # the alerts did go out: promotion and deployment through the environment's webhook (one retry),
    # the run failure through the ZenML secret's
    texts = [b["text"] for b in env_hook.bodies]
    assert any("promotion" in t for t in texts) and any("deployment" in t for t in texts), texts
    assert len(env_hook.paths) == len(env_hook.bodies) + 1 and all(p.endswith(env_token) for p in env_hook.paths)
    assert len(zen_hook.bodies) == 1 and "ledgerlink run_failure" in zen_hook.bodies[0]["text"], zen_hook.bodies
    assert "Going to retry" in outputs[0]  # slack_sdk logged the retry, at DEBUG everything else too

    searched, leaks = 0, []
    for path in tmp_path.rglob("*"):
        if path.is_file() and path != script:
            data = path.read_bytes()
            searched += 1
            leaks += [f"{path} holds {t[:3]}" for t in (env_token, zen_token) if t.encode() in data]
    for i, text in enumerate(outputs):
        leaks += [f"output of run {i} holds {t[:3]}" for t in (env_token, zen_token) if t in text]
    assert not leaks, leaks
    db = list((tmp_path / "zenml").rglob("*.db"))
    logs = [p for p in (tmp_path / "zenml").rglob("*") if "logs" in p.parts and p.is_file()]
    assert db and logs and searched > 50, (db, logs, searched)  # the store, step logs and artifacts were searched
