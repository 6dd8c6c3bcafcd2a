"""A request's deadline: the matcher's ``MatchTimeout`` becomes a 503 that names the limit, and the memory of the
stopped work goes back to the system.

BentoML's traffic timeout answers 504 but cannot stop a thread: the work went on, three large requests at once
held 8.5 GB each and answered nothing. The matcher checks an absolute deadline between stages and inside its
loops (``Matcher.match(..., deadline=)``), so the thread ends soon after it.
"""

from __future__ import annotations

import ctypes
import gc
import traceback
from contextlib import contextmanager

from ledgerlink.matching.base import MatchTimeout

from .limits import REQUEST_DEADLINE_S, Limits
from .refusals import deadline_passed, matcher_refused


def release_memory() -> None:
    """Collect garbage cycles now (the service collects rarely, see ``_quiet_garbage_collector``) and hand freed
    heap pages back to the system (glibc ``malloc_trim``; elsewhere only the collection), so a stopped or finished
    large request does not keep the worker's memory high."""
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


@contextmanager
def stopped_at_deadline(limits: Limits):
    """Inside: matcher calls with a deadline. A ``MatchTimeout`` leaves as a 503 ``Refusal`` naming
    ``LEDGERLINK_REQUEST_DEADLINE_S`` (and whether the work had started); a ``ValueError`` of the matcher (input
    that validation let through) as a 400."""
    try:
        yield
    except MatchTimeout as exc:
        # The stopped call's frames hold its arrays until the traceback goes: clear them before collecting.
        traceback.clear_frames(exc.__traceback__)
        release_memory()
        raise deadline_passed(limits, REQUEST_DEADLINE_S, exc.stage, exc.late_by) from None
    except ValueError as exc:
        raise matcher_refused(exc) from None
