"""BentoML packaging and an in-process smoke test of the service (no Docker, no network).

A tiny Matcher is trained on hand-made months, saved to the (temp) BentoML model store, built into a
Bento from bentos/bentofile.yaml, exported as a Docker build context, and served in-process through
BentoML's own ASGI app.
"""

from __future__ import annotations

import tarfile
from importlib import metadata
from pathlib import Path

import pandas as pd
import pytest
import yaml
from conftest import tiny_month

REPO = Path(__file__).resolve().parents[1]
bentoml = pytest.importorskip("bentoml")
matching = pytest.importorskip("ledgerlink.matching")

from ledgerlink.deploy import bento as deploy  # noqa: E402

IMAGE_TAG = "20261121093000-v3"


@pytest.fixture(scope="module")
def tables():
    a, b = tiny_month("2025-01", 40), tiny_month("2025-02", 40, start=100)
    return {k: pd.concat([a[k], b[k]], ignore_index=True) for k in a}


@pytest.fixture(scope="module")
def model_tag(tables, tmp_path_factory):
    m = matching.Matcher(n_estimators=20, n_jobs=1).fit(tables["invoices"], tables["transfers"], tables["links"])
    d = tmp_path_factory.mktemp("matcher")
    m.save(d)
    return deploy.save_to_model_store(
        d,
        labels={"zenml_model_name": "ledgerlink", "zenml_model_version": 3, "stage": "production"},
        metadata={
            "metrics": {"set_accuracy": 0.9, "missing": None},
            "months": ["2025-01", "2025-02"],
            "threshold": float(m.auto_threshold_),
        },
    )


@pytest.fixture(scope="module")
def bento_tag(model_tag):
    return deploy.build_bento(model_tag)


def test_model_store_entry_carries_labels_and_metadata(model_tag):
    info = deploy.model_info(str(model_tag))
    assert info["name"] == "ledgerlink" and info["version"] == "3" and info["stage"] == "production"
    assert info["metrics"] == {"set_accuracy": 0.9}  # None dropped: BentoML metadata cannot hold it
    assert info["training_months"] == ["2025-01", "2025-02"]
    assert 0 < info["auto_threshold"] <= 1
    model = bentoml.models.get(model_tag)
    assert Path(model.path_of(deploy.MATCHER_SUBDIR), "meta.json").is_file()


def test_save_rejects_a_directory_without_a_matcher(tmp_path):
    (tmp_path / "junk.txt").write_text("x")
    with pytest.raises(Exception):
        deploy.save_to_model_store(tmp_path, labels={}, metadata={})


def test_bento_pins_the_model_python_and_packages(bento_tag, model_tag):
    bento = bentoml.bentos.get(bento_tag)
    info = yaml.safe_load(Path(bento.path_of("bento.yaml")).read_text())
    assert [m["tag"] for m in info["models"]] == [str(model_tag)]
    assert {"name": deploy.MODEL_TAG_ENV, "value": str(model_tag)}.items() <= info["envs"][-1].items()
    assert info["labels"]["zenml_model_version"] == "3"
    reqs = Path(bento.path_of("env/python/requirements.txt")).read_text().split()
    assert f"xgboost-cpu=={metadata.version('xgboost')}" in reqs
    assert f"pandas=={metadata.version('pandas')}" in reqs
    src = Path(bento.path_of("src"))
    assert (src / "bentos" / "service.py").is_file()
    assert (src / "ledgerlink" / "matching" / "model.py").is_file()  # the image needs nothing from the repo
    assert not list(src.rglob("__pycache__"))


def test_export_build_context_has_a_root_dockerfile_and_the_model(bento_tag, model_tag, tmp_path):
    from ledgerlink.deploy.cloud_build import upload_context

    ctx = deploy.export_build_context(bento_tag, tmp_path / "ctx")
    dockerfile = (ctx / "Dockerfile").read_text()
    assert dockerfile == (ctx / "env" / "docker" / "Dockerfile").read_text()
    assert "FROM python:3.11" in dockerfile
    assert "--mount=" not in dockerfile  # no BuildKit-only syntax: plain `docker build .` works
    model = bentoml.models.get(model_tag)
    assert (ctx / "models" / model.tag.name / model.tag.version / "matcher" / "meta.json").is_file()
    bucket, obj = upload_context(ctx, f"file://{tmp_path}/bucket", "models/mv-1/context.tar.gz")
    with tarfile.open(Path(bucket) / obj) as tar:
        names = set(tar.getnames())
    assert {"Dockerfile", "bento.yaml", "src/bentos/service.py"} <= names


# ------------------------------------------------------------------------------------------------
# Service, in process
# ------------------------------------------------------------------------------------------------


def _inv(r) -> dict:
    return {
        "invoice_id": r.invoice_id,
        "issued_at": str(r.issued_at.date()),
        "due_at": str(r.due_at.date()),
        "amount": r.amount,
        "currency": r.currency,
        "invoice_number": r.invoice_number,
        "counterparty_name": r.counterparty_name,
        "description": r.description,
    }


def _tr(r) -> dict:
    return {
        "transfer_id": r.transfer_id,
        "booked_at": str(r.booked_at.date()),
        "amount": r.amount,
        "currency": r.currency,
        "title": r.title,
        "counterparty_name": r.counterparty_name,
        "counterparty_account": r.counterparty_account,
    }


@pytest.fixture(scope="module")
def client(model_tag, bento_tag):
    from starlette.testclient import TestClient

    mp = pytest.MonkeyPatch()
    mp.setenv(deploy.MODEL_TAG_ENV, str(model_tag))
    mp.setenv(deploy.IMAGE_TAG_ENV, IMAGE_TAG)
    mp.syspath_prepend(str(REPO))
    import importlib

    service = importlib.import_module("bentos.service")
    with TestClient(service.LedgerLink.to_asgi()) as c:
        yield c
    mp.undo()


@pytest.fixture(scope="module")
def payload(tables):
    return [_inv(r) for r in tables["invoices"].itertuples()], [_tr(r) for r in tables["transfers"].itertuples()]


def test_health_and_model_info(client, model_tag):
    for path in ("/livez", "/healthz", "/readyz"):
        assert client.get(path).status_code == 200
    info = client.get("/model").json()
    assert info["bento_model_tag"] == str(model_tag)
    assert info["version"] == "3" and info["image_tag"] == IMAGE_TAG
    assert info["training_months"] == ["2025-01", "2025-02"]


def test_match_one_transfer(client, payload):
    invs, trs = payload
    r = client.post("/match", json={"transfer": trs[3], "candidates": invs[:10], "top_k": 3})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["transfer_id"] == trs[3]["transfer_id"]
    assert body["decision"] in ("auto", "review")
    assert body["decision"] == ("auto" if body["confidence"] >= body["auto_threshold"] else "review")
    assert [x["rank"] for x in body["ranked"]] == list(range(1, len(body["ranked"]) + 1)) and len(body["ranked"]) <= 3
    probs = [x["probability"] for x in body["ranked"]]
    assert probs == sorted(probs, reverse=True)
    assert [c["invoice_id"] for c in body["chosen"]] == ["INV-00003"]  # the tiny data: transfer i pays invoice i
    # why, in words: the service matches with explain=True
    assert body["reasons"] and body["chosen"][0]["reasons"]
    assert all(isinstance(r, str) and r for r in body["reasons"] + body["chosen"][0]["reasons"])


def test_match_without_candidates(client, payload):
    invs, trs = payload
    r = client.post("/match", json={"transfer": trs[0], "candidates": []})
    assert r.status_code == 200 and r.json()["chosen"] == [] and r.json()["ranked"] == []
    assert r.json()["reasons"] == ["no candidate invoices were sent"]
    r = client.post("/match_batch", json={"transfers": trs[:2], "invoices": []})
    assert r.status_code == 200 and all(x["links"] == [] for x in r.json()["results"])
    assert all(x["reasons"] == ["no candidate invoices were sent"] for x in r.json()["results"])


def test_match_transfer_with_nothing_in_common(client, payload):
    invs, trs = payload
    bare = {"transfer_id": "T-x", "booked_at": "2019-01-01", "amount": 1.23, "currency": "EUR", "title": "refund"}
    only_desc = [{k: v for k, v in i.items() if k not in ("invoice_number", "counterparty_name")} for i in invs[:5]]
    r = client.post("/match", json={"transfer": bare, "candidates": only_desc})
    assert r.status_code == 200, r.text
    assert r.json()["chosen"] == [] and len(r.json()["unscored_invoice_ids"]) == 5


def test_match_batch(client, payload):
    invs, trs = payload
    r = client.post("/match_batch", json={"transfers": trs[:6], "invoices": invs})
    assert r.status_code == 200, r.text
    results = r.json()["results"]
    assert [x["transfer_id"] for x in results] == [t["transfer_id"] for t in trs[:6]]
    assert all(x["n_invoices"] == len(x["links"]) for x in results)
    assert all(x["reasons"] for x in results) and all(c["reasons"] for x in results for c in x["links"])


@pytest.mark.parametrize(
    "case,loc",
    [
        ("missing", ["transfer", "amount"]),
        ("wrong_type", ["transfer", "amount"]),
        ("bad_date", ["candidates", 0, "issued_at"]),
        ("negative_top_k", ["top_k"]),
        ("bad_currency", ["transfer", "currency"]),
        ("unknown_field", ["transfer", "tittle"]),
        ("duplicate_ids", ["candidates"]),
        ("due_before_issue", ["candidates", 0, "due_at"]),
    ],
)
def test_bad_requests_are_400_naming_the_field(client, payload, case, loc):
    invs, trs = payload
    t, c = dict(trs[0]), [dict(i) for i in invs[:2]]
    if case == "missing":
        del t["amount"]
    elif case == "wrong_type":
        t["amount"] = "12.50"
    elif case == "bad_date":
        c[0]["issued_at"] = "yesterday"
    elif case == "bad_currency":
        t["currency"] = "euro"
    elif case == "unknown_field":
        t["tittle"] = "typo"
    elif case == "duplicate_ids":
        c[1]["invoice_id"] = c[0]["invoice_id"]
    elif case == "due_before_issue":
        c[0]["due_at"] = "2000-01-01"
    body = {"transfer": t, "candidates": c, **({"top_k": -1} if case == "negative_top_k" else {})}
    r = client.post("/match", json=body)
    assert r.status_code == 400, r.text
    assert loc in [d["loc"] for d in r.json()["detail"]]


def test_limits_from_env(client, payload, monkeypatch):
    invs, trs = payload
    monkeypatch.setenv("LEDGERLINK_MAX_CANDIDATES", "3")
    r = client.post("/match", json={"transfer": trs[0], "candidates": invs[:4]})
    assert r.status_code == 400 and r.json()["detail"][0]["loc"] == ["candidates"]
    assert "LEDGERLINK_MAX_CANDIDATES" in r.text
    monkeypatch.setenv("LEDGERLINK_CURRENCIES", "PLN,USD")
    r = client.post("/match", json={"transfer": trs[0], "candidates": invs[:2]})
    assert r.status_code == 400 and ["transfer", "currency"] in [d["loc"] for d in r.json()["detail"]]


def test_oversized_body_is_413(client, payload, monkeypatch):
    invs, trs = payload
    monkeypatch.setenv("LEDGERLINK_MAX_BODY_BYTES", "1000")
    r = client.post("/match", json={"transfer": trs[0], "candidates": invs[:10]})
    assert r.status_code == 413 and "LEDGERLINK_MAX_BODY_BYTES" in r.json()["error"]

    def chunks():  # no Content-Length: counted as it streams
        yield b'{"transfer": '
        for _ in range(30):
            yield b" " * 100
        yield b"}"

    r = client.post("/match", content=chunks(), headers={"content-type": "application/json"})
    assert r.status_code == 413


def test_invalid_json_is_400(client):
    r = client.post("/match", content=b"{not json", headers={"content-type": "application/json"})
    assert r.status_code == 400


# ------------------------------------------------------------------------------------------------
# API details (issue 11.10)
# ------------------------------------------------------------------------------------------------


def _schema_for(client, route: str, status: int) -> dict:
    """The published (OpenAPI) schema of ``route``'s answer with ``status``, as a JSON schema."""
    spec = client.get("/docs.json").json()
    responses = spec["paths"][route]["post"]["responses"]
    assert str(status) in responses, f"{status} is not documented for {route}: {sorted(responses)}"
    return {**responses[str(status)]["content"]["application/json"]["schema"], "components": spec["components"]}


@pytest.mark.parametrize(
    "content_type,body",
    [
        ("multipart/form-data", b"garbage"),  # no boundary: BentoML's parser failed with a 500
        (
            "multipart/form-data; boundary=xx",
            b'--xx\r\nContent-Disposition: form-data; name="transfer"\r\n\r\n{}\r\n--xx--\r\n',
        ),
        ("application/x-www-form-urlencoded", b"transfer=1"),
        ("text/plain", b"{}"),
    ],
)
def test_a_body_that_is_not_json_is_415(client, content_type, body):
    import jsonschema

    for route in ("/match", "/match_batch"):
        r = client.post(route, content=body, headers={"content-type": content_type})
        assert r.status_code == 415, r.text
        jsonschema.validate(r.json(), _schema_for(client, route, 415))
        assert "application/json" in r.json()["error"]


def test_every_refusal_matches_the_published_schema(client, payload, monkeypatch):
    """schemathesis ST108: BentoML's 400 body had a list where its published schema says a string."""
    import jsonschema

    invs, trs = payload
    bad = {"transfer": {**trs[0], "amount": "12.50"}, "candidates": invs[:2], "unknown": 1}
    cases = [
        ("/match", bad, 400),
        ("/match", b"{not json", 400),
        ("/match_batch", {"transfers": [], "invoices": invs[:2]}, 400),
        ("/match_batch", {"transfers": trs[:2], "invoices": [{**invs[0], "issued_at": "0001-01-01"}]}, 400),
    ]
    for route, body, status in cases:
        r = client.post(route, **({"content": body} if isinstance(body, bytes) else {"json": body}))
        assert r.status_code == status, r.text
        jsonschema.validate(r.json(), _schema_for(client, route, status))
    monkeypatch.setenv("LEDGERLINK_MAX_BODY_BYTES", "100")
    r = client.post("/match", json={"transfer": trs[0], "candidates": invs[:3]})
    assert r.status_code == 413
    jsonschema.validate(r.json(), _schema_for(client, "/match", 413))


def test_a_date_pandas_cannot_hold_is_refused_naming_the_field(client, payload):
    invs, trs = payload
    r = client.post("/match", json={"transfer": {**trs[0], "booked_at": "0001-01-01"}, "candidates": invs[:3]})
    assert r.status_code == 400, r.text
    assert [d["loc"] for d in r.json()["detail"]] == [["transfer", "booked_at"]]  # it was ["body"]: "not dates"
    r = client.post(
        "/match_batch", json={"transfers": trs[:2], "invoices": [*invs[:2], {**invs[2], "due_at": "9999-12-31"}]}
    )
    assert r.status_code == 400 and [d["loc"] for d in r.json()["detail"]] == [["invoices", 2, "due_at"]]


def test_an_invoice_in_another_currency_is_refused_not_matched(client, payload):
    """A USD transfer used to get a EUR invoice at 0.988, auto: the model never saw two currencies."""
    invs, trs = payload
    r = client.post("/match", json={"transfer": {**trs[3], "currency": "USD"}, "candidates": invs[:10]})
    assert r.status_code == 400, r.text
    detail = r.json()["detail"]
    assert [d["loc"] for d in detail] == [["candidates", k, "currency"] for k in range(10)]
    assert {d["type"] for d in detail} == {"currency_mismatch"} and "invoice in EUR, transfer in USD" in detail[0][
        "msg"
    ]
    r = client.post("/match_batch", json={"transfers": [trs[3], {**trs[4], "currency": "USD"}], "invoices": invs})
    assert r.status_code == 400 and [d["loc"] for d in r.json()["detail"]] == [["transfers", 1, "currency"]]


def test_a_zero_amount_is_refused_not_linked_at_zero(client, payload):
    invs, trs = payload
    r = client.post("/match", json={"transfer": {**trs[3], "amount": 0.0}, "candidates": invs[:10]})
    assert r.status_code == 400, r.text  # it was a link of 0.00 to INV-00003
    assert [d["loc"] for d in r.json()["detail"]] == [["transfer", "amount"]]
    r = client.post("/match", json={"transfer": trs[3], "candidates": [{**invs[3], "amount": 0}]})
    assert r.status_code == 400 and [d["loc"] for d in r.json()["detail"]] == [["candidates", 0, "amount"]]


def test_a_bad_request_never_enters_a_batch(client, payload, monkeypatch):
    """A request the matcher would refuse is refused before batching: it made its whole batch fail and rerun one
    by one (bursts about 4x slower)."""
    from concurrent.futures import ThreadPoolExecutor

    invs, trs = payload
    service = bentoml.get_current_service()
    seen: list[list[str]] = []
    real = service.matcher.match_many

    def recording(problems, *args, **kwargs):
        seen.append([str(tr["booked_at"].iloc[0])[:10] for _, tr in problems])
        return real(problems, *args, **kwargs)

    monkeypatch.setattr(service.matcher, "match_many", recording)
    bodies = [{"transfer": trs[k], "candidates": invs[max(0, k - 3) : k + 3]} for k in range(1, 13)]
    bodies[5] = {**bodies[5], "transfer": {**bodies[5]["transfer"], "booked_at": "0001-01-01"}}
    with ThreadPoolExecutor(12) as pool:
        answers = list(pool.map(lambda b: client.post("/match", json=b), bodies))
    assert [a.status_code for a in answers] == [200] * 5 + [400] + [200] * 6
    assert answers[5].json()["detail"][0]["loc"] == ["transfer", "booked_at"]
    assert seen and not any("0001-01-01" in days for days in seen)
    assert sum(len(days) for days in seen) == 11  # each good request matched once: no batch was rerun


def test_the_bento_carries_the_serving_package(bento_tag):
    src = Path(bentoml.bentos.get(bento_tag).path_of("src"))
    for module in ("schemas", "refusals", "batching", "middleware", "bento_io", "answers", "limits"):
        assert (src / "ledgerlink" / "serving" / f"{module}.py").is_file(), module


def test_a_request_past_its_deadline_is_a_503_naming_the_limit(client, payload, monkeypatch):
    import jsonschema

    invs, trs = payload
    monkeypatch.setenv("LEDGERLINK_REQUEST_DEADLINE_S", "0.000001")
    for route, body in (
        ("/match", {"transfer": trs[3], "candidates": invs[:10]}),
        ("/match_batch", {"transfers": trs[:6], "invoices": invs}),
    ):
        r = client.post(route, json=body)
        assert r.status_code == 503, r.text
        jsonschema.validate(r.json(), _schema_for(client, route, 503))
        assert r.json()["limit"] == "LEDGERLINK_REQUEST_DEADLINE_S" and "deadline" in r.json()["error"]
    monkeypatch.delenv("LEDGERLINK_REQUEST_DEADLINE_S")
    assert client.post("/match", json={"transfer": trs[3], "candidates": invs[:10]}).status_code == 200
