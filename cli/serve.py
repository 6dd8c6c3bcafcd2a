"""The production model, found in ZenML's Model Control Plane: serve it, or print its Cloud Build request.

    python run.py --serve [--port 3000] [--host 127.0.0.1] [--workers N]   # bentoml serve the production model's Bento
    python run.py --dry-run [--config configs/gcp.yaml]      # the Cloud Build request the gcp deployer would send

The work is done by ``ledgerlink.deploy``; this module asks ZenML which version is in production and whether
the Bento its deploy built and smoke-tested can be reused. It never serves a Bento that has not passed a smoke test.
"""

from __future__ import annotations

import json
import os
from datetime import datetime
from pathlib import Path
from typing import Any

from ledgerlink.config import Config
from ledgerlink.deploy.deployers import ModelVersionInfo, dry_run_request, package


class NoProductionModel(RuntimeError):
    pass


def production_version(cfg: Config):
    """The production model version (ZenML response); ``NoProductionModel`` when there is none."""
    from utils.model_versions import production_version as find

    mv = find(cfg.model_name)
    if mv is None:
        raise NoProductionModel(
            f"no version of model {cfg.model_name!r} is in production yet; run "
            "`python run.py --pipeline training` first"
        )
    return mv


def production_info(cfg: Config, mv=None) -> ModelVersionInfo:
    from utils.model_versions import model_version_info

    mv = mv if mv is not None else production_version(cfg)
    return model_version_info(cfg.model_name, mv, currencies=cfg.deploy.currencies)


def dry_run(cfg: Config | dict, now: datetime | None = None) -> tuple[dict[str, Any], str]:
    """(request, printable text) of the Cloud Build job for the production model; nothing is uploaded or sent."""
    cfg = Config.coerce(cfg)
    return dry_run_request(cfg.deploy.model_dump(mode="json"), production_info(cfg), now=now)


def _tested_marker() -> Path:
    """This machine's list of Bentos that passed a smoke test here (``$BENTOML_HOME``: it describes that store).
    A deploy's Bento is recorded as tested on the model version; one rebuilt here by ``--serve`` is listed here."""
    from bentoml._internal.configuration.containers import BentoMLContainer

    return Path(BentoMLContainer.bentoml_home.get()) / "ledgerlink-smoke-tested.json"


def _tested_here() -> dict[str, Any]:
    path = _tested_marker()
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return {}


def _remember_tested(bento_tag: str, model_version_id: str, smoke: dict) -> None:
    path = _tested_marker()
    seen = _tested_here()
    seen[str(bento_tag)] = {"model_version_id": model_version_id, "latency_ms": smoke.get("latency_ms")}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(seen, indent=2))
    os.replace(tmp, path)


def _in_store(tag: str | None) -> bool:
    import bentoml

    if not tag:
        return False
    try:
        bentoml.bentos.get(tag)
        return True
    except bentoml.exceptions.NotFound:
        return False


def production_bento(cfg: Config | dict, echo=print) -> str:
    """The production model's Bento tag, never one that has not passed a smoke test.

    - the Bento its deploy built and smoke-tested, when it is in this machine's BentoML store;
    - else one that passed a smoke test here before (``--serve`` rebuilt it);
    - else it is (re)built from the model version's ``matcher`` artifact and smoke-tested on the frozen test split now
      (also a deploy's Bento that was not smoke-tested: ``deploy.smoke_test: false``); without the frozen test set,
      or when the smoke test fails, it is refused.

    A production version without a successful deployment (an interrupted run of an older ledgerlink) is refused:
    the next pipeline run repairs it (``utils/repair.py``)."""
    from utils.model_stages import STAGING, single_holder
    from utils.model_versions import ModelVersionMetadata

    cfg = Config.coerce(cfg)
    mv = production_version(cfg)
    meta = ModelVersionMetadata.of(mv)
    why = meta.why_not_deployed()
    if why:
        raise NoProductionModel(
            f"production version {mv.number} of {cfg.model_name!r} is not served: {why}. Any pipeline run "
            "(e.g. `python run.py --pipeline data`) finishes or reverts it; `python run.py --rollback` goes back to "
            "the previous version."
        )
    staged = single_holder(cfg.model_name, STAGING, echo)
    if staged is not None:
        echo(
            f"Note: version {staged.number} is staged but not deployed; production stays version {mv.number} until the "
            "next pipeline run finishes or reverts it."
        )
    dep = meta.deployment or {}
    tag = dep.get("bento_tag")
    if tag and (dep.get("smoke_test") or {}).get("passed") and _in_store(tag):
        return str(tag)
    for tested, facts in _tested_here().items():
        if facts.get("model_version_id") == str(mv.id) and _in_store(tested):
            return tested
    return _smoke_tested_bento(cfg, mv, tag if _in_store(tag) else None, dep.get("bento_model_tag"), echo)


def _smoke_tested_bento(cfg: Config, mv, existing: str | None, model_tag: str | None, echo) -> str:
    """Build (unless ``existing``) and smoke-test the production version's Bento; refuse rather than serve it
    untested."""
    import bentoml

    from ledgerlink.data.store import StoreError, store_at
    from ledgerlink.deploy.deployers import Packaged, smoke_test

    try:
        tables = store_at(cfg.store.uri).load_test()
    except StoreError as exc:
        raise NoProductionModel(
            f"the Bento of production version {mv.number} has not passed a smoke test on this machine, and there is no "
            f"frozen test split to smoke-test it with ({cfg.store.uri}: {exc}); not serving an untested Bento. Run "
            "`python run.py --pipeline data` first (or on the machine that deployed it, `--serve` uses its Bento)."
        ) from None
    artifact = mv.get_artifact("matcher")
    if artifact is None:
        raise NoProductionModel(f"production version {mv.number} of {cfg.model_name!r} has no 'matcher' artifact")
    matcher = artifact.load()
    info = production_info(cfg, mv)
    if existing and model_tag:
        echo(f"Bento {existing} of production version {mv.number} was never smoke-tested; smoke-testing it")
        packaged, built = Packaged(info=info, model_tag=str(model_tag), bento_tag=str(existing)), False
    else:
        echo(
            f"The Bento of production version {mv.number} is not in this BentoML store; rebuilding and smoke-testing it"
        )
        packaged, built = package(matcher, info), True
    try:
        smoke = smoke_test(packaged, tables, matcher)
    except Exception as exc:
        if built:
            bentoml.bentos.delete(packaged.bento_tag)
        raise NoProductionModel(
            f"the Bento of production version {mv.number} failed its smoke test here ({type(exc).__name__}: {exc}); "
            "not serving it"
        ) from None
    _remember_tested(packaged.bento_tag, str(mv.id), smoke)
    echo(f"Smoke test passed: {packaged.bento_tag} answered POST /match in {smoke['latency_ms']} ms")
    return packaged.bento_tag


def serve_production(cfg: Config | dict, port: int = 3000, host: str = "127.0.0.1", workers: int | None = None) -> int:
    """``bentoml serve`` the production model in the foreground (Ctrl+C stops it); returns the exit code.
    One worker process per CPU by default (up to 4): matching is CPU-bound Python, one process uses one core."""
    from ledgerlink.deploy.local import serve_foreground

    workers = workers or min(os.cpu_count() or 1, 4)
    return serve_foreground(production_bento(cfg), host=host, port=port, workers=workers)
