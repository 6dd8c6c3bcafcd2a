"""A year of continuous training in one command: fresh state, N monthly cycles, drift at month 7.

Each cycle is collection -> monitoring -> training, exactly as ``--pipeline all``. The table and the
PNG plot show, per month: rows, candidate and production frozen-test metric, production's
fresh-month accuracy, drift share and the decision. The plot is also logged as an artifact of a
small ``simulation_report`` run, so the dashboard shows it.
"""

from __future__ import annotations

import base64
import copy
import shutil
from pathlib import Path
from typing import Annotated

from zenml import pipeline, step
from zenml.types import HTMLString

from ledgerlink.data.synthetic import SyntheticConfig, month_labels
from ledgerlink.monitoring.simulation_plot import plot_simulation

from .runner import console, print_summary, run_cycle, suggest_before_collection


@step(enable_cache=False)
def render_simulation(records: list, drift_month: str, png_path: str) -> Annotated[HTMLString, "simulation_report"]:
    png = Path(png_path).read_bytes()
    rows = "".join(
        f"<tr><td>{r['month']}</td><td>{_fmt(r.get('fresh_accuracy'))}</td><td>{_fmt(r.get('candidate'))}</td>"
        f"<td>{_fmt(r.get('challenger_fresh_accuracy'))}</td><td>{_fmt(r.get('production'))}</td>"
        f"<td>{_fmt(r.get('drift_share'))}</td><td>{'yes' if r.get('promoted') else ''}</td></tr>"
        for r in records
    )
    return HTMLString(
        f"<html><body><h1>Continuous training simulation (drift at {drift_month})</h1>"
        f"<img style='max-width:100%' src='data:image/png;base64,{base64.b64encode(png).decode()}'/>"
        "<table border=1 cellpadding=4><tr><th>month</th><th>production fresh-month acc.</th><th>candidate F1</th>"
        "<th>newest non-production version fresh-month acc.</th>"
        f"<th>production F1</th><th>drift share</th><th>promoted</th></tr>{rows}</table></body></html>"
    )


def _fmt(v):
    return "" if v is None else f"{v:.4f}"


@pipeline(enable_cache=False)
def simulation_report(records: list, drift_month: str, png_path: str) -> None:
    render_simulation(records=records, drift_month=drift_month, png_path=png_path)


def simulation_config(cfg: dict, months: int, drift_month: int) -> dict:
    sim = copy.deepcopy(cfg)
    home = Path(cfg["data_dir"]) / "simulation"
    sim["data_dir"] = str(home)
    sim["model_name"] = f"{cfg['model_name']}_simulation"
    sim["synthetic"] = {
        **cfg["synthetic"],
        "months": months,
        "drift_month": drift_month,
        # the config's synthetic section now always holds drift_kind (the typed config fills defaults): only a
        # kind other than the generator's default overrides the simulation's combined drift
        "drift_kind": (
            kind
            if (kind := cfg["synthetic"].get("drift_kind")) and kind != SyntheticConfig().drift_kind
            else "title_format+payer_change"
        ),
    }
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


def simulate(cfg: dict, months: int = 12, drift_month: int = 7) -> list[dict]:
    sim = simulation_config(cfg, months, drift_month)
    reset(sim)
    labels = month_labels(SyntheticConfig(**sim["synthetic"]))
    rows = []
    for i in range(months):
        console.rule(f"simulated month {i + 1}/{months}: {labels[i]}")
        suggest_before_collection(sim)  # production suggests for the month; its monitoring scores that on the tags
        rows.append(run_cycle(sim, "all"))
    print_summary(rows, "simulate", cfg["evaluation"].get("primary_metric", "pair_f1"))
    records = [
        {"month": r["month"], "promoted": r["promoted"], **{k: v for k, v in r["values"].items() if k != "triggers"}}
        for r in rows
    ]
    png_path = Path(sim["data_dir"]) / "simulation.png"
    png_path.write_bytes(plot_simulation(records, labels[drift_month - 1]))
    simulation_report(records=records, drift_month=labels[drift_month - 1], png_path=str(png_path))
    console.print(f"Plot saved to {png_path} and logged as the 'simulation_report' artifact.")
    return rows
