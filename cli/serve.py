"""The production model, found in ZenML's Model Control Plane: serve it, or print its Cloud Build request.

    python run.py --serve [--port 3000] [--host 127.0.0.1] [--workers N]   # bentoml serve the production model's Bento
    python run.py --dry-run [--config configs/gcp.yaml]      # the Cloud Build request the gcp deployer would send

The work is done by ``ledgerlink.deploy``; this module asks ZenML which version is in production and whether
the Bento its deploy built can be reused.
"""

from __future__ import annotations

from datetime import datetime
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


def production_bento(cfg: Config | dict, echo=print) -> str:
    """The production model's Bento tag: the one its deploy built if it is still in the local BentoML store,
    otherwise built now from the model version's ``matcher`` artifact. A version whose Bento failed to build or
    failed its smoke test is refused; one that passed them and failed later (e.g. in Cloud Build) is served."""
    import bentoml

    from utils.model_versions import ModelVersionMetadata

    cfg = Config.coerce(cfg)
    mv = production_version(cfg)
    meta = ModelVersionMetadata.of(mv)
    refusal = meta.deployment_refusal()
    if refusal:
        raise NoProductionModel(
            f"production version {mv.number} of {cfg.model_name!r} failed its deployment at {refusal}; it is not "
            "served. Fix the cause and run the training pipeline again (or promote another version)."
        )
    tag = (meta.deployment or {}).get("bento_tag")
    if tag:
        try:
            bentoml.bentos.get(tag)
            return str(tag)
        except bentoml.exceptions.NotFound:
            echo(f"Bento {tag} of production version {mv.number} is not in this BentoML store; rebuilding it")
    artifact = mv.get_artifact("matcher")
    if artifact is None:
        raise NoProductionModel(f"production version {mv.number} of {cfg.model_name!r} has no 'matcher' artifact")
    return package(artifact.load(), production_info(cfg, mv)).bento_tag


def serve_production(cfg: Config | dict, port: int = 3000, host: str = "127.0.0.1", workers: int | None = None) -> int:
    """``bentoml serve`` the production model in the foreground (Ctrl+C stops it); returns the exit code.
    One worker process per CPU by default (up to 4): matching is CPU-bound Python, one process uses one core."""
    import os

    from ledgerlink.deploy.local import serve_foreground

    workers = workers or min(os.cpu_count() or 1, 4)
    return serve_foreground(production_bento(cfg), host=host, port=port, workers=workers)
