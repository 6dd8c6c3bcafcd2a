"""Extraction from the warehouse: one query text in BigQuery Standard SQL, run on BigQuery or DuckDB.

The SQL is written once (``extraction_sql``) in BigQuery's dialect with named query parameters
(``@month``, ``@window_start``, ``@window_end``). The embedded DuckDB warehouse runs the same text
transpiled by sqlglot, so the local default exercises the production query. Warehouse column names
come from the ``ColumnMap`` in config and are aliased to canonical names in the SELECT, so everything
downstream speaks the contract. Before querying, the live schema is compared with the mapping, so a
renamed or dropped column fails with a message naming table and column instead of a SQL error.

Which rows a month extracts is chosen so that no row can fall between months unseen (issue 11.4):
a row whose ``month`` column names the month, a row dated inside it (``MONTH_DATE``), and a row
with no month at all. ``check_month`` then stops on any of them that disagrees (a null date, a date
outside its month, a month label of another month or of the wrong shape), naming the rows, instead
of the row vanishing with exit code 0. Links come with their own month or with their transfer's, so
a link whose transfer is missing, or sits in another month, is named too.

The open month (``open_month_sql``, for the ``suggest`` pipeline) is extracted the same way: its transfers
are the month's rows, chosen exactly as above, that also meet the configured "not yet tagged" condition;
its invoices are those issued before the month ends (within a look-back) that the tags of earlier months
have not settled. The open month's own links are never read.
"""

from __future__ import annotations

import datetime as dt
import errno
import json
import os
import re
import uuid
from pathlib import Path
from typing import Protocol

import pandas as pd
import sqlglot

from .contract import MONTH_DATE, TABLES, ColumnMap, ContractError, month_window

__all__ = [
    "DuckDBWarehouse",
    "extraction_sql",
    "month_window",
    "months_sql",
    "open_month_parameters",
    "open_month_sql",
    "open_warehouse",
    "query_parameters",
]

SEED_MARKER = "_ledgerlink_seed"  # table in the dataset schema of a warehouse file ledgerlink created
SEEDING_SUFFIX = ".seeding"  # temp files of a seeding in progress (or killed before its rename)


def _quote(name: str) -> str:
    return f"`{name}`"


def extraction_sql(table: str, columns: ColumnMap, dataset_ref: str) -> str:
    """The BigQuery Standard SQL that extracts one month of ``table`` with canonical column names."""

    def ref(t: str) -> str:
        return _quote(f"{dataset_ref}.{columns.table(t)}")

    def col(t: str, c: str) -> str:
        return _quote(columns.column(t, c))

    select = _select(table, columns)
    month = col(table, "month")
    if table == "links":
        tid_l, tid_t = col("links", "transfer_id"), col("transfers", "transfer_id")
        return (
            f"SELECT {select} FROM {ref('links')} AS x "
            f"WHERE x.{month} = @month OR x.{month} IS NULL OR TRIM(CAST(x.{tid_l} AS STRING)) IN "
            f"(SELECT TRIM(CAST(t.{tid_t} AS STRING)) FROM {ref('transfers')} AS t "
            f"WHERE t.{col('transfers', 'month')} = @month)"
        )
    return f"SELECT {select} FROM {ref(table)} AS x WHERE {_rows_of_the_month(table, columns)}"


def _select(table: str, columns: ColumnMap) -> str:
    return ", ".join(f"x.{_quote(columns.column(table, c))} AS {c}" for c in columns.present(table))


def _rows_of_the_month(table: str, columns: ColumnMap) -> str:
    """The rows of ``x`` a month extracts: its month label, no label at all, or a date inside it."""
    month, date = _quote(columns.column(table, "month")), _quote(columns.column(table, MONTH_DATE[table]))
    return f"x.{month} = @month OR x.{month} IS NULL OR (x.{date} >= @window_start AND x.{date} < @window_end)"


def open_month_sql(table: str, columns: ColumnMap, dataset_ref: str, open_transfers: str = "TRUE") -> str:
    """The BigQuery Standard SQL that extracts the open month's ``transfers`` or ``invoices`` (canonical names).

    Transfers: the month's rows as ``extraction_sql`` selects them, that also meet ``open_transfers`` (the
    config's "not yet tagged" condition on ``x``). Invoices: issued in ``[@lookback_start, @window_end)`` and
    not settled by the links of earlier months (``month < @month``), settled as the matcher counts it
    (``tolerances.is_settled``: same sign, at least the amount less the fee tolerance, to a cent)."""

    def ref(t: str) -> str:
        return _quote(f"{dataset_ref}.{columns.table(t)}")

    def col(t: str, c: str) -> str:
        return _quote(columns.column(t, c))

    if table == "transfers":
        return (
            f"SELECT {_select(table, columns)} FROM {ref(table)} AS x "
            f"WHERE ({_rows_of_the_month(table, columns)}) AND ({open_transfers})"
        )
    if table != "invoices":
        raise ValueError(f"the open month has transfers and invoices, not {table!r}")
    from ..matching.tolerances import FEE_TOLERANCE  # here: importing the matching package is not free

    paid = "COALESCE(p.paid, 0)"
    amount = f"x.{col('invoices', 'amount')}"
    settled = (
        f"{paid} <> 0 AND SIGN({paid}) = SIGN({amount}) AND ABS({paid}) >= ABS({amount}) * {1 - FEE_TOLERANCE!r} - 0.01"
    )
    issued = f"x.{col('invoices', 'issued_at')}"
    return (
        f"SELECT {_select(table, columns)} FROM {ref('invoices')} AS x "
        f"LEFT JOIN (SELECT TRIM(CAST(l.{col('links', 'invoice_id')} AS STRING)) AS invoice_key, "
        f"SUM(l.{col('links', 'allocated_amount')}) AS paid FROM {ref('links')} AS l "
        f"WHERE l.{col('links', 'month')} < @month GROUP BY invoice_key) AS p "
        f"ON p.invoice_key = TRIM(CAST(x.{col('invoices', 'invoice_id')} AS STRING)) "
        f"WHERE {issued} >= @lookback_start AND {issued} < @window_end AND NOT ({settled})"
    )


def open_month_parameters(table: str, month: str, lookback_days: int) -> dict[str, str | dt.date]:
    """The named parameters ``open_month_sql(table, ...)`` uses, for ``month``."""
    start, end = month_window(month)
    if table == "transfers":
        return {"month": month, "window_start": start, "window_end": end}
    return {"month": month, "lookback_start": start - dt.timedelta(days=lookback_days), "window_end": end}


def query_parameters(table: str, month: str) -> dict[str, str | dt.date]:
    """The named parameters ``extraction_sql(table, ...)`` uses, for ``month``."""
    if table == "links":
        return {"month": month}
    start, end = month_window(month)
    return {"month": month, "window_start": start, "window_end": end}


def months_sql(columns: ColumnMap, dataset_ref: str) -> str:
    """Distinct months present in the transfers table, oldest first."""
    month = _quote(columns.column("transfers", "month"))
    table = _quote(dataset_ref + "." + columns.table("transfers"))
    return f"SELECT DISTINCT x.{month} AS month FROM {table} AS x WHERE x.{month} IS NOT NULL ORDER BY month"


def checked_months(months: list, columns: ColumnMap) -> list[str]:
    """The warehouse's month labels, each ``YYYY-MM``; a malformed one is a ContractError naming it."""
    bad = [m for m in months if not (isinstance(m, str) and re.fullmatch(r"\d{4}-(0[1-9]|1[0-2])", m))]
    if bad:
        raise ContractError(
            columns.table("transfers"),
            columns.column("transfers", "month"),
            f"{len(bad)} month label(s) are not YYYY-MM: {bad[:5]}; rows with them would never be collected",
            pd.DataFrame({"month": bad}),
        )
    return list(months)


def to_duckdb(sql: str) -> str:
    return sqlglot.transpile(sql, read="bigquery", write="duckdb")[0]


def check_schema(table: str, live_columns: list[str], columns: ColumnMap) -> None:
    """Raise ContractError when a mapped column is missing from the live table."""
    live = {c.lower() for c in live_columns}
    for canonical in columns.present(table):
        wanted = columns.column(table, canonical)
        if wanted.lower() not in live:
            raise ContractError(
                columns.table(table),
                wanted,
                f"column is missing from the warehouse table (maps to '{canonical}'); "
                f"columns there: {sorted(live_columns)}. "
                "If it was renamed, update warehouse.columns in the config.",
            )


class Warehouse(Protocol):
    def months(self) -> list[str]: ...
    def extract_month(self, month: str) -> dict[str, pd.DataFrame]: ...
    def extract_open_month(
        self, month: str, open_transfers: str = "TRUE", lookback_days: int = 180
    ) -> dict[str, pd.DataFrame]: ...


class DuckDBWarehouse:
    """The embedded warehouse: a DuckDB file with the contract tables in schema ``dataset``.

    ledgerlink creates the file only where none exists (``seed``), and marks it with a table
    ``<dataset>._ledgerlink_seed``. It never replaces or deletes an existing file: a warehouse that
    lacks a table or column is a ``ContractError`` (``check``), because the file may hold data the
    project did not write (issue 11.2: one missing table used to get the whole file swapped for
    synthetic data, other schemas included).
    """

    def __init__(self, path: str | Path, dataset: str = "ledgerlink", columns: ColumnMap | None = None):
        self.path, self.dataset = Path(path), dataset
        self.columns = columns or ColumnMap()

    def _connect(self, read_only: bool = True):
        import duckdb

        return duckdb.connect(str(self.path), read_only=read_only)

    def exists(self) -> bool:
        return self.path.exists()

    def seed(self, tables: dict[str, pd.DataFrame], note: str = "") -> None:
        """Create the warehouse from canonical frames, under their mapped names, only where no file exists.

        Crash-safe: the tables and the marker go to a temp file next to the target, which is then
        hard-linked into place; the link fails if anything appeared there meanwhile (another run
        seeding at the same time), so an existing file is never replaced, and the path shows a
        whole warehouse or nothing. A seeding killed before the link leaves only
        ``<name>.<id>.seeding`` (``seeding_leftovers``). Raises FileExistsError when the path exists.
        """
        if self.path.exists():
            raise FileExistsError(_exists_message(self.path))
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f"{self.path.name}.{uuid.uuid4().hex[:12]}{SEEDING_SUFFIX}")
        import duckdb

        try:
            with duckdb.connect(str(tmp)) as con:
                con.execute(f'CREATE SCHEMA IF NOT EXISTS "{self.dataset}"')
                for table in TABLES:
                    frame = tables[table][[c for c in self.columns.present(table) if c in tables[table].columns]]
                    frame = frame.rename(columns={c: self.columns.column(table, c) for c in frame.columns})
                    for col in frame.columns:
                        if pd.api.types.is_datetime64_any_dtype(frame[col]):
                            frame[col] = frame[col].dt.date
                    con.register("frame", frame)
                    con.execute(f'CREATE TABLE "{self.dataset}"."{self.columns.table(table)}" AS SELECT * FROM frame')
                    con.unregister("frame")
                con.execute(
                    f'CREATE TABLE "{self.dataset}"."{SEED_MARKER}" AS SELECT ? AS created_by, ? AS created_at, '
                    "? AS note",
                    ["ledgerlink", dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), note],
                )
            _publish(tmp, self.path)
        finally:
            _discard(tmp)

    def seed_marker(self) -> dict | None:
        """The marker ``seed`` writes ({created_by, created_at, note}), or None for a warehouse ledgerlink did not
        create."""
        with self._connect() as con:
            found = con.execute(
                "SELECT count(*) FROM information_schema.tables WHERE table_schema = ? AND table_name = ?",
                [self.dataset, SEED_MARKER],
            ).fetchone()[0]
            if not found:
                return None
            row = con.execute(f'SELECT created_by, created_at, note FROM "{self.dataset}"."{SEED_MARKER}"').fetchone()
        return dict(zip(("created_by", "created_at", "note"), row)) if row else None

    def check(self) -> None:
        """Every contract table and mapped column is there; else a ContractError naming table and column."""
        try:
            for table in TABLES:
                check_schema(table, self.live_columns(table), self.columns)
        except ContractError as exc:
            marker = self.seed_marker()
            hint = (
                f"This warehouse was seeded by ledgerlink ({marker['created_at']}) with synthetic data; "
                f"delete {self.path} to have it seeded again."
                if marker
                else f"{self.path} was not created by ledgerlink; it is never replaced or seeded over."
            )
            raise ContractError(exc.table, exc.column, f"{exc.problem} {hint}", exc.examples) from None

    def live_columns(self, table: str) -> list[str]:
        with self._connect() as con:
            rows = con.execute(
                "SELECT column_name FROM information_schema.columns WHERE table_schema = ? AND table_name = ?",
                [self.dataset, self.columns.table(table)],
            ).fetchall()
        if not rows:
            raise ContractError(
                self.columns.table(table), None, f"table not found in warehouse {self.path} (schema {self.dataset})."
            )
        return [r[0] for r in rows]

    def months(self) -> list[str]:
        with self._connect() as con:
            found = [r[0] for r in con.execute(to_duckdb(months_sql(self.columns, self.dataset))).fetchall()]
        return checked_months(found, self.columns)

    def extract_month(self, month: str) -> dict[str, pd.DataFrame]:
        out = {}
        with self._connect() as con:
            for table in TABLES:
                check_schema(table, self.live_columns(table), self.columns)
                sql = to_duckdb(extraction_sql(table, self.columns, self.dataset))
                out[table] = con.execute(sql, query_parameters(table, month)).df()
        return out

    def extract_open_month(
        self, month: str, open_transfers: str = "TRUE", lookback_days: int = 180
    ) -> dict[str, pd.DataFrame]:
        """The open month's ``transfers`` and the ``invoices`` open then (``open_month_sql``), read-only."""
        out = {}
        for table in TABLES:
            check_schema(table, self.live_columns(table), self.columns)
        with self._connect() as con:
            for table in ("invoices", "transfers"):
                sql = to_duckdb(open_month_sql(table, self.columns, self.dataset, open_transfers))
                out[table] = con.execute(sql, open_month_parameters(table, month, lookback_days)).df()
        return out


def _exists_message(path: Path) -> str:
    return f"{path} exists; an existing warehouse file is never replaced (it may hold data ledgerlink did not write)"


def _publish(tmp: Path, path: Path) -> None:
    """Put the finished temp file at ``path`` if nothing is there: a hard link, which never replaces."""
    fd = os.open(tmp, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        os.link(tmp, path)
    except FileExistsError:
        raise FileExistsError(_exists_message(path)) from None
    except OSError as exc:  # no hard links here (some network or FUSE mounts): check, then rename
        if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EMLINK):
            raise
        if path.exists():  # the one window two seedings could race in; the loser's rename replaces a twin
            raise FileExistsError(_exists_message(path)) from None
        os.rename(tmp, path)
    fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _discard(tmp: Path) -> None:
    for p in (tmp, tmp.with_name(tmp.name + ".wal")):
        p.unlink(missing_ok=True)


def seeding_leftovers(path: str | Path) -> list[Path]:
    """Temp files of seedings killed before their rename (``<name>.<id>.seeding``), oldest first."""
    path = Path(path)
    if not path.parent.is_dir():
        return []
    found = [p for p in path.parent.glob(f"{path.name}.*{SEEDING_SUFFIX}*") if p.is_file()]
    return sorted(found, key=lambda p: p.stat().st_mtime)


def open_warehouse(cfg: dict) -> Warehouse:
    """The warehouse named in config, its schema checked. A DuckDB file that does not exist yet is seeded with
    synthetic data (``warehouse.seed_if_empty``); an existing one is never replaced."""
    wcfg = cfg["warehouse"]
    columns = ColumnMap.from_dict(wcfg.get("columns"))
    if wcfg["kind"] == "duckdb":
        wh = DuckDBWarehouse(wcfg["path"], dataset=wcfg.get("dataset") or "ledgerlink", columns=columns)
        if not wh.exists():
            if not wcfg.get("seed_if_empty", True):
                raise FileNotFoundError(f"DuckDB warehouse {wh.path} does not exist and seeding is off")
            from .synthetic import SyntheticConfig, generate

            syn = dict(cfg["synthetic"])
            try:
                wh.seed(generate(SyntheticConfig(**syn)), note=json.dumps({"synthetic": syn}, sort_keys=True))
            except FileExistsError:
                pass  # another run seeded it first; it is checked below like any existing warehouse
        wh.check()
        return wh
    if wcfg["kind"] == "bigquery":
        from .bigquery import BigQueryWarehouse

        return BigQueryWarehouse.from_config(wcfg, columns)
    raise ValueError(f"warehouse.kind must be 'duckdb' or 'bigquery', got {wcfg['kind']!r}")
