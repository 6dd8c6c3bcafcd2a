"""The Model Control Plane contract: what ledgerlink records on a model version, written and read in one place.

Steps and the command line never spell a metadata key: they fill or read a ``ModelVersionMetadata``. The keys
as stored (what ``Client().get_model_version(...).run_metadata`` shows, and what the README lists):

==================  ========================================================================================
data_months         the months the version was trained on
train_fingerprint   the training data's fingerprint
test_fingerprint    the frozen test set it was evaluated on (production is re-scored when it changes)
metrics             its frozen-test metrics (also inside ``evaluation``, kept flat for people and dashboards)
evaluation          frozen-test ``{metrics, slices}`` of the version; ``rules_evaluation`` the same of the rules
auto_threshold      the confidence from which a match is automatic (the matcher's fitted ``auto_threshold_``)
decision            ``{promote, reasons}`` of the training run that made it
deployment          the deploy record (``status``, ``stage``, ``bento_tag``, build id, image, ``change_id``, ...):
                    the latest deploy of this version (a rollback's retag or export replaces it)
stage_change        ``StageChange``: the move to production this version is in (``deploy`` after promotion,
                    ``rollback``), ``pending`` until its deploy succeeded; the next run's repair reads it
fresh_<YYYY-MM>     ``{metrics[, as: challenger]}``: its score on a month it never trained on (monitoring)
challenge_<YYYY-MM> the out-of-time paired bootstrap of a newer version against this production version
suggestions_<YYYY-MM> its suggestions of that month scored against the month's tags once collected (monitoring):
                    auto_precision, auto_recall, review_share, auto_amount, counts (``SuggestionQuality``)
==================  ========================================================================================
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable

from ledgerlink.deploy.deployers import ModelVersionInfo
from ledgerlink.monitoring.suggestion_quality import SuggestionQuality

FRESH_PREFIX = "fresh_"
CHALLENGE_PREFIX = "challenge_"
SUGGESTIONS_PREFIX = "suggestions_"


def production_version(model_name: str, echo: Callable[[str], object] = print):
    """The version of ``model_name`` in the ``production`` stage (ZenML response), or None. Two production versions
    (a race) are repaired first and said so (``utils.model_stages.single_holder``) instead of raising."""
    from utils.model_stages import PRODUCTION, single_holder

    return single_holder(model_name, PRODUCTION, echo)


@dataclass
class StageChange:
    """A move of a version to production that is under way: recorded (``pending``) before its deploy starts, and
    ``done`` / ``failed`` / ``reverted`` after. A version left in ``staging`` with a pending change is what a killed
    run leaves behind; ``utils.repair`` finishes or reverts it. The deploy record of the change carries its ``id``
    (``change_id``), so a deploy that finished before the kill is told from one that never ran."""

    action: str  # "deploy": a promoted candidate; "rollback": an earlier version that was deployed before
    state: str = "pending"  # pending | done | failed | reverted
    previous: int | None = None  # the production version when the change began
    id: str = field(default_factory=lambda: uuid.uuid4().hex)
    at: str = field(default_factory=lambda: datetime.now(timezone.utc).isoformat(timespec="seconds"))

    def to_metadata(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None}

    @classmethod
    def from_metadata(cls, raw: Mapping[str, Any]) -> "StageChange":
        known = {k: raw[k] for k in ("action", "state", "previous", "id", "at") if k in raw}
        return cls(**known)

    def ended(self, state: str) -> "StageChange":
        return StageChange(self.action, state, self.previous, self.id, self.at)


@dataclass
class FreshScore:
    """A version's metrics on a month it never trained on; ``role`` is what it was when scored."""

    metrics: dict[str, float]
    role: str = "production"  # or "challenger": a version newer than production, scored for the out-of-time route

    def to_metadata(self) -> dict[str, Any]:
        return {"metrics": self.metrics, **({"as": self.role} if self.role != "production" else {})}

    @classmethod
    def from_metadata(cls, raw: Mapping[str, Any]) -> "FreshScore":
        return cls(metrics=dict(raw["metrics"]), role=str(raw.get("as", "production")))


@dataclass
class ModelVersionMetadata:
    """Everything ledgerlink records on a model version. Unset fields (None, empty) are not written, so each
    step logs only what it knows: ``ModelVersionMetadata(deployment=record).to_metadata()`` is
    ``{"deployment": record}``."""

    data_months: list[str] | None = None
    train_fingerprint: str | None = None
    test_fingerprint: str | None = None
    metrics: dict[str, float] | None = None
    evaluation: dict | None = None
    rules_evaluation: dict | None = None
    auto_threshold: float | None = None
    decision: dict | None = None
    deployment: dict | None = None
    stage_change: StageChange | None = None
    fresh: dict[str, FreshScore] = field(default_factory=dict)  # month -> score
    challenges: dict[str, dict] = field(default_factory=dict)  # month -> paired bootstrap + month + challenger
    suggestion_quality: dict[str, SuggestionQuality] = field(default_factory=dict)  # month -> vs the tags

    _PLAIN = (
        "data_months",
        "train_fingerprint",
        "test_fingerprint",
        "metrics",
        "evaluation",
        "rules_evaluation",
        "auto_threshold",
        "decision",
        "deployment",
    )

    @classmethod
    def from_run_metadata(cls, meta: Mapping[str, Any] | None) -> "ModelVersionMetadata":
        """From ``ModelVersionResponse.run_metadata``; keys that are not ledgerlink's are ignored."""
        meta = meta or {}
        out = cls(**{k: meta[k] for k in cls._PLAIN if k in meta})
        for key, value in meta.items():
            if key.startswith(FRESH_PREFIX) and isinstance(value, Mapping) and "metrics" in value:
                out.fresh[key[len(FRESH_PREFIX) :]] = FreshScore.from_metadata(value)
            elif key.startswith(CHALLENGE_PREFIX) and isinstance(value, Mapping):
                out.challenges[key[len(CHALLENGE_PREFIX) :]] = dict(value)
            elif key.startswith(SUGGESTIONS_PREFIX) and isinstance(value, Mapping):
                out.suggestion_quality[key[len(SUGGESTIONS_PREFIX) :]] = SuggestionQuality.from_dict(value)
        if isinstance(meta.get("stage_change"), Mapping) and "action" in meta["stage_change"]:
            out.stage_change = StageChange.from_metadata(meta["stage_change"])
        return out

    @classmethod
    def of(cls, model_version) -> "ModelVersionMetadata":
        return cls.from_run_metadata(model_version.run_metadata)

    def to_metadata(self) -> dict[str, Any]:
        """The set fields under their stored keys (a metadata store holds neither None nor NaN)."""
        out: dict[str, Any] = {}
        for key in self._PLAIN:
            value = getattr(self, key)
            if value is None or (isinstance(value, float) and math.isnan(value)):
                continue
            out[key] = value
        if self.stage_change is not None:
            out["stage_change"] = self.stage_change.to_metadata()
        out.update({f"{FRESH_PREFIX}{m}": s.to_metadata() for m, s in self.fresh.items()})
        out.update({f"{CHALLENGE_PREFIX}{m}": c for m, c in self.challenges.items()})
        out.update({f"{SUGGESTIONS_PREFIX}{m}": q.to_dict() for m, q in self.suggestion_quality.items()})
        return out

    @classmethod
    def from_training(cls, evaluation: dict, dataset_ref, decision: dict) -> "ModelVersionMetadata":
        """What the training pipeline records on the version it made (``promote_model``): ``evaluation`` is
        ``evaluate_matcher``'s output, ``decision`` ``compare_with_production``'s."""
        return cls(
            data_months=list(dataset_ref.months),
            train_fingerprint=dataset_ref.train_fingerprint,
            test_fingerprint=evaluation["test_fingerprint"],
            metrics=evaluation["candidate"]["metrics"],
            evaluation=evaluation["candidate"],
            rules_evaluation=evaluation["rules"],
            auto_threshold=evaluation.get("auto_threshold"),
            decision={"promote": decision["promote"], "reasons": decision["reasons"]},
        )

    def fresh_metrics(self) -> dict[str, dict]:
        """month -> metrics of every fresh-month score."""
        return {m: s.metrics for m, s in self.fresh.items()}

    def deployment_succeeded(self) -> bool:
        """Whether this version's latest deploy succeeded: built, smoke-tested (when configured) and shipped (exported
        locally, or its image built by Cloud Build with a digest)."""
        dep = self.deployment if isinstance(self.deployment, dict) else {}
        return dep.get("status") == "success" and bool(dep.get("deployed"))

    def why_not_deployed(self) -> str | None:
        """None when ``deployment_succeeded``; otherwise why not, in words (for refusals)."""
        if self.deployment_succeeded():
            return None
        dep = self.deployment if isinstance(self.deployment, dict) else None
        if not dep:
            return "it has no deployment record: it was never deployed"
        if dep.get("status") == "failed":
            where = f" Build log: {dep['log_url']}" if dep.get("log_url") else ""
            return f"its deploy failed at {dep.get('stage', '?')} ({dep.get('error', 'no error recorded')}).{where}"
        if dep.get("reason"):
            return f"it was not promoted, so never deployed ({dep['reason']})"
        return f"its deployment record does not say it succeeded ({dep})"


def log_model_version_metadata(
    metadata: ModelVersionMetadata, model_name: str | None = None, version: str | int | None = None
) -> None:
    """Record ``metadata`` on the version named, or (inside a step of a pipeline with a model) on the run's own."""
    from zenml import log_metadata

    values = metadata.to_metadata()
    if not values:
        return
    if model_name is None:
        log_metadata(metadata=values, infer_model=True)
    else:
        log_metadata(metadata=values, model_name=model_name, model_version=str(version))


def model_version_info(
    model_name: str,
    model_version,
    metadata: ModelVersionMetadata | None = None,
    currencies: list[str] | None = None,
    stage: str = "production",
) -> ModelVersionInfo:
    """The deployer's view of a model version (``ledgerlink.deploy``): built here for the deploy step and for
    ``--serve`` / ``--dry-run`` alike."""
    metadata = metadata if metadata is not None else ModelVersionMetadata.of(model_version)
    return ModelVersionInfo(
        model_name=model_name,
        version=str(model_version.name),
        number=int(model_version.number),
        model_version_id=str(model_version.id),
        metrics=dict(metadata.metrics or {}),
        months=list(metadata.data_months or []),
        auto_threshold=metadata.auto_threshold,
        stage=stage,
        currencies=currencies,
    )


__all__ = [
    "FreshScore",
    "ModelVersionMetadata",
    "StageChange",
    "log_model_version_metadata",
    "model_version_info",
    "production_version",
]
