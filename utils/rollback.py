"""Roll back: make the previous (or a named) version production again, and ship it again so everything agrees.

"Previous" is the newest version below the production one whose deploy succeeded. A version whose deploy never
succeeded (not promoted, its Bento failed its smoke test, its Cloud Build failed) is refused, with the reason.

The order is the deploy's: record the pending change on the target and stage it, ship it again
(``utils.deployments.redeploy_version``: export it locally; on GCP give its image digest a new, newer tag in
Artifact Registry, because Flux rolls out the newest tag only), record the deployment, make it production. A failure
while shipping archives the target again and leaves production where it was; a kill half way leaves it staged with a
pending ``rollback`` change, which the next run finishes (``utils.repair``). The whole change holds the stage lock.
"""

from __future__ import annotations

from typing import Any, Callable

from ledgerlink.config import Config
from ledgerlink.deploy.deployers import DeploymentFailed
from ledgerlink.monitoring.alerts import Alert
from utils.alerting import alerter
from utils.deployments import redeploy_version
from utils.model_stages import ARCHIVED, PRODUCTION, STAGING, change_stage, stage_lock
from utils.model_versions import ModelVersionMetadata, StageChange, log_model_version_metadata, production_version
from utils.repair import last_deployed


class RollbackRefused(RuntimeError):
    """The rollback was not started: nothing changed."""


class RollbackFailed(RuntimeError):
    """Shipping the target failed: production stays where it was."""


def _named(model_name: str, to: str | int):
    from zenml.client import Client

    key: Any = int(to) if str(to).strip().isdigit() else str(to).strip()
    try:
        return Client().get_model_version(model_name, key)
    except KeyError:
        raise RollbackRefused(f"model {model_name!r} has no version {to!r}") from None


def rollback_target(model_name: str, current, to: str | int | None = None, deployer: str = "local"):
    """The version to roll back to, checked: it exists, is not production already, and was deployed successfully
    (for the gcp deployer: with an image digest to tag again)."""
    if to is not None:
        target = _named(model_name, to)
    else:
        target = last_deployed(
            model_name,
            below=None if current is None else int(current.number),
            accept=lambda meta: deployer != "gcp" or bool((meta.deployment or {}).get("digest")),
        )
        if target is None:
            where = f" below production version {current.number}" if current is not None else ""
            raise RollbackRefused(
                f"no version of {model_name!r}{where} was ever deployed successfully"
                + (" with an image (the gcp deployer)" if deployer == "gcp" else "")
                + ": nothing to roll back to"
            )
    if current is not None and int(target.number) == int(current.number):
        raise RollbackRefused(f"version {target.number} of {model_name!r} is production already")
    meta = ModelVersionMetadata.of(target)
    why = meta.why_not_deployed()
    if why is None and deployer == "gcp" and not (meta.deployment or {}).get("digest"):
        why = (
            f"it was deployed with the {(meta.deployment or {}).get('deployer', 'local')} deployer, so there is no "
            "image in Artifact Registry to roll out again"
        )
    if why:
        raise RollbackRefused(f"version {target.number} of {model_name!r} cannot be rolled back to: {why}")
    return target


def rollback(
    cfg: Config | dict,
    to: str | int | None = None,
    *,
    echo: Callable[[str], Any] = print,
    registry_client=None,
    now=None,
) -> dict[str, Any]:
    """Make ``to`` (default: the previous deployed version) production and ship it again; returns its new deployment
    record with ``rolled_back_from``. Raises ``RollbackRefused`` (nothing changed) or ``RollbackFailed``."""
    cfg = Config.coerce(cfg)
    name = cfg.model_name
    with stage_lock(name):
        current = production_version(name, echo)
        target = rollback_target(name, current, to, cfg.deploy.deployer)
        number, previous = int(target.number), None if current is None else int(current.number)
        change = StageChange("rollback", previous=previous)
        log_model_version_metadata(ModelVersionMetadata(stage_change=change), name, number)
        change_stage(name, number, STAGING, echo)
        try:
            record = redeploy_version(name, target, cfg.deploy, echo=echo, client=registry_client, now=now)
        except DeploymentFailed as exc:
            change_stage(name, number, ARCHIVED, echo)
            log_model_version_metadata(ModelVersionMetadata(stage_change=change.ended("failed")), name, number)
            raise RollbackFailed(
                f"{exc}. Nothing changed: production stays "
                + (f"version {previous}" if previous is not None else "empty")
            ) from exc
        record.update(change_id=change.id, rolled_back_from=previous)
        log_model_version_metadata(ModelVersionMetadata(deployment=record), name, number)
        change_stage(name, number, PRODUCTION, echo)
        log_model_version_metadata(ModelVersionMetadata(stage_change=change.ended("done")), name, number)
    where = record.get("image") or record.get("model_path")
    echo(f"Rolled back {name}: version {number} is production again (was {previous}); live at {where}")
    alerter().send(
        Alert(
            "deployment",
            f"rolled back to version {number} (was {previous})",
            {k: record[k] for k in ("image", "model_path", "bento_tag") if k in record},
        )
    )
    return record
