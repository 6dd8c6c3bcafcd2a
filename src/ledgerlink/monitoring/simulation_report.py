"""The HTML page of a simulated year: the plot and one row per month, with the route that promoted each version.

Plain HTML and an embedded PNG, no JavaScript, so the dashboard's sandboxed frame renders it.
"""

from __future__ import annotations

import base64
import html

from ..evaluation.report import STYLE

COLUMNS = (
    ("month", "month"),
    ("fresh_accuracy", "production: fresh-month exact-set acc."),
    ("challenger_fresh_accuracy", "challenger (newer version, or production's predecessor): fresh-month acc."),
    ("candidate", "candidate: frozen-test F1"),
    ("production", "production: frozen-test F1"),
    ("drift_share", "drift share"),
    ("route", "promoted by"),
)


def _value(record: dict, key: str) -> str:
    v = record.get(key)
    if key == "route":
        return html.escape(v or ("yes" if record.get("promoted") else ""))
    if isinstance(v, float):
        return f"{v:.4f}"
    return "" if v is None else html.escape(str(v))


def simulation_html(records: list[dict], drift_month: str | None, png: bytes) -> str:
    """``records``: one dict per month (month, promoted, route, fresh_accuracy, ...); ``png``: the plot."""
    title = f"Continuous training simulation ({f'drift at {drift_month}' if drift_month else 'no drift'})"
    head = "".join(f"<th>{html.escape(label)}</th>" for _, label in COLUMNS)
    body = "".join("<tr>" + "".join(f"<td>{_value(r, key)}</td>" for key, _ in COLUMNS) + "</tr>" for r in records)
    return (
        f"<html><head><meta charset='utf-8'>{STYLE}</head><body><h1>{html.escape(title)}</h1>"
        f"<img style='max-width:100%' src='data:image/png;base64,{base64.b64encode(png).decode()}'/>"
        f"<table><tr>{head}</tr>{body}</table></body></html>"
    )
