"""Suggestions on BigQuery through the real google-cloud-bigquery client, offline (as tests/test_bigquery.py).

- crucible (the BigQuery emulator) answers what it can: the open-month SQL with its parameters inlined (each month
  returns exactly its open rows), creating the suggestions table over REST, and the MERGE that replaces one
  (month, model) key's rows atomically, run twice.
- a loopback HTTP server records the exact REST requests where crucible cannot answer (query parameters, Parquet
  load jobs): table creation, the staging table and its expiry, the load job and its uploaded Parquet bytes (multipart
  and resumable), the parameterised MERGE, the staging table's deletion, and what a failed load or MERGE leaves.
"""

import copy
import io
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

import pandas as pd
import pyarrow.parquet as pq
import pytest

from ledgerlink.data.bigquery import BigQueryWarehouse, _canonical_frame
from ledgerlink.data.bigquery_suggestions import BigQuerySuggestions, merge_sql
from ledgerlink.data.contract import ColumnMap
from ledgerlink.data.suggest import check_open_month
from ledgerlink.data.suggestions import COLUMN_NAMES, COLUMNS, SuggestionTableError, SuggestionWriter
from ledgerlink.data.warehouse import open_month_parameters, open_month_sql
from tests.conftest import tiny_month
from tests.test_bigquery import PROJECT, FakeBigQuery, _client, crucible  # noqa: F401 (crucible is a fixture)

bigquery = pytest.importorskip("google.cloud.bigquery")
pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning")

AT = pd.Timestamp("2026-11-29 03:00:00", tz="UTC")


def _rows(month="2025-02", version="1", n=3, model="ledgerlink_matcher", start=0) -> pd.DataFrame:
    """Suggestion rows: n transfers, the last one pays nothing."""
    rows = []
    for i in range(n):
        pays = i < n - 1
        rows.append(
            {
                "month": month,
                "transfer_id": f"TRF-{start + i:05d}",
                "invoice_id": f"INV-{start + i:05d}" if pays else None,
                "allocated_amount": 100.0 + i if pays else float("nan"),
                "confidence": 0.9,
                "decision": "auto" if pays else "review",
                "model_name": model,
                "model_version": version,
                "reasons": ["invoice number in the title", "amount equal"] if pays else ["no invoice fits"],
                "suggested_at": AT,
            }
        )
    return pd.DataFrame(rows)[list(COLUMN_NAMES)]


def _staged(tmp_path, rows: pd.DataFrame, name="staged.parquet"):
    writer = SuggestionWriter(tmp_path / name)
    writer.add(rows)
    return writer.close()


def _inline(sql: str, params: dict) -> str:
    for name, value in sorted(params.items(), key=lambda kv: -len(kv[0])):
        literal = f"DATE '{value.isoformat()}'" if hasattr(value, "isoformat") else f"'{value}'"
        sql = sql.replace(f"@{name}", literal)
    return sql


def _query(client, sql: str) -> pd.DataFrame:
    return client.query(sql).result().to_arrow(create_bqstorage_client=False).to_pandas()


# -- crucible -------------------------------------------------------------------------------------------------
def test_the_open_month_sql_is_bigquery_that_selects_the_open_rows(crucible):  # noqa: F811
    """The crucible dataset ``ds`` holds January and February (tiny_month, n=5: every 5th transfer pays nothing).
    February's open month: its transfers, January's unpaid invoice and every February invoice (its links ignored)."""
    client = _client(crucible)
    got = {}
    for table in ("invoices", "transfers"):
        sql = _inline(
            open_month_sql(table, ColumnMap(), f"{PROJECT}.ds", "x.currency = 'EUR'"),
            open_month_parameters(table, "2025-02", 180),
        )
        got[table] = _canonical_frame(table, _query(client, sql))  # NUMERIC and DATE as the warehouse reads them
    month = check_open_month(got, "2025-02")
    assert sorted(month["transfers"]["transfer_id"]) == [f"TRF-{100 + i:05d}" for i in range(5)]
    assert sorted(month["invoices"]["invoice_id"]) == ["INV-00000"] + [f"INV-{100 + i:05d}" for i in range(5)]


def test_the_table_is_created_over_rest_and_the_merge_replaces_one_key_atomically(crucible, tmp_path):  # noqa: F811
    client = _client(crucible)
    client.create_dataset("out", exists_ok=True)
    table = BigQuerySuggestions(client, PROJECT, "out", "suggested_links")
    table._target()  # tables.insert with the suggestion schema; then its live schema passes the column check
    live = client.get_table(table.name)
    assert [f.name for f in live.schema] == list(COLUMN_NAMES)
    assert {f.name: f.mode for f in live.schema}["reasons"] == "REPEATED"
    table._target()  # a second run finds it and checks it again
    target = f"`{table.name}`"

    def insert(name: str, rows: pd.DataFrame) -> None:
        values = []
        for r in rows.itertuples(index=False):
            reasons = "[" + ", ".join(f"'{s}'" for s in r.reasons) + "]"
            amount = "NULL" if r.allocated_amount != r.allocated_amount else f"NUMERIC '{r.allocated_amount:.2f}'"
            invoice = "NULL" if r.invoice_id is None else f"'{r.invoice_id}'"
            values.append(
                f"('{r.month}', '{r.transfer_id}', {invoice}, {amount}, {r.confidence}, '{r.decision}', "
                f"'{r.model_name}', '{r.model_version}', {reasons}, TIMESTAMP '{r.suggested_at.isoformat()}')"
            )
        client.query(f"INSERT INTO {name} ({', '.join(COLUMN_NAMES)}) VALUES {', '.join(values)}").result()

    insert(target, _rows("2025-02", "1"))  # the rows the rerun replaces
    insert(target, _rows("2025-02", "2"))  # another version of the month: kept
    insert(target, _rows("2025-01", "1"))  # another month: kept
    insert(target, _rows("2025-02", "1", model="other_model"))  # another model: kept
    ddl = ", ".join(f"`{c.name}` {'ARRAY<STRING>' if c.name == 'reasons' else c.bigquery}" for c in COLUMNS)
    staging = f"{PROJECT}.out.suggested_links__staging_test"
    client.query(f"CREATE TABLE `{staging}` ({ddl})").result()
    insert(f"`{staging}`", _rows("2025-02", "1", n=5, start=50))
    sql = _inline(
        merge_sql(table.name, staging), {"month": "2025-02", "model_name": "ledgerlink_matcher", "model_version": "1"}
    )
    for _ in range(2):  # the same MERGE twice: the same rows, never twice
        client.query(sql).result()
        got = _query(client, f"SELECT * FROM {target}")
        counts = got.groupby(["month", "model_name", "model_version"]).size().to_dict()
        assert counts == {
            ("2025-01", "ledgerlink_matcher", "1"): 3,
            ("2025-02", "ledgerlink_matcher", "1"): 5,
            ("2025-02", "ledgerlink_matcher", "2"): 3,
            ("2025-02", "other_model", "1"): 3,
        }
    new = got[(got["month"] == "2025-02") & (got["model_version"] == "1") & (got["model_name"] == "ledgerlink_matcher")]
    assert sorted(new["transfer_id"]) == [f"TRF-{50 + i:05d}" for i in range(5)]
    paid = new.sort_values("transfer_id").iloc[0]
    assert list(paid["reasons"]) == ["invoice number in the title", "amount equal"]
    assert new["invoice_id"].isna().sum() == 1
    # how a finance system reads the newest run's suggestions of a month (the README's query)
    readme = _query(
        client,
        "SELECT transfer_id, invoice_id, allocated_amount, confidence, decision, ARRAY_TO_STRING(reasons, '; ') AS why "
        f"FROM {target} WHERE month = '2025-01' AND suggested_at = "
        f"(SELECT MAX(suggested_at) FROM {target} WHERE month = '2025-01') ORDER BY decision, transfer_id",
    )
    assert list(readme["why"]) == ["invoice number in the title; amount equal"] * 2 + ["no invoice fits"]


def test_an_existing_table_with_other_columns_is_refused(crucible):  # noqa: F811
    client = _client(crucible)
    client.create_dataset("theirs", exists_ok=True)
    client.query(f"CREATE TABLE `{PROJECT}.theirs.suggested_links` (id INT64, note STRING)").result()
    with pytest.raises(SuggestionTableError, match="is not a suggestions table"):
        BigQuerySuggestions(client, PROJECT, "theirs")._target()


# -- the exact requests: a loopback server --------------------------------------------------------------------
class FakeBigQueryWrites:
    """Tables, Parquet load jobs (multipart and resumable uploads) and query jobs, recorded and answered like
    BigQuery. ``fail`` makes the named job kind ("load" or "query") end with an error result."""

    def __init__(self, existing: dict[str, list[dict]] | None = None, fail: str | None = None):
        self.requests, self.tables, self.jobs, self.uploads = [], dict(existing or {}), {}, {}
        self.fail = fail
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _send(self, obj, code=200, headers=None):
                body = json.dumps(obj).encode() if obj is not None else b""
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(body)

            def _body(self) -> bytes:
                return self.rfile.read(int(self.headers.get("Content-Length") or 0))

            def do_GET(self):
                outer.requests.append(("GET", self.path, None))
                code, obj = outer.get(self.path)
                self._send(obj, code)

            def do_DELETE(self):
                outer.requests.append(("DELETE", self.path, None))
                name = urlparse(self.path).path.split("/")[-1]
                if outer.tables.pop(name, None) is None:
                    return self._send({"error": {"code": 404, "message": "Not found", "status": "NOT_FOUND"}}, 404)
                self._send(None, 204)

            def do_POST(self):
                raw = self._body()
                url = urlparse(self.path)
                query = parse_qs(url.query)
                if url.path.startswith("/upload/"):
                    kind = query["uploadType"][0]
                    if kind == "multipart":
                        meta, data = _multipart(self.headers["Content-Type"], raw)
                        outer.requests.append(("POST", self.path, {"job": meta, "bytes": data}))
                        return self._send(outer.load_job(meta, data))
                    meta = json.loads(raw)
                    outer.requests.append(("POST", self.path, {"job": meta}))
                    upload_id = f"upload-{len(outer.uploads)}"
                    outer.uploads[upload_id] = (meta, bytearray())
                    location = f"{outer.url}{url.path}?uploadType=resumable&upload_id={upload_id}"
                    return self._send({}, 200, {"Location": location})
                body = json.loads(raw)
                outer.requests.append(("POST", self.path, copy.deepcopy(body)))
                if url.path.endswith("/tables"):
                    code, obj = outer.create_table(body)
                    return self._send(obj, code)
                self._send(outer.query_job(body))

            def do_PUT(self):
                raw = self._body()
                url = urlparse(self.path)
                upload_id = parse_qs(url.query)["upload_id"][0]
                outer.requests.append(("PUT", self.path, {"bytes": raw, "range": self.headers.get("Content-Range")}))
                meta, data = outer.uploads[upload_id]
                data.extend(raw)
                self._send(outer.load_job(meta, bytes(data)))

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def _job(self, body: dict, kind: str, stats: dict) -> dict:
        ref = dict(body["jobReference"])
        job = {
            "kind": "bigquery#job",
            "id": f"{PROJECT}:EU.{ref['jobId']}",
            "jobReference": ref,
            "configuration": copy.deepcopy(body["configuration"]),
            "status": {"state": "DONE"},
            "statistics": {"creationTime": "1", "startTime": "1", "endTime": "2", **stats},
        }
        if self.fail == kind:
            error = {"reason": "invalid", "message": f"{kind} failed (scripted)"}
            job["status"] = {"state": "DONE", "errorResult": error, "errors": [error]}
        self.jobs[ref["jobId"]] = job
        return job

    def load_job(self, meta: dict, data: bytes) -> dict:
        rows = pq.read_table(io.BytesIO(data)).num_rows
        job = self._job(meta, "load", {"load": {"outputRows": str(rows)}})
        if "errorResult" not in job["status"]:
            dest = meta["configuration"]["load"]["destinationTable"]["tableId"]
            self.tables[dest].extend([{}] * rows)
        return job

    def query_job(self, body: dict) -> dict:
        import re

        merge = re.search(r"USING `[^`]*\.([^`.]+)` AS s", body["configuration"]["query"]["query"])
        if merge is None:  # a SELECT
            return self._job(body, "query", {"query": {"statementType": "SELECT"}})
        affected = str(len(self.tables[merge.group(1)]))  # rows inserted (the fake's target holds none of the key)
        job = self._job(body, "query", {"query": {"statementType": "MERGE", "numDmlAffectedRows": affected}})
        job["affected"] = affected
        return job

    def create_table(self, body: dict):
        name = body["tableReference"]["tableId"]
        if name in self.tables:
            return 409, {"error": {"code": 409, "message": "Already Exists", "status": "ALREADY_EXISTS"}}
        self.tables[name] = []
        return 200, {**body, "kind": "bigquery#table", "id": f"{PROJECT}:out.{name}"}

    def get(self, path: str):
        url = urlparse(path)
        parts = url.path.split("/")
        if "jobs" in parts:
            return 200, self.jobs[parts[-1]]
        if "queries" in parts:
            job = self.jobs[parts[-1]]
            if "errorResult" in job["status"]:
                return 400, {"error": {"code": 400, "message": job["status"]["errorResult"]["message"]}}
            return 200, {
                "kind": "bigquery#getQueryResultsResponse",
                "jobComplete": True,
                "jobReference": job["jobReference"],
                "schema": {"fields": []},
                "totalRows": "0",
                "numDmlAffectedRows": job.get("affected", "0"),
            }
        if "tables" in parts and parts[-1] in self.tables:
            from ledgerlink.data.bigquery_suggestions import bigquery_schema

            fields = [f.to_api_repr() for f in bigquery_schema()]
            return 200, {
                "kind": "bigquery#table",
                "tableReference": {"projectId": PROJECT, "datasetId": "out", "tableId": parts[-1]},
                "schema": {"fields": fields},
            }
        return 404, {"error": {"code": 404, "message": f"Not found: Table {parts[-1]}", "status": "NOT_FOUND"}}

    def routes(self) -> list[tuple[str, str]]:
        """(method, path without the query string) of every request, in order."""
        return [(m, urlparse(p).path) for m, p, _ in self.requests]

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def _multipart(content_type: str, raw: bytes) -> tuple[dict, bytes]:
    boundary = content_type.split("boundary=")[1].strip('"').encode()
    parts = [p for p in raw.split(b"--" + boundary) if p.strip() not in (b"", b"--")]
    meta = json.loads(parts[0].split(b"\r\n\r\n", 1)[1].strip())
    data = parts[1].split(b"\r\n\r\n", 1)[1]
    return meta, data[:-2] if data.endswith(b"\r\n") else data


API = f"/bigquery/v2/projects/{PROJECT}"
TARGET = f"{API}/datasets/out/tables/suggested_links"


def _table(fake) -> BigQuerySuggestions:
    return BigQuerySuggestions(_client(fake.url), PROJECT, "out", location="EU")


@pytest.fixture
def fake():
    server = FakeBigQueryWrites()
    yield server
    server.close()


def test_replace_sends_a_parquet_load_job_to_a_staging_table_then_one_merge(fake, tmp_path):
    rows = _rows(n=7)
    assert _table(fake).replace("2025-02", "ledgerlink_matcher", "1", _staged(tmp_path, rows)) == 7
    routes = fake.routes()
    staging = next(b["tableReference"]["tableId"] for m, p, b in fake.requests if m == "POST" and "staging" in str(b))
    assert staging.startswith("suggested_links__staging_")
    assert routes == [
        ("GET", TARGET),  # not there yet: 404
        ("POST", f"{API}/datasets/out/tables"),  # the target, created with the suggestion schema
        ("POST", f"{API}/datasets/out/tables"),  # the staging table
        ("POST", f"/upload{API}/jobs"),  # the load job, multipart: job + Parquet bytes
        ("POST", f"{API}/jobs"),  # the MERGE
        ("GET", f"{API}/queries/{fake.requests[4][2]['jobReference']['jobId']}"),
        ("DELETE", f"{API}/datasets/out/tables/{staging}"),
    ]
    create_target, create_staging = fake.requests[1][2], fake.requests[2][2]
    schema = [
        {"name": c.name, "type": c.bigquery.split()[0], "mode": "REPEATED" if "REPEATED" in c.bigquery else "NULLABLE"}
        for c in COLUMNS
    ]
    assert create_target["schema"]["fields"] == schema and "expirationTime" not in create_target
    assert create_staging["schema"]["fields"] == schema
    expires = pd.Timestamp(int(create_staging["expirationTime"]), unit="ms", tz="UTC")
    assert pd.Timedelta(hours=23) < expires - pd.Timestamp.now(tz="UTC") <= pd.Timedelta(days=1)
    load = fake.requests[3][2]
    assert load["job"]["configuration"]["load"] == {
        "sourceFormat": "PARQUET",
        "writeDisposition": "WRITE_APPEND",
        "schema": {"fields": schema},
        "parquetOptions": {"enableListInference": True},
        "destinationTable": {"projectId": PROJECT, "datasetId": "out", "tableId": staging},
    }
    assert load["job"]["jobReference"]["location"] == "EU"
    uploaded = pq.read_table(io.BytesIO(load["bytes"])).to_pandas()
    pd.testing.assert_frame_equal(
        uploaded.drop(columns=["allocated_amount", "reasons"]),
        rows.drop(columns=["allocated_amount", "reasons"]),
        check_dtype=False,
    )
    assert [list(r) for r in uploaded["reasons"]] == list(rows["reasons"])
    assert [None if v is None else float(v) for v in uploaded["allocated_amount"]] == [
        None if v != v else v for v in rows["allocated_amount"]
    ]
    q = fake.requests[4][2]["configuration"]["query"]
    assert q["query"] == merge_sql(f"{PROJECT}.out.suggested_links", f"{PROJECT}.out.{staging}")
    assert q["useLegacySql"] is False and q["parameterMode"] == "NAMED"
    assert sorted(q["queryParameters"], key=lambda p: p["name"]) == [
        {"name": n, "parameterType": {"type": "STRING"}, "parameterValue": {"value": v}}
        for n, v in (("model_name", "ledgerlink_matcher"), ("model_version", "1"), ("month", "2025-02"))
    ]
    assert fake.requests[4][2]["jobReference"]["location"] == "EU"
    assert set(fake.tables) == {"suggested_links"}  # the staging table is gone


def test_the_merge_text_deletes_only_its_own_key_and_inserts_only_staged_rows_of_it():
    sql = merge_sql("p.d.suggested_links", "p.d.stage")
    assert sql.startswith("MERGE `p.d.suggested_links` AS t USING `p.d.stage` AS s ON FALSE ")
    assert (
        "WHEN NOT MATCHED BY SOURCE AND t.month = @month AND t.model_name = @model_name AND "
        "t.model_version = @model_version THEN DELETE" in sql
    )
    assert "WHEN NOT MATCHED BY TARGET AND s.month = @month AND s.model_name = @model_name" in sql


def test_a_second_run_finds_the_table_and_a_large_file_goes_up_resumably(tmp_path, monkeypatch):
    from google.cloud.bigquery import client as bq_client

    monkeypatch.setattr(bq_client, "_MAX_MULTIPART_SIZE", 1024)  # what a file over 5 MB does
    server = FakeBigQueryWrites(existing={"suggested_links": []})
    try:
        path = _staged(tmp_path, _rows(n=40))
        assert _table(server).replace("2025-02", "ledgerlink_matcher", "1", path) == 40
        assert [m for m, _ in server.routes()] == ["GET", "POST", "POST", "PUT", "POST", "GET", "DELETE"]
        assert server.routes()[:2] == [("GET", TARGET), ("POST", f"{API}/datasets/out/tables")]  # only the staging
        put = next(b for m, p, b in server.requests if m == "PUT")
        size = path.stat().st_size
        assert put["bytes"] == path.read_bytes() and put["range"] == f"bytes 0-{size - 1}/{size}"
        start = next(b for m, p, b in server.requests if m == "POST" and "uploadType=resumable" in p)
        assert start["job"]["configuration"]["load"]["sourceFormat"] == "PARQUET"
    finally:
        server.close()


@pytest.mark.parametrize("fail", ["load", "query"])
def test_a_failed_load_or_merge_changes_nothing_and_leaves_no_staging_table(tmp_path, fail):
    server = FakeBigQueryWrites(existing={"suggested_links": [{}] * 3}, fail=fail)
    try:
        with pytest.raises(Exception, match=f"{fail} failed"):
            _table(server).replace("2025-02", "ledgerlink_matcher", "1", _staged(tmp_path, _rows()))
        merges = [b for m, p, b in server.requests if m == "POST" and p.startswith(f"{API}/jobs")]
        assert len(merges) == (0 if fail == "load" else 1)  # a failed load never reaches the MERGE
        assert server.routes()[-1][0] == "DELETE" and set(server.tables) == {"suggested_links"}
        assert len(server.tables["suggested_links"]) == 3  # the only writer of the target is the MERGE
    finally:
        server.close()


def test_open_month_extraction_sends_the_sql_with_typed_parameters():
    jan, feb = tiny_month("2025-01", n=4), tiny_month("2025-02", n=4, start=100)
    answers = {
        "invoices": pd.concat([jan["invoices"].head(1), feb["invoices"]], ignore_index=True),
        "transfers": feb["transfers"],
        "links": feb["links"],
    }
    fake = FakeBigQuery(answers, types={"booked_at": "TIMESTAMP"})
    try:
        wh = BigQueryWarehouse(_client(fake.url), dataset="ds", location="EU", use_storage_api=False)
        got = wh.extract_open_month("2025-02", "x.status = 'untagged'", 90)
    finally:
        fake.close()
    jobs = {fake.table_for(b["configuration"]["query"]["query"]): b for m, p, b in fake.requests if m == "POST"}
    assert set(jobs) == {"invoices", "transfers"}
    for table, body in jobs.items():
        q = body["configuration"]["query"]
        assert q["query"] == open_month_sql(table, ColumnMap(), f"{PROJECT}.ds", "x.status = 'untagged'")
        params = {p["name"]: (p["parameterType"]["type"], p["parameterValue"]["value"]) for p in q["queryParameters"]}
        if table == "invoices":
            assert params == {
                "month": ("STRING", "2025-02"),
                "lookback_start": ("DATE", "2024-11-03"),  # 90 days before February
                "window_end": ("DATE", "2025-03-01"),
            }
        else:  # typed like the live booked_at column
            assert params["month"] == ("STRING", "2025-02") and params["window_start"][0] == "TIMESTAMP"
            assert params["window_end"][1].startswith("2025-03-01")
    month = check_open_month(got, "2025-02")
    assert len(month["transfers"]) == 4 and len(month["invoices"]) == 5


def test_reading_a_month_back_sends_the_month_as_a_parameter(tmp_path):
    rows = _rows(n=3)

    class Reader(FakeBigQueryWrites):
        def get(self, path):
            code, resp = super().get(path)
            if "queries" in urlparse(path).path.split("/"):
                resp["schema"] = {"fields": [f.to_api_repr() for f in _schema()]}
                resp["totalRows"] = str(len(rows))
                if "maxResults=0" not in path:
                    resp["rows"] = [{"f": [_cell(c, r[c]) for c in COLUMN_NAMES]} for _, r in rows.iterrows()]
            return code, resp

    server = Reader(existing={"suggested_links": []})
    try:
        got = _table(server).read("2025-02")
    finally:
        server.close()
    q = next(b for m, p, b in server.requests if m == "POST")["configuration"]["query"]
    assert q["query"] == f"SELECT * FROM `{PROJECT}.out.suggested_links` WHERE month = @month"
    assert q["queryParameters"] == [
        {"name": "month", "parameterType": {"type": "STRING"}, "parameterValue": {"value": "2025-02"}}
    ]
    assert list(got["transfer_id"]) == list(rows["transfer_id"]) and list(got["reasons"].iloc[0]) == rows["reasons"][0]


def _schema():
    from ledgerlink.data.bigquery_suggestions import bigquery_schema

    return bigquery_schema()


def _cell(column: str, value) -> dict:
    if column == "reasons":
        return {"v": [{"v": s} for s in value]}
    if value is None or (isinstance(value, float) and value != value):
        return {"v": None}
    if column == "suggested_at":
        return {"v": str(int(value.timestamp() * 1_000_000))}
    return {"v": str(value)}


def test_a_missing_dataset_is_named_with_what_to_do(tmp_path):
    class NoDataset(FakeBigQueryWrites):
        def create_table(self, body):
            message = "Not found: Dataset ledgerlink-test:out"
            return 404, {"error": {"code": 404, "message": message, "status": "NOT_FOUND"}}

    server = NoDataset()
    try:
        with pytest.raises(SuggestionTableError, match="Create the dataset once.*ledgerlink-test:out.*nothing was"):
            _table(server).replace("2025-02", "ledgerlink_matcher", "1", _staged(tmp_path, _rows()))
        assert [m for m, _ in server.routes()] == ["GET", "POST"]  # no load job, no MERGE
    finally:
        server.close()
