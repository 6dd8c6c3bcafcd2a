"""HTML reports that the ZenML dashboard renders: evaluation tables with bars, and the promotion decision.

Plain HTML and inline CSS bars, no JavaScript, so they render in the dashboard's sandboxed frame
and in any browser from the artifact store.
"""

from __future__ import annotations

import html

from .metrics import METRICS

_STYLE = """<style>
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:16px;color:#1f2937}
table{border-collapse:collapse;margin:8px 0 20px}
th,td{padding:4px 10px;border-bottom:1px solid #e5e7eb;text-align:right}
th:first-child,td:first-child{text-align:left}td,th{white-space:nowrap;font-size:13px}th{background:#f3f4f6}
.bar{display:inline-block;height:10px;background:#6366f1;margin-right:6px;vertical-align:middle}
.ok{color:#047857;font-weight:600}.no{color:#b91c1c;font-weight:600}h2{margin-top:24px}
</style>"""


def _cell(value) -> str:
    if isinstance(value, float):
        width = int(max(0.0, min(1.0, value)) * 80) if 0 <= value <= 1 else 0
        bar = f'<span class="bar" style="width:{width}px"></span>' if width else ""
        return f"<td>{bar}{value:.4f}</td>"
    return f"<td>{html.escape(str(value))}</td>"


def metrics_table(rows: dict[str, dict], columns=METRICS + ("n_transfers",)) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in ("", *columns))
    body = "".join(
        "<tr><td>" + html.escape(name) + "</td>" + "".join(_cell(m.get(c, "")) for c in columns) + "</tr>"
        for name, m in rows.items()
    )
    return f"<table><tr>{head}</tr>{body}</table>"


def evaluation_html(title: str, evaluations: dict[str, dict], extra: dict | None = None) -> str:
    """``evaluations``: name -> Evaluation.summary() (metrics + slices)."""
    parts = [f"<html><head><meta charset='utf-8'>{_STYLE}</head><body><h1>{html.escape(title)}</h1>"]
    parts.append("<h2>Frozen test set</h2>")
    parts.append(
        metrics_table({n: e["metrics"] for n, e in evaluations.items()}, METRICS + ("blocking_recall", "n_transfers"))
    )
    for name, e in evaluations.items():
        parts.append(f"<h2>Slices: {html.escape(name)}</h2>")
        parts.append(metrics_table(e["slices"]))
    if extra:
        parts.append(
            "<h2>Details</h2><table>"
            + "".join(
                f"<tr><td>{html.escape(str(k))}</td><td>{html.escape(str(v))}</td></tr>" for k, v in extra.items()
            )
            + "</table>"
        )
    parts.append("</body></html>")
    return "".join(parts)


def decision_html(decision: dict, candidate: dict, production: dict | None, rules: dict) -> str:
    verdict = '<span class="ok">PROMOTE</span>' if decision["promote"] else '<span class="no">KEEP PRODUCTION</span>'
    rows = {"candidate": candidate["metrics"], "rules baseline": rules["metrics"]}
    if production is not None:
        rows["production"] = production["metrics"]
    parts = [f"<html><head><meta charset='utf-8'>{_STYLE}</head><body><h1>Promotion decision: {verdict}</h1><ul>"]
    parts += [f"<li>{html.escape(r)}</li>" for r in decision["reasons"]]
    parts.append("</ul><h2>Candidate vs production vs rules</h2>")
    parts.append(metrics_table(rows, METRICS + ("blocking_recall", "n_transfers")))
    slices = decision.get("checks", {}).get("slices") or {}
    if slices:
        parts.append(
            "<h2>Slices (exact-set accuracy)</h2>" + metrics_table(slices, ("candidate", "production", "drop"))
        )
    boot = decision.get("checks", {}).get("bootstrap")
    if boot:
        parts.append(
            "<h2>Paired bootstrap</h2>" + metrics_table({boot["metric"]: boot}, ("gain", "lower", "upper", "samples"))
        )
    parts.append("</body></html>")
    return "".join(parts)
