"""Short alerts to Slack through an incoming webhook; logged instead when none is configured.

An alert never fails the pipeline: a webhook that is down or answers an error is logged and the
run goes on. Messages are one line of what happened plus the numbers and the run id.

The webhook URL is a secret (whoever has it can post to the channel). It is never a config value or a step
parameter, because ZenML stores both with every run; the caller resolves it at run time (the environment or a
ZenML secret, ``utils/alerting.py``). It is also kept out of logs: slack_sdk logs the URL of every request at
DEBUG and on each retry, so the client gets a logger whose filter redacts every webhook an ``Alerter`` was
given, as do our own alert logger and urllib3's.
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass, field

from ..config import SLACK_WEBHOOK_ENV

log = logging.getLogger("ledgerlink.alerts")
SLACK_LOG = logging.getLogger("ledgerlink.alerts.slack_sdk")  # handed to slack_sdk's WebhookClient
REDACTED = "<redacted webhook>"
# Slack's webhook paths, in case one reaches a log without going through an Alerter
_SLACK_PATH = re.compile(r"(https?://[^\s'\"]*)?/services/T[A-Za-z0-9_]+/B[A-Za-z0-9_]+/[A-Za-z0-9_]+")

EVENTS = ("run_failure", "promotion", "deployment", "drift", "degradation", "auto_precision")
ICONS = {
    "run_failure": ":x:",
    "promotion": ":trophy:",
    "deployment": ":rocket:",
    "drift": ":warning:",
    "degradation": ":chart_with_downwards_trend:",
    "auto_precision": ":dart:",
}


class RedactSecrets(logging.Filter):
    """Replaces known secrets (and anything shaped like a Slack webhook path) in a record before any handler
    sees it. Attached to loggers, so it applies to records logged on them."""

    def __init__(self):
        super().__init__()
        self.secrets: set[str] = set()

    def redact(self, text: str) -> str:
        for secret in sorted(self.secrets, key=len, reverse=True):
            text = text.replace(secret, REDACTED)
        return _SLACK_PATH.sub(REDACTED, text)

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        clean = self.redact(message)
        if clean != message:
            record.msg, record.args = clean, None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self.redact(record.exc_text)
        return True


REDACTION = RedactSecrets()
REDACTED_LOGGERS = ("ledgerlink.alerts", SLACK_LOG.name, "slack_sdk.webhook.client", "urllib3.connectionpool")


def protect(secret: str) -> None:
    """Redact ``secret`` from every record of the loggers that could carry it."""
    if secret:
        REDACTION.secrets.add(secret)
    for name in REDACTED_LOGGERS:
        logger = logging.getLogger(name)
        if REDACTION not in logger.filters:
            logger.addFilter(REDACTION)


@dataclass
class Alert:
    event: str
    title: str
    fields: dict = field(default_factory=dict)
    run: str | None = None

    def text(self) -> str:
        nums = ", ".join(f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}" for k, v in self.fields.items())
        run = f" (run {self.run})" if self.run else ""
        return f"{ICONS.get(self.event, '')} ledgerlink {self.event}: {self.title}{run}" + (
            f" | {nums}" if nums else ""
        )


class Alerter:
    """``webhook_url`` defaults to $LEDGERLINK_SLACK_WEBHOOK; without one, alerts are only logged."""

    def __init__(self, webhook_url: str | None = None, timeout: float = 5.0):
        self.webhook_url = webhook_url or os.environ.get(SLACK_WEBHOOK_ENV) or None
        self.timeout = timeout
        protect(self.webhook_url or "")

    def __repr__(self) -> str:  # never show the URL
        return f"Alerter(webhook={'set' if self.webhook_url else 'none'}, timeout={self.timeout})"

    def send(self, alert: Alert) -> bool:
        """True when Slack accepted the message; False when only logged or the webhook failed."""
        if alert.event not in EVENTS:
            raise ValueError(f"unknown alert event {alert.event!r}; expected one of {EVENTS}")
        text = REDACTION.redact(alert.text())
        if not self.webhook_url:
            log.info("alert (no webhook configured, not sent): %s", text)
            return False
        from slack_sdk.webhook import WebhookClient

        try:
            response = WebhookClient(self.webhook_url, timeout=int(self.timeout), logger=SLACK_LOG).send(
                text=text, blocks=[{"type": "section", "text": {"type": "mrkdwn", "text": text}}]
            )
        except Exception as exc:  # a broken webhook must not fail the pipeline
            log.warning("alert not delivered (%s: %s): %s", type(exc).__name__, exc, text)
            return False
        if response.status_code != 200:
            log.warning("alert rejected by webhook (HTTP %s %s): %s", response.status_code, response.body, text)
            return False
        return True
