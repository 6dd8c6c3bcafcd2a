"""Stage changes in the Model Control Plane: one holder of ``staging`` and of ``production`` per model, always.

ZenML's ``update_model_version(stage=..., force=True)`` reads the current holder and archives it in one
transaction, but two such transactions at once each archive the holder they saw and both commit: two concurrent
``set_stage("production", force=True)`` left two production versions in 8 of 8 trials (issue 11), and
``Client().get_model_version(name, "production")`` then raises a bare ``RuntimeError``. So every ledgerlink stage
change goes through ``change_stage``:

1. **a lock** per model: ``fcntl.flock`` on a file next to the local store's SQLite database (``ZENML_CONFIG_PATH``),
   so two processes on this machine change stages one after the other. It is reentrant within a process;
2. **the check** after the change: the holders of the stage are read back. Two or more are repaired at once by a
   rule every process computes the same way (``keep_holder``: for ``production`` the newest version whose deploy
   succeeded, else the newest), the others archived, and it is said;
3. **the caller's answer**: if its version is not the one kept, ``StageConflict`` says which version holds the
   stage now and why.

A remote ZenML server (``zenml login https://...``): the file lock only orders the processes of this machine; runs
on other machines (Vertex steps) are not ordered by it. What guards the stage there is steps 2 and 3: every
change is read back and repaired by the same deterministic rule, so racers that both see two holders archive the
same loser, and the loser's run fails with ``StageConflict`` instead of leaving two production versions.
"""

from __future__ import annotations

import re
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Callable

from ledgerlink.locks import exclusive_lock

STAGING, PRODUCTION, ARCHIVED = "staging", "production", "archived"
EXCLUSIVE_STAGES = (STAGING, PRODUCTION)
LOCK_TIMEOUT_S = 600.0  # a deploy's "go live" part (export, stage change) holds it for seconds, never minutes


class StageConflict(RuntimeError):
    """A stage change did not leave the version asked for in the stage (another process changed it too)."""


class StageLockTimeout(RuntimeError):
    pass


def stage_name(model_version) -> str:
    """The stage of a ZenML model version response as a plain string (``"production"``, ``""`` for none)."""
    stage = getattr(model_version, "stage", None)
    return str(getattr(stage, "value", stage) or "")


# ------------------------------------------------------------------------------------------------------------
# the lock
# ------------------------------------------------------------------------------------------------------------

_held: dict[tuple[str, int], int] = {}  # (lock file, thread) -> depth: reentrant for the thread holding it
_held_guard = threading.Lock()


def lock_file(model_name: str) -> Path:
    """Where the stage lock of ``model_name`` lives: beside the SQLite database of a local ZenML store, else in the
    ZenML config directory (a remote server: see the module docstring for what guards it)."""
    from zenml.client import Client
    from zenml.config.global_config import GlobalConfiguration

    url = str(Client().zen_store.config.url)
    folder = (
        Path(url.removeprefix("sqlite:///")).parent
        if url.startswith("sqlite:///")
        else Path(GlobalConfiguration().config_directory)
    )
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", model_name)
    return folder / "ledgerlink-locks" / f"stages-{safe}.lock"


@contextmanager
def stage_lock(model_name: str, timeout_s: float = LOCK_TIMEOUT_S, poll_s: float = 0.05):
    """Hold the stage lock of ``model_name``: reentrant for the thread that holds it; another thread or process
    waits (flock locks belong to the open file, and each entry opens its own). Raises ``StageLockTimeout`` naming
    the file and the process that holds it."""
    path = lock_file(model_name)
    key = (str(path), threading.get_ident())
    with _held_guard:
        nested = bool(_held.get(key))
        if nested:
            _held[key] += 1
    if nested:
        try:
            yield path
        finally:
            with _held_guard:
                _held[key] -= 1
        return

    def timeout(holder: str) -> StageLockTimeout:
        return StageLockTimeout(
            f"the stage lock {path} of model {model_name!r} is held by process {holder} for more than "
            f"{timeout_s:g}s; if that process is gone, the lock is free again (flock dies with it)"
        )

    with exclusive_lock(path, timeout_s, timeout, poll_s=poll_s):
        with _held_guard:
            _held[key] = 1
        try:
            yield path
        finally:
            with _held_guard:
                _held.pop(key, None)


# ------------------------------------------------------------------------------------------------------------
# the check and its repair
# ------------------------------------------------------------------------------------------------------------


def holders(model_name: str, stage: str) -> list:
    """Every version of ``model_name`` in ``stage``, newest first (hydrated: metadata included)."""
    from zenml.client import Client

    client = Client()
    page = client.list_model_versions(model=model_name, stage=stage, sort_by="desc:number", size=100)
    return [client.get_model_version(model_name, v.number) for v in page.items]


def keep_holder(stage: str, versions: list):
    """Which of several holders of ``stage`` keeps it: for ``production`` the newest version whose deploy succeeded
    (what serves traffic if any does), else the newest. Every process computes the same answer."""
    from utils.model_versions import ModelVersionMetadata

    ordered = sorted(versions, key=lambda v: -int(v.number))
    if stage == PRODUCTION:
        deployed = [v for v in ordered if ModelVersionMetadata.of(v).deployment_succeeded()]
        if deployed:
            return deployed[0]
    return ordered[0]


def _set(model_name: str, number: int, stage: str) -> None:
    from zenml.client import Client

    # force=True: the previous holder is archived (for "archived" itself this only re-archives another version)
    Client().update_model_version(model_name, number, stage=stage, force=True)


def ensure_single_holder(model_name: str, stage: str, echo: Callable[[str], object] = print):
    """Read the holders of ``stage`` back; with two or more, keep one (``keep_holder``), archive the others and say
    so. Returns the holder (None when there is none). Call it under ``stage_lock``."""
    found = holders(model_name, stage)
    if len(found) <= 1:
        return found[0] if found else None
    keep = keep_holder(stage, found)
    others = [v for v in found if v.number != keep.number]
    for v in others:
        _set(model_name, v.number, ARCHIVED)
    echo(
        f"Repaired the Model Control Plane: versions {sorted(int(v.number) for v in found)} of {model_name!r} were all "
        f"in {stage!r} (concurrent stage changes); kept version {keep.number}"
        + (" (the newest successfully deployed)" if stage == PRODUCTION else " (the newest)")
        + f", archived {sorted(int(v.number) for v in others)}"
    )
    return holders(model_name, stage)[0]


def change_stage(model_name: str, number: int, stage: str, echo: Callable[[str], object] = print):
    """Move version ``number`` to ``stage`` under the lock and check that it is the only holder; returns the version.
    Raises ``StageConflict`` when the repair kept another version (a concurrent change won)."""
    with stage_lock(model_name):
        _set(model_name, number, stage)
        if stage not in EXCLUSIVE_STAGES:
            from zenml.client import Client

            return Client().get_model_version(model_name, number)
        holder = ensure_single_holder(model_name, stage, echo)
    if holder is None or int(holder.number) != int(number):
        raise StageConflict(
            f"version {number} of {model_name!r} was moved to {stage!r}, but a concurrent change left "
            f"{'no version' if holder is None else f'version {holder.number}'} there"
            + (" (the newest successfully deployed one is kept)" if stage == PRODUCTION else "")
        )
    return holder


def single_holder(model_name: str, stage: str, echo: Callable[[str], object] = print):
    """The one holder of ``stage`` (None if none). Two or more are repaired under the lock first, and said so: a read
    never dies on a duplicate stage (``Client().get_model_version(name, "production")`` would raise)."""
    found = holders(model_name, stage)
    if len(found) <= 1:
        return found[0] if found else None
    with stage_lock(model_name):
        return ensure_single_holder(model_name, stage, echo)


__all__ = [
    "ARCHIVED",
    "PRODUCTION",
    "STAGING",
    "StageConflict",
    "StageLockTimeout",
    "change_stage",
    "ensure_single_holder",
    "holders",
    "keep_holder",
    "lock_file",
    "single_holder",
    "stage_lock",
    "stage_name",
]
