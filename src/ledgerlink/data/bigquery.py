"""The production warehouse: BigQuery, queried with the same SQL text as the embedded DuckDB one.

``extraction_sql``/``months_sql`` (warehouse.py) are sent unchanged; the month travels as named query
parameters: ``@month`` (STRING) and the window ``@window_start``/``@window_end``, typed like the live
date column (DATE, DATETIME or TIMESTAMP), because BigQuery does not compare a TIMESTAMP with a DATE. Before a query the
live schema (``client.get_table``) is checked: a missing table, a renamed column or a column of the
wrong type stops the run with a ``ContractError`` naming the table and column, not a SQL error.

Results are read through the BigQuery Storage API when it can be used (much faster for big months),
and over REST otherwise: when google-cloud-bigquery-storage is not installed, when its client cannot
be created, or when the read session is refused (a service account without
``bigquery.readsessions.create``). ``last_read_path`` says which one the last read took.
"""

from __future__ import annotations

import logging
from typing import Any

import pandas as pd

from .contract import MONTH_DATE, TABLES, ColumnMap, ContractError
from .warehouse import (
    check_schema,
    checked_months,
    extraction_sql,
    months_sql,
    open_month_parameters,
    open_month_sql,
    query_parameters,
)

log = logging.getLogger(__name__)

# BigQuery column types each contract kind accepts (REST reports legacy names: FLOAT, INTEGER).
ACCEPTED_TYPES: dict[str, frozenset[str]] = {
    "id": frozenset({"STRING"}),
    "str": frozenset({"STRING"}),
    "currency": frozenset({"STRING"}),
    "month": frozenset({"STRING"}),
    "date": frozenset({"DATE", "DATETIME", "TIMESTAMP"}),
    "money": frozenset({"NUMERIC", "BIGNUMERIC", "FLOAT", "FLOAT64", "INTEGER", "INT64"}),
}


def check_types(table: str, fields: list[Any], columns: ColumnMap) -> None:
    """Raise ContractError when a mapped column has a BigQuery type its contract kind cannot hold."""
    by_name = {f.name.lower(): f for f in fields}
    for col in TABLES[table]:
        if col.name not in columns.present(table):
            continue
        wanted = columns.column(table, col.name)
        field = by_name.get(wanted.lower())
        if field is None:
            continue  # check_schema reports missing columns
        ftype, mode = (field.field_type or "").upper(), (field.mode or "NULLABLE").upper()
        if mode == "REPEATED" or ftype not in ACCEPTED_TYPES[col.kind]:
            found = f"{mode} {ftype}" if mode == "REPEATED" else ftype
            raise ContractError(
                columns.table(table),
                wanted,
                f"has BigQuery type {found}, but '{col.name}' is a {col.kind} column and needs one of "
                f"{sorted(ACCEPTED_TYPES[col.kind])}. Cast it in a view, or map another column in warehouse.columns.",
            )


def _canonical_frame(table: str, df: pd.DataFrame) -> pd.DataFrame:
    """Plain pandas dtypes: NUMERIC arrives as Decimal objects and DATE as datetime.date objects."""
    kinds = {c.name: c.kind for c in TABLES[table]}
    out = df.copy()
    for name in out.columns:
        kind = kinds.get(name)
        if kind == "money" and not pd.api.types.is_float_dtype(out[name]):
            out[name] = pd.to_numeric(
                out[name].map(lambda v: None if v is None or v != v else float(v)), errors="coerce"
            ).astype("float64")
        elif kind == "date" and not pd.api.types.is_datetime64_any_dtype(out[name]):
            out[name] = pd.to_datetime(out[name].astype(object), errors="coerce")
    return out


class BigQueryWarehouse:
    """The contract tables in one BigQuery dataset; same interface as ``DuckDBWarehouse``.

    ``client`` is a ``google.cloud.bigquery.Client`` (injectable for tests); ``project`` is the
    project holding the dataset, which may differ from the client's billing project.
    ``bqstorage_client`` is a ``BigQueryReadClient`` to use; by default one is created on first
    read when ``use_storage_api`` is on.
    """

    def __init__(
        self,
        client,
        dataset: str,
        columns: ColumnMap | None = None,
        project: str | None = None,
        location: str | None = None,
        bqstorage_client=None,
        use_storage_api: bool = True,
    ):
        self.client, self.dataset = client, dataset
        self.project = project or client.project
        self.location = location or getattr(client, "location", None)
        self.columns = columns or ColumnMap()
        self.use_storage_api = use_storage_api
        self._bqstorage = bqstorage_client
        self._bqstorage_unavailable = False
        self.last_read_path: str | None = None  # "storage" | "rest"

    @classmethod
    def from_config(cls, wcfg: dict, columns: ColumnMap | None = None) -> "BigQueryWarehouse":
        """Build from the config's ``warehouse:`` section (project, dataset, location; credentials: ADC)."""
        from google.cloud import bigquery

        project = wcfg.get("project")
        if not project:
            raise ValueError(
                "warehouse.project must name the GCP project of the BigQuery dataset (warehouse.kind: bigquery)"
            )
        client = bigquery.Client(project=wcfg.get("billing_project") or project, location=wcfg.get("location"))
        return cls(
            client,
            dataset=wcfg.get("dataset") or "ledgerlink",
            columns=columns,
            project=project,
            location=wcfg.get("location"),
            use_storage_api=wcfg.get("use_storage_api", True),
        )

    # -- schema ---------------------------------------------------------------------------------
    @property
    def dataset_ref(self) -> str:
        return f"{self.project}.{self.dataset}"

    def table_id(self, table: str) -> str:
        return f"{self.dataset_ref}.{self.columns.table(table)}"

    def _get_table(self, table: str):
        from google.api_core.exceptions import Forbidden, NotFound

        table_id = self.table_id(table)
        try:
            return self.client.get_table(table_id)
        except NotFound as exc:
            raise ContractError(
                self.columns.table(table),
                None,
                f"table `{table_id}` not found in BigQuery ({exc.message}). Check warehouse.project, "
                "warehouse.dataset and warehouse.columns.tables in the config.",
            ) from exc
        except Forbidden as exc:
            raise PermissionError(
                f"no access to BigQuery table `{table_id}` ({exc.message}); the runner's service account needs "
                "roles/bigquery.dataViewer on the dataset and roles/bigquery.jobUser on the project"
            ) from exc

    def live_columns(self, table: str) -> list[str]:
        return [f.name for f in self._get_table(table).schema]

    def check_table(self, table: str) -> dict[str, str]:
        """Check names and types of the live table; return {warehouse column: BigQuery type}."""
        fields = list(self._get_table(table).schema)
        check_schema(table, [f.name for f in fields], self.columns)
        check_types(table, fields, self.columns)
        return {f.name.lower(): (f.field_type or "").upper() for f in fields}

    # -- queries --------------------------------------------------------------------------------
    def _query(self, sql: str, parameters: list | None = None):
        from google.cloud import bigquery

        job_config = bigquery.QueryJobConfig(query_parameters=parameters) if parameters else bigquery.QueryJobConfig()
        return self.client.query(sql, job_config=job_config, location=self.location)

    def _storage_client(self):
        if self._bqstorage is not None or self._bqstorage_unavailable:
            return self._bqstorage
        try:
            from google.cloud import bigquery_storage

            self._bqstorage = bigquery_storage.BigQueryReadClient(
                credentials=getattr(self.client, "_credentials", None)
            )
        except Exception as exc:  # not installed, or no credentials for it
            log.info("BigQuery Storage API unavailable (%s); reading results over REST", exc)
            self._bqstorage_unavailable = True
        return self._bqstorage

    def _read(self, job) -> pd.DataFrame:
        """Rows of a finished query job: Storage API first, REST when that cannot be used."""
        from google.api_core.exceptions import GoogleAPICallError

        bqstorage = self._storage_client() if self.use_storage_api else None
        if bqstorage is not None:
            rows = job.result()
            try:
                # The library itself keeps small, already fetched results on REST; record its choice.
                used_storage = getattr(rows, "_should_use_bqstorage", lambda *a: True)(bqstorage, False)
                df = rows.to_arrow(bqstorage_client=bqstorage).to_pandas()
                self.last_read_path = "storage" if used_storage else "rest"
                return df
            except GoogleAPICallError as exc:
                log.warning(
                    "BigQuery Storage API read refused (%s); reading over REST from now on. Grant "
                    "roles/bigquery.readSessionUser to use the faster path.",
                    exc,
                )
                self._bqstorage, self._bqstorage_unavailable = None, True
        self.last_read_path = "rest"
        return job.result().to_arrow(create_bqstorage_client=False).to_pandas()

    def months(self) -> list[str]:
        check_schema("transfers", self.live_columns("transfers"), self.columns)
        df = self._read(self._query(months_sql(self.columns, self.dataset_ref)))
        return checked_months([m for m in df["month"] if m is not None and m == m], self.columns)

    def _parameters(self, table: str, values: dict, live: dict[str, str]) -> list:
        """Query parameters: ``month`` a STRING, every other one a date typed like ``table``'s month date column."""
        from google.cloud import bigquery

        params = []
        for name, value in values.items():
            if name == "month":
                params.append(bigquery.ScalarQueryParameter(name, "STRING", value))
                continue
            ptype = live.get(self.columns.column(table, MONTH_DATE[table]).lower(), "DATE")
            bound = value if ptype == "DATE" else pd.Timestamp(value).to_pydatetime()
            params.append(bigquery.ScalarQueryParameter(name, ptype, bound))
        return params

    def extract_month(self, month: str) -> dict[str, pd.DataFrame]:
        live = {t: self.check_table(t) for t in TABLES}
        out = {}
        for table in TABLES:
            params = self._parameters(table, query_parameters(table, month), live[table])
            job = self._query(extraction_sql(table, self.columns, self.dataset_ref), params)
            out[table] = _canonical_frame(table, self._read(job))
        for table in ("invoices", "transfers"):
            if out[table].empty:
                raise ContractError(
                    self.columns.table(table),
                    None,
                    f"month {month} has no rows in `{self.table_id(table)}` (none with that month, none dated "
                    "in it); is the month loaded yet?",
                )
        return out

    def extract_open_month(
        self, month: str, open_transfers: str = "TRUE", lookback_days: int = 180
    ) -> dict[str, pd.DataFrame]:
        """The open month's ``transfers`` and the ``invoices`` open then (``open_month_sql``)."""
        live = {t: self.check_table(t) for t in TABLES}
        out = {}
        for table in ("invoices", "transfers"):
            values = open_month_parameters(table, month, lookback_days)
            sql = open_month_sql(table, self.columns, self.dataset_ref, open_transfers)
            out[table] = _canonical_frame(
                table, self._read(self._query(sql, self._parameters(table, values, live[table])))
            )
        return out
