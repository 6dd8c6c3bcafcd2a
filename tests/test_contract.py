"""Every kind of bad input stops with an error that names table, column and rows; nothing is dropped."""

import pandas as pd
import pytest

from ledgerlink.data.contract import ColumnMap, ContractError, check_month, conform
from ledgerlink.data.warehouse import DuckDBWarehouse, extraction_sql, to_duckdb
from tests.helpers import tiny_month


def test_valid_month_passes_unchanged_in_size(month_tables):
    out = check_month(month_tables, "2025-01")
    assert {k: len(v) for k, v in out.items()} == {k: len(v) for k, v in month_tables.items()}
    assert str(out["transfers"]["booked_at"].dtype).startswith("datetime64")


@pytest.mark.parametrize(
    "table,column,mutate,expect",
    [
        ("transfers", "amount", lambda df: df.drop(columns=["amount"]), "required column is missing"),
        (
            "transfers",
            "booked_at",
            lambda df: df.assign(booked_at=df["booked_at"].astype(object).where(df.index != 3, None)),
            "null value",
        ),
        (
            "transfers",
            "amount",
            lambda df: df.assign(amount=df["amount"].astype(object).where(df.index != 2, "12,50")),
            "not finite numbers",
        ),
        (
            "invoices",
            "issued_at",
            lambda df: df.assign(issued_at=df["issued_at"].astype(str).where(df.index != 1, "yesterday")),
            "not dates",
        ),
        (
            "invoices",
            "currency",
            lambda df: df.assign(currency=df["currency"].where(df.index != 4, "euro")),
            "3-letter",
        ),
        ("invoices", "month", lambda df: df.assign(month=df["month"].where(df.index != 0, "2025-02")), "not in month"),
        (
            "invoices",
            "invoice_id",
            lambda df: df.assign(invoice_id=df["invoice_id"].where(df.index != 1, df["invoice_id"][0])),
            "share a key",
        ),
        (
            "transfers",
            "transfer_id",
            lambda df: df.assign(transfer_id=df["transfer_id"].where(df.index != 1, "  ")),
            "empty identifier",
        ),
        (
            "invoices",
            "due_at",
            lambda df: df.assign(due_at=df["issued_at"] - pd.Timedelta(days=1)),
            "due date before issue",
        ),
    ],
)
def test_contract_errors_name_table_column_and_rows(month_tables, table, column, mutate, expect):
    month_tables[table] = mutate(month_tables[table])
    with pytest.raises(ContractError) as err:
        check_month(month_tables, "2025-01")
    assert err.value.table == table and column in (err.value.column or "")
    assert expect in str(err.value)
    assert f"table '{table}'" in str(err.value)
    if "missing" not in expect:
        assert "Example rows" in str(err.value)


def test_links_must_point_to_known_rows(month_tables):
    bad = month_tables["links"].copy()
    bad.loc[0, "invoice_id"] = "INV-99999"
    with pytest.raises(ContractError, match="unknown invoice") as err:
        check_month({**month_tables, "links": bad}, "2025-01")
    assert "INV-99999" in str(err.value)
    bad = month_tables["links"].copy()
    bad.loc[0, "transfer_id"] = "TRF-99999"
    with pytest.raises(ContractError, match="not in month"):
        check_month({**month_tables, "links": bad}, "2025-01")
    bad = month_tables["links"].copy()
    bad.loc[0, "allocated_amount"] = 10_000.0
    with pytest.raises(ContractError, match="more than the transfer"):
        check_month({**month_tables, "links": bad}, "2025-01")


def test_links_may_pay_invoices_of_earlier_months():
    feb = tiny_month("2025-02", start=100)
    feb["links"].loc[0, "invoice_id"] = "INV-00001"
    check_month(feb, "2025-02", known_invoice_ids={"INV-00001"})


def test_empty_month_is_an_error(month_tables):
    empty = {k: v.iloc[0:0] for k, v in month_tables.items()}
    with pytest.raises(ContractError, match="no rows"):
        check_month(empty, "2025-01")


def test_optional_columns_may_be_absent(month_tables):
    month_tables["transfers"] = month_tables["transfers"].drop(columns=["counterparty_name", "counterparty_account"])
    month_tables["invoices"] = month_tables["invoices"].drop(columns=["invoice_number", "counterparty_name"])
    out = check_month(month_tables, "2025-01")
    assert "counterparty_name" not in out["transfers"].columns


def test_same_sql_text_runs_on_duckdb_with_mapped_columns(tmp_path, month_tables):
    columns = ColumnMap(tables={"transfers": "bank_tx"}, columns={"transfers": {"title": "memo", "amount": "amt"}})
    sql = extraction_sql("transfers", columns, "ledgerlink")
    assert "@window_start" in sql and "`ledgerlink.bank_tx`" in sql and "x.`memo` AS title" in sql
    assert "$window_start" in to_duckdb(sql)
    wh = DuckDBWarehouse(tmp_path / "wh.duckdb", columns=columns)
    wh.seed(month_tables)
    assert wh.months() == ["2025-01"]
    got = check_month(wh.extract_month("2025-01"), "2025-01")
    assert len(got["transfers"]) == 20 and got["transfers"]["title"].iloc[0].startswith("payment")
    assert wh.extract_month("2025-03")["transfers"].empty


def test_renamed_warehouse_column_is_named(tmp_path, month_tables):
    wh = DuckDBWarehouse(tmp_path / "wh.duckdb")
    wh.seed(month_tables)
    import duckdb

    with duckdb.connect(str(wh.path)) as con:
        con.execute("ALTER TABLE ledgerlink.transfers RENAME COLUMN title TO memo")
    with pytest.raises(ContractError) as err:
        wh.extract_month("2025-01")
    assert err.value.column == "title" and "memo" in str(err.value) and "warehouse.columns" in str(err.value)


def test_wrong_type_in_warehouse_is_named(tmp_path, month_tables):
    month_tables["transfers"] = month_tables["transfers"].assign(amount=month_tables["transfers"]["amount"].astype(str))
    wh = DuckDBWarehouse(tmp_path / "wh.duckdb")
    wh.seed(month_tables)
    with pytest.raises(ContractError, match="amount"):
        check_month(wh.extract_month("2025-01"), "2025-01")


def test_conform_rejects_bool_amounts():
    df = tiny_month()["links"].assign(allocated_amount=True)
    with pytest.raises(ContractError, match="allocated_amount"):
        conform("links", df)


# -- extraction drops nothing (issue 11.4) ----------------------------------------------------------
def _two_months() -> dict[str, pd.DataFrame]:
    jan, feb = tiny_month("2025-01"), tiny_month("2025-02", start=100)
    return {t: pd.concat([jan[t], feb[t]], ignore_index=True) for t in jan}


def _seeded(tmp_path, tables, name="wh.duckdb") -> DuckDBWarehouse:
    wh = DuckDBWarehouse(tmp_path / name)
    wh.seed(tables)
    return wh


def _set(df: pd.DataFrame, row_id: str, **values) -> pd.DataFrame:
    key = "transfer_id" if "transfer_id" in df.columns and "invoice_id" not in df.columns else "invoice_id"
    df = df.copy()
    for col, value in values.items():
        df[col] = df[col].astype(object)
        df.loc[df[key] == row_id, col] = value
    return df


@pytest.mark.parametrize(
    "table,row_id,change,column,expect",
    [
        ("transfers", "TRF-00003", {"booked_at": None}, "booked_at", "null value"),
        ("invoices", "INV-00004", {"issued_at": None}, "issued_at", "null value"),
        ("transfers", "TRF-00006", {"booked_at": pd.Timestamp("2025-02-03")}, "booked_at", "outside month 2025-01"),
        ("invoices", "INV-00007", {"issued_at": pd.Timestamp("2024-12-30")}, "issued_at", "outside month 2025-01"),
        ("invoices", "INV-00008", {"month": "2025-1"}, "month", "YYYY-MM"),
        ("transfers", "TRF-00009", {"month": None}, "month", "null value"),
    ],
    ids=["null-booked_at", "null-issued_at", "booked-next-month", "issued-last-year", "bad-month", "null-month"],
)
def test_extraction_selects_every_row_of_the_month_and_a_misdated_one_is_named(
    tmp_path, table, row_id, change, column, expect
):
    """These rows used to vanish with exit code 0: the month was selected by a date window."""
    tables = _two_months()
    tables[table] = _set(tables[table], row_id, **change)
    wh = _seeded(tmp_path, tables)
    with pytest.raises(ContractError) as err:
        check_month(wh.extract_month("2025-01"), "2025-01")
    assert (err.value.table, err.value.column) == (table, column)
    assert expect in str(err.value) and row_id in str(err.value)


def test_a_transfer_booked_into_the_next_month_stops_its_own_month_until_fixed(tmp_path):
    """It used to be left out of its month and then fail every later month for good."""
    from ledgerlink.data.collect import collect_month
    from ledgerlink.data.store import DatasetStore

    tables = _two_months()
    tables["transfers"] = _set(tables["transfers"], "TRF-00006", booked_at=pd.Timestamp("2025-02-03"))
    store = DatasetStore(str(tmp_path / "store"))
    with pytest.raises(ContractError, match="TRF-00006") as err:
        collect_month(_seeded(tmp_path, tables), store)
    assert (err.value.table, err.value.column) == ("transfers", "booked_at")
    assert store.collected_months() == []
    tables["transfers"] = _set(tables["transfers"], "TRF-00006", booked_at=pd.Timestamp("2025-01-30"))
    fixed = _seeded(tmp_path, tables, name="fixed.duckdb")
    collect_month(fixed, store)
    ref, _ = collect_month(fixed, store)
    assert ref.months == ["2025-01", "2025-02"]
    train, test = store.load_train(), store.load_test()
    assert len(train["transfers"]) + len(test["transfers"]) == 40  # every transfer of both months
    assert len(train["links"]) + len(test["links"]) == len(tables["links"])


def test_a_link_whose_transfer_is_missing_is_named(tmp_path):
    tables = _two_months()
    tables["transfers"] = tables["transfers"][tables["transfers"]["transfer_id"] != "TRF-00002"]
    wh = _seeded(tmp_path, tables)
    with pytest.raises(ContractError, match="not in month 2025-01") as err:
        check_month(wh.extract_month("2025-01"), "2025-01")
    assert (err.value.table, err.value.column) == ("links", "transfer_id") and "TRF-00002" in str(err.value)


def test_a_link_for_a_transfer_of_another_month_is_named_in_both_months(tmp_path):
    tables = _two_months()
    tables["links"] = _set(tables["links"], "INV-00002", month="2025-02")  # its transfer is in January
    wh = _seeded(tmp_path, tables)
    for month in ("2025-01", "2025-02"):
        with pytest.raises(ContractError) as err:
            check_month(wh.extract_month(month), month)
        assert err.value.table == "links" and "TRF-00002" in str(err.value)


def test_ids_are_compared_without_surrounding_spaces_on_both_sides(tmp_path):
    """Normalisation: every id column of every table is stripped, so a padded id still links."""
    tables = _two_months()
    tables["links"] = tables["links"].assign(
        transfer_id=tables["links"]["transfer_id"].where(tables["links"]["transfer_id"] != "TRF-00001", "TRF-00001 ")
    )
    tables["invoices"] = tables["invoices"].assign(
        invoice_id=tables["invoices"]["invoice_id"].where(tables["invoices"]["invoice_id"] != "INV-00003", " INV-00003")
    )
    wh = _seeded(tmp_path, tables)
    out = check_month(wh.extract_month("2025-01"), "2025-01")
    assert len(out["links"]) == 16 and "TRF-00001" in set(out["links"]["transfer_id"])
    assert "INV-00003" in set(out["invoices"]["invoice_id"])
    assert not out["links"]["transfer_id"].str.contains(" ").any()


def test_ids_that_collide_once_stripped_are_duplicate_keys():
    m = tiny_month()
    m["transfers"].loc[1, "transfer_id"] = m["transfers"].loc[0, "transfer_id"] + " "
    with pytest.raises(ContractError, match="share a key") as err:
        check_month(m, "2025-01")
    assert err.value.table == "transfers"


def test_months_with_a_malformed_month_label_are_named(tmp_path):
    tables = _two_months()
    tables["transfers"] = _set(tables["transfers"], "TRF-00105", month="Feb 2025")
    with pytest.raises(ContractError, match="YYYY-MM") as err:
        _seeded(tmp_path, tables).months()
    assert (err.value.table, err.value.column) == ("transfers", "month") and "Feb 2025" in str(err.value)
