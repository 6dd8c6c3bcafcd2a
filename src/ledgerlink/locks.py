"""An exclusive ``flock`` with a deadline: the one way ledgerlink serialises writers on one machine.

Two places need it: the local dataset store's manifest commit (``data.store``) and a model's stage changes
(``utils/model_stages``). The kernel releases a ``flock`` when its holder dies, so a killed writer never leaves
a stale lock; the holder's process id is written into the file so that a timeout can say who holds it.
"""

from __future__ import annotations

import fcntl
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def exclusive_lock(
    path: str | Path, timeout_s: float, on_timeout: Callable[[str], Exception], poll_s: float = 0.02
) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``path`` (created if missing). Waits at most ``timeout_s``, then raises
    ``on_timeout(holder)``, where ``holder`` is the process id written by whoever holds it (or "unknown")."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "unknown"
                    raise on_timeout(holder) from None
                time.sleep(poll_s)
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)
