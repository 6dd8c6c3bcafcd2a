"""A month on every core: the batches of one ``Matcher.match`` call, run in worker processes.

``match`` splits a month into batches of consecutive booking dates (``batch_size`` transfers each), and a batch
needs nothing from the others: the same prepared invoices and their blocking index (``InvoiceIndex``), the
model, and its own transfers. So the batches are independent tasks, and the answers are the same whichever
process computes which batch, in any order (tested against the sequential path). The Python work of a batch
(text tokens, numpy over its pairs) holds the GIL, so threads would not help: processes do.

- Spawned, never forked: the parent may already run xgboost's or torch's OpenMP threads, and a forked child
  inherits their locks in whatever state they were (a hang, not an error).
- The invoice side is sent once per worker (the pool's initializer), already prepared and tokenised in the
  parent; each task carries only its batch's prepared transfers, and returns its (scored, links, decisions).
- Each worker runs ``n_jobs`` threads divided among the workers (xgboost, rapidfuzz), so the machine is not
  oversubscribed; the number of threads does not change any number the matcher computes.
- The call's deadline (an absolute ``time.monotonic()``: one clock for every process on the machine) holds in
  every worker; a ``MatchTimeout`` there stops the call.

Memory: every worker holds the invoice side (about 0.5 GB for 220k open invoices) and one batch's work, so a
call's peak grows with the workers; the batch size bounds the second part.
"""

from __future__ import annotations

import multiprocessing
import os
import pickle
from concurrent.futures import FIRST_EXCEPTION, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool

from .normalize import Prepared
from .runtime import deadline_scope

_WORKER: dict = {}


def available_cpus() -> int:
    """CPUs this process may run on (its affinity: a container's or a Vertex step's share, not the host's)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def _start_worker(state: bytes, threads: int) -> None:
    matcher, inv, inv_chunks, index = pickle.loads(state)
    matcher.set_threads(threads)
    _WORKER.update(matcher=matcher, inv=inv, inv_chunks=inv_chunks, index=index)


def _match_batch(tr, tr_chunks, deadline: float | None):
    w = _WORKER
    with deadline_scope(deadline, "batch start"):
        return w["matcher"]._match_batch(Prepared(w["inv"], w["inv_chunks"], tr, tr_chunks), invoice_index=w["index"])


def match_batches(matcher, P: Prepared, batches: list[Prepared], index, workers: int, deadline, bar) -> list:
    """``matcher._match_batch`` of every batch (each a ``P.with_transfers``), in order, on ``workers`` spawned
    processes; ``bar`` (or None) advances as batches finish."""
    threads = max(1, int(matcher.n_jobs) // workers)
    state = pickle.dumps((matcher, P.inv, P.inv_chunks, index), protocol=pickle.HIGHEST_PROTOCOL)
    pool = ProcessPoolExecutor(
        workers,
        mp_context=multiprocessing.get_context("spawn"),
        initializer=_start_worker,
        initargs=(state, threads),
    )
    try:
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
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
