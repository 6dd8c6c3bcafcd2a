"""Retraining triggers: drift, fresh-month performance and production auto precision against configured thresholds.

The production model is scored on each newly tagged month (the real degradation signal) and its
exact-set accuracy and auto-match rate are compared with what it showed on its own reference
(``references.fresh_reference``). Data drift share comes from Evidently. When production suggested links for
the month before it was tagged, the precision of its ``auto`` suggestions against the tags
(``suggestion_quality``) must stay at or above ``auto_precision_floor``: the figure the finance team lives with.
``retrain: always`` trains every month; ``on_trigger`` only when a trigger fires. The thresholds and their
defaults are the config's ``monitoring`` section (``ledgerlink.config.MonitoringConfig``); a threshold set to
null never fires.
The decision and its reasons are recorded either way.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from ..config import Config, MonitoringConfig


@dataclass
class TriggerDecision:
    retrain: bool
    fired: list[str]
    reasons: list[str]
    figures: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


def evaluate_triggers(
    drift_share: float | None,
    fresh: dict | None,
    reference: dict | None,
    cfg: MonitoringConfig | dict | None = None,
    has_production: bool = True,
    auto_precision: float | None = None,
) -> TriggerDecision:
    """``fresh``/``reference``: metric dicts (exact_set_accuracy, auto_match_rate) of the production model;
    ``cfg``: the ``monitoring`` section (a mapping is checked like the config file's, e.g. ``retrain``);
    ``auto_precision``: production's auto-match precision on the month's suggestions against its tags (None: no
    suggestions were scored)."""
    if not isinstance(cfg, MonitoringConfig):
        cfg = Config.parse({"monitoring": dict(cfg or {})}, "monitoring thresholds").monitoring
    cfg = cfg.model_dump()
    if not has_production:
        return TriggerDecision(True, [], ["no production model yet: train the first one"], {})
    fired, reasons, figures = [], [], {}
    if drift_share is not None:
        figures["drift_share"] = drift_share
        if cfg["drift_share"] is None:
            reasons.append(f"drift share {drift_share:.2f} (drift trigger off)")
        elif drift_share >= cfg["drift_share"]:
            fired.append("drift")
            reasons.append(f"drift share {drift_share:.2f} >= threshold {cfg['drift_share']}")
        else:
            reasons.append(f"drift share {drift_share:.2f} < threshold {cfg['drift_share']}")
    if fresh and reference:
        for metric, key, label in (
            ("exact_set_accuracy", "accuracy_drop", "accuracy"),
            ("auto_match_rate", "auto_rate_drop", "auto-match rate"),
        ):
            drop = reference[metric] - fresh[metric]
            figures[f"{metric}_drop"] = drop
            if cfg[key] is None:
                reasons.append(f"fresh-month {label} {fresh[metric]:.4f} (trigger off)")
            elif drop >= cfg[key]:
                fired.append("degradation")
                reasons.append(
                    f"fresh-month {label} {fresh[metric]:.4f} is {drop:.4f} below reference "
                    f"{reference[metric]:.4f} (>= {cfg[key]})"
                )
            else:
                reasons.append(
                    f"fresh-month {label} {fresh[metric]:.4f} vs reference {reference[metric]:.4f} "
                    f"(drop {drop:+.4f} < {cfg[key]})"
                )
    elif not fresh:
        reasons.append("no production model scored on a fresh month yet")
    if auto_precision is not None:
        figures["auto_precision"] = auto_precision
        floor = cfg["auto_precision_floor"]
        if floor is None:
            reasons.append(f"production auto precision {auto_precision:.4f} from the tags (trigger off)")
        elif auto_precision < floor:
            fired.append("auto_precision")
            reasons.append(f"production auto precision {auto_precision:.4f} from the tags is below the floor {floor}")
        else:
            reasons.append(f"production auto precision {auto_precision:.4f} from the tags >= floor {floor}")
    fired = sorted(set(fired))
    retrain = cfg["retrain"] == "always" or bool(fired)
    policy = "retrain every month" if cfg["retrain"] == "always" else "retrain on trigger"
    reasons.insert(
        0,
        f"{policy}: "
        + ("retrain" if retrain else "no trigger fired, keep production")
        + (f" (fired: {', '.join(fired)})" if fired else ""),
    )
    return TriggerDecision(retrain, fired, reasons, figures)
