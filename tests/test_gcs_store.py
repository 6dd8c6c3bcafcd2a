"""GCSDatasetStore on gs://bucket/prefix against gcp-storage-emulator, through the real gcsfs client.

Measured (gcp-storage-emulator 2026.7.19): the emulator ignores ``ifGenerationMatch``; a second
upload with ``ifGenerationMatch=0`` or a stale generation is accepted. The store's safety rests on
that precondition, so the emulator is started here with a small shim that applies GCS's documented
rule to simple (media/multipart) uploads: HTTP 412 unless the live object's generation equals
``ifGenerationMatch`` (0: the object must not exist). The emulator serves one request at a time, so
check-and-write is atomic, as on GCS. Everything else (uploads, reads, listings) is the emulator's.
"""

import multiprocessing as mp
import os
import subprocess
import sys
import time
import urllib.request

import pandas as pd
import pytest

from ledgerlink.data.collect import collect_month
from ledgerlink.data.gcs import GCSDatasetStore  # noqa: E402
from ledgerlink.data.store import ConcurrentCommitError, open_store
from ledgerlink.data.warehouse import DuckDBWarehouse
from ledgerlink.deploy.local import free_port
from tests.helpers import tiny_month

EMULATOR = r"""
import sys
from http import HTTPStatus
from gcp_storage_emulator import server as srv
from gcp_storage_emulator.exceptions import NotFound
from gcp_storage_emulator.handlers import objects

original = objects.insert

def insert(request, response, storage, *args, **kwargs):
    want = request.query.get("ifGenerationMatch")
    if want:
        name = request.query["name"][0] if "name" in request.query else request.data["meta"].get("name")
        try:
            live = int(storage.get_file_obj(request.params["bucket_name"], name)["generation"])
        except NotFound:
            live = 0
        if live != int(want[0]):
            response.status = HTTPStatus.PRECONDITION_FAILED
            message = "At least one of the pre-conditions you specified did not hold."
            error = {"domain": "global", "reason": "conditionNotMet", "locationType": "header", "location": "If-Match"}
            response.json({"error": {"code": 412, "message": message, "errors": [{**error, "message": message}]}})
            return
    return original(request, response, storage, *args, **kwargs)

objects.insert = insert
for _, handlers in srv.HANDLERS:
    for method, handler in list(handlers.items()):
        if handler is original:
            handlers[method] = insert
srv.create_server("127.0.0.1", int(sys.argv[1]), in_memory=True, default_bucket="bucket").run()
"""


@pytest.fixture(scope="module")
def emulator(tmp_path_factory):
    import gcp_storage_emulator  # noqa: F401

    port = free_port()
    # The emulator logs every request: to a file, never to a pipe nobody reads (a full pipe blocks it).
    log_path = tmp_path_factory.mktemp("gcs-emulator") / "emulator.log"
    log = open(log_path, "wb")
    proc = subprocess.Popen([sys.executable, "-c", EMULATOR, str(port)], stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            urllib.request.urlopen(url + "/storage/v1/b", timeout=1).read()
            break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                log.close()
                pytest.fail(f"gcp-storage-emulator could not start on {url}: {log_path.read_text()[-500:]}")
            time.sleep(0.1)
    saved = {k: os.environ.get(k) for k in ("STORAGE_EMULATOR_HOST", "GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT")}
    os.environ.update(STORAGE_EMULATOR_HOST=url, GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT="false")
    yield url
    for k, v in saved.items():
        os.environ.pop(k, None) if v is None else os.environ.__setitem__(k, v)
    died = proc.poll()
    proc.terminate()
    proc.wait(timeout=10)
    log.close()
    assert died is None, f"the emulator died during the tests (exit {died}): {log_path.read_text()[-2000:]}"


_prefixes = iter(range(10_000))


@pytest.fixture
def uri(emulator):
    return f"gs://bucket/run{next(_prefixes)}/datasets"


def _store(uri: str) -> GCSDatasetStore:
    return GCSDatasetStore(uri, token="anon", skip_instance_cache=True)


def _warehouse(path, months=("2025-01", "2025-02", "2025-03"), n=20) -> DuckDBWarehouse:
    parts = [tiny_month(m, n=n, start=1000 * i) for i, m in enumerate(months)]
    wh = DuckDBWarehouse(path)
    wh.seed({t: pd.concat([p[t] for p in parts], ignore_index=True) for t in parts[0]})
    return wh


def test_open_store_picks_gcs_for_gs_uris(uri):
    assert isinstance(open_store({"store": {"uri": uri}}), GCSDatasetStore)


def test_months_frozen_test_set_and_idempotent_recollection(tmp_path, uri):
    wh, store = _warehouse(tmp_path / "wh.duckdb"), _store(uri)
    ref1, _ = collect_month(wh, store)
    test_before = store.load_test()
    _, generation_before = store.read_manifest_generation()
    assert generation_before > 0 and ref1.test_rows["transfers"] > 0
    again, _ = collect_month(wh, store, month="2025-01")
    assert not again.collected and "already collected" in again.message
    assert store.read_manifest_generation()[1] == generation_before  # nothing was written
    collect_month(wh, store)
    ref3, _ = collect_month(wh, store)
    assert ref3.months == ["2025-01", "2025-02", "2025-03"] and ref3.test_fingerprint == ref1.test_fingerprint
    fresh = _store(uri)  # another process's view
    for t, df in test_before.items():
        pd.testing.assert_frame_equal(fresh.load_test()[t], df)
    train = fresh.load_train()
    assert not set(test_before["transfers"]["transfer_id"]) & set(train["transfers"]["transfer_id"])
    assert len(train["transfers"]) + len(test_before["transfers"]) == 60
    assert fresh.garbage() == []


def test_a_commit_that_lost_the_race_is_refused_with_a_clear_message(tmp_path, uri, monkeypatch):
    wh = _warehouse(tmp_path / "wh.duckdb")
    ours, theirs = _store(uri), _store(uri)
    collect_month(wh, ours)
    upload = GCSDatasetStore._upload_manifest

    def other_collection_commits_first(self, data, if_generation_match):
        monkeypatch.setattr(GCSDatasetStore, "_upload_manifest", upload)
        collect_month(wh, theirs)  # commits 2025-02 between our read and our upload
        return upload(self, data, if_generation_match)

    monkeypatch.setattr(GCSDatasetStore, "_upload_manifest", other_collection_commits_first)
    with pytest.raises(ConcurrentCommitError) as err:
        collect_month(wh, ours)
    msg = str(err.value)
    assert "another collection committed month 2025-02 first" in msg
    assert "nothing was written by this run's manifest" in msg and "Re-run to pick up the next month" in msg
    manifest = _store(uri).read_manifest()
    assert sorted(manifest.months) == ["2025-01", "2025-02"] and manifest.generation == 2
    assert len(_store(uri).garbage()) == 1  # our unreferenced month folder
    ref, _ = collect_month(wh, ours)  # the re-run picks up the next month
    assert ref.new_month == "2025-03" and ref.collected
    # the orphan goes on request (once old enough); what the manifest names stays readable
    store, train = _store(uri), _store(uri).load_train()
    assert store.remove_garbage() == []  # younger than an hour
    (orphan,) = store.garbage()
    assert store.remove_garbage(min_age_s=0) == [orphan] and store.garbage() == []
    for t, df in _store(uri).load_train().items():
        pd.testing.assert_frame_equal(df, train[t])


def _race(uri: str, warehouse_path: str, endpoint: str, barrier, results) -> None:
    """One collection in its own process; waits for the other at the manifest upload, then commits."""
    os.environ.update(STORAGE_EMULATOR_HOST=endpoint, GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT="false")
    store = _store(uri)
    upload = store._upload_manifest

    def upload_together(data, if_generation_match):
        barrier.wait(timeout=60)
        return upload(data, if_generation_match)

    store._upload_manifest = upload_together
    try:
        ref, _ = collect_month(DuckDBWarehouse(warehouse_path), store, month="2025-01")
        results.put(("committed" if ref.collected else "no-op", ref.message))
    except ConcurrentCommitError as exc:
        results.put(("refused", str(exc)))
    except BaseException as exc:  # surfaces in the parent's assertion
        results.put(("error", f"{type(exc).__name__}: {exc}"))


def test_two_processes_collecting_the_same_month_commit_exactly_once(tmp_path, uri, emulator):
    wh = _warehouse(tmp_path / "wh.duckdb")
    ctx = mp.get_context("spawn")
    barrier, results = ctx.Barrier(2), ctx.Queue()
    procs = [ctx.Process(target=_race, args=(uri, str(wh.path), emulator, barrier, results)) for _ in range(2)]
    for p in procs:
        p.start()
    outcomes, deadline = [], time.monotonic() + 120
    while len(outcomes) < 2 and time.monotonic() < deadline:
        try:
            outcomes.append(results.get(timeout=0.5))
        except Exception:  # queue.Empty: fail fast if a child died without reporting
            assert not any(p.exitcode not in (None, 0) for p in procs), [p.exitcode for p in procs]
    for p in procs:
        p.join(timeout=30)
    outcomes.sort()
    kinds = [k for k, _ in outcomes]
    assert kinds in (["committed", "refused"], ["committed", "no-op"]), outcomes
    if kinds[1] == "refused":
        assert "another collection committed month 2025-01 first" in outcomes[1][1]
    store = _store(uri)
    manifest = store.read_manifest()
    assert list(manifest.months) == ["2025-01"] and manifest.generation == 1
    assert manifest.test is not None and manifest.test["month"] == "2025-01"
    test, train = store.load_test(), store.load_train()
    assert not set(test["transfers"]["transfer_id"]) & set(train["transfers"]["transfer_id"])
    assert len(test["transfers"]) + len(train["transfers"]) == 20
    # the loser's files are unreferenced: one month folder and one test folder, never visible
    garbage = store.garbage()
    assert len(garbage) == 2 and {g.split("/")[0] for g in garbage} == {"months", "test"}
