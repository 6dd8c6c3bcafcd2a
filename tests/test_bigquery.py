"""BigQueryWarehouse against the real google-cloud-bigquery client, offline.

Two local endpoints stand in for BigQuery (design.md, "Measured facts"):
- crucible-emulator (``crucible serve --dialect bigquery``) answers the real client for DDL, DML
  INSERT, get_table and plain queries, so schema checks, months and error messages run against it.
- crucible rejects query parameters, so the parameterised extraction runs against a small
  ``http.server`` that records the exact REST requests the real client sends (jobs.insert, then
  getQueryResults) and answers like BigQuery does. A local gRPC server plays the BigQuery Storage
  Read API for the fast path, and refuses it for the fallback.
"""

import copy
import json
import shutil
import subprocess
import sys
import threading
import time
import urllib.request
import warnings
from concurrent import futures
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import pandas as pd
import pytest
from google.auth.credentials import AnonymousCredentials  # noqa: E402
from google.cloud import bigquery  # noqa: E402

from ledgerlink.data.bigquery import BigQueryWarehouse
from ledgerlink.data.contract import TABLES, ColumnMap, ContractError, check_month
from ledgerlink.data.warehouse import extraction_sql, query_parameters
from ledgerlink.deploy.local import free_port
from tests.helpers import tiny_month

pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning")

PROJECT = "ledgerlink-test"
BQ_TYPES = {
    "id": "STRING",
    "str": "STRING",
    "currency": "STRING",
    "month": "STRING",
    "date": "DATE",
    "money": "NUMERIC",
}


def _client(url: str):
    return bigquery.Client(project=PROJECT, credentials=AnonymousCredentials(), client_options={"api_endpoint": url})


def _ddl(table_id: str, table: str, override: dict | None = None) -> str:
    override = override or {}
    cols = []
    for c in TABLES[table]:
        name, typ = override.get(c.name, (c.name, BQ_TYPES[c.kind]))
        cols.append(f"`{name}` {typ}")
    return f"CREATE TABLE `{table_id}` ({', '.join(cols)})"


def _literal(value, kind: str) -> str:
    if value is None or value != value:
        return "NULL"
    if kind == "date":
        return f"DATE '{pd.Timestamp(value).date().isoformat()}'"
    if kind == "money":
        return f"NUMERIC '{value}'"
    return "'" + str(value).replace("\\", "\\\\").replace("'", "\\'") + "'"


def _insert(table_id: str, table: str, df: pd.DataFrame) -> str:
    cols = [c for c in TABLES[table] if c.name in df.columns]
    rows = ["(" + ", ".join(_literal(r[c.name], c.kind) for c in cols) + ")" for _, r in df.iterrows()]
    return f"INSERT INTO `{table_id}` ({', '.join(c.name for c in cols)}) VALUES {', '.join(rows)}"


# -- crucible -------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def crucible(tmp_path_factory):
    exe = Path(sys.executable).with_name("crucible")
    exe = str(exe) if exe.exists() else shutil.which("crucible")
    assert exe, (
        "crucible-emulator is not installed (pip install 'crucible-emulator[server]'); it is the offline BigQuery"
    )
    port = free_port()
    # Its log goes to a file, never to a pipe nobody reads: a full pipe blocks the server.
    log_path = tmp_path_factory.mktemp("crucible") / "crucible.log"
    log = open(log_path, "wb")
    proc = subprocess.Popen(
        [exe, "serve", "--dialect", "bigquery", "--host", "127.0.0.1", "--port", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            urllib.request.urlopen(url + "/_crucible/health", timeout=1).read()
            break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                log.close()
                pytest.fail(f"crucible could not start on {url}: {log_path.read_text()[-500:]}")
            time.sleep(0.1)
    client = _client(url)
    # "ds": the contract tables with two months; "renamed" and "badtype": one broken table each.
    client.create_dataset("ds")
    for i, month in enumerate(("2025-01", "2025-02")):
        data = tiny_month(month, n=5, start=100 * i)
        for table in TABLES:
            if i == 0:
                client.query(_ddl(f"{PROJECT}.ds.{table}", table)).result()
            client.query(_insert(f"{PROJECT}.ds.{table}", table, data[table])).result()
    for dataset, table, override in (
        ("renamed", "transfers", {"booked_at": ("booking_date", "DATE")}),
        ("badtype", "invoices", {"amount": ("amount", "STRING")}),
    ):
        client.create_dataset(dataset)
        for t in TABLES:
            client.query(_ddl(f"{PROJECT}.{dataset}.{t}", t, override if t == table else None)).result()
    yield url
    proc.terminate()
    proc.wait(timeout=10)
    log.close()


def test_months_and_schema_come_from_the_live_tables(crucible):
    wh = BigQueryWarehouse(_client(crucible), dataset="ds", use_storage_api=False)
    assert wh.months() == ["2025-01", "2025-02"]
    assert set(wh.live_columns("transfers")) == {c.name for c in TABLES["transfers"]}
    types = wh.check_table("invoices")
    assert types["amount"] == "NUMERIC" and types["issued_at"] == "DATE"


def test_missing_table_names_the_table(crucible):
    wh = BigQueryWarehouse(
        _client(crucible),
        dataset="ds",
        columns=ColumnMap(tables={"transfers": "bank_transfers"}),
        use_storage_api=False,
    )
    with pytest.raises(ContractError, match=rf"`{PROJECT}.ds.bank_transfers` not found") as err:
        wh.months()
    assert err.value.table == "bank_transfers"


def test_renamed_column_names_table_and_column_and_the_mapping_fixes_it(crucible):
    wh = BigQueryWarehouse(_client(crucible), dataset="renamed", use_storage_api=False)
    with pytest.raises(ContractError, match="booking_date") as err:
        wh.extract_month("2025-01")  # fails at the schema check, before any query is sent
    assert (err.value.table, err.value.column) == ("transfers", "booked_at")
    assert "warehouse.columns" in str(err.value)
    fixed = BigQueryWarehouse(
        _client(crucible),
        dataset="renamed",
        use_storage_api=False,
        columns=ColumnMap(columns={"transfers": {"booked_at": "booking_date"}}),
    )
    assert fixed.check_table("transfers")["booking_date"] == "DATE"


def test_wrong_column_type_names_the_type(crucible):
    wh = BigQueryWarehouse(_client(crucible), dataset="badtype", use_storage_api=False)
    with pytest.raises(ContractError, match="type STRING.*money column") as err:
        wh.extract_month("2025-01")
    assert (err.value.table, err.value.column) == ("invoices", "amount")


# -- the parameterised extraction: a recording REST endpoint -------------------------------------
class FakeBigQuery:
    """Answers jobs.insert / getQueryResults / tables.get like BigQuery, and records every request.

    ``answers`` maps a table name to the DataFrame a query on it returns (chosen by the FROM clause).
    """

    def __init__(self, answers: dict[str, pd.DataFrame], types: dict[str, str] | None = None):
        self.answers, self.requests, self.jobs = answers, [], {}
        self.types = types or {}  # column -> BigQuery type, overriding BQ_TYPES
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _send(self, obj, code=200):
                body = json.dumps(obj).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                outer.requests.append(("POST", self.path, copy.deepcopy(body)))
                self._send(outer.insert_job(body))

            def do_GET(self):
                outer.requests.append(("GET", self.path, None))
                code, obj = outer.get(self.path)
                self._send(obj, code)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def type_of(self, column: str) -> str:
        kinds = {c.name: c.kind for cols in TABLES.values() for c in cols}
        return self.types.get(column, BQ_TYPES[kinds[column]])

    def schema(self, df: pd.DataFrame) -> dict:
        return {"fields": [{"name": c, "type": self.type_of(c), "mode": "NULLABLE"} for c in df.columns]}

    def cell(self, column: str, v) -> dict:
        if v is None or v != v:
            return {"v": None}
        if self.type_of(column) == "TIMESTAMP":  # the client asks for int64 microseconds
            return {"v": str(int(pd.Timestamp(v).tz_localize("UTC").timestamp() * 1_000_000))}
        return {"v": str(v.date()) if isinstance(v, pd.Timestamp) else str(v)}

    def table_for(self, sql: str) -> str:
        return next(t for t in ("links", "invoices", "transfers") if f".{t}` AS x" in sql)

    def insert_job(self, body: dict) -> dict:
        ref = dict(body["jobReference"])
        table = self.table_for(body["configuration"]["query"]["query"])
        self.jobs[ref["jobId"]] = table
        config = copy.deepcopy(body["configuration"])
        config["query"]["destinationTable"] = {"projectId": PROJECT, "datasetId": "_anon", "tableId": f"anon_{table}"}
        return {
            "kind": "bigquery#job",
            "id": f"{PROJECT}:{ref.get('location')}.{ref['jobId']}",
            "jobReference": ref,
            "configuration": config,
            "status": {"state": "DONE"},
            "statistics": {"creationTime": "1", "startTime": "1", "endTime": "2", "query": {"statementType": "SELECT"}},
        }

    def get(self, path: str):
        url = urlparse(path)
        query = parse_qs(url.query)
        parts = url.path.split("/")
        if "queries" in parts:  # getQueryResults
            job_id = parts[-1]
            df = self.answers[self.jobs[job_id]]
            resp = {
                "kind": "bigquery#getQueryResultsResponse",
                "jobComplete": True,
                "jobReference": {"projectId": PROJECT, "jobId": job_id, "location": "EU"},
                "schema": self.schema(df),
                "totalRows": str(len(df)),
            }
            if query.get("maxResults") != ["0"]:
                resp["rows"] = [
                    {"f": [self.cell(c, v) for c, v in zip(df.columns, row)]} for row in df.itertuples(index=False)
                ]
            return 200, resp
        if "tables" in parts:  # tables.get: the schema check
            table = parts[-1]
            df = self.answers[table]
            return 200, {
                "kind": "bigquery#table",
                "tableReference": {"projectId": PROJECT, "datasetId": parts[-3], "tableId": table},
                "schema": self.schema(df),
                "numRows": str(len(df)),
            }
        return 404, {"error": {"code": 404, "message": f"Not found: {path}", "status": "NOT_FOUND"}}

    def row_reads(self) -> list[str]:
        return [p for m, p, _ in self.requests if m == "GET" and "/queries/" in p and "maxResults=0" not in p]

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def month_data():
    return tiny_month("2025-01", n=6)


@pytest.fixture
def fake_bq(month_data):
    fake = FakeBigQuery(month_data)
    yield fake
    fake.close()


def _warehouse(fake, **kw) -> BigQueryWarehouse:
    return BigQueryWarehouse(_client(fake.url), dataset="ds", location="EU", **kw)


def test_extraction_sends_our_sql_with_a_date_window(fake_bq, month_data):
    wh = _warehouse(fake_bq, use_storage_api=False)
    frames = wh.extract_month("2025-01")
    jobs = [body for method, path, body in fake_bq.requests if method == "POST"]
    assert [p for m, p, _ in fake_bq.requests if m == "POST"] == [
        f"/bigquery/v2/projects/{PROJECT}/jobs?prettyPrint=false"
    ] * 3
    for table, body in zip(TABLES, jobs):
        q = body["configuration"]["query"]
        assert q["query"] == extraction_sql(table, ColumnMap(), f"{PROJECT}.ds")
        assert q["useLegacySql"] is False and q["parameterMode"] == "NAMED"
        month = {"name": "month", "parameterType": {"type": "STRING"}, "parameterValue": {"value": "2025-01"}}
        window = [
            {"name": "window_end", "parameterType": {"type": "DATE"}, "parameterValue": {"value": "2025-02-01"}},
            {"name": "window_start", "parameterType": {"type": "DATE"}, "parameterValue": {"value": "2025-01-01"}},
        ]
        # links come by their own month or their transfer's; invoices and transfers also by their date
        expected = [month] if table == "links" else [month, *window]
        assert sorted(q["queryParameters"], key=lambda p: p["name"]) == expected
        assert body["jobReference"]["location"] == "EU"
    # the frames satisfy the contract and hold what the warehouse holds
    checked = check_month(frames, "2025-01")
    assert frames["invoices"]["amount"].dtype == "float64"
    pd.testing.assert_series_equal(checked["transfers"]["amount"], month_data["transfers"]["amount"], check_names=False)
    assert list(checked["links"]["invoice_id"]) == list(month_data["links"]["invoice_id"])
    assert wh.last_read_path == "rest" and len(fake_bq.row_reads()) == 3


def test_window_parameters_follow_the_live_column_type(month_data):
    fake = FakeBigQuery(month_data, types={"booked_at": "TIMESTAMP"})
    try:
        frames = _warehouse(fake, use_storage_api=False).extract_month("2025-01")
    finally:
        fake.close()
    params = {}
    for _, _, body in (r for r in fake.requests if r[0] == "POST"):
        q = body["configuration"]["query"]
        params[fake.table_for(q["query"])] = {
            p["name"]: (p["parameterType"]["type"], p["parameterValue"]["value"]) for p in q["queryParameters"]
        }
    assert params["invoices"]["window_start"] == ("DATE", "2025-01-01")
    assert params["transfers"]["window_start"][0] == "TIMESTAMP"
    assert params["transfers"]["window_start"][1].startswith("2025-01-01")
    assert params["transfers"]["window_end"][1].startswith("2025-02-01")
    assert params["links"] == {"month": ("STRING", "2025-01")}  # links follow months, not dates
    checked = check_month(frames, "2025-01")
    assert (checked["transfers"]["booked_at"] == month_data["transfers"]["booked_at"]).all()


def test_empty_month_is_a_clear_error(month_data):
    empty = {t: df.iloc[0:0] for t, df in month_data.items()}
    fake = FakeBigQuery(empty)
    try:
        with pytest.raises(ContractError, match=rf"month 2025-03 has no rows in `{PROJECT}.ds.invoices`"):
            _warehouse(fake, use_storage_api=False).extract_month("2025-03")
    finally:
        fake.close()


# -- the Storage Read API: a local gRPC server ----------------------------------------------------
class FakeStorageRead:
    """BigQuery Storage Read API over insecure gRPC: serves the fake's answers as Arrow, or refuses."""

    def __init__(self, answers: dict[str, pd.DataFrame], refuse: bool = False):
        import grpc
        import pyarrow as pa
        from google.cloud.bigquery_storage_v1 import types

        self.calls = []

        def arrow(table: str) -> "pa.RecordBatch":
            df = answers[table]
            kinds = {c.name: c.kind for c in TABLES[table]}
            arrays = []
            for col in df.columns:
                kind = kinds[col]
                if kind == "date":
                    arrays.append(pa.array([v.date() for v in df[col]], pa.date32()))
                elif kind == "money":
                    from decimal import Decimal

                    arrays.append(pa.array([Decimal(str(v)) for v in df[col]], pa.decimal128(38, 9)))
                else:
                    arrays.append(pa.array([None if v != v else v for v in df[col]], pa.string()))
            return pa.RecordBatch.from_arrays(arrays, names=list(df.columns))

        def create_read_session(request, context):
            self.calls.append(("CreateReadSession", request.read_session.table))
            if refuse:
                context.abort(grpc.StatusCode.PERMISSION_DENIED, "bigquery.readsessions.create denied")
            table = request.read_session.table.rsplit("anon_", 1)[-1]
            batch = arrow(table)
            return types.ReadSession(
                name=f"sessions/{table}",
                table=request.read_session.table,
                data_format=types.DataFormat.ARROW,
                arrow_schema=types.ArrowSchema(serialized_schema=batch.schema.serialize().to_pybytes()),
                streams=[types.ReadStream(name=f"sessions/{table}/streams/0")],
            )

        def read_rows(request, context):
            self.calls.append(("ReadRows", request.read_stream))
            batch = arrow(request.read_stream.split("/")[1])
            yield types.ReadRowsResponse(  # like the real API, the first response carries the schema
                row_count=batch.num_rows,
                arrow_schema=types.ArrowSchema(serialized_schema=batch.schema.serialize().to_pybytes()),
                arrow_record_batch=types.ArrowRecordBatch(
                    serialized_record_batch=batch.serialize().to_pybytes(), row_count=batch.num_rows
                ),
            )

        handler = grpc.method_handlers_generic_handler(
            "google.cloud.bigquery.storage.v1.BigQueryRead",
            {
                "CreateReadSession": grpc.unary_unary_rpc_method_handler(
                    create_read_session,
                    request_deserializer=types.CreateReadSessionRequest.deserialize,
                    response_serializer=types.ReadSession.serialize,
                ),
                "ReadRows": grpc.unary_stream_rpc_method_handler(
                    read_rows,
                    request_deserializer=types.ReadRowsRequest.deserialize,
                    response_serializer=types.ReadRowsResponse.serialize,
                ),
            },
        )
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
        self.server.add_generic_rpc_handlers((handler,))
        self.port = self.server.add_insecure_port("127.0.0.1:0")
        self.server.start()

    def client(self):
        import grpc
        from google.cloud import bigquery_storage
        from google.cloud.bigquery_storage_v1.services.big_query_read.transports import BigQueryReadGrpcTransport

        transport = BigQueryReadGrpcTransport(channel=grpc.insecure_channel(f"127.0.0.1:{self.port}"))
        return bigquery_storage.BigQueryReadClient(transport=transport)

    def close(self):
        self.server.stop(None)


@pytest.mark.parametrize("refuse", [False, True], ids=["storage-api", "storage-refused-falls-back-to-rest"])
def test_results_are_read_through_the_storage_api_or_fall_back_to_rest(fake_bq, month_data, refuse):
    import google.cloud.bigquery_storage  # noqa: F401

    storage = FakeStorageRead(month_data, refuse=refuse)
    try:
        wh = _warehouse(fake_bq, bqstorage_client=storage.client())
        frames = wh.extract_month("2025-01")
    finally:
        storage.close()
    sessions = [arg for name, arg in storage.calls if name == "CreateReadSession"]
    tables = [f"projects/{PROJECT}/datasets/_anon/tables/anon_{t}" for t in TABLES]
    if refuse:  # asked once, then REST for the rest of the run
        assert sessions == tables[:1]
        assert wh.last_read_path == "rest" and len(fake_bq.row_reads()) == 3
    else:
        assert sessions == tables
        assert wh.last_read_path == "storage" and fake_bq.row_reads() == []
        assert [n for n, _ in storage.calls].count("ReadRows") == 3
    checked = check_month(frames, "2025-01")
    pd.testing.assert_series_equal(checked["invoices"]["amount"], month_data["invoices"]["amount"], check_names=False)
    assert (checked["transfers"]["booked_at"] == month_data["transfers"]["booked_at"]).all()


def test_without_the_storage_package_results_come_over_rest(fake_bq, month_data, monkeypatch):
    monkeypatch.setitem(sys.modules, "google.cloud.bigquery_storage", None)  # as if not installed
    wh = _warehouse(fake_bq)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        frames = wh.extract_month("2025-01")
    assert wh.last_read_path == "rest" and len(fake_bq.row_reads()) == 3
    assert len(frames["transfers"]) == len(month_data["transfers"])


def test_the_extraction_sql_is_bigquery_that_selects_each_month_exactly(crucible):
    """crucible rejects query parameters, so the parameters are inlined as literals here: the text is the same
    BigQuery Standard SQL the real warehouse gets, and each month returns exactly its rows."""
    client = _client(crucible)
    for month, start in (("2025-01", 0), ("2025-02", 100)):
        expected = tiny_month(month, n=5, start=start)
        window = {"month": f"'{month}'"} | {
            k: f"DATE '{v.isoformat()}'" for k, v in query_parameters("invoices", month).items() if k != "month"
        }
        for table in TABLES:
            sql = extraction_sql(table, ColumnMap(), f"{PROJECT}.ds")
            for name, literal in sorted(window.items(), key=lambda kv: -len(kv[0])):
                sql = sql.replace(f"@{name}", literal)
            got = client.query(sql).result().to_arrow(create_bqstorage_client=False).to_pandas()
            key = "transfer_id" if table != "invoices" else "invoice_id"
            assert sorted(got[key]) == sorted(expected[table][key]), (month, table)
