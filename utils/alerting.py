"""The Slack webhook, resolved at run time inside the step or hook that alerts, never passed as a parameter.

Where it comes from, first found wins:

1. ``$LEDGERLINK_SLACK_WEBHOOK`` in the environment the step runs in;
2. the ZenML secret ``ledgerlink``, key ``slack_webhook``
   (``zenml secret create ledgerlink --slack_webhook=https://hooks.slack.com/services/...``): it lives in the
   ZenML server's secrets store, so steps on Vertex AI read it without it being in any image or run record.

Without either, alerts are logged and not sent.
"""

from __future__ import annotations

import logging
import os

from ledgerlink.config import SLACK_SECRET, SLACK_WEBHOOK_ENV
from ledgerlink.monitoring.alerts import Alerter

SECRET_KEY = "slack_webhook"
log = logging.getLogger("ledgerlink.alerts")


def slack_webhook() -> str | None:
    """The webhook URL from the environment or the ZenML secret; None when neither holds one."""
    url = os.environ.get(SLACK_WEBHOOK_ENV)
    if url:
        return url
    from zenml.client import Client

    try:
        secret = Client().get_secret(SLACK_SECRET, allow_partial_name_match=False, allow_partial_id_match=False)
    except KeyError:
        return None
    except Exception as exc:  # an unreachable secrets store must not fail the run: the alert is logged instead
        log.warning("could not read the ZenML secret %r (%s); alerts are logged, not sent", SLACK_SECRET, exc)
        return None
    value = secret.secret_values.get(SECRET_KEY)
    if not value:
        log.warning("the ZenML secret %r has no key %r; alerts are logged, not sent", SLACK_SECRET, SECRET_KEY)
    return value or None


def alerter() -> Alerter:
    """An ``Alerter`` with the webhook of this run's environment (see the module docstring)."""
    return Alerter(slack_webhook())
