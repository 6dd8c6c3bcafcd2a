"""Put a model version live, and only then make it production: the Model Control Plane, ``--serve`` and the cluster
agree, whatever fails.

- ``ship``: a staged version (promoted, or one a repair finishes). Package, smoke-test and deploy it
  (``ledgerlink.deploy.deployers.deploy_promoted``); on success record the deployment and move it to
  ``production``; on failure record the failure on it, archive it (production stays where it was), alert and raise
  with the build log URL.
- ``redeploy_version``: a version whose deploy succeeded before, shipped again without building (export, or a new
  image tag), for rollbacks and repairs.

The deploy step, ``python run.py --rollback`` and the repair at the start of each run all go through these, so a
stage change always follows the same order: record the pending change, ship, record the deployment, change the stage.
"""

from __future__ import annotations

from typing import Any, Callable

from ledgerlink.deploy.deployers import DeploymentFailed, deploy_promoted, redeploy
from ledgerlink.monitoring.alerts import Alert
from utils.alerting import alerter
from utils.model_stages import ARCHIVED, PRODUCTION, STAGING, StageConflict, change_stage, stage_name
from utils.model_versions import (
    ModelVersionMetadata,
    StageChange,
    log_model_version_metadata,
    model_version_info,
    production_version,
)


def _as_dict(deploy) -> dict:
    return deploy.model_dump(mode="json") if hasattr(deploy, "model_dump") else dict(deploy)


def _version(model_name: str, number: int):
    from zenml.client import Client

    return Client().get_model_version(model_name, int(number))


def _record(model_name: str, number: int, **fields) -> None:
    log_model_version_metadata(ModelVersionMetadata(**fields), model_name, number)


def recent_image_tags(model_name: str, limit: int = 50) -> list[str]:
    """The image tags the deployment records of the newest ``limit`` versions name: a new tag must sort after them
    all, or Flux (which rolls out the newest) would keep the image that has it."""
    from zenml.client import Client

    client = Client()
    page = client.list_model_versions(model=model_name, sort_by="desc:number", size=limit)
    tags = []
    for v in page.items:
        dep = ModelVersionMetadata.of(client.get_model_version(model_name, v.number)).deployment or {}
        if dep.get("image_tag"):
            tags.append(str(dep["image_tag"]))
    return tags


def redeploy_version(model_name: str, mv, deploy, *, echo: Callable[[str], Any] = print, client=None, now=None):
    """Ship ``mv`` (deployed successfully before) again: export it locally, or tag its image anew for Flux. Returns
    its new deployment record (not yet logged). Raises ``DeploymentFailed``."""
    deploy = _as_dict(deploy)
    meta = ModelVersionMetadata.of(mv)
    info = model_version_info(model_name, mv, metadata=meta, currencies=deploy.get("currencies"))

    def load_matcher():
        artifact = mv.get_artifact("matcher")
        if artifact is None:
            raise ValueError(f"version {mv.number} of {model_name!r} has no 'matcher' artifact")
        return artifact.load()

    newer_than = recent_image_tags(model_name) if deploy.get("deployer") == "gcp" else []
    record = dict(meta.deployment or {})
    return redeploy(
        info, record, deploy, load_matcher=load_matcher, newer_than=newer_than, client=client, echo=echo, now=now
    )


def _resync_live(model_name: str, deploy: dict, echo, client=None) -> None:
    """After a lost race: ship the version the Model Control Plane kept in production again, so the export or the
    newest image tag is its own (the loser may have exported or pushed last)."""
    winner = production_version(model_name, echo)
    if winner is None or not ModelVersionMetadata.of(winner).deployment_succeeded():
        return
    record = redeploy_version(model_name, winner, deploy, echo=echo, client=client)
    _record(model_name, winner.number, deployment=record)


def ship(
    model_name: str,
    number: int,
    matcher,
    deploy,
    smoke_tables: dict | None,
    *,
    run: str | None = None,
    echo: Callable[[str], Any] = print,
    client=None,
    fs=None,
    registry_client=None,
    now=None,
) -> dict[str, Any]:
    """Deploy version ``number`` and make it production; returns its deployment record.

    A failure records ``status: failed`` (with ``change_id``) on the version, archives it if it was staged (the
    production version stays), alerts, and raises ``DeploymentFailed`` whose message names the build log. A
    concurrent change that kept another version in production raises ``StageConflict`` after the winner was shipped
    again (``client``, ``fs``: Cloud Build client and bucket filesystem; ``registry_client``: Artifact Registry)."""
    deploy = _as_dict(deploy)
    mv = _version(model_name, number)
    meta = ModelVersionMetadata.of(mv)
    previous = production_version(model_name, echo)
    change = meta.stage_change or StageChange("deploy", previous=None if previous is None else int(previous.number))
    keeps = (
        "nothing is in production yet"
        if previous is None
        else f"was version {previous.number}"
        if previous.number != mv.number
        else "it was production already"
    )
    info = model_version_info(model_name, mv, metadata=meta, currencies=deploy.get("currencies"))
    try:
        result = deploy_promoted(
            matcher, info, deploy, smoke_tables=smoke_tables, client=client, fs=fs, echo=echo, now=now
        )
    except DeploymentFailed as exc:
        record = {**exc.record, "change_id": change.id}
        _record(model_name, number, deployment=record, stage_change=change.ended("failed"))
        if stage_name(_version(model_name, number)) == STAGING:
            change_stage(model_name, number, ARCHIVED, echo)
        message = str(exc)
        if previous is None or previous.number != mv.number:
            stays = "nothing is in production" if previous is None else f"production stays version {previous.number}"
            message += f" Version {number} is archived with its failure recorded; {stays}."
        alerter().send(Alert("deployment", f"FAILED: {message}", run=run))
        raise DeploymentFailed(message, record) from exc
    result["change_id"] = change.id
    _record(model_name, number, deployment=result)  # the deploy succeeded: recorded before the stage moves
    try:
        change_stage(model_name, number, PRODUCTION, echo)
    except StageConflict:
        _record(model_name, number, stage_change=change.ended("failed"))
        _resync_live(model_name, deploy, echo, client=registry_client)
        raise
    _record(model_name, number, stage_change=change.ended("done"))
    where = result.get("image") or result.get("model_path")
    echo(f"Version {number} of {model_name} is live ({result['deployer']}: {where}) and now production")
    alerter().send(
        Alert(
            "deployment",
            f"version {number} deployed ({result['deployer']}) and now production ({keeps})",
            {k: result[k] for k in ("image", "build_id", "bento_tag", "model_path") if k in result},
            run=run,
        )
    )
    return result
