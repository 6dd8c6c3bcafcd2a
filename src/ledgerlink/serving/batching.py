"""Adaptive batching of ``/match``: requests that wait together are matched in one call.

BentoML's own batching (``batchable=True``) concatenates list-valued request bodies; ``/match`` takes one transfer
with its candidates, so the batching lives here. It knows nothing of HTTP: it takes problems and a
``match_many(problems, deadline)`` function, so it is tested with plain functions.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable
from typing import Any

logger = logging.getLogger("ledgerlink.serving")

# A batch that ended this long ago says nothing about the load now: the next lone request goes at once.
LOAD_MEMORY_S = 0.5
# Requests of one burst arrive this close together (each is parsed and validated in turn, ~1 ms on 2 cores).
LINGER_GAP_S = 0.002


class MicroBatcher:
    """Requests that arrive while a batch is being matched wait, and go together into the next
    ``match_many(problems, deadline)`` call (at most ``max_batch()`` of them; the earliest deadline of a batch is
    its deadline).

    A lone request is matched at once (no batching window to wait out); under load the batch grows with the queue,
    so the fixed cost of a match call is paid once per batch. ``Matcher.match_many`` answers each request as
    ``match`` would alone, so batching never changes an answer.

    Under load a new batch lingers: when the last batch held several requests and ended moments ago, the next one
    starts once arrivals pause (``LINGER_GAP_S``), at most ``linger()`` seconds later. Clients that got their
    answers together send their next requests a millisecond or two apart (each is parsed and validated in turn);
    without the wait the first one went alone on the single-request path and the others waited for it, so
    batches alternated 1, k-1, 1, k-1 at a few times the cost per request of a full batch.

    Requests are validated before they are submitted, so a batch does not fail because of what a caller sent.
    If one fails all the same (a matcher bug), each of its requests is retried alone so one request's failure is
    not the others'; ``reruns`` counts those batches (each rerun costs a burst about 4x its time). An exception in
    ``no_rerun`` (the deadline: the time is spent) goes to every request of the batch as it is."""

    def __init__(
        self,
        match_many: Callable[[list, float | None], list],
        max_batch: Callable[[], int] = lambda: 16,
        observe: Callable[[int], None] | None = None,
        no_rerun: tuple[type[BaseException], ...] = (),
        linger: Callable[[], float] = lambda: 0.006,
    ):
        self.match_many, self.max_batch, self.linger = match_many, max_batch, linger
        self.observe = observe  # called with each batch's size (the service's Prometheus histogram)
        self.no_rerun = no_rerun
        self.queue: list[tuple[Any, float | None, asyncio.Future]] = []
        self.draining = False
        self.sizes: list[int] = []  # batch sizes seen (the last 1000)
        self.reruns = 0
        self.last_end = -math.inf  # time.monotonic() when the last batch was answered
        self.arrived = asyncio.Event()  # set by each submit: a lingering batch looks at the queue again

    async def submit(self, problem, deadline: float | None = None):
        future = asyncio.get_running_loop().create_future()
        self.queue.append((problem, deadline, future))
        self.arrived.set()
        if not self.draining:
            self.draining = True
            asyncio.get_running_loop().create_task(self._drain())
        return await future

    async def _drain(self) -> None:
        from anyio import to_thread

        try:
            while self.queue:
                await self._linger()
                size = max(1, int(self.max_batch()))
                batch, self.queue = self.queue[:size], self.queue[size:]
                self.sizes = (self.sizes + [len(batch)])[-1000:]
                if self.observe is not None:
                    self.observe(len(batch))
                problems = [p for p, _, _ in batch]
                deadlines = [d for _, d, _ in batch if d is not None]
                deadline = min(deadlines) if deadlines else None
                try:
                    results = await to_thread.run_sync(self.match_many, problems, deadline)
                except self.no_rerun as exc:
                    results = [exc] * len(batch)
                except Exception as exc:  # noqa: BLE001 - find the request at fault: each alone
                    self.reruns += 1
                    logger.warning(
                        "a batch of %d failed (%s); matching its requests one by one", len(batch), type(exc).__name__
                    )
                    results = []
                    for p, d, _ in batch:
                        try:
                            results.append((await to_thread.run_sync(self.match_many, [p], d))[0])
                        except Exception as one:  # noqa: BLE001 - handed to that request's caller
                            results.append(one)
                for (_, _, future), result in zip(batch, results):
                    if future.cancelled():
                        continue
                    if isinstance(result, BaseException):
                        future.set_exception(result)
                    else:
                        future.set_result(result)
                self.last_end = time.monotonic()
        finally:
            self.draining = False

    async def _linger(self) -> None:
        """Under load (the last batch held several requests and ended within ``LOAD_MEMORY_S``), wait while
        requests keep arriving (each within ``LINGER_GAP_S`` of the one before), at most ``linger()`` seconds in
        all or until the batch is full: the clients the last batch answered are sending again."""
        wait = float(self.linger())
        if wait <= 0 or not self.sizes or self.sizes[-1] < 2 or time.monotonic() - self.last_end > LOAD_MEMORY_S:
            return
        until = time.monotonic() + wait
        while len(self.queue) < max(1, int(self.max_batch())):
            left = min(until - time.monotonic(), LINGER_GAP_S)
            if left <= 0:
                return
            self.arrived.clear()
            try:
                await asyncio.wait_for(self.arrived.wait(), left)
            except asyncio.TimeoutError:
                return  # a pause in arrivals: the burst is in
