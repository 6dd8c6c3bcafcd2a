"""Finish or revert what a stopped run left half done in the Model Control Plane, at the start of the next run.

A run killed between ``promote_model`` and the end of ``deploy_model`` (or a rollback killed half way) leaves a
version in ``staging`` with a pending ``stage_change``; an older ledgerlink (which promoted before deploying) could
leave a ``production`` version without a successful deployment. ``repair`` settles both, says what it did, and is
called before every pipeline run of the command line (``cli/runner.py``), ``--rollback`` and ``--serve``:

==============================================================  ==================================================
what it finds                                                   what it does
==============================================================  ==================================================
staged, the change's deploy recorded a success                  finish: make it production (only the stage change
                                                                was lost)
staged, the change's deploy recorded a failure                  revert: archive it (production stays)
staged, no deploy of this change recorded (killed before/in it)  finish: deploy it again (``ship``: build, smoke
                                                                test, ship), or for a rollback ship the old version
                                                                again; if that fails, revert: archive it
production without a successful deployment                      finish: deploy it; if that fails, revert: make the
                                                                newest successfully deployed version production
                                                                again (shipped again), or archive it when none is
==============================================================  ==================================================

Two versions in one stage (a race) are repaired first (``utils.model_stages``).
"""

from __future__ import annotations

from typing import Any, Callable

from ledgerlink.config import Config
from ledgerlink.deploy.deployers import DeploymentFailed
from utils.deployments import redeploy_version, ship
from utils.model_stages import ARCHIVED, PRODUCTION, STAGING, StageConflict, change_stage, single_holder, stage_name
from utils.model_versions import ModelVersionMetadata, log_model_version_metadata, production_version


def _model_exists(model_name: str) -> bool:
    from zenml.client import Client

    try:
        Client().get_model(model_name)
        return True
    except KeyError:
        return False


def _smoke_tables(cfg: Config) -> dict | None:
    from ledgerlink.data.store import StoreError, store_at

    if not cfg.deploy.smoke_test:
        return None
    try:
        return store_at(cfg.store.uri).load_test()
    except StoreError:
        return None


def _fresh(model_name: str, number: int):
    from zenml.client import Client

    return Client().get_model_version(model_name, int(number))


def _matcher(mv):
    artifact = mv.get_artifact("matcher")
    if artifact is None:
        raise DeploymentFailed(f"version {mv.number} has no 'matcher' artifact to deploy", {})
    return artifact.load()


def last_deployed(
    model_name: str,
    below: int | None = None,
    exclude: tuple[int, ...] = (),
    accept: Callable[[ModelVersionMetadata], bool] = lambda meta: True,
):
    """The newest version (below ``below`` when given) whose latest deploy succeeded (and that ``accept`` takes),
    or None."""
    from zenml.client import Client

    client = Client()
    number = f"lt:{below}" if below is not None else None
    page = client.list_model_versions(model=model_name, sort_by="desc:number", size=100, number=number)
    for v in page.items:
        if int(v.number) in exclude:
            continue
        mv = client.get_model_version(model_name, v.number)
        meta = ModelVersionMetadata.of(mv)
        if meta.deployment_succeeded() and accept(meta):
            return mv
    return None


def _finish_rollback(cfg: Config, mv, change, echo, **clients) -> None:
    record = redeploy_version(cfg.model_name, mv, cfg.deploy, echo=echo, client=clients.get("registry_client"))
    record["change_id"] = change.id
    log_model_version_metadata(ModelVersionMetadata(deployment=record), cfg.model_name, mv.number)
    change_stage(cfg.model_name, mv.number, PRODUCTION, echo)
    log_model_version_metadata(ModelVersionMetadata(stage_change=change.ended("done")), cfg.model_name, mv.number)


def _settle_staged(cfg: Config, mv, echo, run, **clients) -> str:
    name, number = cfg.model_name, int(mv.number)
    meta = ModelVersionMetadata.of(mv)
    change, dep = meta.stage_change, meta.deployment or {}
    same_change = change is not None and dep.get("change_id") == change.id
    if same_change and meta.deployment_succeeded():
        change_stage(name, number, PRODUCTION, echo)
        log_model_version_metadata(ModelVersionMetadata(stage_change=change.ended("done")), name, number)
        return f"finished: version {number} had been deployed before the run stopped; it is production now"
    if same_change:
        change_stage(name, number, ARCHIVED, echo)
        log_model_version_metadata(ModelVersionMetadata(stage_change=change.ended("failed")), name, number)
        return f"reverted: version {number}'s deploy had failed ({meta.why_not_deployed()}); archived it"
    if change is not None and change.action == "rollback":
        try:
            _finish_rollback(cfg, mv, change, echo, **clients)
        except (DeploymentFailed, StageConflict) as exc:
            change_stage(name, number, ARCHIVED, echo)
            log_model_version_metadata(ModelVersionMetadata(stage_change=change.ended("reverted")), name, number)
            return f"reverted: the interrupted rollback to version {number} could not be finished ({exc}); archived it"
        return f"finished: the interrupted rollback to version {number}; it is production now"
    try:
        ship(name, number, _matcher(mv), cfg.deploy, _smoke_tables(cfg), run=run, echo=echo, **clients)
    except DeploymentFailed as exc:  # ship recorded the failure and archived it (unless it failed before shipping)
        if stage_name(_fresh(name, number)) == STAGING:
            change_stage(name, number, ARCHIVED, echo)
        return f"reverted: version {number} was staged but never deployed, and deploying it now failed ({exc})"
    return f"finished: version {number} was staged but never deployed; deployed it now and made it production"


def _settle_production(cfg: Config, mv, echo, run, **clients) -> str:
    name, number = cfg.model_name, int(mv.number)
    why = ModelVersionMetadata.of(mv).why_not_deployed()
    try:
        ship(name, number, _matcher(mv), cfg.deploy, _smoke_tables(cfg), run=run, echo=echo, **clients)
        return f"finished: production version {number} had no successful deployment ({why}); deployed it now"
    except DeploymentFailed as exc:
        failure = str(exc)
    gcp = cfg.deploy.deployer == "gcp"
    fallback = last_deployed(
        name, exclude=(number,), accept=lambda meta: not gcp or bool((meta.deployment or {}).get("digest"))
    )
    if fallback is not None:
        try:
            record = redeploy_version(name, fallback, cfg.deploy, echo=echo, client=clients.get("registry_client"))
        except DeploymentFailed as exc:
            failure += f"; shipping version {fallback.number} again failed too ({exc})"
            fallback = None
    if fallback is None:
        change_stage(name, number, ARCHIVED, echo)
        return (
            f"reverted: production version {number} had no successful deployment and deploying it failed "
            f"({failure}); no other version can be shipped, so it is archived and nothing is in production"
        )
    log_model_version_metadata(ModelVersionMetadata(deployment=record), name, fallback.number)
    change_stage(name, fallback.number, PRODUCTION, echo)
    return (
        f"reverted: production version {number} had no successful deployment and deploying it failed ({failure}); "
        f"version {fallback.number}, the newest deployed successfully, is production again"
    )


def archive_left_staged(model_name: str, keep: int, echo: Callable[[str], Any] = print) -> str | None:
    """Inside a training run (also on Vertex, where no ``run.py`` repaired first): a version another run left in
    ``staging`` is reverted (archived, its change marked ``reverted``) before this run stages its own, and said.
    Production is not touched: it only ever holds a deployed version."""
    left = single_holder(model_name, STAGING, echo)
    if left is None or int(left.number) == int(keep):
        return None
    change = ModelVersionMetadata.of(left).stage_change
    change_stage(model_name, left.number, ARCHIVED, echo)
    if change is not None:
        log_model_version_metadata(ModelVersionMetadata(stage_change=change.ended("reverted")), model_name, left.number)
    line = f"reverted: version {left.number} was left in staging by a stopped run (never made live); archived it"
    echo(f"Repair of {model_name!r}: {line}")
    return line


def repair(cfg: Config | dict, echo: Callable[[str], Any] = print, run: str | None = None, **clients) -> list[str]:
    """Settle a staged version and a production version without a successful deployment (see the module docstring);
    returns what was done, one line each (empty when all was in order). ``clients``: ``client`` (Cloud Build),
    ``fs`` (bucket), ``registry_client`` (Artifact Registry), for tests against loopback servers."""
    cfg = Config.coerce(cfg)
    if not _model_exists(cfg.model_name):
        return []
    done: list[str] = []
    staged = single_holder(cfg.model_name, STAGING, echo)
    if staged is not None:
        done.append(_settle_staged(cfg, staged, echo, run, **clients))
    prod = production_version(cfg.model_name, echo)
    if prod is not None and not ModelVersionMetadata.of(prod).deployment_succeeded():
        done.append(_settle_production(cfg, prod, echo, run, **clients))
    for line in done:
        echo(f"Repair of {cfg.model_name!r}: {line}")
    return done
