"""The data contract: the three warehouse tables, their canonical columns and types.

Every frame inside the library uses the canonical names below. A team whose warehouse uses other
names maps them in configuration (see ``ColumnMap``); the mapping is applied at extraction, once.
Validation never drops rows: a row that breaks the contract stops the run with a ``ContractError``
that names the table, the column and example rows.

A row belongs to the month its ``month`` column names, and its date (``MONTH_DATE``) must lie in
that month. One normalisation is applied: identifiers lose surrounding whitespace, in every id
column of every table, so a link to ``"TRF-1 "`` and the transfer ``"TRF-1"`` agree (padded ids
come from CHAR columns and exports); ids that collide once stripped are a duplicate-key error.
"""

from __future__ import annotations

import datetime as dt
import numbers
from dataclasses import dataclass, field

import pandas as pd

MONTH_FORMAT = "%Y-%m"


@dataclass(frozen=True)
class Column:
    name: str
    kind: str  # "id" | "str" | "date" | "money" | "currency" | "month"
    required: bool = True


TABLES: dict[str, tuple[Column, ...]] = {
    "invoices": (
        Column("invoice_id", "id"),
        Column("month", "month"),
        Column("issued_at", "date"),
        Column("due_at", "date"),
        Column("amount", "money"),
        Column("currency", "currency"),
        Column("invoice_number", "str", required=False),
        Column("counterparty_name", "str", required=False),
        Column("description", "str", required=False),
    ),
    "transfers": (
        Column("transfer_id", "id"),
        Column("month", "month"),
        Column("booked_at", "date"),
        Column("amount", "money"),
        Column("currency", "currency"),
        Column("title", "str", required=False),
        Column("counterparty_name", "str", required=False),
        Column("counterparty_account", "str", required=False),
    ),
    "links": (
        Column("transfer_id", "id"),
        Column("invoice_id", "id"),
        Column("allocated_amount", "money"),
        Column("month", "month"),
    ),
}

# The date that places a row in its month; links belong to their transfer's month.
MONTH_DATE = {"invoices": "issued_at", "transfers": "booked_at"}

TEXT_COLUMNS = {table: tuple(c.name for c in cols if c.kind == "str") for table, cols in TABLES.items()}


def month_window(month: str) -> tuple[dt.date, dt.date]:
    """[first day of ``month``, first day of the next month)."""
    start = dt.date.fromisoformat(month + "-01")
    end = (start.replace(day=28) + dt.timedelta(days=4)).replace(day=1)
    return start, end


def column_names(table: str, include_optional: bool = True) -> list[str]:
    return [c.name for c in TABLES[table] if c.required or include_optional]


class ContractError(ValueError):
    """A table breaks the data contract. The message names table, column and example rows."""

    def __init__(self, table: str, column: str | None, problem: str, examples: pd.DataFrame | None = None):
        self.table, self.column, self.problem = table, column, problem
        self.examples = examples
        where = f"table '{table}'" + (f", column '{column}'" if column else "")
        msg = f"Data contract broken in {where}: {problem}"
        if examples is not None and len(examples):
            msg += "\nExample rows:\n" + examples.head(5).to_string(max_colwidth=40)
        super().__init__(msg)


@dataclass
class ColumnMap:
    """Warehouse table and column names for each canonical table and column.

    ``tables`` maps canonical table -> warehouse table name; ``columns`` maps canonical table ->
    {canonical column: warehouse column}. Anything not listed keeps its canonical name. An optional
    column mapped to ``null`` is absent in this warehouse.
    """

    tables: dict[str, str] = field(default_factory=dict)
    columns: dict[str, dict[str, str | None]] = field(default_factory=dict)

    def table(self, table: str) -> str:
        return self.tables.get(table, table)

    def column(self, table: str, column: str) -> str | None:
        return self.columns.get(table, {}).get(column, column)

    def present(self, table: str) -> list[str]:
        """Canonical columns this warehouse provides for ``table``."""
        out = []
        for col in TABLES[table]:
            mapped = self.column(table, col.name)
            if mapped is None:
                if col.required:
                    raise ContractError(table, col.name, "a required column cannot be mapped to null")
                continue
            out.append(col.name)
        return out

    @classmethod
    def from_dict(cls, raw: dict | None) -> "ColumnMap":
        raw = raw or {}
        return cls(tables=dict(raw.get("tables", {})), columns={k: dict(v) for k, v in raw.get("columns", {}).items()})


def _examples(df: pd.DataFrame, mask) -> pd.DataFrame:
    return df.loc[mask].head(5)


def conform(table: str, df: pd.DataFrame, month: str | None = None) -> pd.DataFrame:
    """Check ``df`` against the contract for ``table`` and return it with canonical dtypes.

    Raises ``ContractError`` for a missing required column, nulls in a required column, values of
    the wrong type, a month other than ``month``, or duplicate keys. Never drops a row.
    """
    if table not in TABLES:
        raise ContractError(table, None, f"unknown table; expected one of {sorted(TABLES)}")
    out = pd.DataFrame(index=df.index)
    for col in TABLES[table]:
        if col.name not in df.columns:
            if col.required:
                raise ContractError(
                    table, col.name, f"required column is missing (columns present: {list(df.columns)})"
                )
            continue
        s = df[col.name]
        if col.required and s.isna().any():
            raise ContractError(
                table, col.name, f"{int(s.isna().sum())} null value(s) in a required column", _examples(df, s.isna())
            )
        if col.kind in ("id", "str", "currency", "month"):
            bad = s.map(lambda v: v is not None and v == v and not isinstance(v, str)).astype(bool)
            if bad.any():
                raise ContractError(table, col.name, f"{int(bad.sum())} value(s) are not text", _examples(df, bad))
            s = s.astype("string").astype(object).where(s.notna(), None)
            if col.kind == "id":
                s = s.str.strip()  # the one normalisation: see the module docstring
                empty = s.str.strip().eq("")
                if empty.any():
                    raise ContractError(table, col.name, "empty identifier(s)", _examples(df, empty))
            if col.kind == "currency":
                bad = ~s.str.fullmatch(r"[A-Z]{3}").astype(bool)
                if bad.any():
                    raise ContractError(
                        table, col.name, "currency must be a 3-letter ISO 4217 code", _examples(df, bad)
                    )
            if col.kind == "month":
                bad = ~s.str.fullmatch(r"\d{4}-\d{2}").astype(bool)
                if bad.any():
                    raise ContractError(table, col.name, "month must look like YYYY-MM", _examples(df, bad))
                if month is not None and (s != month).any():
                    wrong = s != month
                    raise ContractError(
                        table, col.name, f"{int(wrong.sum())} row(s) not in month {month}", _examples(df, wrong)
                    )
        elif col.kind == "date":
            parsed = pd.to_datetime(s, errors="coerce")
            bad = s.notna() & parsed.isna()
            if bad.any():
                raise ContractError(table, col.name, f"{int(bad.sum())} value(s) are not dates", _examples(df, bad))
            s = parsed.dt.tz_localize(None) if getattr(parsed.dt, "tz", None) is not None else parsed
            s = s.dt.normalize().astype("datetime64[us]")
        elif col.kind == "money":
            if pd.api.types.is_bool_dtype(s):
                raise ContractError(table, col.name, "amounts must be numbers, got booleans", df.head(5))
            if pd.api.types.is_numeric_dtype(s):
                parsed, bad = s.astype("float64"), pd.Series(False, index=s.index)
            else:  # text or mixed values: each one must be a real number, "12,50" is not
                is_num = s.map(lambda v: v is None or (isinstance(v, numbers.Real) and not isinstance(v, bool))).astype(
                    bool
                )
                parsed, bad = pd.to_numeric(s.where(is_num), errors="coerce"), ~is_num
            bad = bad | (s.notna() & ~parsed.abs().lt(1e12))
            if bad.any():
                raise ContractError(
                    table, col.name, f"{int(bad.sum())} amount(s) are not finite numbers", _examples(df, bad)
                )
            s = parsed.astype("float64").round(2)
        out[col.name] = s
    key = {"invoices": ["invoice_id"], "transfers": ["transfer_id"], "links": ["transfer_id", "invoice_id"]}[table]
    dup = out.duplicated(key, keep=False)
    if dup.any():
        raise ContractError(table, ",".join(key), f"{int(dup.sum())} row(s) share a key", _examples(df, dup))
    if table == "invoices":
        bad = out["due_at"] < out["issued_at"]
        if bad.any():
            raise ContractError(table, "due_at", "due date before issue date", _examples(df, bad))
    if table == "links":
        bad = out["allocated_amount"].eq(0)
        if bad.any():
            raise ContractError(table, "allocated_amount", "a link must allocate a non-zero amount", _examples(df, bad))
    return out.reset_index(drop=True)


def check_month(tables: dict[str, pd.DataFrame], month: str, known_invoice_ids=None) -> dict[str, pd.DataFrame]:
    """Conform all three tables of one month and check the references between them.

    ``known_invoice_ids``: invoices collected in earlier months, which this month's links may pay.
    """
    out = {t: conform(t, tables[t], month=month) for t in TABLES}
    start, end = (pd.Timestamp(d) for d in month_window(month))
    for t in ("invoices", "transfers"):
        if out[t].empty:
            raise ContractError(t, None, f"month {month} has no rows; is the month loaded yet?")
        date = out[t][MONTH_DATE[t]]
        outside = (date < start) | (date >= end)
        if outside.any():
            raise ContractError(
                t,
                MONTH_DATE[t],
                f"{int(outside.sum())} row(s) dated outside month {month} (their month column says {month}); "
                f"fix the date or the month in the warehouse",
                tables[t].reset_index(drop=True)[outside.to_numpy()],
            )
    links, transfers = out["links"], out["transfers"]
    unknown_t = ~links["transfer_id"].isin(transfers["transfer_id"])
    if unknown_t.any():
        raise ContractError(
            "links",
            "transfer_id",
            f"{int(unknown_t.sum())} link(s) point to a transfer not in month {month}",
            links[unknown_t],
        )
    known = set(out["invoices"]["invoice_id"]) | set(known_invoice_ids or ())
    unknown_i = ~links["invoice_id"].isin(known)
    if unknown_i.any():
        raise ContractError(
            "links", "invoice_id", f"{int(unknown_i.sum())} link(s) point to an unknown invoice", links[unknown_i]
        )
    alloc = links.groupby("transfer_id")["allocated_amount"].sum()
    amount = transfers.set_index("transfer_id")["amount"].reindex(alloc.index)
    over = alloc.abs() > amount.abs() * 1.05 + 1.0
    if over.any():
        bad = links[links["transfer_id"].isin(alloc.index[over])]
        raise ContractError("links", "allocated_amount", "links allocate more than the transfer's amount", bad)
    return out
