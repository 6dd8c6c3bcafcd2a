"""Short alerts to Slack through an incoming webhook; logged instead when none is configured.

An alert never fails the pipeline: a webhook that is down or answers an error is logged and the
run goes on. Messages are one line of what happened plus the numbers and the run id.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field

log = logging.getLogger("ledgerlink.alerts")

EVENTS = ("run_failure", "promotion", "deployment", "drift", "degradation")
ICONS = {
    "run_failure": ":x:",
    "promotion": ":trophy:",
    "deployment": ":rocket:",
    "drift": ":warning:",
    "degradation": ":chart_with_downwards_trend:",
}


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
        self.webhook_url = webhook_url or os.environ.get("LEDGERLINK_SLACK_WEBHOOK") or None
        self.timeout = timeout

    def send(self, alert: Alert) -> bool:
        """True when Slack accepted the message; False when only logged or the webhook failed."""
        if alert.event not in EVENTS:
            raise ValueError(f"unknown alert event {alert.event!r}; expected one of {EVENTS}")
        text = alert.text()
        if not self.webhook_url:
            log.info("alert (no webhook configured, not sent): %s", text)
            return False
        from slack_sdk.webhook import WebhookClient

        try:
            response = WebhookClient(self.webhook_url, timeout=int(self.timeout)).send(
                text=text, blocks=[{"type": "section", "text": {"type": "mrkdwn", "text": text}}]
            )
        except Exception as exc:  # a broken webhook must not fail the pipeline
            log.warning("alert not delivered (%s: %s): %s", type(exc).__name__, exc, text)
            return False
        if response.status_code != 200:
            log.warning("alert rejected by webhook (HTTP %s %s): %s", response.status_code, response.body, text)
            return False
        return True
