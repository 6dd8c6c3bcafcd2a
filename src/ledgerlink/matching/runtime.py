"""How the matcher runs, shared by every family: thread settings, progress bars and the cooperative deadline.

Thread settings: OpenMP threads that wait for work spin by default. On a shared machine (more runnable threads
than cores) a 2-thread xgboost then runs ~20x slower than a 1-thread one (measured: 280 vs 13 ms per boosting
round on 2 busy cores); passive waiting costs little when the cores are free. The OpenMP runtime reads the setting
once, when it loads, so the families get xgboost and torch through ``xgboost()`` and ``torch()`` here, which set it
first (an explicit ``OMP_WAIT_POLICY`` wins; a program that imported xgboost before ledgerlink keeps its own).

Deadline: a service cannot kill a thread that is matching. So ``match(..., deadline=)`` sets an absolute
``time.monotonic()`` deadline for the call, and the matcher checks it between stages and inside its chunked
loops (``check_deadline("stage")``): past it, ``MatchTimeout`` unwinds the call and its arrays are freed. The
deadline is a context variable, so the checks deep in blocking or set search need no extra parameter, and
two threads matching at once each see their own.
"""

from __future__ import annotations

import contextvars
import os
import time
from contextlib import contextmanager
from typing import Callable, Sequence, TypeVar

from .base import MatchTimeout


def _thread_settings() -> None:
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def xgboost():
    """The xgboost module, imported after the thread settings."""
    _thread_settings()
    import xgboost as xgb

    return xgb


def torch():
    """The torch module, imported after the thread settings (torch loads its own OpenMP runtime)."""
    _thread_settings()
    import torch as _torch

    return _torch


@contextmanager
def torch_threads(n_jobs: int):
    """torch on ``n_jobs`` threads inside the block (torch's setting is process-wide: restored after)."""
    t = torch()
    before = t.get_num_threads()
    t.set_num_threads(max(1, int(n_jobs)))
    try:
        yield
    finally:
        t.set_num_threads(before)


def progress(enabled: bool, total: int, desc: str):
    """A tqdm bar for long work (``show_progress``), or None."""
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, leave=False)


T = TypeVar("T")
R = TypeVar("R")

_DEADLINE: contextvars.ContextVar[float | None] = contextvars.ContextVar("ledgerlink_match_deadline", default=None)


@contextmanager
def deadline_scope(deadline: float | None, stage: str = "start"):
    """Run the block under ``deadline`` (absolute ``time.monotonic()`` seconds; None: no limit of its own). A
    nested scope keeps the earlier of the two deadlines. Checks at once, so a call that starts late does no work."""
    if deadline is not None and not isinstance(deadline, (int, float)):
        raise TypeError(f"deadline must be a time.monotonic() value in seconds, got {type(deadline).__name__}")
    outer = _DEADLINE.get()
    effective = deadline if outer is None else (outer if deadline is None else min(outer, deadline))
    token = _DEADLINE.set(effective)
    try:
        check_deadline(stage)
        yield
    finally:
        _DEADLINE.reset(token)


def current_deadline() -> float | None:
    """The deadline of the call being run (None: none), to hand to worker processes with its batches."""
    return _DEADLINE.get()


def check_deadline(stage: str) -> None:
    """Raise ``MatchTimeout`` naming ``stage`` when the current call's deadline has passed (no-op without one)."""
    deadline = _DEADLINE.get()
    if deadline is not None:
        now = time.monotonic()
        if now > deadline:
            raise MatchTimeout(stage, now - deadline)


def checked_map(fn: Callable[[T], R], items: Sequence[T], stage: str, chunk: int = 256) -> list[R]:
    """``[fn(x) for x in items]`` with a deadline check every ``chunk`` items: per-text Python work (tokens of
    2,000-character titles cost milliseconds each) stays interruptible."""
    if _DEADLINE.get() is None or len(items) <= chunk:
        out = [fn(x) for x in items]
        check_deadline(stage)
        return out
    out: list[R] = []
    for lo in range(0, len(items), chunk):
        out += [fn(x) for x in items[lo : lo + chunk]]
        check_deadline(stage)
    return out
