"""A month on every core: the batches of one ``Matcher.match`` call, run in worker processes.

``match`` splits a month into batches of consecutive booking dates (``batch_size`` transfers each), and a batch
needs nothing from the others: the same prepared invoices and their blocking index (``InvoiceIndex``), the
model, and its own transfers. So the batches are independent tasks, and the answers are the same whichever
process computes which batch, in any order (tested against the sequential path). The Python work of a batch
(text tokens, numpy over its pairs) holds the GIL, so threads would not help: processes do.

- Spawned, never forked: the parent may already run xgboost's or torch's OpenMP threads, and a forked child
  inherits their locks in whatever state they were (a hang, not an error).
- The invoice side is prepared and tokenised once, in the parent, and handed to the workers through files: the
  frames pickled (read by each worker as it starts), the blocking index (``InvoiceIndex``: numpy arrays only) as
  one ``.npy`` file per array that every worker maps read-only (``np.load(mmap_mode="r")``), so its pages are
  shared between the workers and the page cache instead of copied into each (268 MB at 301k open invoices, 2.5M
  reference tokens). The parent keeps neither the pickle nor the index in memory while the batches run (held in
  the pool's start arguments, they cost it 0.5 GB at 220k invoices).
  Each task names a file with its batch's prepared transfers, written here before the workers start and read
  once by the worker that takes it: a task's arguments stay in the pool until its batch is done, so a task that
  carried the transfers kept every batch's in this process while the workers ran. It returns its (scored, links,
  decisions).
- Each worker runs ``n_jobs`` threads divided among the workers (xgboost, rapidfuzz), so the machine is not
  oversubscribed; the number of threads does not change any number the matcher computes.
- The call's deadline (an absolute ``time.monotonic()``: one clock for every process on the machine) holds in
  every worker; a ``MatchTimeout`` there stops the call.

Memory: every worker holds the invoice frames (about 0.25 GB for 301k open invoices) and one batch's work, and
maps the one shared index, so a call's peak grows with the workers; the batch size bounds the second part.
"""

from __future__ import annotations

import ctypes
import math
import multiprocessing
import os
import pickle
import tempfile
from concurrent.futures import FIRST_EXCEPTION, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import fields

import numpy as np

from .normalize import Prepared
from .runtime import check_deadline, deadline_scope

_WORKER: dict = {}


def available_cpus(cgroup: str = "/sys/fs/cgroup") -> int:
    """CPUs this process may use: its affinity, and at most its container's CPU quota rounded up (a Kubernetes
    ``limits.cpu: "2"`` on an 8-core node leaves the affinity at 8; xgboost reads the quota the same way)."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cpus = os.cpu_count() or 1
    quota = _cgroup_cpu_quota(cgroup)
    return max(1, min(cpus, math.ceil(quota))) if quota else cpus


def _cgroup_cpu_quota(root: str) -> float | None:
    """CPUs of the cgroup's quota (v2 ``cpu.max``, v1 ``cpu.cfs_quota_us`` / ``cpu.cfs_period_us``); None: none."""
    for files in (("cpu.max",), ("cpu/cpu.cfs_quota_us", "cpu/cpu.cfs_period_us")):
        try:
            fields = " ".join(open(os.path.join(root, f)).read().strip() for f in files).split()
        except OSError:
            continue
        if len(fields) == 2 and fields[0] not in ("max", "-1"):
            try:
                quota, period = float(fields[0]), float(fields[1])
            except ValueError:
                return None
            return quota / period if quota > 0 and period > 0 else None
        return None
    return None


def threads_per_process(processes: int, cgroup: str = "/sys/fs/cgroup") -> int:
    """Threads for each of ``processes`` processes sharing this machine's CPUs (``available_cpus``), at least one."""
    return max(1, available_cpus(cgroup) // max(1, int(processes)))


def _give_back_freed_memory() -> None:
    """A fixed mmap threshold of 1 MiB for this process's malloc (glibc; elsewhere nothing): numpy's large arrays are
    then mapped and unmapped, so a stage's temporaries go back to the system when freed. By default glibc raises the
    threshold after the first large free, and later temporaries stay in the heap, counted in the worker's memory
    until it ends."""
    try:
        ctypes.CDLL("libc.so.6").mallopt(-3, 1 << 20)  # M_MMAP_THRESHOLD
    except (OSError, AttributeError):  # not glibc
        pass


def _trim_heap() -> None:
    """Hand the heap's free pages back to the system (glibc ``malloc_trim``; elsewhere nothing): the parent has just
    dropped the invoice side and the blocking index it wrote for the workers, and holds little while they run (at
    301k open invoices: 0.79 -> 0.72 GB resident)."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc
        pass


def _index_to_files(index, folder: str) -> list[str]:
    """Write each array of an ``InvoiceIndex`` to ``folder/<name>.npy``; the names written."""
    arrays = {f"ref_{f.name}": getattr(index.ref, f.name) for f in fields(index.ref)}
    if index.settled is not None:
        arrays["settled"] = index.settled
    for name, values in arrays.items():
        np.save(os.path.join(folder, name + ".npy"), np.ascontiguousarray(values), allow_pickle=False)
    return sorted(arrays)


def _mapped_index(folder: str, names: list[str]):
    """The ``InvoiceIndex`` written by ``_index_to_files``, its arrays mapped read-only (shared pages)."""
    from .candidates import InvoiceIndex, RefTokens

    arrays = {name: np.load(os.path.join(folder, name + ".npy"), mmap_mode="r") for name in names}
    ref = RefTokens(**{f.name: arrays[f"ref_{f.name}"] for f in fields(RefTokens)})
    return InvoiceIndex(ref, arrays.get("settled"))


def _start_worker(state: str, threads: int) -> None:
    _give_back_freed_memory()
    with open(state, "rb") as f:
        matcher, inv, inv_chunks, index_names, texts = pickle.load(f)
    index = _mapped_index(os.path.dirname(state), index_names)
    matcher.set_threads(threads)
    _WORKER.update(matcher=matcher, inv=inv, inv_chunks=inv_chunks, index=index, texts=texts)


def _match_batch(transfers: str, deadline: float | None):
    """The batch whose prepared transfers ``match_batches`` wrote to the file ``transfers`` (read once, then gone)."""
    w = _WORKER
    with deadline_scope(deadline, "batch start"):
        with open(transfers, "rb") as f:
            tr, tr_chunks = pickle.load(f)
        os.remove(transfers)
        batch = Prepared(w["inv"], w["inv_chunks"], tr, tr_chunks)
        return w["matcher"]._match_batch(batch, texts=w["texts"], invoice_index=w["index"])


def match_batches(matcher, batches: list[Prepared], texts, workers: int, deadline, bar) -> list:
    """``matcher._match_batch`` of every batch (each a ``P.with_transfers`` of one ``P``), in order, on ``workers``
    spawned processes, the invoices' blocking index (``InvoiceIndex``) computed once here; ``texts``
    (``InvoiceTexts`` or None): explained, as ``match(..., explain=True)``; ``bar`` (or None) advances as batches
    finish. Once the invoice side and each batch's transfers are written for the workers, ``batches`` is emptied:
    none of it stays in this process while the workers run (the invoice frames held 0.25 GB at 301k open invoices,
    for nothing)."""
    from .candidates import InvoiceIndex

    threads, n_batches = max(1, int(matcher.n_jobs) // workers), len(batches)
    tmp = tempfile.TemporaryDirectory(prefix="ledgerlink-match-")
    pool = None
    try:  # whatever fails from here on (a deadline, a worker, Ctrl-C): the workers stop and the pickle goes
        state = os.path.join(tmp.name, "invoices.pickle")
        P = batches[0]  # the invoice side, the same in every batch
        index = InvoiceIndex.of(P, matcher.memory_)  # exists here only while it is written
        index_names = _index_to_files(index, tmp.name)
        del index
        with open(state, "wb") as f:
            inv = P.inv if matcher.reads_invoice_text else P.inv.drop(columns="text")  # what the batches read
            pickle.dump((matcher, inv, P.inv_chunks, index_names, texts), f, pickle.HIGHEST_PROTOCOL)
            del inv
        tasks = []  # each batch's prepared transfers, in a file of its own (``_match_batch``)
        for k, b in enumerate(batches):
            tasks.append(os.path.join(tmp.name, f"transfers-{k}.pickle"))
            with open(tasks[-1], "wb") as f:
                pickle.dump((b.tr, b.tr_chunks), f, pickle.HIGHEST_PROTOCOL)
        del P, b
        batches.clear()
        _trim_heap()
        check_deadline("blocking index")
        pool = ProcessPoolExecutor(
            workers,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_start_worker,
            initargs=(state, threads),
        )
        futures = [pool.submit(_match_batch, path, deadline) for path in tasks]
        del tasks
        pending = set(futures)
        while pending:
            done, pending = wait(pending, return_when=FIRST_EXCEPTION)
            for f in done:
                f.result()  # the first failure stops the call (a MatchTimeout: the deadline passed in a worker)
                if bar is not None:
                    bar.update(1)
        return [f.result() for f in futures]
    except BrokenProcessPool as exc:
        raise RuntimeError(
            f"a match worker process died (out of memory?) with {n_batches} batches on {workers} workers; "
            "lower n_workers or batch_size"
        ) from exc
    except BaseException:
        _stop_workers(pool)  # batches still running would otherwise hold the caller for minutes
        raise
    finally:
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
        tmp.cleanup()


def _stop_workers(pool) -> None:
    """Terminate the pool's processes (``shutdown`` only cancels batches that have not started)."""
    if pool is None:
        return
    for proc in list((getattr(pool, "_processes", None) or {}).values()):
        if proc.is_alive():
            proc.terminate()
