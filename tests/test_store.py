"""The dataset store: frozen disjoint test split, idempotent months, crash safety."""

import json

import pandas as pd
import pytest

from ledgerlink.data.collect import collect_month, next_month
from ledgerlink.data.contract import ContractError
from ledgerlink.data.split import is_test_transfer, split_month
from ledgerlink.data.store import DatasetStore, StoreError
from ledgerlink.data.warehouse import DuckDBWarehouse
from tests.helpers import tiny_month


def _warehouse(tmp_path, months=("2025-01", "2025-02", "2025-03"), n=40) -> DuckDBWarehouse:
    parts = [tiny_month(m, n=n, start=1000 * i) for i, m in enumerate(months)]
    tables = {t: pd.concat([p[t] for p in parts], ignore_index=True) for t in parts[0]}
    wh = DuckDBWarehouse(tmp_path / "wh.duckdb")
    wh.seed(tables)
    return wh


def test_split_is_deterministic_and_order_free():
    ids = pd.Series([f"TRF-{i}" for i in range(2000)])
    a = is_test_transfer(ids, 0.3, 13)
    b = is_test_transfer(ids[::-1].reset_index(drop=True), 0.3, 13)[::-1]
    assert (a == b).all() and 0.27 < a.mean() < 0.33
    assert not (a == is_test_transfer(ids, 0.3, 14)).all()


def test_frozen_test_set_stays_frozen_and_disjoint(tmp_path):
    wh, store = _warehouse(tmp_path), DatasetStore(str(tmp_path / "store"))
    ref1, _ = collect_month(wh, store)
    test_before = store.load_test()
    assert ref1.test_month == "2025-01" and ref1.test_rows["transfers"] > 0
    ref2, _ = collect_month(wh, store)
    ref3, _ = collect_month(wh, store)
    assert [ref2.new_month, ref3.new_month] == ["2025-02", "2025-03"]
    assert ref3.test_fingerprint == ref1.test_fingerprint
    for t in test_before:
        pd.testing.assert_frame_equal(store.load_test()[t], test_before[t])
    train = store.load_train()
    test_ids = set(test_before["transfers"]["transfer_id"])
    assert not test_ids & set(train["transfers"]["transfer_id"])
    assert not test_ids & set(train["links"]["transfer_id"])
    # every row of the warehouse is somewhere: nothing silently dropped
    assert len(train["transfers"]) + len(test_ids) == 3 * 40
    assert train["transfers"]["month"].value_counts().to_dict()["2025-02"] == 40


def test_collecting_a_month_twice_changes_nothing_and_says_so(tmp_path):
    wh, store = _warehouse(tmp_path), DatasetStore(str(tmp_path / "store"))
    collect_month(wh, store)
    manifest = store.read_manifest().to_json()
    ref, _ = collect_month(wh, store, month="2025-01")
    assert not ref.collected and "already collected" in ref.message
    assert store.read_manifest().to_json() == manifest


def test_changed_content_of_a_collected_month_is_refused(tmp_path):
    wh, store = _warehouse(tmp_path), DatasetStore(str(tmp_path / "store"))
    collect_month(wh, store)
    changed = tiny_month("2025-01", n=40)
    changed["transfers"].loc[0, "title"] = "edited later"
    wh2 = DuckDBWarehouse(tmp_path / "wh2.duckdb")
    wh2.seed(changed)
    with pytest.raises(StoreError, match="append-only"):
        collect_month(wh2, store, month="2025-01")


def test_interrupted_write_leaves_no_half_dataset_and_rerun_recovers(tmp_path, monkeypatch):
    wh, store = _warehouse(tmp_path), DatasetStore(str(tmp_path / "store"))
    collect_month(wh, store)
    before = store.read_manifest()
    calls = {"n": 0}
    original = DatasetStore._write_parquet

    def crash_on_second(self, df, path):
        calls["n"] += 1
        if calls["n"] == 2:
            raise OSError("disk full (simulated crash)")
        return original(self, df, path)

    monkeypatch.setattr(DatasetStore, "_write_parquet", crash_on_second)
    with pytest.raises(OSError, match="simulated"):
        collect_month(wh, store)
    monkeypatch.undo()
    assert store.read_manifest().months == before.months  # nothing half-committed is visible
    assert store.garbage() and all(g.startswith("months/2025-02/") for g in store.garbage())
    assert next_month(wh, store) == "2025-02"
    ref, _ = collect_month(wh, store)
    assert ref.collected and ref.months == ["2025-01", "2025-02"]
    assert len(store.load_train(["2025-02"])["transfers"]) == 40


def test_second_test_set_and_out_of_order_months_are_refused(tmp_path):
    store = DatasetStore(str(tmp_path / "store"))
    m1 = tiny_month("2025-01")
    train, test = split_month(m1, 0.3, 1)
    train["invoices"] = test["invoices"] = m1["invoices"]
    store.add_month("2025-01", train, test)
    with pytest.raises(StoreError, match="never rewritten"):
        store.add_month("2025-02", tiny_month("2025-02", start=100), test)
    store.add_month("2025-03", tiny_month("2025-03", start=300))
    with pytest.raises(StoreError, match="in order"):
        store.add_month("2025-02", tiny_month("2025-02", start=100))


def test_a_test_transfer_coming_back_later_is_refused(tmp_path):
    store = DatasetStore(str(tmp_path / "store"))
    m1 = tiny_month("2025-01")
    train, test = split_month(m1, 0.5, 1)
    train["invoices"] = test["invoices"] = m1["invoices"]
    store.add_month("2025-01", train, test)
    leaked = tiny_month("2025-02", start=100)
    leaked["transfers"].loc[0, "transfer_id"] = test["transfers"]["transfer_id"].iloc[0]
    with pytest.raises(StoreError, match="both train and test"):
        store.add_month("2025-02", leaked)


def test_untagged_month_is_refused_with_a_clear_error(tmp_path):
    m = tiny_month("2025-01")
    m["links"] = m["links"].iloc[0:0]
    wh = DuckDBWarehouse(tmp_path / "wh.duckdb")
    wh.seed(m)
    with pytest.raises(ContractError, match="no tagged links"):
        collect_month(wh, DatasetStore(str(tmp_path / "store")))


def test_manifest_is_plain_json_with_months_rows_and_fingerprints(tmp_path):
    wh, store = _warehouse(tmp_path), DatasetStore(str(tmp_path / "store"))
    collect_month(wh, store)
    raw = json.loads((tmp_path / "store" / "manifest.json").read_text())
    entry = raw["months"]["2025-01"]
    assert set(entry) >= {"path", "fingerprint", "rows", "committed_at"}
    assert raw["test"]["fingerprint"] and raw["generation"] == 1


# -- two writers at once ----------------------------------------------------------------------------
def _add_month_in_a_race(root: str, month: str, start: int, barrier, results) -> None:
    """One writer in its own process: waits for the other at the commit, then commits slowly.

    The slow manifest serialisation (0.5 s) makes the window between "check the generation" and "rename"
    wide, so an unguarded check-then-rename loses an update every time, not only by bad luck."""
    import time

    from ledgerlink.data.store import ConcurrentCommitError, DatasetStore, Manifest

    to_json = Manifest.to_json

    def slow_to_json(self):
        time.sleep(0.5)
        return to_json(self)

    Manifest.to_json = slow_to_json
    store = DatasetStore(root)
    commit = store._commit

    def commit_together(manifest, expected_generation):
        barrier.wait(timeout=60)
        return commit(manifest, expected_generation)

    store._commit = commit_together
    try:
        written, message = store.add_month(month, tiny_month(month, start=start))
        results.put(("committed" if written else "no-op", month, message))
    except ConcurrentCommitError as exc:
        results.put(("refused", month, str(exc)))
    except BaseException as exc:  # surfaces in the parent's assertion
        results.put(("error", month, f"{type(exc).__name__}: {exc}"))


def _race(root: str, months_and_starts: list[tuple[str, int]]) -> list[tuple[str, str, str]]:
    import multiprocessing as mp
    import time

    ctx = mp.get_context("spawn")
    barrier, results = ctx.Barrier(len(months_and_starts)), ctx.Queue()
    procs = [
        ctx.Process(target=_add_month_in_a_race, args=(root, month, start, barrier, results))
        for month, start in months_and_starts
    ]
    for p in procs:
        p.start()
    outcomes, deadline = [], time.monotonic() + 180
    while len(outcomes) < len(procs) and time.monotonic() < deadline:
        try:
            outcomes.append(results.get(timeout=0.5))
        except Exception:  # queue.Empty: fail fast if a child died without reporting
            assert not any(p.exitcode not in (None, 0) for p in procs), [p.exitcode for p in procs]
    for p in procs:
        p.join(timeout=30)
    return sorted(outcomes)


def _store_with_first_month(root) -> DatasetStore:
    store = DatasetStore(str(root))
    m1 = tiny_month("2025-01")
    train, test = split_month(m1, 0.3, 1)
    train["invoices"] = test["invoices"] = m1["invoices"]
    store.add_month("2025-01", train, test)
    return store


def test_two_processes_adding_different_months_commit_exactly_one(tmp_path):
    """Issue 11.5: both used to report "committed" and one month vanished from the manifest."""
    store = _store_with_first_month(tmp_path / "store")
    outcomes = _race(str(tmp_path / "store"), [("2025-02", 100), ("2025-03", 300)])
    assert [kind for kind, _, _ in outcomes] == ["committed", "refused"], outcomes
    (_, winner, _), (_, loser, message) = outcomes
    assert "another collection committed" in message and "Re-run" in message
    manifest = store.read_manifest()
    assert sorted(manifest.months) == ["2025-01", winner] and manifest.generation == 2
    assert len(store.load_train([winner])["transfers"]) == 20
    # the loser's month folder is unreferenced (never visible) and listed as garbage
    assert [g.split("/")[1] for g in store.garbage()] == [loser]


def test_two_processes_adding_the_same_month_commit_it_once(tmp_path):
    store = _store_with_first_month(tmp_path / "store")
    outcomes = _race(str(tmp_path / "store"), [("2025-02", 100), ("2025-02", 100)])
    assert [kind for kind, _, _ in outcomes] == ["committed", "refused"], outcomes
    manifest = store.read_manifest()
    assert sorted(manifest.months) == ["2025-01", "2025-02"] and manifest.generation == 2
    assert len(store.garbage()) == 1


# -- leftovers of crashes and how they are removed ---------------------------------------------------
def test_a_crash_during_the_commit_leaves_a_tmp_manifest_that_garbage_lists(tmp_path, monkeypatch):
    """Issue 11.8: ``garbage()`` did not list the manifests a crash left half-committed."""
    wh, store = _warehouse(tmp_path), DatasetStore(str(tmp_path / "store"))
    collect_month(wh, store)
    before = store.read_manifest().to_json()
    import ledgerlink.data.store as store_module

    def crash(*args):
        raise OSError("killed between writing and renaming the manifest (simulated)")

    monkeypatch.setattr(store_module.os, "replace", crash)
    with pytest.raises(OSError, match="simulated"):
        collect_month(wh, store)
    monkeypatch.undo()
    assert store.read_manifest().to_json() == before  # the old manifest still rules
    garbage = store.garbage()
    tmp = [g for g in garbage if g.startswith(".manifest.json.") and g.endswith(".tmp")]
    month = [g for g in garbage if g.startswith("months/2025-02/")]
    assert len(tmp) == 1 and len(month) == 1 and len(garbage) == 2, garbage
    ref, _ = collect_month(wh, store)  # a rerun is safe
    assert ref.collected and ref.months == ["2025-01", "2025-02"]


def test_garbage_lists_a_leftover_tmp_manifest(tmp_path):
    wh, store = _warehouse(tmp_path), DatasetStore(str(tmp_path / "store"))
    collect_month(wh, store)
    (tmp_path / "store" / ".manifest.json.0123abcd.tmp").write_text("{half a manifest")
    assert store.garbage() == [".manifest.json.0123abcd.tmp"]


def _store_with_orphans(tmp_path) -> tuple[DatasetStore, DuckDBWarehouse]:
    wh, store = _warehouse(tmp_path), DatasetStore(str(tmp_path / "store"))
    collect_month(wh, store)
    collect_month(wh, store)
    (tmp_path / "store" / ".manifest.json.0123abcd.tmp").write_text("{half a manifest")
    orphan = tmp_path / "store" / "months" / "2025-03" / "deadbeef-00000000"
    orphan.mkdir(parents=True)
    (orphan / "transfers.parquet").write_bytes(b"PAR1")
    (tmp_path / "store" / "test" / "cafe-11111111").mkdir(parents=True)
    return store, wh


def test_remove_garbage_deletes_what_garbage_lists_and_nothing_the_manifest_names(tmp_path):
    store, wh = _store_with_orphans(tmp_path)
    listed = store.garbage()
    assert len(listed) == 3
    manifest, test, train = store.read_manifest().to_json(), store.load_test(), store.load_train()
    assert store.remove_garbage() == []  # younger than the default age: may belong to a running collection
    assert store.garbage() == listed
    assert store.remove_garbage(min_age_s=0) == listed
    assert store.garbage() == []
    assert store.read_manifest().to_json() == manifest
    for t, df in store.load_test().items():
        pd.testing.assert_frame_equal(df, test[t])
    for t, df in store.load_train().items():
        pd.testing.assert_frame_equal(df, train[t])
    assert (tmp_path / "store" / ".manifest.lock").exists()  # the lock file is not garbage
    ref, _ = collect_month(wh, store)
    assert ref.months == ["2025-01", "2025-02", "2025-03"]


def test_a_commit_refuses_a_folder_removed_as_garbage_while_it_was_written(tmp_path, monkeypatch):
    wh, store = _warehouse(tmp_path), DatasetStore(str(tmp_path / "store"))
    collect_month(wh, store)
    commit = DatasetStore._commit

    def garbage_collected_first(self, manifest, expected_generation):
        assert self.remove_garbage(min_age_s=0)  # the unreferenced new month folder
        return commit(self, manifest, expected_generation)

    monkeypatch.setattr(DatasetStore, "_commit", garbage_collected_first)
    with pytest.raises(StoreError, match="gone"):
        collect_month(wh, store)
    monkeypatch.undo()
    assert store.collected_months() == ["2025-01"]
    ref, _ = collect_month(wh, store)
    assert ref.collected and len(store.load_train(["2025-02"])["transfers"]) == 40


def test_the_orphans_command_lists_then_removes(tmp_path):
    import subprocess
    import sys

    store, _ = _store_with_orphans(tmp_path)
    listed = store.garbage()
    cmd = [sys.executable, "-m", "ledgerlink.data.orphans", "--uri", str(tmp_path / "store"), "--min-age-s", "0"]
    dry = subprocess.run([*cmd, "--dry-run"], capture_output=True, text=True, timeout=120)
    assert dry.returncode == 0, dry.stderr
    assert all(g in dry.stdout for g in listed) and "would remove 3 leftover" in dry.stdout
    assert store.garbage() == listed
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "removed 3 leftover" in done.stdout and store.garbage() == []
    assert store.collected_months() == ["2025-01", "2025-02"]


def test_a_held_commit_lock_times_out_naming_the_lock_and_its_holder(tmp_path, monkeypatch):
    """A writer that cannot get the commit lock gives up after LOCK_TIMEOUT_S, says which lock and which process
    holds it, and commits nothing."""
    import os

    from ledgerlink.data import store as store_module
    from ledgerlink.locks import exclusive_lock

    store = DatasetStore(str(tmp_path / "store"))
    m1 = tiny_month("2025-01")
    train, test = split_month(m1, 0.3, 1)
    train["invoices"] = test["invoices"] = m1["invoices"]
    store.add_month("2025-01", train, test)
    monkeypatch.setattr(store_module, "LOCK_TIMEOUT_S", 0.2)
    lock = tmp_path / "store" / store_module.LOCK
    with exclusive_lock(lock, 1.0, RuntimeError):  # held here, as another writer would hold it
        with pytest.raises(StoreError, match=f"process {os.getpid()}.*{lock}.*nothing was committed"):
            store.add_month("2025-02", tiny_month("2025-02", start=100))
    assert store.collected_months() == ["2025-01"]
    assert store.add_month("2025-02", tiny_month("2025-02", start=100))[0]  # free again: the rerun commits


def test_a_month_missing_a_table_is_refused_before_anything_is_written(tmp_path):
    store = DatasetStore(str(tmp_path / "store"))
    m1 = tiny_month("2025-01")
    train, test = split_month(m1, 0.3, 1)  # the split carries no invoices: the caller adds them
    with pytest.raises(StoreError, match=r"month 2025-01: the train part has no table\(s\) \['invoices'\]"):
        store.add_month("2025-01", train, test)
    with pytest.raises(StoreError, match=r"the train part has no table\(s\) \['invoices', 'transfers', 'links'\]"):
        store.add_month("2025-01", {}, test)
    assert store.collected_months() == [] and store.garbage() == []
