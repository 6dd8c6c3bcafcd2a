"""Suggestions for the open month (issue 13.1, 13.5): which rows the open month is, the rows written, idempotence,
crash safety and the warehouse's own tables left alone, on the embedded DuckDB warehouse with a real matcher."""

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import duckdb
import pandas as pd
import pytest

from ledgerlink.config import Config, ConfigError
from ledgerlink.data.contract import ContractError
from ledgerlink.data.suggest import SuggestError, batches, check_open_month, open_month, suggest_month
from ledgerlink.data.suggestions import (
    COLUMN_NAMES,
    DuckDBSuggestions,
    SuggestionTableError,
    open_suggestions,
    suggestion_rows,
)
from ledgerlink.data.synthetic import SyntheticConfig, generate
from ledgerlink.data.warehouse import DuckDBWarehouse
from tests.conftest import tiny_month

ROOT = Path(__file__).resolve().parents[1]
MONTHS = ("invoices", "transfers", "links")


def _contents(path) -> dict:
    """Every table of the file with its rows, sorted: what 'untouched' means."""
    with duckdb.connect(str(path), read_only=True) as con:
        tables = con.execute("SELECT table_schema, table_name FROM information_schema.tables ORDER BY 1, 2").fetchall()
        return {
            f"{s}.{t}": con.execute(f'SELECT * FROM "{s}"."{t}" ORDER BY ALL').fetchall()
            for s, t in tables
            if t != "suggested_links"
        }


def _rows(path, schema="ledgerlink") -> pd.DataFrame:
    with duckdb.connect(str(path), read_only=True) as con:
        return con.execute(f'SELECT * FROM "{schema}".suggested_links ORDER BY ALL').df()


# -- which month, which rows ----------------------------------------------------------------------------------
def test_the_open_month_is_the_one_after_the_newest_collected_and_never_a_collected_one():
    assert open_month(["2025-01", "2025-02"]) == "2025-03"
    assert open_month(["2025-11", "2025-12"]) == "2026-01"
    assert open_month(["2025-01"], "2025-04") == "2025-04"  # tagging may lag: a later month may be open too
    with pytest.raises(SuggestError, match="2025-01 is collected already.*e.g. 2025-03"):
        open_month(["2025-01", "2025-02"], "2025-01")
    with pytest.raises(SuggestError, match="YYYY-MM"):
        open_month(["2025-01"], "2025-13")
    with pytest.raises(SuggestError, match="nothing is collected yet"):
        open_month([])


@pytest.fixture
def hand_made(tmp_path):
    """January tagged (invoice 3 paid half, 0 and 5 unpaid), February open (its links are in the warehouse and must
    be ignored), an unpaid invoice from long ago, and an invoice issued after February."""
    jan, feb, mar = tiny_month("2025-01", n=10), tiny_month("2025-02", n=10, start=100), tiny_month("2025-03", 3, 200)
    jan["links"].loc[jan["links"]["invoice_id"] == "INV-00003", "allocated_amount"] = 65.0  # half of 130
    old = tiny_month("2024-06", n=1, start=900)
    tables = {t: pd.concat([old[t], jan[t], feb[t], mar[t]], ignore_index=True) for t in MONTHS}
    wh = DuckDBWarehouse(tmp_path / "warehouse.duckdb")
    wh.seed(tables)
    return wh


def test_open_month_has_its_transfers_and_the_invoices_open_then(hand_made):
    got = check_open_month(hand_made.extract_open_month("2025-02"), "2025-02")
    assert sorted(got["transfers"]["transfer_id"]) == [f"TRF-{100 + i:05d}" for i in range(10)]
    expected = {"INV-00000", "INV-00003", "INV-00005"} | {f"INV-{100 + i:05d}" for i in range(10)}
    # January's paid invoices are settled by its tags; INV-00900 (2024-06) is past the 180-day look-back;
    # February's own links are ignored (its invoices are all open); March's invoices are not issued yet
    assert set(got["invoices"]["invoice_id"]) == expected
    longer = hand_made.extract_open_month("2025-02", lookback_days=400)["invoices"]
    assert "INV-00900" in set(longer["invoice_id"])


def test_the_not_yet_tagged_condition_is_bigquery_sql_run_on_duckdb(hand_made):
    got = hand_made.extract_open_month("2025-02", open_transfers="x.amount >= 150 AND x.title LIKE 'payment%'")
    assert sorted(got["transfers"]["transfer_id"]) == [f"TRF-{100 + i:05d}" for i in range(5, 10)]


def test_config_checks_the_suggest_section():
    cfg = Config.load(ROOT / "configs" / "local.yaml")
    assert (cfg.suggest.table, cfg.suggest.open_transfers, cfg.monitoring.auto_precision_floor) == (
        "suggested_links",
        "TRUE",
        0.995,
    )
    for over, key, says in (
        ({"suggest": {"table": "transfers"}}, "suggest.table", "a warehouse table ledgerlink reads"),
        ({"suggest": {"table": "drop table"}}, "suggest.table", "letters, digits and underscores"),
        ({"suggest": {"open_transfers": "x.status = 'open'; DROP TABLE x"}}, "suggest.open_transfers", "not a"),
        ({"suggest": {"open_transfers": " "}}, "suggest.open_transfers", "use TRUE"),
        ({"suggest": {"batch_sise": 10}}, "suggest.batch_sise", "did you mean 'batch_size'"),
        ({"monitoring": {"auto_precision_floor": 99.5}}, "monitoring.auto_precision_floor", "less than or equal"),
    ):
        with pytest.raises(ConfigError) as err:
            Config.load(ROOT / "configs" / "local.yaml", over)
        assert f"  {key}: " in str(err.value) and says in str(err.value), str(err.value)
    # a table of that name in another dataset is fine: it is not the warehouse's
    assert Config.load(None, {"suggest": {"table": "links", "dataset": "finance_out"}}).suggest.table == "links"


# -- matching and writing -------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def world():
    """A synthetic warehouse month to suggest for and a matcher trained on the month before."""
    data = generate(SyntheticConfig(months=2, contractors=60, transfers_per_month=300))
    from ledgerlink.matching.model import Matcher

    jan = {t: data[t][data[t]["month"] == "2025-01"] for t in MONTHS}
    matcher = Matcher(n_estimators=40, random_state=0).fit(jan["invoices"], jan["transfers"], jan["links"])
    return data, matcher


@pytest.fixture
def warehouse(world, tmp_path):
    wh = DuckDBWarehouse(tmp_path / "warehouse.duckdb")
    wh.seed(world[0])
    with duckdb.connect(str(wh.path)) as con:  # the finance team's own table, next to ours
        con.execute("CREATE SCHEMA finance")
        con.execute("CREATE TABLE finance.general_ledger AS SELECT range AS entry FROM range(100)")
    return wh


def test_rows_carry_every_column_one_per_link_and_one_for_a_transfer_that_pays_nothing(world, warehouse):
    data, matcher = world
    table = DuckDBSuggestions(warehouse.path, "ledgerlink")
    summary = suggest_month(warehouse, table, matcher, "2025-02", "m", "3", show_progress=False)
    rows = _rows(warehouse.path)
    feb = data["transfers"][data["transfers"]["month"] == "2025-02"]
    assert tuple(rows.columns) == COLUMN_NAMES
    assert set(rows["transfer_id"]) == set(feb["transfer_id"]) and summary.transfers == len(feb)
    assert len(rows) == summary.rows and not rows.duplicated(["transfer_id", "invoice_id"]).any()
    assert set(rows["decision"]) == {"auto", "review"} and (rows["month"] == "2025-02").all()
    assert (rows["model_name"] == "m").all() and (rows["model_version"] == "3").all()
    none = rows[rows["invoice_id"].isna()]
    assert len(none) == summary.counts["none"] > 0 and none["allocated_amount"].isna().all()
    assert none.groupby("transfer_id").size().max() == 1  # an empty invoice is the transfer's only row
    linked = rows[rows["invoice_id"].notna()]
    assert linked["allocated_amount"].notna().all() and rows["confidence"].between(0, 1).all()
    assert rows["reasons"].map(len).gt(0).all()
    assert rows["reasons"].map(lambda r: all(isinstance(s, str) and s for s in r)).all()
    assert rows["suggested_at"].nunique() == 1 and str(rows["suggested_at"].dt.tz) in ("UTC", "Etc/UTC")
    # every row of a transfer has its set's confidence and decision
    assert (rows.groupby("transfer_id")[["confidence", "decision"]].nunique() == 1).all().all()
    assert summary.counts["auto"] + summary.counts["review"] + summary.counts["none"] == summary.transfers


def test_batches_are_the_matchers_own_so_suggestions_equal_one_match_call(world, warehouse):
    data, matcher = world
    import tempfile

    from ledgerlink.matching.base import load_matcher, save_matcher

    with tempfile.TemporaryDirectory() as tmp:  # the same model, matching in batches of 70 transfers
        save_matcher(matcher, tmp)
        batched = load_matcher(tmp).set_params(batch_size=70)
    month = check_open_month(warehouse.extract_open_month("2025-02"), "2025-02")
    assert len(batches(month["transfers"], 70)) == 5
    table = DuckDBSuggestions(warehouse.path, "ledgerlink")
    suggest_month(warehouse, table, batched, "2025-02", "m", "1", show_progress=False)
    one_call = batched.match(month["invoices"], month["transfers"], explain=True)
    expected = suggestion_rows(one_call, "2025-02", "m", "1", pd.Timestamp("2026-01-01", tz="UTC"))
    got = _rows(warehouse.path).drop(columns="suggested_at")
    key = ["transfer_id", "invoice_id"]
    pd.testing.assert_frame_equal(
        got.sort_values(key).reset_index(drop=True)[["transfer_id", "invoice_id", "decision", "confidence"]],
        expected.sort_values(key).reset_index(drop=True)[["transfer_id", "invoice_id", "decision", "confidence"]],
    )


def test_a_rerun_replaces_its_own_rows_and_keeps_other_versions_and_the_warehouse_tables(world, warehouse):
    data, matcher = world
    before = _contents(warehouse.path)
    table = DuckDBSuggestions(warehouse.path, "ledgerlink")
    first = suggest_month(warehouse, table, matcher, "2025-02", "m", "1", show_progress=False)
    rows1 = _rows(warehouse.path)
    time.sleep(1.1)
    second = suggest_month(warehouse, table, matcher, "2025-02", "m", "1", show_progress=False)
    rows2 = _rows(warehouse.path)
    assert len(rows2) == len(rows1) == first.rows == second.rows  # replaced, never duplicated
    assert rows2["suggested_at"].iloc[0] > rows1["suggested_at"].iloc[0]
    pd.testing.assert_frame_equal(rows2.drop(columns="suggested_at"), rows1.drop(columns="suggested_at"))
    suggest_month(warehouse, table, matcher, "2025-02", "m", "2", show_progress=False)  # another version: its own
    both = _rows(warehouse.path)
    assert both.groupby("model_version").size().to_dict() == {"1": first.rows, "2": first.rows}
    assert _contents(warehouse.path) == before  # contract tables, seed marker and the finance schema untouched


def test_a_failure_mid_write_leaves_the_previous_suggestions_intact(world, warehouse, monkeypatch):
    data, matcher = world
    table = DuckDBSuggestions(warehouse.path, "ledgerlink")
    suggest_month(warehouse, table, matcher, "2025-02", "m", "1", show_progress=False)
    before = _rows(warehouse.path)
    real_insert = DuckDBSuggestions._insert

    def insert_then_fail(self, con, parquet):
        written = real_insert(self, con, parquet)  # the old rows are deleted and the new ones in, uncommitted
        assert written > 0
        raise OSError("disk full (injected)")

    monkeypatch.setattr(DuckDBSuggestions, "_insert", insert_then_fail)
    with pytest.raises(OSError, match="injected"):
        suggest_month(warehouse, table, matcher, "2025-02", "m", "1", show_progress=False)
    pd.testing.assert_frame_equal(_rows(warehouse.path), before)


KILLED_WRITER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    sys.path[:0] = [{src!r}]
    from ledgerlink.data.suggestions import DuckDBSuggestions

    real_insert = DuckDBSuggestions._insert

    def insert_and_hang(self, con, parquet):
        real_insert(self, con, parquet)
        Path({ready!r}).write_text("inserted, not committed")
        time.sleep(600)

    DuckDBSuggestions._insert = insert_and_hang
    DuckDBSuggestions({path!r}, "ledgerlink").replace("2025-02", "m", "1", Path({parquet!r}))
    """
)


def test_a_process_killed_mid_write_leaves_the_previous_suggestions_and_a_readable_warehouse(
    world, warehouse, tmp_path
):
    data, matcher = world
    table = DuckDBSuggestions(warehouse.path, "ledgerlink")
    suggest_month(warehouse, table, matcher, "2025-02", "m", "1", show_progress=False)
    before_rows, before_tables = _rows(warehouse.path), _contents(warehouse.path)
    # a staged file of other rows for the same key, as a rerun with a changed model would write
    staged = tmp_path / "staged.parquet"
    changed = before_rows.assign(confidence=0.5, decision="review").head(7)
    from ledgerlink.data.suggestions import SuggestionWriter

    writer = SuggestionWriter(staged)
    writer.add(changed)
    writer.close()
    ready = tmp_path / "ready"
    script = KILLED_WRITER.format(
        src=str(ROOT / "src"), ready=str(ready), path=str(warehouse.path), parquet=str(staged)
    )
    proc = subprocess.Popen([sys.executable, "-c", script], stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while not ready.exists():
        assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
        assert time.monotonic() < deadline, "the writer never got to its insert"
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    pd.testing.assert_frame_equal(_rows(warehouse.path), before_rows)
    assert _contents(warehouse.path) == before_tables
    # and the file takes the next write as usual
    assert table.replace("2025-02", "m", "1", staged) == 7
    assert len(_rows(warehouse.path)) == 7


def test_a_table_of_that_name_that_is_not_ours_is_refused_and_left_alone(world, warehouse):
    data, matcher = world
    with duckdb.connect(str(warehouse.path)) as con:
        con.execute("CREATE TABLE ledgerlink.suggested_links AS SELECT 1 AS id, 'keep me' AS note")
    table = DuckDBSuggestions(warehouse.path, "ledgerlink")
    with pytest.raises(SuggestionTableError, match="exists but is not a suggestions table.*Nothing was written"):
        suggest_month(warehouse, table, matcher, "2025-02", "m", "1", show_progress=False)
    with duckdb.connect(str(warehouse.path), read_only=True) as con:
        assert con.execute("SELECT * FROM ledgerlink.suggested_links").fetchall() == [(1, "keep me")]


def test_a_warehouse_held_by_another_process_is_waited_for_then_a_clear_error(warehouse, tmp_path):
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            f"import duckdb, time; c = duckdb.connect({str(warehouse.path)!r}); print('held', flush=True); "
            "time.sleep(600)",
        ],
        stdout=subprocess.PIPE,
    )
    try:
        assert holder.stdout.readline().strip() == b"held"
        table = DuckDBSuggestions(warehouse.path, "ledgerlink", lock_wait_s=1.0)
        with pytest.raises(SuggestionTableError, match="nothing was written, rerun when the other process is done"):
            table.replace("2025-02", "m", "1", tmp_path / "none.parquet")
    finally:
        holder.kill()
        holder.wait()


def test_a_month_without_open_transfers_writes_nothing(world, warehouse):
    data, matcher = world
    table = DuckDBSuggestions(warehouse.path, "ledgerlink")
    summary = suggest_month(warehouse, table, matcher, "2025-07", "m", "1", show_progress=False)
    assert "no open transfers in 2025-07" in summary.skipped and summary.rows == 0
    assert table.read("2025-07").empty


def test_a_broken_open_month_is_a_contract_error_naming_the_rows(world, tmp_path):
    data, matcher = world
    tables = {t: df.copy() for t, df in data.items() if t in MONTHS}
    tr = tables["transfers"]
    tr.loc[tr.index[tr["month"] == "2025-02"][0], "booked_at"] = pd.Timestamp("2025-03-15")  # labelled February
    wh = DuckDBWarehouse(tmp_path / "warehouse.duckdb")
    wh.seed(tables)
    with pytest.raises(ContractError, match="dated outside month 2025-02"):
        suggest_month(wh, DuckDBSuggestions(wh.path, "ledgerlink"), matcher, "2025-02", "m", "1", show_progress=False)


def test_suggestions_go_to_the_configured_table_and_schema(world, warehouse):
    data, matcher = world
    cfg = Config.load(
        None,
        {
            "warehouse": {"path": str(warehouse.path)},
            "suggest": {"table": "proposals", "dataset": "out"},
        },
    ).to_dict()
    table = open_suggestions(cfg)
    summary = suggest_month(warehouse, table, matcher, "2025-02", "m", "1", show_progress=False)
    assert table.name == '"out"."proposals"'
    assert len(table.read("2025-02")) == summary.rows
    with pytest.raises(FileNotFoundError, match="never make up|does not exist"):
        DuckDBSuggestions(warehouse.path.with_name("missing.duckdb"), "out").read("2025-02")
    assert not warehouse.path.with_name("missing.duckdb").exists()


def test_production_precision_from_the_tags_means_what_the_evaluation_means(world, warehouse):
    """The suggestions scored against the month's tags (monitoring) give the evaluation's auto-match precision of the
    same predictions, and recall = auto rate x precision when every tagged transfer got a suggestion."""
    from ledgerlink.evaluation.metrics import score_links
    from ledgerlink.monitoring.suggestion_quality import score_suggestions

    data, matcher = world
    table = DuckDBSuggestions(warehouse.path, "ledgerlink")
    suggest_month(warehouse, table, matcher, "2025-02", "m", "1", show_progress=False)
    feb = {t: data[t][data[t]["month"] == "2025-02"] for t in ("transfers", "links")}
    quality = score_suggestions(table.read("2025-02"), feb["transfers"], feb["links"])
    month = check_open_month(warehouse.extract_open_month("2025-02"), "2025-02")
    result = matcher.match(month["invoices"], month["transfers"])
    expected = score_links(result.links, feb["links"], feb["transfers"], result.decisions)
    assert quality.auto_precision == pytest.approx(expected["auto_match_precision"])
    assert quality.auto_recall == pytest.approx(expected["auto_match_rate"] * expected["auto_match_precision"])
    assert quality.suggested == quality.tagged == len(feb["transfers"]) and quality.not_suggested == 0
