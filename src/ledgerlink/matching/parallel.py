"""A month on every core: the batches of one ``Matcher.match`` call, run in worker processes.

``match`` splits a month into batches of consecutive booking dates (``batch_size`` transfers each), and a batch
needs nothing from the others: the same prepared invoices and their blocking index (``InvoiceIndex``), the
model, and its own transfers. So the batches are independent tasks, and the answers are the same whichever
process computes which batch, in any order (tested against the sequential path). The Python work of a batch
(text tokens, numpy over its pairs) holds the GIL, so threads would not help: processes do.

- Spawned, never forked: the parent may already run xgboost's or torch's OpenMP threads, and a forked child
  inherits their locks in whatever state they were (a hang, not an error).
- The invoice side is prepared and tokenised once, in the parent, and handed to the workers through one file
  (pickled, read by each worker as it starts): the parent keeps neither the pickle nor the blocking index in
  memory while the batches run (held in the pool's start arguments, they cost it 0.5 GB at 220k invoices).
  Each task carries only its batch's prepared transfers, and returns its (scored, links, decisions).
- Each worker runs ``n_jobs`` threads divided among the workers (xgboost, rapidfuzz), so the machine is not
  oversubscribed; the number of threads does not change any number the matcher computes.
- The call's deadline (an absolute ``time.monotonic()``: one clock for every process on the machine) holds in
  every worker; a ``MatchTimeout`` there stops the call.

Memory: every worker holds the invoice side (about 0.5 GB for 220k open invoices) and one batch's work, so a
call's peak grows with the workers; the batch size bounds the second part.
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


def _start_worker(state: str, threads: int) -> None:
    _give_back_freed_memory()
    with open(state, "rb") as f:
        matcher, inv, inv_chunks, index, texts = pickle.load(f)
    matcher.set_threads(threads)
    _WORKER.update(matcher=matcher, inv=inv, inv_chunks=inv_chunks, index=index, texts=texts)


def _match_batch(tr, tr_chunks, deadline: float | None):
    w = _WORKER
    with deadline_scope(deadline, "batch start"):
        batch = Prepared(w["inv"], w["inv_chunks"], tr, tr_chunks)
        return w["matcher"]._match_batch(batch, texts=w["texts"], invoice_index=w["index"])


def match_batches(matcher, P: Prepared, batches: list[Prepared], texts, workers: int, deadline, bar) -> list:
    """``matcher._match_batch`` of every batch (each a ``P.with_transfers``), in order, on ``workers`` spawned
    processes, the invoices' blocking index (``InvoiceIndex``) computed once here; ``texts`` (``InvoiceTexts`` or
    None): explained, as ``match(..., explain=True)``; ``bar`` (or None) advances as batches finish."""
    from .candidates import InvoiceIndex

    threads = max(1, int(matcher.n_jobs) // workers)
    tmp = tempfile.TemporaryDirectory(prefix="ledgerlink-match-")
    pool = None
    try:  # whatever fails from here on (a deadline, a worker, Ctrl-C): the workers stop and the pickle goes
        state = os.path.join(tmp.name, "invoices.pickle")
        with open(state, "wb") as f:  # the index exists only while it is written
            index = InvoiceIndex.of(P, matcher.memory_)
            pickle.dump((matcher, P.inv, P.inv_chunks, index, texts), f, pickle.HIGHEST_PROTOCOL)
            del index
        check_deadline("blocking index")
        pool = ProcessPoolExecutor(
            workers,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_start_worker,
            initargs=(state, threads),
        )
        futures = [pool.submit(_match_batch, b.tr, b.tr_chunks, deadline) for b in batches]
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
            f"a match worker process died (out of memory?) with {len(batches)} batches on {workers} workers; "
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
