"""What a deployment lets one request ask for, read from the environment.

Read per request, not at import time, so a Deployment's env and the tests (``monkeypatch.setenv``) change
them without a restart. The service hands them to validation as pydantic's validation context
(``MatchRequest.model_validate_json(body, context=limits)``); the allowed currencies come from the loaded
model's metadata unless ``LEDGERLINK_CURRENCIES`` overrides them, so no module global is set at start.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

MAX_CANDIDATES = "LEDGERLINK_MAX_CANDIDATES"
MAX_BATCH_TRANSFERS = "LEDGERLINK_MAX_BATCH_TRANSFERS"
MAX_OPEN_INVOICES = "LEDGERLINK_MAX_OPEN_INVOICES"
MAX_BATCH_PAIRS = "LEDGERLINK_MAX_BATCH_PAIRS"
MAX_BODY_BYTES = "LEDGERLINK_MAX_BODY_BYTES"
MAX_MATCH_BATCH = "LEDGERLINK_MAX_MATCH_BATCH"
MATCH_LINGER_MS = "LEDGERLINK_MATCH_LINGER_MS"
REQUEST_DEADLINE_S = "LEDGERLINK_REQUEST_DEADLINE_S"
CURRENCIES = "LEDGERLINK_CURRENCIES"

# BentoML's traffic timeout (bentos/service.py). A request's own deadline must fall before it, so the service
# answers with its own error and stops the work instead of BentoML answering 504 while the work goes on.
TRAFFIC_TIMEOUT_S = 60.0


def _positive(environ: Mapping[str, str], name: str, default: float, kind=int, zero_ok: bool = False):
    raw = environ.get(name, "")
    try:
        value = kind(raw) if raw.strip() else default
    except ValueError:
        value = default
    return value if value > 0 or (zero_ok and value == 0) else default


@dataclass(frozen=True)
class Limits:
    """The limits of one request. ``currencies``: the ISO codes served (``None``: any ISO 4217 code)."""

    max_candidates: int = 200
    max_batch_transfers: int = 1000
    max_open_invoices: int = 20000
    # transfers x invoices of one /match_batch: what the work grows with. The default is the product of the default
    # counts, so raising one of them does not raise the worst case. At 20M pairs the worst shapes tried (issue 11.1's
    # request; 10 invoice numbers per title hitting 400 invoices each) take 2.1-5.1 s and at most 0.75 GB with the
    # matcher's work budget (benchmarks/adversarial.py, 2 cores).
    max_batch_pairs: int = 20_000_000
    max_body_bytes: int = 5_000_000
    max_match_batch: int = 16  # concurrent /match requests matched in one call (1: each alone)
    # Under load (the last /match batch held several requests), a new batch waits while requests keep arriving, up
    # to this long (0: never waits; serving.batching). A lone client is never held back.
    match_linger_ms: float = 6.0
    # A request's work stops this many seconds after it arrived: twice the 10 s target, well below TRAFFIC_TIMEOUT_S
    # (the matcher stops a few seconds after it at worst: 4.4 s measured in the set search, benchmarks/adversarial.py).
    deadline_s: float = 20.0
    currencies: frozenset[str] | None = None

    @classmethod
    def from_env(cls, model_currencies: Iterable[str] | None = None, environ: Mapping[str, str] | None = None):
        """The limits from ``environ`` (default ``os.environ``); ``LEDGERLINK_CURRENCIES`` (comma-separated) if
        set, else ``model_currencies`` (recorded with the model), else any ISO code."""
        env = os.environ if environ is None else environ
        d = cls()
        raw = env.get(CURRENCIES, "")
        listed = {c.strip().upper() for c in raw.split(",") if c.strip()}
        if not listed and model_currencies:
            listed = {str(c).strip().upper() for c in model_currencies}
        return cls(
            max_candidates=_positive(env, MAX_CANDIDATES, d.max_candidates),
            max_batch_transfers=_positive(env, MAX_BATCH_TRANSFERS, d.max_batch_transfers),
            max_open_invoices=_positive(env, MAX_OPEN_INVOICES, d.max_open_invoices),
            max_batch_pairs=_positive(env, MAX_BATCH_PAIRS, d.max_batch_pairs),
            max_body_bytes=_positive(env, MAX_BODY_BYTES, d.max_body_bytes),
            max_match_batch=_positive(env, MAX_MATCH_BATCH, d.max_match_batch),
            match_linger_ms=min(_positive(env, MATCH_LINGER_MS, d.match_linger_ms, float, zero_ok=True), 1000.0),
            deadline_s=min(_positive(env, REQUEST_DEADLINE_S, d.deadline_s, float), TRAFFIC_TIMEOUT_S * 0.9),
            currencies=frozenset(listed) or None,
        )

    def deadline(self, now: float | None = None) -> float:
        """The ``time.monotonic()`` value at which a request arriving ``now`` must stop working."""
        return (time.monotonic() if now is None else now) + self.deadline_s


DEFAULT_LIMITS = Limits()
