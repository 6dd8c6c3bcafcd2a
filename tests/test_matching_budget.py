"""Bounded work: the legal /match_batch that took a worker down (issue 11.1), and the cooperative deadline."""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
import pytest

from ledgerlink.data.synthetic import SyntheticConfig, generate
from ledgerlink.matching import Matcher, RulesMatcher, runtime
from ledgerlink.matching.base import MatchTimeout


def adversarial_frames(
    n_transfers: int = 1000, n_payers: int = 1666, per_payer: int = 12
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(invoices, transfers) of the request shape from issue 11.1: ``n_transfers`` transfers of 406-415 EUR titled
    "as agreed" from the payer "someone", against ``n_payers`` payers with ``per_payer`` invoices each of 100-111
    EUR and no invoice numbers. Every payer's invoices hold dozens of 4-invoice sets that sum exactly to each
    transfer amount."""
    k = np.arange(n_payers * per_payer)
    issued = pd.Timestamp("2025-02-01") + pd.to_timedelta(k % 28, unit="D")
    invoices = pd.DataFrame(
        {
            "invoice_id": [f"INV-{j:06d}" for j in k],
            "issued_at": issued,
            "due_at": issued + pd.Timedelta(days=30),
            "amount": 100.0 + (k % per_payer),
            "currency": "EUR",
            "counterparty_name": [f"Customer {j // per_payer:04d}" for j in k],
            "description": "services",
        }
    )
    j = np.arange(n_transfers)
    transfers = pd.DataFrame(
        {
            "transfer_id": [f"TRF-{x:05d}" for x in j],
            "booked_at": pd.Timestamp("2025-03-01") + pd.to_timedelta(j % 28, unit="D"),
            "amount": 406.0 + (j % 10),
            "currency": "EUR",
            "title": "as agreed",
            "counterparty_name": "someone",
        }
    )
    return invoices, transfers


SMALL = dict(seed=3, months=3, contractors=40, transfers_per_month=150)
FAST = dict(n_estimators=40, max_depth=4, n_jobs=1)


@pytest.fixture(scope="module")
def world():
    return generate(SyntheticConfig(**SMALL))


@pytest.fixture(scope="module")
def fitted(world):
    last = sorted(world["transfers"]["month"].unique())[-1]
    inv, tr, ln = (world[k][world[k]["month"] < last] for k in ("invoices", "transfers", "links"))
    return Matcher(**FAST).fit(inv, tr, ln)


def _month(world):
    last = sorted(world["transfers"]["month"].unique())[-1]
    return world["invoices"], world["transfers"][world["transfers"]["month"] == last]


class _Clock:
    """A fake ``time.monotonic`` that advances one second each time it is read: the n-th deadline check sees
    n seconds pass, whatever the machine's speed."""

    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        self.now += 1.0
        return self.now


def test_a_passed_deadline_stops_before_any_work(world, fitted):
    inv, tr = _month(world)
    for call in (
        lambda: fitted.match(inv, tr, deadline=time.monotonic() - 1),
        lambda: fitted.match_many([(inv, tr.head(3))], deadline=time.monotonic() - 1),
        lambda: RulesMatcher().match(inv, tr, deadline=time.monotonic() - 1),
    ):
        start = time.perf_counter()
        with pytest.raises(MatchTimeout, match="during start") as err:
            call()
        assert err.value.stage == "start" and isinstance(err.value, TimeoutError)
        assert time.perf_counter() - start < 1.0


def test_the_deadline_is_checked_between_stages_and_names_the_stage(world, fitted, monkeypatch):
    inv, tr = _month(world)
    expected = fitted.match(inv, tr, deadline=time.monotonic() + 3600)  # a far deadline changes nothing
    alone = fitted.match(inv, tr)
    pd.testing.assert_frame_equal(expected.links, alone.links)
    pd.testing.assert_frame_equal(expected.decisions, alone.decisions)
    tr = tr.head(40)
    clock = _Clock()
    monkeypatch.setattr(runtime.time, "monotonic", clock)
    start = clock.now
    fitted.match(inv, tr, deadline=start + 1e9)
    n_checks = int(clock.now - start)
    stages = []
    for n in range(1, n_checks):  # the deadline passes after the n-th check: the (n+1)-th raises
        clock = _Clock()
        monkeypatch.setattr(runtime.time, "monotonic", clock)
        with pytest.raises(MatchTimeout) as err:
            fitted.match(inv, tr, deadline=clock.now + n + 0.5)
        if err.value.stage not in stages:
            stages.append(err.value.stage)
    main = ["input check", "text preparation", "blocking", "pair features", "pair model", "set enumeration"]
    main += ["set features", "set model", "set choice"]
    assert [s for s in stages if s in main] == main, stages
    assert {"blocking: reference channel", "blocking: set channel", "pair features: names"} <= set(stages), stages
    clock = _Clock()
    monkeypatch.setattr(runtime.time, "monotonic", clock)
    with pytest.raises(MatchTimeout, match="during blocking"):
        fitted.match_many([(inv, tr.head(2))], deadline=clock.now + 2.5)


def test_a_deadline_must_be_a_number(world, fitted):
    inv, tr = _month(world)
    with pytest.raises(TypeError, match="time.monotonic"):
        fitted.match(inv, tr, deadline="soon")
