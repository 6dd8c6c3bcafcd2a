"""The parts of the HTTP API without HTTP: validation (with the limits as validation context), refusals and their
log line, the micro-batcher, and the ASGI middleware called with hand-made scope/receive/send."""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time

import pytest
from pydantic import ValidationError

from ledgerlink.serving import refusals
from ledgerlink.serving.batching import MicroBatcher
from ledgerlink.serving.limits import Limits
from ledgerlink.serving.middleware import SERVER_ID_HEADER, BodySizeLimit, JsonOnly, ServerIdentity
from ledgerlink.serving.schemas import BatchRequest, ErrorResponse, MatchRequest

PAYER = "Zofia Tajemnicza-Nowak"


def _transfer(**kw):
    return {
        "transfer_id": "T1",
        "booked_at": "2025-03-04",
        "amount": 120.0,
        "currency": "EUR",
        "title": "FV/1",
        "counterparty_name": PAYER,
        **kw,
    }


def _invoice(k=0, **kw):
    return {
        "invoice_id": f"I{k}",
        "issued_at": "2025-02-10",
        "due_at": "2025-03-10",
        "amount": 120.0,
        "currency": "EUR",
        "counterparty_name": PAYER,
        **kw,
    }


def _locs(exc: ValidationError) -> list:
    return [list(e["loc"]) for e in exc.errors()]


# ------------------------------------------------------------------------------------------------
# Validation
# ------------------------------------------------------------------------------------------------


def test_allowed_currencies_come_from_the_validation_context():
    body = {"transfer": _transfer(currency="PLN"), "candidates": [_invoice(currency="PLN")]}
    MatchRequest.model_validate(body)  # no context: any ISO code
    MatchRequest.model_validate(body, context=Limits(currencies=frozenset({"PLN", "EUR"})))
    with pytest.raises(ValidationError) as err:
        MatchRequest.model_validate(body, context=Limits(currencies=frozenset({"EUR"})))
    assert ["transfer", "currency"] in _locs(err.value) and ["candidates", 0, "currency"] in _locs(err.value)
    assert all(e["ctx"]["setting"] == "LEDGERLINK_CURRENCIES" for e in err.value.errors())


def test_limits_from_env_take_the_model_currencies_unless_overridden():
    assert Limits.from_env(["eur", "PLN"], environ={}).currencies == {"EUR", "PLN"}
    assert Limits.from_env(["EUR"], environ={"LEDGERLINK_CURRENCIES": "usd, chf"}).currencies == {"USD", "CHF"}
    assert Limits.from_env(None, environ={}).currencies is None
    env = {
        "LEDGERLINK_MAX_CANDIDATES": "7",
        "LEDGERLINK_MAX_BATCH_PAIRS": "oops",
        "LEDGERLINK_REQUEST_DEADLINE_S": "999",
    }
    limits = Limits.from_env(None, environ=env)
    assert limits.max_candidates == 7 and limits.max_batch_pairs == Limits().max_batch_pairs
    assert limits.deadline_s < 60  # always before BentoML's traffic timeout


@pytest.mark.parametrize("day", ["0001-01-01", "1677-09-20", "2262-04-12", "9999-12-31"])
def test_dates_pandas_cannot_hold_are_refused_naming_the_field(day):
    with pytest.raises(ValidationError) as err:
        MatchRequest.model_validate_json(json.dumps({"transfer": _transfer(booked_at=day), "candidates": [_invoice()]}))
    assert _locs(err.value) == [["transfer", "booked_at"]]
    assert "outside 1900-01-01..2199-12-31" in str(err.value)


def test_dates_are_iso_text_only():
    for bad in (0, 1_700_000_000, "2025-03-04T00:00:00", "04.03.2025"):
        with pytest.raises(ValidationError) as err:
            MatchRequest.model_validate_json(json.dumps({"transfer": _transfer(booked_at=bad), "candidates": []}))
        assert _locs(err.value) == [["transfer", "booked_at"]], bad


@pytest.mark.parametrize("amount", [0, 0.0, 0.004, -0.001])
def test_zero_amounts_are_refused_naming_the_field(amount):
    with pytest.raises(ValidationError) as err:
        MatchRequest.model_validate({"transfer": _transfer(amount=amount), "candidates": [_invoice(amount=amount)]})
    assert _locs(err.value) == [["transfer", "amount"], ["candidates", 0, "amount"]]
    MatchRequest.model_validate({"transfer": _transfer(amount=-120.0), "candidates": [_invoice(amount=-120.0)]})


def test_an_invoice_in_another_currency_is_refused_naming_it():
    body = {"transfer": _transfer(currency="USD"), "candidates": [_invoice(0, currency="USD"), _invoice(1)]}
    with pytest.raises(ValidationError) as err:
        MatchRequest.model_validate(body)
    (e,) = err.value.errors()
    assert e["loc"] == ("candidates", 1, "currency") and e["type"] == "currency_mismatch"
    assert "invoice in EUR, transfer in USD" in e["msg"]


def test_a_batch_holds_one_currency():
    body = {"transfers": [_transfer(), _transfer(transfer_id="T2", currency="PLN")], "invoices": [_invoice()]}
    with pytest.raises(ValidationError) as err:
        BatchRequest.model_validate(body)
    assert _locs(err.value) == [["transfers", 1, "currency"]]
    body = {"transfers": [_transfer()], "invoices": [_invoice(0), _invoice(1, currency="PLN")]}
    with pytest.raises(ValidationError) as err:
        BatchRequest.model_validate(body)
    assert _locs(err.value) == [["invoices", 1, "currency"]]


def test_work_limit_refuses_transfers_times_invoices_up_front():
    body = {
        "transfers": [_transfer(transfer_id=f"T{k}") for k in range(3)],
        "invoices": [_invoice(k) for k in range(4)],
    }
    BatchRequest.model_validate(body, context=Limits(max_batch_pairs=12))
    with pytest.raises(ValidationError) as err:
        BatchRequest.model_validate(body, context=Limits(max_batch_pairs=11))
    refusal = refusals.invalid(err.value)
    assert refusal.status == 400 and refusal.limit == "LEDGERLINK_MAX_BATCH_PAIRS"
    assert "3 transfers x 4 invoices = 12 pairs > 11" in refusal.error


# ------------------------------------------------------------------------------------------------
# Refusals
# ------------------------------------------------------------------------------------------------


def test_a_refusal_body_matches_the_error_schema_and_its_log_line_holds_no_values():
    raw = json.dumps({"transfer": _transfer(amount="12.50", title=PAYER * 500), "candidates": [_invoice(due_at="x")]})
    with pytest.raises(refusals.Refusal) as err:
        refusals.parse_body(MatchRequest, raw.encode(), Limits())
    refusal = err.value
    body = refusal.body()
    ErrorResponse.model_validate(body)
    assert body["error"].startswith("transfer.amount: ") and "limit" not in body
    assert {tuple(d["loc"]) for d in body["detail"]} == {
        ("transfer", "amount"),
        ("transfer", "title"),
        ("candidates", 0, "due_at"),
    }
    line = refusal.log_line("POST /match")
    assert "\n" not in line and PAYER not in line and "12.50" not in line
    assert line.startswith("refused POST /match: 400 invalid: transfer.amount (float_type)"), line


def test_not_json_and_limits_are_refusals_with_the_limit_named():
    with pytest.raises(refusals.Refusal) as err:
        refusals.parse_body(MatchRequest, b"{not json", Limits())
    assert err.value.status == 400 and err.value.detail[0]["type"] == "json_invalid"
    body = {"transfer": _transfer(), "candidates": [_invoice(k) for k in range(3)]}
    with pytest.raises(refusals.Refusal) as err:
        refusals.parse_body(MatchRequest, json.dumps(body).encode(), Limits(max_candidates=2))
    assert err.value.limit == "LEDGERLINK_MAX_CANDIDATES" and err.value.body()["limit"] == "LEDGERLINK_MAX_CANDIDATES"
    assert "too many candidates: 3 > 2 (LEDGERLINK_MAX_CANDIDATES)" in err.value.error


def test_refusal_is_logged_as_one_line(caplog):
    caplog.set_level(logging.INFO, logger="ledgerlink.serving")
    refusals.unsupported_media_type("multipart/form-data").log("POST /match")
    assert [r.getMessage() for r in caplog.records] == [
        "refused POST /match: 415 media_type: body (unsupported_media_type)"
    ]
    assert all(r.exc_info is None for r in caplog.records)


# ------------------------------------------------------------------------------------------------
# MicroBatcher
# ------------------------------------------------------------------------------------------------


def test_micro_batcher_groups_waiting_requests_and_isolates_a_failing_one():
    """A lone request goes at once; requests arriving while a batch runs go together in the next one, with the
    earliest deadline; a batch that fails (a matcher bug) is rerun one by one, and counted."""
    calls: list[tuple[list, float | None]] = []
    release = threading.Event()

    def match_many(problems, deadline):
        calls.append((list(problems), deadline))
        if len(calls) == 1:
            release.wait(5)  # the first batch is busy while the others arrive
        if "bug" in problems:
            raise RuntimeError("a matcher bug")
        return [f"answer {p}" for p in problems]

    batcher = MicroBatcher(match_many)

    async def scenario():
        first = asyncio.create_task(batcher.submit("p0", 100.0))
        while not calls:
            await asyncio.sleep(0.001)
        rest = [asyncio.create_task(batcher.submit(p, d)) for p, d in (("p1", 50.0), ("bug", None), ("p2", 70.0))]
        await asyncio.sleep(0.05)
        release.set()
        return await asyncio.gather(first, *rest, return_exceptions=True)

    t0 = time.perf_counter()
    out = asyncio.run(scenario())
    assert time.perf_counter() - t0 < 5
    assert out[0] == "answer p0" and out[1] == "answer p1" and out[3] == "answer p2"
    assert isinstance(out[2], RuntimeError)
    assert calls[0] == (["p0"], 100.0) and calls[1] == (["p1", "bug", "p2"], 50.0)  # one batch, earliest deadline
    assert calls[2:] == [(["p1"], 50.0), (["bug"], None), (["p2"], 70.0)]  # each alone, with its own deadline
    assert batcher.sizes == [1, 3] and batcher.reruns == 1 and not batcher.draining


def test_micro_batcher_hands_a_deadline_to_every_request_without_rerunning():
    class Late(Exception):
        pass

    calls = []

    def match_many(problems, deadline):
        calls.append(list(problems))
        raise Late()

    batcher = MicroBatcher(match_many, max_batch=lambda: 4, no_rerun=(Late,))

    async def scenario():
        return await asyncio.gather(*(batcher.submit(p, 1.0) for p in "abcdef"), return_exceptions=True)

    out = asyncio.run(scenario())
    assert all(isinstance(o, Late) for o in out)
    assert calls == [["a", "b", "c", "d"], ["e", "f"]] and batcher.reruns == 0  # all queued before the first ran


# ------------------------------------------------------------------------------------------------
# Middleware (ASGI, no server)
# ------------------------------------------------------------------------------------------------


class _App:
    """An ASGI app that reads the whole body and answers 200 with its length."""

    def __init__(self):
        self.bodies: list[bytes] = []

    async def __call__(self, scope, receive, send):
        body = b""
        while True:
            m = await receive()
            body += m.get("body", b"")
            if not m.get("more_body"):
                break
        self.bodies.append(body)
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
        await send({"type": "http.response.body", "body": str(len(body)).encode()})


def _call(app, chunks, headers=(), method="POST", path="/match"):
    scope = {"type": "http", "method": method, "path": path, "headers": list(headers)}
    messages = [{"type": "http.request", "body": c, "more_body": k < len(chunks) - 1} for k, c in enumerate(chunks)]
    sent = []

    async def receive():
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    async def send(m):
        sent.append(m)

    asyncio.run(app(scope, receive, send))
    start = next(m for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return start["status"], dict(start["headers"]), body


def test_body_size_limit_by_header_and_as_streamed():
    inner = _App()
    app = BodySizeLimit(inner, limits=lambda: Limits(max_body_bytes=100))
    status, _, body = _call(app, [b"x" * 60, b"y" * 40])
    assert status == 200 and inner.bodies == [b"x" * 60 + b"y" * 40]
    status, headers, body = _call(app, [b"x"], headers=[(b"content-length", b"101")])
    assert status == 413 and headers[b"content-type"] == b"application/json"
    assert ErrorResponse.model_validate_json(body).limit == "LEDGERLINK_MAX_BODY_BYTES"
    status, _, body = _call(app, [b"x" * 60, b"y" * 60, b"z"])  # no Content-Length: counted as it streams
    assert status == 413 and "the streamed body is over the limit of 100 bytes" in json.loads(body)["error"]
    assert len(inner.bodies) == 1  # the app never saw the oversized bodies


def test_json_only_refuses_other_media_types_on_api_routes():
    inner = _App()
    app = JsonOnly(inner, paths={"/match"})
    for ct in (
        b"multipart/form-data",
        b"multipart/form-data; boundary=x",
        b"text/plain",
        b"application/x-www-form-urlencoded",
    ):
        status, _, body = _call(app, [b"{}"], headers=[(b"content-type", ct)])
        assert status == 415, ct
        assert ErrorResponse.model_validate_json(body).detail[0].type == "unsupported_media_type"
    for headers in (
        [(b"content-type", b"application/json; charset=utf-8")],
        [(b"Content-Type", b"Application/JSON")],
        [],
    ):
        assert _call(app, [b"{}"], headers=headers)[0] == 200
    assert _call(app, [b""], headers=[(b"content-type", b"text/plain")], path="/model", method="GET")[0] == 200
    assert _call(app, [b""], headers=[(b"content-type", b"text/plain")], path="/other")[0] == 200


def test_server_identity_header():
    status, headers, _ = _call(ServerIdentity(_App(), server_id="abc123"), [b"{}"])
    assert status == 200 and headers[SERVER_ID_HEADER.encode()] == b"abc123"
    _, headers, _ = _call(ServerIdentity(_App(), server_id=""), [b"{}"])
    assert SERVER_ID_HEADER.encode() not in headers


# ------------------------------------------------------------------------------------------------
# Deadline
# ------------------------------------------------------------------------------------------------


def test_a_match_past_its_deadline_is_a_503_and_its_objects_are_freed_first(monkeypatch):
    import weakref

    from ledgerlink.matching.base import MatchTimeout
    from ledgerlink.serving import deadline

    class Big:
        pass

    refs, seen_at_release = [], []
    monkeypatch.setattr(deadline, "release_memory", lambda: seen_at_release.append(refs[-1]() is None))

    def work():
        big = Big()  # what a stopped match holds in its frames (its arrays)
        refs.append(weakref.ref(big))
        raise MatchTimeout("set enumeration", 4.4)

    with pytest.raises(refusals.Refusal) as err:
        with deadline.stopped_at_deadline(Limits(deadline_s=10)):
            work()
    assert seen_at_release == [True]  # freed before the memory went back to the system
    refusal = err.value
    assert refusal.status == 503 and refusal.limit == "LEDGERLINK_REQUEST_DEADLINE_S"
    assert "deadline of 10 s (LEDGERLINK_REQUEST_DEADLINE_S) and its work was stopped" in refusal.error
    assert refusal.log_line("POST /match_batch").endswith("stopped during set enumeration, 4.4 s late")
    with pytest.raises(refusals.Refusal, match="before its work could start"):
        with deadline.stopped_at_deadline(Limits(deadline_s=10)):
            raise MatchTimeout("start", 0.5)
    with pytest.raises(refusals.Refusal, match="the matcher refused the request") as err:
        with deadline.stopped_at_deadline(Limits()):
            raise ValueError("transfers.booked_at: 1 value(s) are not dates")
    assert err.value.status == 400 and "not dates" not in err.value.log_line("POST /match")


@pytest.mark.parametrize("workers", [1, 2, "cpu_count"])
def test_each_server_worker_matches_on_its_share_of_the_cpus(workers):
    """The service reads its worker count from BentoML's configuration (as ``bentoml serve`` gets it through
    ``BENTOML_CONFIG_OVERRIDES``) and gives its matcher the CPUs divided among the workers."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "BENTOML_CONFIG_OVERRIDES": json.dumps({"services": {"ledgerlink": {"workers": workers}}})}
    code = (
        "from bentos.service import _matcher_threads; from ledgerlink.matching.parallel import available_cpus; "
        "print(_matcher_threads(), available_cpus())"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=root, env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    threads, cpus = map(int, out.stdout.split()[-2:])
    assert threads == max(1, cpus // (cpus if workers == "cpu_count" else workers))


def _closed_loop(batcher, clients: int, rounds: int) -> float:
    """``clients`` callers that each send their next request as soon as they have their answer (a client's send
    and the server's parsing take 0.5 ms per request, in turn), ``rounds`` times; the seconds it took."""

    async def client(k: int):
        for r in range(rounds):
            await asyncio.sleep(0.0005 * k)  # the answers go out together, the next requests arrive in turn
            assert await batcher.submit(f"c{k}r{r}", None) == f"answer c{k}r{r}"

    async def scenario():
        await asyncio.gather(*(client(k) for k in range(clients)))

    t0 = time.perf_counter()
    asyncio.run(scenario())
    return time.perf_counter() - t0


def _slow_match_many(calls: list):
    def match_many(problems, deadline):
        calls.append(len(problems))
        time.sleep(0.02)  # a match call's fixed cost dominates: a batch costs about what one request does
        return [f"answer {p}" for p in problems]

    return match_many


def test_micro_batcher_lingers_under_load_so_returning_clients_share_a_batch(monkeypatch):
    """Four clients in a closed loop: once a batch of several has been answered, the next batch waits the few
    milliseconds the clients take to send again, so they stay together instead of one going alone and the other
    three waiting for it."""
    from ledgerlink.serving import batching

    monkeypatch.setattr(batching, "LINGER_GAP_S", 0.05)  # arrivals 0.5 ms apart, with room for a slow machine
    calls: list[int] = []
    _closed_loop(MicroBatcher(_slow_match_many(calls), linger=lambda: 0.5), clients=4, rounds=6)
    assert sum(calls) == 24 and calls[:2] == [1, 3]  # the first request goes alone; the others queue behind it
    assert set(calls[2:]) == {4}, calls  # from then on, all four together

    without: list[int] = []
    _closed_loop(MicroBatcher(_slow_match_many(without), linger=lambda: 0.0), clients=4, rounds=6)
    assert sum(without) == 24 and without.count(1) > 1, without  # the alternation the linger removes


def test_micro_batcher_never_holds_back_a_lone_client():
    calls: list[int] = []
    seconds = _closed_loop(MicroBatcher(_slow_match_many(calls), linger=lambda: 1.0), clients=1, rounds=5)
    assert calls == [1] * 5 and seconds < 1.0  # 5 x 20 ms of matching, never a 1 s linger
