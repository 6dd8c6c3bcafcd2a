"""The ``suggested_links`` table: what the ``suggest`` pipeline writes back to the warehouse, and how.

One row per suggested link: the month, the transfer, the invoice it pays (empty when the model says the transfer
pays nothing), the allocated amount, the confidence and decision (``auto`` or ``review``) of the transfer's
chosen set, the model that suggested it, the reasons in words and when. ``model_name`` is the one column beyond
the issue's list: two models (the simulation's, a challenger's) may write to one table, and a rerun must replace
only its own rows.

A run's rows are staged in a local Parquet file first (``SuggestionWriter``: chunk by chunk, so 100k transfers
never sit in memory as Python objects twice), then written in one atomic step that replaces the rows of the same
(month, model_name, model_version) and nothing else:

- DuckDB (``DuckDBSuggestions``): one transaction, ``DELETE`` then ``INSERT ... SELECT FROM read_parquet``. A
  failure or a killed process before ``COMMIT`` leaves the previous suggestions as they were (DuckDB writes its
  log at commit). The warehouse file is opened for writing only for that transaction; the statements name the
  suggestions table alone, which the config keeps apart from the contract tables.
- BigQuery (``ledgerlink.data.bigquery_suggestions``): a load job from the same Parquet file into a staging
  table, then one ``MERGE`` that deletes the old rows and inserts the new ones atomically.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import pandas as pd

DECISIONS = ("auto", "review")
TABLE_KEY = ("month", "model_name", "model_version")  # a run replaces the rows with its own key


@dataclass(frozen=True)
class SuggestionColumn:
    name: str
    duckdb: str
    bigquery: str  # standard SQL type; REPEATED for an ARRAY
    nullable: bool = True


COLUMNS: tuple[SuggestionColumn, ...] = (
    SuggestionColumn("month", "VARCHAR", "STRING", nullable=False),
    SuggestionColumn("transfer_id", "VARCHAR", "STRING", nullable=False),
    SuggestionColumn("invoice_id", "VARCHAR", "STRING"),  # NULL: the transfer pays no invoice
    SuggestionColumn("allocated_amount", "DECIMAL(18,2)", "NUMERIC"),  # NULL with the invoice
    SuggestionColumn("confidence", "DOUBLE", "FLOAT64", nullable=False),
    SuggestionColumn("decision", "VARCHAR", "STRING", nullable=False),
    SuggestionColumn("model_name", "VARCHAR", "STRING", nullable=False),
    SuggestionColumn("model_version", "VARCHAR", "STRING", nullable=False),
    SuggestionColumn("reasons", "VARCHAR[]", "STRING REPEATED"),
    SuggestionColumn("suggested_at", "TIMESTAMP WITH TIME ZONE", "TIMESTAMP", nullable=False),
)
COLUMN_NAMES = tuple(c.name for c in COLUMNS)


class SuggestionTableError(RuntimeError):
    """The suggestions table cannot be written as asked; nothing was changed."""


def arrow_schema():
    import pyarrow as pa

    types = {
        "allocated_amount": pa.decimal128(18, 2),
        "confidence": pa.float64(),
        "reasons": pa.list_(pa.string()),
        "suggested_at": pa.timestamp("us", tz="UTC"),
    }
    return pa.schema([pa.field(c.name, types.get(c.name, pa.string()), nullable=c.nullable) for c in COLUMNS])


def suggestion_rows(result, month: str, model_name: str, model_version: str, suggested_at: dt.datetime) -> pd.DataFrame:
    """The table's rows for one ``MatchResult`` (from ``match(..., explain=True)``): one per link, and one with an
    empty invoice for each transfer that pays nothing. Every row of a transfer carries the confidence and decision
    of its chosen set (what ``auto``/``review`` was decided on); a link row the link's reasons, an empty one the
    transfer's."""
    dec = result.decisions.set_index("transfer_id")
    links = result.links
    linked = pd.DataFrame(
        {
            "transfer_id": links["transfer_id"].to_numpy(),
            "invoice_id": links["invoice_id"].to_numpy(),
            "allocated_amount": links["allocated_amount"].to_numpy(np.float64).round(2),
            "reasons": links["reasons"].to_numpy(),
        }
    )
    empty = dec.index[~dec.index.isin(links["transfer_id"])]
    nothing = pd.DataFrame(
        {
            "transfer_id": empty.to_numpy(),
            "invoice_id": None,
            "allocated_amount": np.nan,
            "reasons": dec.loc[empty, "reasons"].to_numpy(),
        }
    )
    rows = pd.concat([linked, nothing], ignore_index=True)
    rows["confidence"] = rows["transfer_id"].map(dec["confidence"]).astype(np.float64)
    rows["decision"] = rows["transfer_id"].map(dec["decision"])
    if rows["decision"].isna().any() or not rows["decision"].isin(DECISIONS).all():
        bad = rows.loc[~rows["decision"].isin(DECISIONS), "transfer_id"].head(5).tolist()
        raise ValueError(f"the match result has links without a decision auto/review, e.g. transfers {bad}")
    if rows.duplicated(["transfer_id", "invoice_id"]).any():
        raise ValueError("the match result links a transfer to the same invoice twice")
    rows["reasons"] = [list(r) if r is not None and not _is_nan(r) else [] for r in rows["reasons"]]
    rows["month"], rows["model_name"], rows["model_version"] = month, model_name, str(model_version)
    at = pd.Timestamp(suggested_at)
    rows["suggested_at"] = at.tz_localize("UTC") if at.tzinfo is None else at.tz_convert("UTC")
    order = {t: k for k, t in enumerate(result.decisions["transfer_id"])}
    rows = rows.assign(_o=rows["transfer_id"].map(order)).sort_values(["_o", "invoice_id"], kind="stable")
    return rows.drop(columns="_o").reset_index(drop=True)[list(COLUMN_NAMES)]


def _is_nan(value) -> bool:
    return isinstance(value, float) and value != value


class SuggestionWriter:
    """Stages a run's rows in one Parquet file, chunk by chunk (``add``); ``path`` once ``close``d."""

    def __init__(self, path: str | Path):
        import pyarrow.parquet as pq

        self.path = Path(path)
        self.schema = arrow_schema()
        self._writer = pq.ParquetWriter(self.path, self.schema)
        self.rows = 0

    def add(self, rows: pd.DataFrame) -> None:
        import pyarrow as pa

        frame = rows[list(COLUMN_NAMES)].copy()
        frame["allocated_amount"] = [
            None if v != v else _decimal(v) for v in frame["allocated_amount"].to_numpy(np.float64)
        ]
        table = pa.Table.from_pandas(frame, schema=self.schema, preserve_index=False)
        self._writer.write_table(table)
        self.rows += len(frame)

    def close(self) -> Path:
        self._writer.close()
        return self.path


def _decimal(value: float):
    from decimal import Decimal

    return Decimal(f"{value:.2f}")


class SuggestionTable(Protocol):
    name: str

    def replace(self, month: str, model_name: str, model_version: str, parquet: Path) -> int: ...
    def read(self, month: str) -> pd.DataFrame: ...


def check_columns(table: str, live: dict[str, str], dialect: str) -> None:
    """An existing table must have exactly the suggestion columns (names and types); else nothing is written to it:
    it may be someone else's table of the same name."""
    wanted = {c.name: (c.duckdb if dialect == "duckdb" else c.bigquery) for c in COLUMNS}
    got = {k.lower(): v.upper() for k, v in live.items()}
    if set(got) != set(wanted) or any(_type_key(got[n]) != _type_key(t) for n, t in wanted.items()):
        raise SuggestionTableError(
            f"the table {table} exists but is not a suggestions table: columns {got}, expected {wanted}. Nothing was "
            "written; point suggest.table (or suggest.dataset) elsewhere, or drop the table if it is an old one."
        )


def _type_key(type_name: str) -> str:
    t = type_name.upper().replace(" ", "")
    return {"TIMESTAMPWITHTIMEZONE": "TIMESTAMPTZ", "FLOAT": "FLOAT64", "TEXT": "VARCHAR"}.get(t, t)


# -- DuckDB -------------------------------------------------------------------------------------------------

LOCK_WAIT_S = 120.0  # another process (a collection, a reader) holds the warehouse file: wait this long


class DuckDBSuggestions:
    """``suggested_links`` in the embedded warehouse file (schema ``schema``)."""

    def __init__(self, path: str | Path, schema: str, table: str = "suggested_links", lock_wait_s: float = LOCK_WAIT_S):
        self.path, self.schema, self.table = Path(path), schema, table
        self.lock_wait_s = lock_wait_s

    @property
    def name(self) -> str:
        return f'"{self.schema}"."{self.table}"'

    def _connect(self, read_only: bool):
        import duckdb

        if not self.path.exists():  # duckdb.connect would create an empty file: never make up a warehouse
            raise FileNotFoundError(f"the warehouse {self.path} does not exist; suggestions go into an existing one")
        deadline = time.monotonic() + self.lock_wait_s
        while True:
            try:
                return duckdb.connect(str(self.path), read_only=read_only)
            except duckdb.IOException as exc:
                if "lock" not in str(exc).lower() or time.monotonic() > deadline:
                    raise SuggestionTableError(
                        f"could not open the warehouse {self.path} ({exc}); nothing was written, rerun when the other "
                        "process is done"
                    ) from exc
                time.sleep(0.5)

    def _live_columns(self, con) -> dict[str, str]:
        rows = con.execute(
            "SELECT column_name, data_type FROM information_schema.columns WHERE table_schema = ? AND table_name = ?",
            [self.schema, self.table],
        ).fetchall()
        return dict(rows)

    def replace(self, month: str, model_name: str, model_version: str, parquet: Path) -> int:
        """Replace the rows of (month, model_name, model_version) with the staged ones, in one transaction."""
        ddl = ", ".join(f'"{c.name}" {c.duckdb}' + ("" if c.nullable else " NOT NULL") for c in COLUMNS)
        con = self._connect(read_only=False)
        try:
            con.execute("BEGIN TRANSACTION")
            try:
                con.execute(f'CREATE SCHEMA IF NOT EXISTS "{self.schema}"')
                con.execute(f"CREATE TABLE IF NOT EXISTS {self.name} ({ddl})")
                check_columns(f"{self.path}:{self.schema}.{self.table}", self._live_columns(con), "duckdb")
                key = "month = ? AND model_name = ? AND model_version = ?"
                con.execute(f"DELETE FROM {self.name} WHERE {key}", [month, model_name, str(model_version)])
                written = self._insert(con, parquet)
                wrong = con.execute(
                    f"SELECT count(*) FROM {self.name} WHERE {key}", [month, model_name, str(model_version)]
                ).fetchone()[0]
                if wrong != written:
                    raise SuggestionTableError(
                        f"staged rows of another month or model in {parquet}; nothing was written to {self.name}"
                    )
                con.execute("COMMIT")
            except BaseException:
                con.execute("ROLLBACK")
                raise
        finally:
            con.close()
        return written

    def _insert(self, con, parquet: Path) -> int:
        names = ", ".join(f'"{n}"' for n in COLUMN_NAMES)
        return con.execute(
            f"INSERT INTO {self.name} ({names}) SELECT {names} FROM read_parquet(?)", [str(parquet)]
        ).fetchone()[0]

    def read(self, month: str) -> pd.DataFrame:
        """Every model's rows of ``month`` (an empty frame when the table does not exist yet)."""
        with contextlib.closing(self._connect(read_only=True)) as con:
            if not self._live_columns(con):
                return empty_frame()
            return con.execute(f"SELECT * FROM {self.name} WHERE month = ?", [month]).df()


def empty_frame() -> pd.DataFrame:
    return pd.DataFrame({n: pd.Series(dtype=object) for n in COLUMN_NAMES})


def open_suggestions(cfg: dict) -> SuggestionTable:
    """The suggestions table of a config mapping (``Config.to_dict()``): in the warehouse's own database."""
    wcfg, scfg = cfg["warehouse"], cfg["suggest"]
    dataset = scfg.get("dataset") or wcfg.get("dataset") or "ledgerlink"
    if wcfg["kind"] == "duckdb":
        return DuckDBSuggestions(wcfg["path"], dataset, scfg["table"])
    if wcfg["kind"] == "bigquery":
        from .bigquery_suggestions import BigQuerySuggestions

        return BigQuerySuggestions.from_config(wcfg, dataset, scfg["table"])
    raise ValueError(f"warehouse.kind must be 'duckdb' or 'bigquery', got {wcfg['kind']!r}")
