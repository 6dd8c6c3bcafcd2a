"""The production model, found in ZenML's Model Control Plane: serve it, or print its Cloud Build request.

    python run.py --serve [--port 3000] [--host 127.0.0.1] [--workers N]   # bentoml serve the production model's Bento
    python run.py --dry-run [--config configs/gcp.yaml]      # the Cloud Build request the gcp deployer would send

The work is done by ``ledgerlink.deploy``; this module asks ZenML which version is in production and whether
the Bento its deploy built can be reused.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from ledgerlink.deploy.deployers import ModelVersionInfo, dry_run_request, package


class NoProductionModel(RuntimeError):
    pass


def production_version(cfg: dict):
    """The production model version (ZenML response); ``NoProductionModel`` when there is none."""
    from utils.model_versions import production_version as find

    mv = find(cfg["model_name"])
    if mv is None:
        raise NoProductionModel(
            f"no version of model {cfg['model_name']!r} is in production yet; run "
            "`python run.py --pipeline training` first"
        )
    return mv


def production_info(cfg: dict, mv=None) -> ModelVersionInfo:
    mv = mv if mv is not None else production_version(cfg)
    meta = mv.run_metadata or {}
    return ModelVersionInfo(
        model_name=cfg["model_name"],
        version=str(mv.name),
        number=int(mv.number),
        model_version_id=str(mv.id),
        metrics=dict(meta.get("metrics") or {}),
        months=list(meta.get("data_months") or []),
        threshold=meta.get("auto_threshold"),
        currencies=cfg["deploy"].get("currencies"),
    )


def dry_run(cfg: dict, now: datetime | None = None) -> tuple[dict[str, Any], str]:
    """(request, printable text) of the Cloud Build job for the production model; nothing is uploaded or sent."""
    return dry_run_request(cfg["deploy"], production_info(cfg), now=now)


def production_bento(cfg: dict, echo=print) -> str:
    """The production model's Bento tag: the one its deploy built if it is still in the local BentoML store,
    otherwise built now from the model version's ``matcher`` artifact. A version whose Bento failed to build or
    failed its smoke test is refused; one that passed them and failed later (e.g. in Cloud Build) is served."""
    import bentoml

    mv = production_version(cfg)
    deployment = (mv.run_metadata or {}).get("deployment") or {}
    deployment = deployment if isinstance(deployment, dict) else {}
    if deployment.get("status") == "failed" and deployment.get("stage") in ("configuration", "package", "smoke_test"):
        raise NoProductionModel(
            f"production version {mv.number} of {cfg['model_name']!r} failed its deployment at "
            f"{deployment['stage']} ({deployment.get('error', 'no error recorded')}); it is not served. Fix the "
            "cause and run the training pipeline again (or promote another version)."
        )
    tag = deployment.get("bento_tag")
    if tag:
        try:
            bentoml.bentos.get(tag)
            return str(tag)
        except bentoml.exceptions.NotFound:
            echo(f"Bento {tag} of production version {mv.number} is not in this BentoML store; rebuilding it")
    artifact = mv.get_artifact("matcher")
    if artifact is None:
        raise NoProductionModel(f"production version {mv.number} of {cfg['model_name']!r} has no 'matcher' artifact")
    return package(artifact.load(), production_info(cfg, mv)).bento_tag


def serve_production(cfg: dict, port: int = 3000, host: str = "127.0.0.1", workers: int | None = None) -> int:
    """``bentoml serve`` the production model in the foreground (Ctrl+C stops it); returns the exit code.
    One worker process per CPU by default (up to 4): matching is CPU-bound Python, one process uses one core."""
    import os

    from ledgerlink.deploy.local import serve_foreground

    workers = workers or min(os.cpu_count() or 1, 4)
    return serve_foreground(production_bento(cfg), host=host, port=port, workers=workers)
