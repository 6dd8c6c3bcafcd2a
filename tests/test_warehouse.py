"""The embedded DuckDB warehouse: seeded only when it does not exist yet, never replaced, crash-safe seeding."""

import multiprocessing as mp
import time

import duckdb
import pytest

from ledgerlink.data.contract import ContractError
from ledgerlink.data.orphans import remove
from ledgerlink.data.store import DatasetStore
from ledgerlink.data.warehouse import DuckDBWarehouse, open_warehouse, seeding_leftovers
from tests.helpers import tiny_month

SMALL_SYNTHETIC = {"seed": 7, "months": 2, "contractors": 20, "transfers_per_month": 60, "start_month": "2025-01"}


def _cfg(path, **warehouse) -> dict:
    return {
        "warehouse": {"kind": "duckdb", "path": str(path), "dataset": "ledgerlink", "columns": {}, **warehouse},
        "synthetic": dict(SMALL_SYNTHETIC),
    }


def _real_warehouse(path, drop_table: str | None = None, drop_column: tuple[str, str] | None = None) -> None:
    """A warehouse the finance team filled: the contract tables (one maybe missing or short of a column)
    and, in another schema, a table ledgerlink knows nothing about."""
    data = tiny_month("2025-01", n=8)
    with duckdb.connect(str(path)) as con:
        con.execute("CREATE SCHEMA ledgerlink")
        for table, df in data.items():
            if table == drop_table:
                continue
            if drop_column and drop_column[0] == table:
                df = df.drop(columns=[drop_column[1]])
            con.register("frame", df)
            con.execute(f"CREATE TABLE ledgerlink.{table} AS SELECT * FROM frame")
            con.unregister("frame")
        con.execute("CREATE SCHEMA finance")
        con.execute("CREATE TABLE finance.general_ledger AS SELECT range AS entry, 'booked' AS state FROM range(1000)")


def _contents(path) -> dict:
    with duckdb.connect(str(path), read_only=True) as con:
        tables = con.execute("SELECT table_schema, table_name FROM information_schema.tables ORDER BY 1, 2").fetchall()
        return {f"{s}.{t}": con.execute(f'SELECT count(*) FROM "{s}"."{t}"').fetchone()[0] for s, t in tables}


@pytest.mark.parametrize(
    "broken,where",
    [
        ({"drop_table": "links"}, ("links", None)),
        ({"drop_table": "transfers"}, ("transfers", None)),
        ({"drop_column": ("invoices", "due_at")}, ("invoices", "due_at")),
    ],
    ids=["missing-links-table", "missing-transfers-table", "missing-column"],
)
def test_an_existing_warehouse_missing_a_table_or_column_is_a_contract_error_and_stays_untouched(
    tmp_path, broken, where
):
    """Issue 11.2: a warehouse missing one table used to be replaced by synthetic data, exit 0."""
    path = tmp_path / "warehouse.duckdb"
    _real_warehouse(path, **broken)
    before, size = _contents(path), path.stat().st_size
    with pytest.raises(ContractError) as err:
        open_warehouse(_cfg(path, seed_if_empty=True))
    assert (err.value.table, err.value.column) == where
    assert "never replaced" in str(err.value)
    assert _contents(path) == before and path.stat().st_size == size
    assert before["finance.general_ledger"] == 1000
    assert list(tmp_path.iterdir()) == [path]  # nothing written next to it either


def test_a_missing_warehouse_is_seeded_marked_and_then_only_read(tmp_path):
    path = tmp_path / "wh" / "warehouse.duckdb"
    wh = open_warehouse(_cfg(path))
    assert wh.months() == ["2025-01", "2025-02"]
    marker = wh.seed_marker()
    assert marker is not None and marker["created_by"] == "ledgerlink" and '"contractors": 20' in marker["note"]
    contents, mtime = _contents(path), path.stat().st_mtime_ns
    time.sleep(0.01)
    again = open_warehouse(_cfg(path, seed_if_empty=True))  # exists now: checked, not seeded again
    assert _contents(path) == contents and path.stat().st_mtime_ns == mtime
    assert again.extract_month("2025-02")["transfers"].shape[0] == 60
    assert list(path.parent.iterdir()) == [path]  # no temp file left


def test_a_foreign_complete_warehouse_is_used_as_it_is(tmp_path):
    path = tmp_path / "warehouse.duckdb"
    _real_warehouse(path)
    wh = open_warehouse(_cfg(path))
    assert wh.seed_marker() is None and wh.months() == ["2025-01"]
    assert _contents(path)["finance.general_ledger"] == 1000


def test_a_seeded_warehouse_that_lost_a_table_says_how_to_reseed(tmp_path):
    path = tmp_path / "warehouse.duckdb"
    open_warehouse(_cfg(path))
    with duckdb.connect(str(path)) as con:
        con.execute("DROP TABLE ledgerlink.links")
    with pytest.raises(ContractError, match="seeded by ledgerlink") as err:
        open_warehouse(_cfg(path))
    assert err.value.table == "links" and "delete" in str(err.value)


def test_seeding_is_off_and_the_file_is_missing(tmp_path):
    with pytest.raises(FileNotFoundError, match="seeding is off"):
        open_warehouse(_cfg(tmp_path / "none.duckdb", seed_if_empty=False))


def test_seed_never_replaces_an_existing_file(tmp_path):
    path = tmp_path / "warehouse.duckdb"
    _real_warehouse(path)
    before = _contents(path)
    with pytest.raises(FileExistsError, match="never replaced"):
        DuckDBWarehouse(path).seed(tiny_month())
    assert _contents(path) == before
    other = tmp_path / "notes.duckdb"
    other.write_text("not a database, but somebody's file")
    with pytest.raises(FileExistsError):
        DuckDBWarehouse(other).seed(tiny_month())
    assert other.read_text() == "not a database, but somebody's file"


def test_a_seeding_killed_before_its_rename_leaves_no_warehouse_and_a_listed_leftover(tmp_path, monkeypatch):
    """The file appears whole or not at all; the killed seeding's temp file is an orphan, removed on request."""
    path = tmp_path / "warehouse.duckdb"
    import ledgerlink.data.warehouse as warehouse_module

    def killed(*args, **kwargs):
        raise KeyboardInterrupt("killed before the rename (simulated)")

    monkeypatch.setattr(warehouse_module, "_publish", killed)
    monkeypatch.setattr(warehouse_module, "_discard", lambda tmp: None)  # a kill -9 cleans nothing up
    with pytest.raises(KeyboardInterrupt):
        open_warehouse(_cfg(path))
    monkeypatch.undo()
    assert not path.exists()
    leftovers = seeding_leftovers(path)
    assert len(leftovers) == 1 and leftovers[0].name.startswith("warehouse.duckdb.")
    wh = open_warehouse(_cfg(path))  # the rerun seeds normally
    assert wh.months() == ["2025-01", "2025-02"]
    store = DatasetStore(str(tmp_path / "datasets"))
    assert remove(store, path, min_age_s=0, dry_run=True) == [str(leftovers[0])]
    assert remove(store, path, min_age_s=0) == [str(leftovers[0])]
    assert seeding_leftovers(path) == [] and path.exists()


def _open_in_a_race(cfg: dict, barrier, results) -> None:
    from ledgerlink.data import warehouse as warehouse_module

    publish = warehouse_module._publish

    def publish_together(tmp, path):
        barrier.wait(timeout=60)
        return publish(tmp, path)

    warehouse_module._publish = publish_together
    try:
        wh = warehouse_module.open_warehouse(cfg)
        results.put(("ok", wh.months()))
    except BaseException as exc:
        results.put(("error", f"{type(exc).__name__}: {exc}"))


def test_two_processes_seeding_at_once_both_get_one_whole_warehouse(tmp_path):
    path = tmp_path / "warehouse.duckdb"
    ctx = mp.get_context("spawn")
    barrier, results = ctx.Barrier(2), ctx.Queue()
    procs = [ctx.Process(target=_open_in_a_race, args=(_cfg(path), barrier, results)) for _ in range(2)]
    for p in procs:
        p.start()
    outcomes, deadline = [], time.monotonic() + 180
    while len(outcomes) < 2 and time.monotonic() < deadline:
        try:
            outcomes.append(results.get(timeout=0.5))
        except Exception:
            assert not any(p.exitcode not in (None, 0) for p in procs), [p.exitcode for p in procs]
    for p in procs:
        p.join(timeout=30)
    assert outcomes == [("ok", ["2025-01", "2025-02"])] * 2, outcomes
    assert sorted(p.name for p in tmp_path.iterdir()) == ["warehouse.duckdb"]
    assert len(DuckDBWarehouse(path).extract_month("2025-01")["transfers"]) == 60


def test_without_hard_links_seeding_falls_back_to_check_then_rename(tmp_path, monkeypatch):
    import errno
    import os

    import ledgerlink.data.warehouse as warehouse_module

    def no_links(src, dst):
        raise OSError(errno.EPERM, "Operation not permitted (a filesystem without hard links)")

    monkeypatch.setattr(warehouse_module.os, "link", no_links)
    path = tmp_path / "warehouse.duckdb"
    assert open_warehouse(_cfg(path)).months() == ["2025-01", "2025-02"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["warehouse.duckdb"]
    before = _contents(path)
    with pytest.raises(FileExistsError, match="never replaced"):
        DuckDBWarehouse(path).seed(tiny_month())
    late = tmp_path / "warehouse.duckdb.late.seeding"  # a seeding that finished after the file appeared
    late.write_bytes(b"another whole warehouse")
    with pytest.raises(FileExistsError, match="never replaced"):
        warehouse_module._publish(late, path)
    assert _contents(path) == before and os.path.exists(late)
