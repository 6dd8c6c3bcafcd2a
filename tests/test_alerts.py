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
