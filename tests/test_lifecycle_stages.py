"""Stage changes in the Model Control Plane (utils/model_stages.py): one holder per stage, even under races.

Issue 11: two concurrent ``set_stage("production", force=True)`` calls left two production versions, and
``production_version()`` then died with a bare RuntimeError. The two-process test below starts each of 8 rounds of
changes in both processes together; with ``change_stage`` reduced to ZenML's own call (no lock, no check) it saw two
or three production holders in 3 of 3 runs, with the lock and check never more than one.
"""

from __future__ import annotations

import multiprocessing as mp
import threading
import uuid

import pytest

from utils.model_stages import (
    PRODUCTION,
    StageConflict,
    StageLockTimeout,
    change_stage,
    holders,
    lock_file,
    stage_lock,
    stage_name,
)
from utils.model_versions import ModelVersionMetadata, log_model_version_metadata, production_version


def _model(n_versions: int) -> str:
    from zenml.client import Client

    client, name = Client(), f"stages_{uuid.uuid4().hex[:8]}"
    client.create_model(name)
    for _ in range(n_versions):
        client.create_model_version(name)
    return name


def _force_stage_in_the_database(model: str, number: int, stage: str) -> None:
    """What a lost race leaves: write a stage straight into the store, past ZenML's archive-the-holder logic."""
    from sqlmodel import Session
    from zenml.client import Client
    from zenml.zen_stores.schemas import ModelVersionSchema

    mv = Client().get_model_version(model, number)
    with Session(Client().zen_store.engine) as session:
        row = session.get(ModelVersionSchema, mv.id)
        row.stage = stage
        session.add(row)
        session.commit()


def _deployed(model: str, number: int) -> None:
    log_model_version_metadata(
        ModelVersionMetadata(deployment={"deployed": True, "status": "success", "deployer": "local"}), model, number
    )


def _racer(model: str, numbers: list[int], barrier, seen) -> None:
    """A process that moves versions to production, each change started together with the other process's (a barrier
    per round), and counts the production holders after each of its changes (``seen``: the most it saw)."""
    from zenml.client import Client

    Client().get_model(model)  # ZenML initialised before the start line
    most = 0
    for number in numbers:
        barrier.wait(timeout=300)
        try:
            change_stage(model, number, PRODUCTION, echo=lambda _: None)
        except StageConflict:  # allowed: the loser is told; it must never leave two holders
            pass
        most = max(most, len(holders(model, PRODUCTION)))
    seen.put(most)


def test_two_processes_changing_production_at_once_leave_exactly_one_holder():
    model = _model(5)
    for n in range(1, 6):
        _deployed(model, n)
    ctx = mp.get_context("spawn")
    barrier, seen = ctx.Barrier(2), ctx.Queue()
    racers = [
        ctx.Process(target=_racer, args=(model, [2, 4] * 4, barrier, seen)),
        ctx.Process(target=_racer, args=(model, [3, 5] * 4, barrier, seen)),
    ]
    for p in racers:
        p.start()
    for p in racers:
        p.join(timeout=600)
        assert p.exitcode == 0
    assert [seen.get(timeout=10), seen.get(timeout=10)] == [1, 1]  # never two holders after any change
    found = holders(model, PRODUCTION)
    assert len(found) == 1, [v.number for v in found]
    assert production_version(model).number == found[0].number
    assert lock_file(model).is_file()


def test_two_production_versions_are_repaired_on_read_keeping_the_newest_successfully_deployed():
    model = _model(3)
    _deployed(model, 1)  # 2 and 3 never deployed successfully
    for n in (1, 2, 3):
        _force_stage_in_the_database(model, n, PRODUCTION)
    assert len(holders(model, PRODUCTION)) == 3
    said: list[str] = []
    prod = production_version(model, echo=said.append)  # ZenML's get_model_version would raise RuntimeError here
    assert prod.number == 1
    assert [v.number for v in holders(model, PRODUCTION)] == [1]
    from zenml.client import Client

    assert [stage_name(Client().get_model_version(model, n)) for n in (2, 3)] == ["archived", "archived"]
    assert said and "versions [1, 2, 3]" in said[0] and "kept version 1" in said[0] and "archived [2, 3]" in said[0]


def test_a_change_that_a_concurrent_one_overrides_raises_stage_conflict(monkeypatch):
    import utils.model_stages as stages

    model = _model(2)
    _deployed(model, 1)
    change_stage(model, 1, PRODUCTION, echo=lambda _: None)
    real_set = stages._set

    def racing_set(name, number, stage):  # another process sets 1 again right after ours, as in the race
        real_set(name, number, stage)
        _force_stage_in_the_database(name, 1, PRODUCTION)

    monkeypatch.setattr(stages, "_set", racing_set)
    said: list[str] = []
    with pytest.raises(StageConflict, match="version 2 .* was moved to 'production', but .* left version 1 there"):
        change_stage(model, 2, PRODUCTION, echo=said.append)
    assert [v.number for v in holders(model, PRODUCTION)] == [1] and "kept version 1" in said[0]


def test_the_lock_waits_for_another_holder_and_names_it_on_timeout():
    import os

    model = _model(1)
    held, release = threading.Event(), threading.Event()

    def hold():
        with stage_lock(model):
            held.set()
            release.wait(30)

    t = threading.Thread(target=hold)
    t.start()
    assert held.wait(30)
    with pytest.raises(StageLockTimeout, match=f"held by process {os.getpid()}"):
        with stage_lock(model, timeout_s=0.3):
            pass
    release.set()
    t.join()
    with stage_lock(model, timeout_s=5), stage_lock(model, timeout_s=0.1):  # free again, and reentrant
        pass
