"""What a stopped run leaves half done is finished or reverted by the next run (utils/repair.py), and said.

- a real training run in a subprocess is killed (``os._exit``) after ``promote_model`` staged the new version, as
  its deploy starts; the next run of another pipeline (``--pipeline data``) deploys the staged version, makes it
  production and exports it; ``--serve`` then uses its smoke-tested Bento;
- each other state, made with the real deploy step and the Model Control Plane: a staged version whose deploy had
  succeeded (finished: production), or had failed (reverted: archived); a staged version whose deploy now fails
  (reverted); a production version without a successful deployment (finished: deployed; or, when that fails,
  reverted to the newest successfully deployed version); a rollback stopped half way (finished).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import yaml
from deploy_helpers import make_smoke_store, run_deploy

from utils.model_stages import ARCHIVED, PRODUCTION, STAGING, change_stage, stage_name
from utils.model_versions import ModelVersionMetadata, StageChange, log_model_version_metadata

ROOT = Path(__file__).resolve().parents[1]

KILL_DURING_DEPLOY = """
import os, sys
sys.path[:0] = [{src!r}, {root!r}]
from zenml.utils import source_utils

source_utils.set_custom_source_root({root!r})  # as when run.py is the main module (``python -c`` has no file)
import utils.deployments

def killed(*args, **kwargs):  # the process dies as deploy_model starts shipping: promote_model has staged the version
    os._exit(137)

utils.deployments.deploy_promoted = killed
from cli.runner import run_cycles
from ledgerlink.config import Config

run_cycles(Config.load({config!r}), "training")
"""


def _version(model: str, key):
    from zenml.client import Client

    return Client().get_model_version(model, key)


@pytest.mark.slow
def test_a_run_killed_between_promotion_and_deployment_is_finished_by_the_next_run(tmp_path, capsys):
    import run
    from cli.serve import production_bento
    from ledgerlink.config import Config

    home = tmp_path / "home"
    config = tmp_path / "kill.yaml"
    section = {
        "data_dir": str(home),
        "model_name": "repair_kill",
        "synthetic": {"months": 3, "contractors": 50, "transfers_per_month": 250},
        "warehouse": {"path": str(home / "warehouse.duckdb")},
        "store": {"uri": str(home / "datasets")},
        "deploy": {"model_dir": str(home / "models")},
        "model": {"params": {"n_estimators": 40}},
    }
    config.write_text(yaml.safe_dump({"ledgerlink": section}))
    script = KILL_DURING_DEPLOY.format(src=str(ROOT / "src"), root=str(ROOT), config=str(config))
    killed = subprocess.run([sys.executable, "-c", script], env=dict(os.environ), capture_output=True, text=True)
    assert killed.returncode == 137, killed.stdout[-3000:] + killed.stderr[-3000:]

    staged = _version("repair_kill", STAGING)  # what the kill left: staged, a pending change, nothing deployed
    meta = ModelVersionMetadata.of(staged)
    assert meta.stage_change.state == "pending" and meta.deployment is None
    assert not (home / "models" / "repair_kill" / "production.json").exists()

    capsys.readouterr()
    assert run.main(["--pipeline", "data", "--config", str(config)]) == 0  # any pipeline: here the data collection
    out = capsys.readouterr().out
    assert f"finished: version {staged.number} was staged but never deployed; deployed it now" in out
    prod = _version("repair_kill", PRODUCTION)
    meta = ModelVersionMetadata.of(prod)
    assert prod.number == staged.number and meta.deployment_succeeded() and meta.deployment["smoke_test"]["passed"]
    assert meta.stage_change.state == "done" and meta.deployment["change_id"] == meta.stage_change.id
    pointer = json.loads((home / "models" / "repair_kill" / "production.json").read_text())
    assert pointer["number"] == prod.number
    assert production_bento(Config.load(config), echo=lambda _: None) == meta.deployment["bento_tag"]
    assert run.main(["--pipeline", "data", "--config", str(config)]) == 0
    assert "Repair of" not in capsys.readouterr().out  # nothing left to repair: nothing said


@pytest.fixture(scope="module")
def matcher_dir(small_world, small_matcher, tmp_path_factory):
    from ledgerlink.matching.base import save_matcher

    data = small_world
    d = tmp_path_factory.mktemp("repair-matcher")
    save_matcher(small_matcher, d)
    return str(d), data


def _stage_by_hand(model: str, number: int, stage: str, **metadata) -> None:
    if metadata:
        log_model_version_metadata(ModelVersionMetadata(**metadata), model, number)
    change_stage(model, number, stage, echo=lambda _: None)


def test_every_half_done_state_is_finished_or_reverted_and_said(matcher_dir, tmp_path):
    from ledgerlink.config import Config
    from utils.repair import repair

    path, data = matcher_dir
    model, models = "repair_states", tmp_path / "models"
    local = {"deployer": "local", "smoke_test": False, "model_dir": str(models)}
    good = Config.parse({"model_name": model, "data_dir": str(tmp_path), "deploy": local})
    failing = Config.parse(  # the smoke test needs the frozen test split, and this store has none
        {"model_name": model, "data_dir": str(tmp_path), "deploy": {**local, "smoke_test": True}}
    )
    pointer = models / model / "production.json"

    def exported() -> int:
        return json.loads(pointer.read_text())["number"]

    def fresh_version():  # a version with a matcher artifact and no deployment (not promoted)
        return run_deploy(model, path=path, promote=False, deploy=local)[0]

    v1, error = run_deploy(model, path=path, promote=True, deploy=local)
    assert error is None and stage_name(v1) == PRODUCTION
    assert repair(good, echo=lambda _: None) == []  # all in order: nothing done

    # staged, and its deploy had succeeded before the run stopped: only the stage change was lost
    v2 = fresh_version()
    change = StageChange("deploy", previous=v1.number)
    done = {"deployed": True, "status": "success", "deployer": "local", "change_id": change.id}
    _stage_by_hand(model, v2.number, STAGING, stage_change=change, deployment=done)
    said = repair(good, echo=lambda _: None)
    assert said == [f"finished: version {v2.number} had been deployed before the run stopped; it is production now"]
    assert _version(model, PRODUCTION).number == v2.number and stage_name(_version(model, v1.number)) == ARCHIVED

    # staged, and its deploy had failed before the run stopped
    v3 = fresh_version()
    change = StageChange("deploy", previous=v2.number)
    failed = {"deployed": False, "status": "failed", "stage": "gcp", "error": "FAILURE", "change_id": change.id}
    _stage_by_hand(model, v3.number, STAGING, stage_change=change, deployment=failed)
    (line,) = repair(good, echo=lambda _: None)
    assert line.startswith(f"reverted: version {v3.number}'s deploy had failed (its deploy failed at gcp")
    assert stage_name(_version(model, v3.number)) == ARCHIVED and _version(model, PRODUCTION).number == v2.number

    # staged and never deployed, and deploying it now fails: reverted, the failure recorded on it
    v4 = fresh_version()
    _stage_by_hand(model, v4.number, STAGING, stage_change=StageChange("deploy", previous=v2.number))
    (line,) = repair(failing, echo=lambda _: None)
    assert line.startswith(f"reverted: version {v4.number} was staged but never deployed, and deploying it now failed")
    assert "smoke test needs data" in line and f"production stays version {v2.number}" in line
    v4 = _version(model, v4.number)
    assert stage_name(v4) == ARCHIVED and ModelVersionMetadata.of(v4).deployment["stage"] == "configuration"

    # production without a successful deployment (an older ledgerlink promoted before deploying): deployed now
    v5 = fresh_version()
    _stage_by_hand(model, v5.number, PRODUCTION)
    (line,) = repair(good, echo=lambda _: None)
    assert line.startswith(f"finished: production version {v5.number} had no successful deployment")
    assert ModelVersionMetadata.of(_version(model, PRODUCTION)).deployment_succeeded() and exported() == v5.number

    # the same, but deploying it fails: the newest successfully deployed version (5) is production and exported again
    v6 = fresh_version()
    _stage_by_hand(model, v6.number, PRODUCTION)
    assert exported() == v5.number
    (models / model / str(v5.number)).rename(tmp_path / "moved")  # its export is gone: it must be exported again
    (line,) = repair(failing, echo=lambda _: None)
    assert f"version {v5.number}, the newest deployed successfully, is production again" in line
    assert _version(model, PRODUCTION).number == v5.number and stage_name(_version(model, v6.number)) == ARCHIVED
    assert exported() == v5.number and (models / model / str(v5.number) / "info.json").is_file()

    # a rollback to 2 stopped after staging it: finished by shipping 2 again (exported) and making it production
    change = StageChange("rollback", previous=v5.number)
    _stage_by_hand(model, v2.number, STAGING, stage_change=change)
    (line,) = repair(good, echo=lambda _: None)
    assert line == f"finished: the interrupted rollback to version {v2.number}; it is production now"
    v2 = _version(model, PRODUCTION)
    assert v2.number == int(line.split("version ")[1].split(";")[0]) and exported() == v2.number
    assert ModelVersionMetadata.of(v2).deployment["change_id"] == change.id
    assert repair(good, echo=lambda _: None) == []

    # a training run that did not start from run.py (a Vertex schedule) archives a version left staged before
    # staging its own (promote_model); production is not touched
    from utils.repair import archive_left_staged

    v7, change = fresh_version(), StageChange("deploy", previous=v2.number)
    _stage_by_hand(model, v7.number, STAGING, stage_change=change)
    assert archive_left_staged(model, keep=v7.number + 1, echo=lambda _: None).startswith(
        f"reverted: version {v7.number} was left in staging"
    )
    v7 = _version(model, v7.number)
    assert stage_name(v7) == ARCHIVED and ModelVersionMetadata.of(v7).stage_change.state == "reverted"
    assert _version(model, PRODUCTION).number == v2.number and archive_left_staged(model, keep=99) is None


def test_serve_smoke_tests_a_rebuilt_bento_with_the_frozen_split(matcher_dir, tmp_path):
    """--serve on a machine whose BentoML store lacks the production Bento: rebuilt and smoke-tested, never untested."""
    import bentoml

    from cli.serve import production_bento

    path, data = matcher_dir
    store = make_smoke_store(data, tempfile.mkdtemp(prefix="serve-store-", dir=tmp_path))
    deploy = {"deployer": "local", "smoke_test": True, "model_dir": str(tmp_path / "models")}
    mv, error = run_deploy("serve_rebuild", path=path, promote=True, deploy=deploy, store_uri=store)
    assert error is None and stage_name(mv) == PRODUCTION
    tag = ModelVersionMetadata.of(mv).deployment["bento_tag"]
    cfg = {"model_name": "serve_rebuild", "deploy": deploy, "store": {"uri": store}}
    assert production_bento(cfg, echo=lambda _: None) == tag  # the deploy's own smoke-tested Bento
    bentoml.bentos.delete(tag)
    said: list[str] = []
    rebuilt = production_bento(cfg, echo=said.append)
    assert rebuilt != tag and any("Smoke test passed" in s for s in said)
    assert production_bento(cfg, echo=said.append) == rebuilt  # tested here once, reused
