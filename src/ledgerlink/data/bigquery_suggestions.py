"""``suggested_links`` on BigQuery: a load job from the staged Parquet file, then one atomic ``MERGE``.

BigQuery cannot put a load job inside a transaction, so the rows travel in two steps:

1. a load job (``sourceFormat: PARQUET``, list inference on so ``reasons`` arrives as ``ARRAY<STRING>``) fills a
   fresh staging table ``<table>__staging_<id>`` that expires by itself after a day;
2. one ``MERGE`` (``merge_sql``) deletes the target's rows of the same (month, model_name, model_version) and
   inserts the staged ones. A single DML statement is atomic: readers see the old rows or the new ones, never
   both or neither, and a failed MERGE changes nothing.

A failure in step 1 sends no DML at all; either way the staging table is deleted after (or expires, if the
process died). The target is created on first use; an existing table of that name with other columns is
refused (``check_columns``), never altered. The runner's service account needs ``roles/bigquery.dataEditor``
on the suggestions dataset (only there: the contract tables can stay read-only).
"""

from __future__ import annotations

import datetime as dt
import uuid
from pathlib import Path

import pandas as pd

from .suggestions import COLUMN_NAMES, COLUMNS, SuggestionTableError, check_columns, empty_frame

STAGING_TTL = dt.timedelta(days=1)


def bigquery_schema():
    """The columns as BigQuery fields. All NULLABLE (``reasons`` REPEATED): the rows are checked where they are made
    (``suggestion_rows``), and a REQUIRED column would make every later schema change a table rewrite."""
    from google.cloud import bigquery

    fields = []
    for c in COLUMNS:
        kind, _, repeated = c.bigquery.partition(" ")
        fields.append(bigquery.SchemaField(c.name, kind, mode="REPEATED" if repeated else "NULLABLE"))
    return fields


def merge_sql(target: str, staging: str) -> str:
    """Replace the target's rows of (@month, @model_name, @model_version) with the staging table's, atomically."""
    key = "{a}.month = @month AND {a}.model_name = @model_name AND {a}.model_version = @model_version"
    names = ", ".join(f"`{n}`" for n in COLUMN_NAMES)
    values = ", ".join(f"s.`{n}`" for n in COLUMN_NAMES)
    return (
        f"MERGE `{target}` AS t USING `{staging}` AS s ON FALSE "
        f"WHEN NOT MATCHED BY SOURCE AND {key.format(a='t')} THEN DELETE "
        f"WHEN NOT MATCHED BY TARGET AND {key.format(a='s')} THEN INSERT ({names}) VALUES ({values})"
    )


def _live_types(table) -> dict[str, str]:
    """{column: type as in ``COLUMNS``} of a live table (REST reports FLOAT for FLOAT64)."""
    out = {}
    for f in table.schema:
        kind = f.field_type.upper()
        kind = {"FLOAT": "FLOAT64", "INTEGER": "INT64", "BOOLEAN": "BOOL"}.get(kind, kind)
        out[f.name] = f"{kind} REPEATED" if (f.mode or "").upper() == "REPEATED" else kind
    return out


class BigQuerySuggestions:
    """``project.dataset.table`` on BigQuery; ``client`` a ``google.cloud.bigquery.Client`` (injectable for tests)."""

    def __init__(self, client, project: str, dataset: str, table: str = "suggested_links", location: str | None = None):
        self.client, self.project, self.dataset, self.table = client, project, dataset, table
        self.location = location or getattr(client, "location", None)

    @classmethod
    def from_config(cls, wcfg: dict, dataset: str, table: str) -> "BigQuerySuggestions":
        from google.cloud import bigquery

        client = bigquery.Client(project=wcfg.get("billing_project") or wcfg["project"], location=wcfg.get("location"))
        return cls(client, wcfg["project"], dataset, table, wcfg.get("location"))

    @property
    def name(self) -> str:
        return f"{self.project}.{self.dataset}.{self.table}"

    def _target(self):
        """The target table, created when missing; an existing one must have exactly the suggestion columns."""
        from google.api_core.exceptions import NotFound
        from google.cloud import bigquery

        try:
            table = self.client.get_table(self.name)
        except NotFound:
            try:
                table = self.client.create_table(bigquery.Table(self.name, schema=bigquery_schema()), exists_ok=True)
            except NotFound as exc:
                raise SuggestionTableError(
                    f"cannot create `{self.name}`: {exc.message}. Create the dataset once (bq mk --location=... "
                    f"{self.project}:{self.dataset}) or point suggest.dataset at an existing one; nothing was written"
                ) from exc
        check_columns(f"`{self.name}`", _live_types(table), "bigquery")
        return table

    def replace(self, month: str, model_name: str, model_version: str, parquet: Path) -> int:
        """Load ``parquet`` into a staging table, then MERGE it over the rows of (month, model_name, model_version)."""
        from google.cloud import bigquery

        self._target()
        staging_name = f"{self.project}.{self.dataset}.{self.table}__staging_{uuid.uuid4().hex[:12]}"
        staging = bigquery.Table(staging_name, schema=bigquery_schema())
        staging.expires = dt.datetime.now(dt.timezone.utc) + STAGING_TTL
        self.client.create_table(staging)
        try:
            config = bigquery.LoadJobConfig(
                source_format=bigquery.SourceFormat.PARQUET,
                write_disposition=bigquery.WriteDisposition.WRITE_APPEND,
                schema=bigquery_schema(),
            )
            options = bigquery.ParquetOptions()
            options.enable_list_inference = True
            config.parquet_options = options
            size = Path(parquet).stat().st_size
            with open(parquet, "rb") as f:
                load = self.client.load_table_from_file(
                    f, staging_name, size=size, job_config=config, location=self.location
                )
            loaded = load.result()
            params = [
                bigquery.ScalarQueryParameter("month", "STRING", month),
                bigquery.ScalarQueryParameter("model_name", "STRING", model_name),
                bigquery.ScalarQueryParameter("model_version", "STRING", str(model_version)),
            ]
            job = self.client.query(
                merge_sql(self.name, staging_name),
                job_config=bigquery.QueryJobConfig(query_parameters=params),
                location=self.location,
            )
            job.result()
        finally:
            self.client.delete_table(staging_name, not_found_ok=True)
        inserted = int(loaded.output_rows or 0)
        if job.num_dml_affected_rows is not None and job.num_dml_affected_rows < inserted:
            raise SuggestionTableError(
                f"the MERGE into `{self.name}` touched {job.num_dml_affected_rows} rows for {inserted} staged ones"
            )
        return inserted

    def read(self, month: str) -> pd.DataFrame:
        """Every model's rows of ``month`` (an empty frame when the table does not exist yet)."""
        from google.api_core.exceptions import NotFound
        from google.cloud import bigquery

        try:
            check_columns(f"`{self.name}`", _live_types(self.client.get_table(self.name)), "bigquery")
        except NotFound:
            return empty_frame()
        job = self.client.query(
            f"SELECT * FROM `{self.name}` WHERE month = @month",
            job_config=bigquery.QueryJobConfig(
                query_parameters=[bigquery.ScalarQueryParameter("month", "STRING", month)]
            ),
            location=self.location,
        )
        return job.result().to_arrow(create_bqstorage_client=False).to_pandas()
