"""What a finished pipeline run returned, typed, read by the names the pipeline itself gives its outputs.

A pipeline returns its results (``return evaluation, decision, promotion, deployment``); ZenML records which step
produced each in the run's pipeline spec. ``pipeline_outputs`` reads them back by those names, so the command
line never needs to know which step made what. Each result class has one field per output of its pipeline: a
pipeline that renames or drops an output fails here, loudly, instead of in a string look-up somewhere else.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, TypeVar

from ledgerlink.data.store import DatasetRef

R = TypeVar("R")


def pipeline_outputs(run) -> dict[str, Any]:
    """Output name -> loaded value of everything the run's pipeline returned."""
    spec = run.snapshot.pipeline_spec
    return {o.output_name: run.steps[o.step_name].outputs[o.output_name][0].load() for o in spec.outputs}


def run_result(result_type: type[R], run) -> R:
    """``result_type`` filled from the run's outputs (and ``run``: the run's name)."""
    outputs = pipeline_outputs(run)
    expected = {f.name for f in fields(result_type)} - {"run"}
    if set(outputs) != expected:
        raise RuntimeError(
            f"pipeline {run.pipeline.name!r} returned {sorted(outputs)}, but {result_type.__name__} expects "
            f"{sorted(expected)}"
        )
    return result_type(run=run.name, **outputs)


@dataclass
class CollectionRun:
    """``data_collection``: the reference to what the store holds after this month's collection."""

    run: str
    dataset_ref: DatasetRef


@dataclass
class TrainingRun:
    """``training``: the candidate's evaluation, the promotion decision, the promotion and the deployment."""

    run: str
    evaluation: dict
    decision: dict
    promotion: dict
    deployment: dict


@dataclass
class MonitoringRun:
    """``monitoring``: drift of the newest month, production's fresh-month score, the month's suggestions scored
    against its tags, the retraining decision."""

    run: str
    drift_summary: dict
    fresh_performance: dict
    suggestion_quality: dict
    retraining_decision: dict


@dataclass
class SuggestRun:
    """``suggest``: what was written for the open month (``ledgerlink.data.suggest.SuggestionSummary``)."""

    run: str
    suggestions: dict
