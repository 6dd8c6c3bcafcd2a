"""Adaptive batching of ``/match``: requests that wait together are matched in one call.

BentoML's own batching (``batchable=True``) concatenates list-valued request bodies; ``/match`` takes one transfer
with its candidates, so the batching lives here. It knows nothing of HTTP: it takes problems and a
``match_many(problems, deadline)`` function, so it is tested with plain functions.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

logger = logging.getLogger("ledgerlink.serving")


class MicroBatcher:
    """Requests that arrive while a batch is being matched wait, and go together into the next
    ``match_many(problems, deadline)`` call (at most ``max_batch()`` of them; the earliest deadline of a batch is
    its deadline).

    A lone request is matched at once (no batching window to wait out); under load the batch grows with the queue,
    so the fixed cost of a match call is paid once per batch. ``Matcher.match_many`` answers each request as
    ``match`` would alone, so batching never changes an answer.

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
    ):
        self.match_many, self.max_batch = match_many, max_batch
        self.observe = observe  # called with each batch's size (the service's Prometheus histogram)
        self.no_rerun = no_rerun
        self.queue: list[tuple[Any, float | None, asyncio.Future]] = []
        self.draining = False
        self.sizes: list[int] = []  # batch sizes seen (the last 1000)
        self.reruns = 0

    async def submit(self, problem, deadline: float | None = None):
        future = asyncio.get_running_loop().create_future()
        self.queue.append((problem, deadline, future))
        if not self.draining:
            self.draining = True
            asyncio.get_running_loop().create_task(self._drain())
        return await future

    async def _drain(self) -> None:
        from anyio import to_thread

        try:
            while self.queue:
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
        finally:
            self.draining = False
