"""Conditional deploy of a promoted model version: package, smoke-test, then the configured deployer.

The flow (``deploy_promoted``), the same for every deployer:

1. **package**: save the matcher to the BentoML model store, labelled with the ZenML model name, version
   number and id, and carrying its metrics, training months and auto-match threshold (``GET /model``
   reports them); build the Bento from ``bentos/bentofile.yaml`` for exactly that model;
2. **smoke test** (``deploy.smoke_test``, on by default): ``bentoml serve`` the Bento on a free loopback
   port, wait for ``/readyz``, send one real ``POST /match`` made from the data (a transfer of the frozen
   test split and its candidate invoices), check the answer's shape, stop the server;
3. **deployer** (``deploy.deployer``): ``local`` exports the model to ``deploy.model_dir`` and prints how to
   serve it; ``gcp`` uploads the Bento's build context and builds the image with Cloud Build
   (``ledgerlink.deploy.gcp``).

It returns the record to keep as the model version's ``deployment`` metadata. Any failure raises
``DeploymentFailed`` whose ``record`` says ``status: failed``, at which stage, and (for Cloud Build) the
build id, status and log URL, so the caller can record it before the run fails. No ZenML here: the step
``steps/deployment/deploy_model.py`` passes the model version's facts in and logs the record; the caller moves the
version to ``production`` only after a success (``utils/deployments.py``).

``redeploy`` ships a version that was deployed successfully before again, without building anything: the local
deployer exports it, the gcp deployer gives its image digest a new, newer tag in Artifact Registry, so Flux (which
rolls out the newest tag) rolls it out again. Rollbacks and the repair of an interrupted change use it.
"""

from __future__ import annotations

import logging
import tempfile
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Callable

logger = logging.getLogger(__name__)

DEPLOYERS = ("local", "gcp")


@dataclass(frozen=True)
class ModelVersionInfo:
    """The model version being deployed, as the Model Control Plane knows it."""

    model_name: str
    version: str  # ZenML version name
    number: int  # ZenML version number: the image tag's ``v<number>``
    model_version_id: str  # ZenML model version id: the bucket folder ``models/<id>/``
    metrics: dict = field(default_factory=dict)
    months: list = field(default_factory=list)
    auto_threshold: float | None = None  # the matcher's ``auto_threshold_``; model-version metadata ``auto_threshold``
    stage: str = "production"
    currencies: list | None = None  # the service rejects others when set


@dataclass(frozen=True)
class Packaged:
    info: ModelVersionInfo
    model_tag: str  # BentoML model tag
    bento_tag: str


class DeploymentFailed(RuntimeError):
    """Deployment of a promoted model failed; ``record`` is the metadata to keep (``status: failed``)."""

    def __init__(self, message: str, record: dict[str, Any]):
        super().__init__(message)
        self.record = record


def _deployer(deploy_cfg: dict) -> str:
    name = str(deploy_cfg.get("deployer") or "local")
    if name not in DEPLOYERS:
        raise ValueError(f"deploy.deployer must be one of {list(DEPLOYERS)}, got {name!r}")
    return name


def _clean(record: dict) -> dict:
    """Metadata stores can hold neither None nor NaN: drop them (recursively)."""
    from .bento import _clean_metadata

    return _clean_metadata(record)


def package(matcher, info: ModelVersionInfo) -> Packaged:
    """Save ``matcher`` to the BentoML model store with the model version's labels and metadata; build its Bento."""
    from ..matching.base import save_matcher
    from .bento import LABEL_MODEL_NAME, LABEL_MODEL_VERSION, LABEL_STAGE, build_bento, save_to_model_store

    labels = {
        LABEL_MODEL_NAME: info.model_name,
        LABEL_MODEL_VERSION: info.number,
        LABEL_STAGE: info.stage,
        "zenml_model_version_id": info.model_version_id,
    }
    threshold = info.auto_threshold if info.auto_threshold is not None else getattr(matcher, "auto_threshold_", None)
    metadata = {
        "metrics": info.metrics,
        "months": list(info.months),
        "auto_threshold": threshold,
        "model_version_id": info.model_version_id,
        "zenml_version_name": info.version,
    }
    if info.currencies:
        metadata["currencies"] = [str(c).upper() for c in info.currencies]
    with tempfile.TemporaryDirectory(prefix="ledgerlink-matcher-") as tmp:
        save_matcher(matcher, tmp)
        model_tag = save_to_model_store(tmp, labels=labels, metadata=metadata)
    bento_tag = build_bento(model_tag, labels={k: str(v) for k, v in labels.items()})
    return Packaged(info=info, model_tag=str(model_tag), bento_tag=str(bento_tag))


def smoke_test(packaged: Packaged, tables: dict | None, matcher=None, n_candidates: int = 20) -> dict[str, Any]:
    """Serve the Bento on loopback and check one real ``/match`` (see ``ledgerlink.deploy.local``); with
    ``matcher``, the served answer must equal the same call in process."""
    from .local import serve_and_check
    from .payloads import inprocess_answer, smoke_request

    if tables is None:
        raise ValueError(
            "the smoke test needs data to build a request from (the frozen test split); "
            "pass smoke_tables or set deploy.smoke_test: false"
        )
    request = smoke_request(tables, n_candidates, matcher=matcher)
    expected = inprocess_answer(matcher, request) if matcher is not None else None
    return serve_and_check(packaged.bento_tag, request, expected_model=packaged.model_tag, expected_answer=expected)


def deploy_promoted(
    matcher,
    info: ModelVersionInfo,
    deploy_cfg: dict,
    *,
    smoke_tables: dict | None = None,
    client=None,
    fs=None,
    echo: Callable[[str], Any] = print,
    now: datetime | None = None,
) -> dict[str, Any]:
    """Package, smoke-test and deploy a promoted model version; returns the ``deployment`` record.

    ``client`` (a ``CloudBuildClient``) and ``fs`` (the bucket's fsspec filesystem) override what the gcp
    deployer builds from ``deploy_cfg['gcp']``. Raises ``DeploymentFailed`` (with ``record``) on any failure.
    """
    deployer = str(deploy_cfg.get("deployer") or "local")
    record: dict[str, Any] = {
        "deployed": False,
        "status": "failed",
        "deployer": deployer,
        "model_name": info.model_name,
        "version": info.number,
        "model_version_id": info.model_version_id,
    }
    stage = "configuration"
    try:
        _deployer(deploy_cfg)  # an unknown deployer is recorded as a failed deployment, like any other mistake
        if deploy_cfg.get("smoke_test", True) and smoke_tables is None:
            raise ValueError(
                "the smoke test needs data to build a request from (the frozen test split); "
                "pass smoke_tables or set deploy.smoke_test: false"
            )
        if deployer == "gcp":
            from .gcp import GcpSettings

            GcpSettings.from_config(deploy_cfg)  # a config mistake fails before anything is built
        stage = "package"
        packaged = package(matcher, info)
        record.update(bento_tag=packaged.bento_tag, bento_model_tag=packaged.model_tag)
        echo(f"Built Bento {packaged.bento_tag} (model {packaged.model_tag})")
        if deploy_cfg.get("smoke_test", True):
            stage = "smoke_test"
            record["smoke_test"] = smoke_test(packaged, smoke_tables, matcher)
            echo(
                f"Smoke test passed: `bentoml serve {packaged.bento_tag}` answered POST /match "
                f"in {record['smoke_test']['latency_ms']} ms"
            )
        stage = deployer
        if deployer == "local":
            from .local import deploy_local

            record.update(deploy_local(matcher, packaged, deploy_cfg, echo=echo))
        else:
            from .gcp import deploy_gcp

            record.update(deploy_gcp(packaged, deploy_cfg, client=client, fs=fs, echo=echo, now=now))
    except Exception as exc:
        record.update(getattr(exc, "record", None) or {})
        record.update(stage=stage, error=f"{type(exc).__name__}: {exc}"[:4000])
        record = _clean(record)
        where = (
            f" Build log: {record['log_url']}" if record.get("log_url") and record["log_url"] not in str(exc) else ""
        )
        raise DeploymentFailed(
            f"deployment of {info.model_name} version {info.number} failed at {stage}: {exc}{where}", record
        ) from exc
    record.update(deployed=True, status="success")
    return _clean(record)


def _newer_tag(number: int, now: datetime | None, newer_than: list[str]) -> str:
    """A tag for ``number`` that sorts after every tag in ``newer_than`` (Flux rolls out the newest timestamp): now,
    or one second after the newest of them when this machine's clock is behind the one that made it."""
    from datetime import timedelta, timezone

    from .tags import image_tag, parse_tag

    now = (now or datetime.now(timezone.utc)).replace(microsecond=0)
    now = now.replace(tzinfo=timezone.utc) if now.tzinfo is None else now.astimezone(timezone.utc)
    stamps = []
    for tag in newer_than:
        try:
            stamps.append(parse_tag(tag).built_at)
        except ValueError:
            continue
    if stamps and max(stamps) >= now:
        now = max(stamps) + timedelta(seconds=1)
    return image_tag(number, now=now)


def redeploy(
    info: ModelVersionInfo,
    record: dict[str, Any],
    deploy_cfg: dict,
    *,
    load_matcher: Callable[[], Any],
    newer_than: list[str] = (),
    client=None,
    echo: Callable[[str], Any] = print,
    now: datetime | None = None,
) -> dict[str, Any]:
    """Ship again a version whose deploy succeeded (``record``: its ``deployment`` metadata); returns its new record.

    - ``local``: export its matcher (``load_matcher()``) to ``deploy.model_dir``; ``production.json`` points at it.
    - ``gcp``: tag its image digest again in Artifact Registry with a tag newer than any in ``newer_than`` (the
      production image's), through ``ArtifactRegistryClient.create_tag`` (``client`` overrides the client built
      from ``deploy.gcp``). Nothing is rebuilt: the image is the one that passed its build.

    Raises ``DeploymentFailed`` (with the reason and, for the registry, what to do).
    """
    deployer = str(deploy_cfg.get("deployer") or "local")
    out: dict[str, Any] = {
        **record,
        "deployed": True,
        "status": "success",
        "deployer": deployer,
        "redeployed_at": (now or datetime.now().astimezone()).isoformat(timespec="seconds"),
    }
    for stale in ("error", "stage"):
        out.pop(stale, None)
    try:
        _deployer(deploy_cfg)
        if deployer == "local":
            from .export import export_model

            pointer = {
                k: record[k] for k in ("bento_tag", "bento_model_tag", "model_version_id") if record.get(k) is not None
            }
            pointer.update(model_name=info.model_name, version=info.version, number=info.number)
            path = export_model(load_matcher(), deploy_cfg["model_dir"], info.model_name, info.number, pointer)
            out["model_path"] = str(path)
            echo(f"{info.model_name} version {info.number} exported to {path} (`python run.py --serve` serves it)")
        else:
            from .artifact_registry import client_for, retag_image
            from .gcp import GcpSettings

            settings = GcpSettings.from_config(deploy_cfg)
            digest, image = record.get("digest"), str(record.get("image") or "")
            if not digest:
                raise ValueError(
                    f"version {info.number} has no image digest recorded (deployed with the "
                    f"{record.get('deployer', 'local')} deployer): there is no image to roll out again"
                )
            registry = image.rsplit(":", 1)[0] if image else settings.registry
            if registry.rstrip("/") != settings.registry.rstrip("/"):
                raise ValueError(
                    f"version {info.number}'s image is in {registry}, but deploy.gcp.registry is {settings.registry} "
                    "(the repository Flux watches); a new tag there would not be seen"
                )
            tag = _newer_tag(info.number, now, [*newer_than, str(record.get("image_tag") or "")])
            client = client if client is not None else client_for(settings.artifact_registry_endpoint)
            uri = retag_image(settings.registry, digest, tag, client=client)
            out.update(image=uri, image_tag=tag, retagged_from=record.get("image"))
            echo(f"Tagged {registry}@{digest} (version {info.number}) as {tag}; Flux rolls it out: {uri}")
    except Exception as exc:
        raise DeploymentFailed(
            f"could not deploy {info.model_name} version {info.number} again: {type(exc).__name__}: {exc}",
            {**record, "redeploy_error": f"{type(exc).__name__}: {exc}"[:4000]},
        ) from exc
    return _clean(out)


def skipped(reasons: list[str]) -> dict[str, Any]:
    """The record of a deploy that did not happen because the model was not promoted."""
    return {"deployed": False, "reason": "; ".join(reasons)}


def dry_run_request(
    deploy_cfg: dict, info: ModelVersionInfo, now: datetime | None = None
) -> tuple[dict[str, Any], str]:
    """The exact Cloud Build request the gcp deployer would send for ``info`` (nothing uploaded or submitted),
    and its printable form (``POST https://cloudbuild.googleapis.com/v1/projects/<project>/builds`` + JSON)."""
    from .gcp import GcpSettings, dry_run_text, plan_build

    settings = GcpSettings.from_config(deploy_cfg)
    plan = plan_build(settings, info.model_version_id, info.number, now=now)
    return plan.request, dry_run_text(settings, plan)
