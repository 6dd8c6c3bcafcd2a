"""A year of continuous training in one command: fresh state, N monthly cycles, drift at month 7 (or none).

Each cycle is collection -> monitoring -> training, exactly as ``--pipeline all``. The table and the
PNG plot show, per month: rows, candidate and production frozen-test metric, production's
fresh-month accuracy, drift share and the decision. The plot is also logged as an artifact of a
small ``simulation_report`` run, so the dashboard shows it.
"""

from __future__ import annotations

import copy
import shutil
from pathlib import Path
from typing import Annotated

from zenml import pipeline, step
from zenml.types import HTMLString

from ledgerlink.data.synthetic import SyntheticConfig, month_labels
from ledgerlink.monitoring.simulation_plot import plot_simulation
from ledgerlink.monitoring.simulation_report import simulation_html

from .runner import console, print_summary, run_cycle, suggest_before_collection


class SimulationArgsError(ValueError):
    """The simulation was asked for something it cannot do (say, a drift month outside the year)."""


@step(enable_cache=False)
def render_simulation(records: list, drift_month: str, png_path: str) -> Annotated[HTMLString, "simulation_report"]:
    return HTMLString(simulation_html(records, drift_month or None, Path(png_path).read_bytes()))


@pipeline(enable_cache=False)
def simulation_report(records: list, drift_month: str, png_path: str) -> None:
    render_simulation(records=records, drift_month=drift_month, png_path=png_path)


def simulation_config(cfg: dict, months: int, drift_month: int | None, seed: int | None = None) -> dict:
    """The simulation's own state and model; ``drift_month`` None or 0: no drift; ``seed``: the synthetic world's."""
    sim = copy.deepcopy(cfg)
    home = Path(cfg["data_dir"]) / "simulation"
    sim["data_dir"] = str(home)
    sim["model_name"] = f"{cfg['model_name']}_simulation"
    sim["synthetic"] = {
        **cfg["synthetic"],
        "months": months,
        "drift_month": drift_month or None,
        # the config's synthetic section now always holds drift_kind (the typed config fills defaults): only a
        # kind other than the generator's default overrides the simulation's combined drift
        "drift_kind": (
            kind
            if (kind := cfg["synthetic"].get("drift_kind")) and kind != SyntheticConfig().drift_kind
            else "title_format+payer_change"
        ),
    }
    if seed is not None:
        sim["synthetic"]["seed"] = seed
    sim["warehouse"] = {**cfg["warehouse"], "kind": "duckdb", "path": str(home / "warehouse.duckdb")}
    sim["store"] = {"uri": str(home / "datasets")}
    sim["deploy"] = {**cfg["deploy"], "deployer": "local", "smoke_test": False, "model_dir": str(home / "models")}
    return sim


def reset(sim: dict) -> None:
    """Fresh state: the simulation's own data folder and model in the Model Control Plane."""
    from zenml.client import Client

    shutil.rmtree(sim["data_dir"], ignore_errors=True)
    try:
        Client().delete_model(sim["model_name"])
    except KeyError:
        pass


def trained_version(model_name: str) -> tuple[int, dict]:
    """(number, decision) of the version the cycle's training run just made: the route is in its decision."""
    from zenml.client import Client
    from zenml.enums import ModelStages

    mv = Client().get_model_version(model_name, ModelStages.LATEST)
    return int(mv.number), mv.get_artifact("decision").load()


def simulate(cfg: dict, months: int = 12, drift_month: int | None = 7, seed: int | None = None) -> list[dict]:
    """Run the simulated year; one summary row per month. ``row["values"]`` also holds ``version`` (trained
    that month), ``route`` (which route promoted it, or None) and ``decided_by`` (the evidence that decided)."""
    if months < 1:
        raise SimulationArgsError(f"the number of months must be at least 1; got {months}")
    if drift_month is not None and not 0 <= drift_month <= months:
        raise SimulationArgsError(f"--drift-month must be between 1 and {months} (or 0: no drift); got {drift_month}")
    sim = simulation_config(cfg, months, drift_month, seed)
    reset(sim)
    labels = month_labels(SyntheticConfig(**sim["synthetic"]))
    drift_label = labels[drift_month - 1] if drift_month else ""
    rows = []
    for i in range(months):
        console.rule(f"simulated month {i + 1}/{months}: {labels[i]}")
        suggest_before_collection(sim)  # production suggests for the month; its monitoring scores that on the tags
        row = run_cycle(sim, "all")
        if "candidate" in row["values"]:  # training ran this month
            version, decision = trained_version(sim["model_name"])
            checks = decision["checks"]
            row["values"].update(version=version, route=checks.get("route"), decided_by=checks.get("decided_by"))
        rows.append(row)
    print_summary(rows, "simulate", cfg["evaluation"].get("primary_metric", "pair_f1"))
    records = [
        {"month": r["month"], "promoted": r["promoted"], **{k: v for k, v in r["values"].items() if k != "triggers"}}
        for r in rows
    ]
    png_path = Path(sim["data_dir"]) / "simulation.png"
    world = f"seed {sim['synthetic']['seed']}, " + (f"drift at {drift_label}" if drift_month else "no drift")
    png_path.write_bytes(plot_simulation(records, drift_label, f"ledgerlink: a year of continuous training ({world})"))
    simulation_report(records=records, drift_month=drift_label, png_path=str(png_path))
    console.print(f"Plot saved to {png_path} and logged as the 'simulation_report' artifact.")
    return rows
