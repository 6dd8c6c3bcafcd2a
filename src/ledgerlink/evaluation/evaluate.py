"""Evaluate any matcher (model, rules baseline, production model) on a test set the same way."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import pandas as pd

from .metrics import blocking_recall, slice_labels, slice_metrics, summarize, transfer_outcomes


@dataclass
class Evaluation:
    name: str
    metrics: dict
    slices: dict[str, dict]
    outcomes: pd.DataFrame = field(repr=False)
    seconds: float = 0.0

    def summary(self) -> dict:
        """JSON-safe: what goes into model metadata."""
        return {"metrics": self.metrics, "slices": self.slices, "seconds": round(self.seconds, 3)}


def evaluate(model, test: dict[str, pd.DataFrame], name: str = "model") -> Evaluation:
    """Match the test transfers against the test invoice pool and score them."""
    start = time.perf_counter()
    result = model.match(test["invoices"], test["transfers"])
    seconds = time.perf_counter() - start
    outcomes = transfer_outcomes(result.links, test["links"], test["transfers"], result.decisions)
    metrics = summarize(outcomes)
    metrics["blocking_recall"] = (
        blocking_recall(result.candidates, test["links"]) if result.candidates is not None else float("nan")
    )
    metrics["ms_per_1k_transfers"] = 1000.0 * seconds / max(len(test["transfers"]), 1) * 1000.0
    labels = slice_labels(test["transfers"], test["invoices"], test["links"])
    return Evaluation(
        name=name,
        metrics=metrics,
        slices=slice_metrics(outcomes, labels),
        outcomes=outcomes.merge(labels, on="transfer_id", how="left"),
        seconds=seconds,
    )
