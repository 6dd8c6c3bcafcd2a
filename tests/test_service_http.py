"""The Bento served for real: ``bentoml serve <bento tag>`` as a subprocess on a free 127.0.0.1 port.

A tiny Matcher is trained on small synthetic data, saved to the (temp) BentoML model store and built into a
Bento; the module's server is started once and stopped in teardown. Requests go over HTTP with the standard
library, so this checks what a client sees: status codes, bodies that name the field, limits from the
server's environment, the server surviving bad input, concurrent requests, health and metrics routes.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import pandas as pd
import pytest

from ledgerlink.deploy import bento as deploy  # noqa: E402
from ledgerlink.deploy.local import BentoServer, check_match_response, http_json  # noqa: E402
from ledgerlink.deploy.payloads import (  # noqa: E402
    candidate_invoices,
    inprocess_answer,
    match_request,
    pick_transfers,
    request_frames,
    same_answer,
    transfer_json,
)
from ledgerlink.matching.base import save_matcher  # noqa: E402

MAX_CANDIDATES, MAX_BODY = 60, 200_000
SERVER_ENV = {
    "LEDGERLINK_MAX_CANDIDATES": str(MAX_CANDIDATES),
    "LEDGERLINK_MAX_BODY_BYTES": str(MAX_BODY),
    "LEDGERLINK_IMAGE_TAG": "20261121093000-v4",
}


SERVED = ["EUR"]  # the model's currencies (its metadata); a transfer in another one is refused with 400


@pytest.fixture(scope="module")
def model_tag(small_matcher, tmp_path_factory):
    d = tmp_path_factory.mktemp("matcher")
    save_matcher(small_matcher, d)
    return str(
        deploy.save_to_model_store(
            d,
            labels={"zenml_model_name": "ledgerlink_matcher", "zenml_model_version": 4, "stage": "production"},
            metadata={
                "metrics": {"pair_f1": 0.91},
                "months": ["2025-01", "2025-02"],
                "threshold": float(small_matcher.auto_threshold_),
                "currencies": SERVED,
            },
        )
    )


@pytest.fixture(scope="module")
def server(model_tag):
    bento_tag = deploy.build_bento(model_tag)
    with BentoServer(str(bento_tag), env=SERVER_ENV) as srv:
        yield srv
    assert srv.proc is None  # stopped


@pytest.fixture(scope="module")
def url(server):
    return server.url


def _post(url, body, path="/match", timeout=60):
    return http_json("POST", url + path, body, timeout=timeout)


@pytest.fixture(scope="module")
def multi_request(small_world, small_matcher):
    """A transfer paying 2+ invoices, all of them among its 20 candidates, that the model answers in process."""
    truth = small_world["links"].groupby("transfer_id")["invoice_id"].apply(set)
    for _, t in pick_transfers(small_world, "multi", 60).iterrows():
        if len(truth.get(t["transfer_id"], ())) < 2 or t["currency"] not in SERVED:
            continue
        req = match_request(t, candidate_invoices(t, small_world["invoices"], small_world["links"], 20))
        return req, inprocess_answer(small_matcher, req), truth[t["transfer_id"]]
    pytest.fail("no multi-invoice transfer that the tiny model can answer in process")


@pytest.fixture(scope="module")
def requests_pool(small_world, small_matcher):
    """Requests the model answers in process, with those answers (for the consistency checks)."""
    out = []
    for _, t in pick_transfers(small_world, "any", 40).iterrows():
        if t["currency"] not in SERVED:  # the generator bills some contractors in other currencies
            continue
        req = match_request(t, candidate_invoices(t, small_world["invoices"], small_world["links"], 15, seed=1))
        try:
            out.append((req, inprocess_answer(small_matcher, req)))
        except Exception:  # noqa: BLE001
            continue
        if len(out) == 4:
            return out
    pytest.fail("too few answerable requests")


# ------------------------------------------------------------------------------------------------
# Happy path
# ------------------------------------------------------------------------------------------------


def test_multi_invoice_transfer(url, multi_request, model_tag):
    req, expected, paid = multi_request
    assert paid <= {c["invoice_id"] for c in req["candidates"]}
    status, body = _post(url, req)
    assert status == 200, body
    assert check_match_response(body, req) == []
    assert same_answer(body, expected) == []  # the served answer is the library's answer, to the last digit
    assert body["model"] == model_tag
    assert {r["invoice_id"] for r in body["ranked"]} <= {c["invoice_id"] for c in req["candidates"]}


def test_the_answers_say_why_in_the_libraries_words(url, multi_request, small_matcher, small_world):
    """/match and /match_batch carry the reasons ``match(..., explain=True)`` gives in process, word for word."""
    req, expected, _ = multi_request
    status, body = _post(url, req)
    assert status == 200 and body["reasons"] and all(isinstance(r, str) and r for r in body["reasons"])
    assert body["chosen"] and all(c["reasons"] for c in body["chosen"])
    assert body["reasons"] == expected["reasons"]
    assert [c["reasons"] for c in body["chosen"]] == expected["chosen_reasons"]

    transfers = [req["transfer"], *[transfer_json(t) for _, t in pick_transfers(small_world, "none", 2).iterrows()]]
    status, body = _post(url, {"transfers": transfers, "invoices": req["candidates"]}, "/match_batch")
    assert status == 200, body
    frames = [request_frames({"transfer": t, "candidates": []})[1] for t in transfers]
    in_process = small_matcher.match(request_frames(req)[0], pd.concat(frames, ignore_index=True), explain=True)
    want = in_process.decisions.set_index("transfer_id")["reasons"]
    for result in body["results"]:
        assert result["reasons"] and result["reasons"] == list(want[result["transfer_id"]])
        links = in_process.links[in_process.links["transfer_id"] == result["transfer_id"]]
        assert [c["reasons"] for c in result["links"]] == [list(r) for r in links["reasons"]]


def test_no_candidates_is_no_match(url, small_world):
    t = pick_transfers(small_world, "none", 1).iloc[0]
    status, body = _post(
        url, {"transfer": match_request(t, small_world["invoices"].head(0))["transfer"], "candidates": []}
    )
    assert status == 200, body
    assert body["chosen"] == [] and body["ranked"] == [] and body["decision"] in ("auto", "review")
    assert body["reasons"] == ["no candidate invoices were sent"]


def test_transfer_that_pays_nothing(url, small_world):
    t = pick_transfers(small_world, "none", 1).iloc[0]
    req = match_request(t, candidate_invoices(t, small_world["invoices"], small_world["links"], 20))
    status, body = _post(url, req)
    assert status == 200, body
    assert check_match_response(body, req) == []
    assert body["chosen"] == [] or body["decision"] == "review"


def test_model_info(url, model_tag):
    status, info = http_json("GET", url + "/model")
    assert status == 200
    assert info["bento_model_tag"] == model_tag and info["version"] == "4"
    assert info["image_tag"] == SERVER_ENV["LEDGERLINK_IMAGE_TAG"] and info["metrics"] == {"pair_f1": 0.91}


# ------------------------------------------------------------------------------------------------
# Bad requests: 4xx naming the field, and the server stays up
# ------------------------------------------------------------------------------------------------


def _bad(req: dict, case: str):
    t, c = dict(req["transfer"]), [dict(i) for i in req["candidates"]]
    body: dict = {"transfer": t, "candidates": c, "top_k": 5}
    if case == "missing_field":
        del t["amount"]
    elif case == "missing_candidates":
        del body["candidates"]
    elif case == "wrong_type_amount":
        t["amount"] = "12.50"
    elif case == "wrong_type_candidates":
        body["candidates"] = {"invoice_id": "x"}
    elif case == "bad_date":
        c[0]["issued_at"] = "yesterday"
    elif case == "negative_top_k":
        body["top_k"] = -3
    elif case == "zero_top_k":
        body["top_k"] = 0
    elif case == "too_many_candidates":
        body["candidates"] = [{**c[0], "invoice_id": f"X-{k}"} for k in range(MAX_CANDIDATES + 1)]
    elif case == "currency_not_served":
        t["currency"] = "PLN"
    elif case == "currency_not_iso":
        c[0]["currency"] = "euro"
    elif case == "unknown_field":
        t["tittle"] = "typo"
    elif case == "duplicate_candidates":
        c[1]["invoice_id"] = c[0]["invoice_id"]
    return body


@pytest.mark.parametrize(
    "case,loc",
    [
        ("missing_field", ["transfer", "amount"]),
        ("missing_candidates", ["candidates"]),
        ("wrong_type_amount", ["transfer", "amount"]),
        ("wrong_type_candidates", ["candidates"]),
        ("bad_date", ["candidates", 0, "issued_at"]),
        ("negative_top_k", ["top_k"]),
        ("zero_top_k", ["top_k"]),
        ("too_many_candidates", ["candidates"]),
        ("currency_not_served", ["transfer", "currency"]),
        ("currency_not_iso", ["candidates", 0, "currency"]),
        ("unknown_field", ["transfer", "tittle"]),
        ("duplicate_candidates", ["candidates"]),
    ],
)
def test_bad_request_is_400_naming_the_field(url, multi_request, case, loc):
    status, body = _post(url, _bad(multi_request[0], case))
    assert status == 400, body
    assert loc in [d["loc"] for d in body["detail"]], body
    if case == "too_many_candidates":
        assert "LEDGERLINK_MAX_CANDIDATES" in json.dumps(body)


def test_oversized_body_is_413(url, multi_request):
    req = multi_request[0]
    body = {
        **req,
        "candidates": [
            {**req["candidates"][0], "invoice_id": f"X-{k}", "description": "x" * 1900}
            for k in range(MAX_BODY // 1900 + 5)
        ],
    }
    status, answer = _post(url, body)
    assert status == 413, answer
    assert "LEDGERLINK_MAX_BODY_BYTES" in answer["error"] and answer["detail"][0]["loc"] == ["body"]


def test_invalid_json_is_400(url):
    status, _ = _post(url, b"{not json")
    assert 400 <= status < 500


def test_server_survives_bad_requests(server, url, multi_request):
    for case in ("missing_field", "too_many_candidates", "currency_not_served"):
        assert _post(url, _bad(multi_request[0], case))[0] == 400
    assert server.alive()
    assert http_json("GET", url + "/readyz")[0] == 200
    status, body = _post(url, multi_request[0])
    assert status == 200 and same_answer(body, multi_request[1]) == []


# ------------------------------------------------------------------------------------------------
# Concurrency, health, metrics
# ------------------------------------------------------------------------------------------------


def test_32_concurrent_requests_agree(url, requests_pool):
    jobs = [requests_pool[k % len(requests_pool)] for k in range(32)]
    with ThreadPoolExecutor(max_workers=32) as pool:
        answers = list(pool.map(lambda job: _post(url, job[0], timeout=120), jobs))
    assert [s for s, _ in answers] == [200] * 32
    for (req, expected), (_, body) in zip(jobs, answers):
        assert check_match_response(body, req) == []
        assert same_answer(body, expected) == []


def test_health_routes(url):
    for path in ("/livez", "/healthz", "/readyz"):
        assert http_json("GET", url + path)[0] == 200, path


def test_metrics_count_requests_by_status(url, multi_request):
    _post(url, multi_request[0])
    _post(url, _bad(multi_request[0], "missing_field"))
    status, text = http_json("GET", url + "/metrics")
    assert status == 200 and isinstance(text, str)
    lines = [ln for ln in text.splitlines() if ln.startswith("bentoml_service_request_total{")]
    assert any('endpoint="/match"' in ln and 'http_response_code="200"' in ln for ln in lines), lines
    assert any('endpoint="/match"' in ln and 'http_response_code="400"' in ln for ln in lines), lines
    assert "bentoml_service_request_duration_seconds_bucket" in text
    assert "ledgerlink_match_batch_size_count" in text  # the adaptive batching of /match


# ------------------------------------------------------------------------------------------------
# Logs and the published schema
# ------------------------------------------------------------------------------------------------


def test_a_refusal_is_logged_as_one_line_without_personal_data(server, url, multi_request):
    """BentoML logged every 400 with a traceback whose pydantic message quoted the input (payer names)."""
    payer = "Zofia Tajemnicza-Nowak"
    body = _bad(multi_request[0], "missing_field")
    body["transfer"]["counterparty_name"] = payer * 100  # too long: the error is about the payer field itself
    status, answer = _post(url, body)
    assert status == 400 and ["transfer", "counterparty_name"] in [d["loc"] for d in answer["detail"]]
    deadline = time.monotonic() + 30
    while "transfer.counterparty_name (string_too_long)" not in server.log_tail(400) and time.monotonic() < deadline:
        time.sleep(0.2)
    log = server.log_tail(400)
    assert payer not in log and "Traceback" not in log, log
    (line,) = [ln for ln in log.splitlines() if "transfer.counterparty_name (string_too_long)" in ln]
    assert "refused POST /match: 400 invalid: transfer.amount (missing), transfer.counterparty_name" in line


def test_schemathesis_finds_no_server_error_and_no_schema_violation(url, tmp_path):
    """Generated requests (valid and invalid) against both routes: no 5xx, every status documented, every body as
    the published schema says. Bounded: 40 examples per operation, about 15 s."""
    checks = [
        "not_a_server_error",
        "status_code_conformance",
        "content_type_conformance",
        "response_schema_conformance",
        "negative_data_rejection",
    ]
    cmd = [
        sys.executable, "-m", "schemathesis.cli", "run", f"{url}/docs.json", "--url", url,
        "--checks", ",".join(checks), "--max-examples", "40", "--seed", "11", "--workers", "1",
        "--phases", "examples,coverage,fuzzing", "--suppress-health-check", "all", "--generation-database", "none",
        "--request-timeout", "60", "--no-color", "--report", "junit", "--report-dir", str(tmp_path),
    ]  # fmt: skip
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-2000:]
    assert "/match_batch" in run.stdout and "/match" in run.stdout
    generated = re.search(r"(\d+) generated, (\d+) passed", run.stdout)
    assert generated and int(generated.group(1)) == int(generated.group(2)) >= 80, run.stdout[-3000:]
