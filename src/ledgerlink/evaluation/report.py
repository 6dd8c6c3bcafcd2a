"""HTML reports that the ZenML dashboard renders: evaluation tables with bars, and the promotion decision.

Plain HTML and inline CSS bars, no JavaScript, so they render in the dashboard's sandboxed frame
and in any browser from the artifact store.
"""

from __future__ import annotations

import html

from .metrics import METRICS

STYLE = """<style>
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
    parts = [f"<html><head><meta charset='utf-8'>{STYLE}</head><body><h1>{html.escape(title)}</h1>"]
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


def interval_svg(point: float, lower: float, upper: float, scale: float, tolerance: float | None = None) -> str:
    """A one-row forest plot: the interval as a line, the point as a dot, 0 and the tolerance as ticks.

    Inline SVG (no JavaScript), so it renders in the dashboard's sandboxed frame. ``scale``: the largest
    absolute value the row must show; positive is to the right.
    """
    width, mid = 220, 110

    def x(v: float) -> float:
        return mid + max(-1.0, min(1.0, v / scale)) * (mid - 6)

    tol = (
        f'<line x1="{x(tolerance):.1f}" y1="2" x2="{x(tolerance):.1f}" y2="16" '
        'stroke="#b91c1c" stroke-dasharray="2,2"/>'
        if tolerance is not None
        else ""
    )
    return (
        f'<svg width="{width}" height="18" xmlns="http://www.w3.org/2000/svg">'
        f'<line x1="{mid}" y1="0" x2="{mid}" y2="18" stroke="#9ca3af"/>{tol}'
        f'<line x1="{x(lower):.1f}" y1="9" x2="{x(upper):.1f}" y2="9" stroke="#4f46e5" stroke-width="3"/>'
        f'<circle cx="{x(point):.1f}" cy="9" r="3.5" fill="#1f2937"/></svg>'
    )


def _scale(values) -> float:
    return max([abs(v) for v in values if v is not None] + [0.01]) * 1.1


def slice_intervals_table(slices: dict[str, dict], tolerance: float | None) -> str:
    """Per slice: candidate, production, drop with its interval and a forest plot (right of 0 = a drop)."""
    scale = _scale([v for s in slices.values() for v in (s["lower"], s["upper"])] + [tolerance or 0])
    head = (
        "<tr><th>slice</th><th>n</th><th>candidate</th><th>production</th><th>drop</th><th>interval</th>"
        "<th>0 | tolerance</th><th>verdict</th></tr>"
    )
    rows = []
    for name, s in slices.items():
        blocks = s.get("blocks")
        beyond = tolerance is not None and s["drop"] > tolerance
        verdict = (
            '<span class="no">blocks: real regression</span>'
            if blocks
            else ("beyond tolerance, but noise-level" if beyond else '<span class="ok">within tolerance</span>')
        )
        rows.append(
            f"<tr><td>{html.escape(name)}</td><td>{s.get('n_transfers', '')}</td>{_cell(s['candidate'])}"
            f"{_cell(s['production'])}<td>{s['drop']:+.4f}</td>"
            f"<td>[{s['lower']:+.4f}, {s['upper']:+.4f}] {s.get('confidence', 0):.0%}</td>"
            f"<td>{interval_svg(s['drop'], s['lower'], s['upper'], scale, tolerance)}</td><td>{verdict}</td></tr>"
        )
    return f"<table>{head}{''.join(rows)}</table>"


def gain_intervals_table(rows: dict[str, dict]) -> str:
    """Gains (right of 0 = the newer model is better) with their intervals: the frozen test and out-of-time."""
    scale = _scale([v for r in rows.values() for v in (r["lower"], r["upper"])])
    head = "<tr><th>evidence</th><th>metric</th><th>gain</th><th>interval</th><th>0</th><th>samples</th></tr>"
    body = "".join(
        f"<tr><td>{html.escape(name)}</td><td>{html.escape(str(r.get('metric', '')))}</td><td>{r['gain']:+.4f}</td>"
        f"<td>[{r['lower']:+.4f}, {r['upper']:+.4f}] {r.get('confidence', 0):.0%}</td>"
        f"<td>{interval_svg(r['gain'], r['lower'], r['upper'], scale)}</td><td>{r.get('samples', '')}</td></tr>"
        for name, r in rows.items()
    )
    return f"<table>{head}{body}</table>"


def decision_html(decision: dict, candidate: dict, production: dict | None, rules: dict) -> str:
    """The promotion decision: verdict, route and the evidence that decided, then every gate with its interval."""
    checks = decision.get("checks", {})
    verdict = '<span class="ok">PROMOTE</span>' if decision["promote"] else '<span class="no">KEEP PRODUCTION</span>'
    route = checks.get("route")
    rows = {"candidate": candidate["metrics"], "rules baseline": rules["metrics"]}
    if production is not None:
        rows["production"] = production["metrics"]
    parts = [f"<html><head><meta charset='utf-8'>{STYLE}</head><body><h1>Promotion decision: {verdict}</h1>"]
    if route:
        parts.append(f"<p>Route: <b>{html.escape(route)}</b></p>")
    if checks.get("decided_by"):
        parts.append(f"<p>Decided by: {html.escape(checks['decided_by'])}</p>")
    parts.append("<h2>Reasons</h2><ul>")
    parts += [f"<li>{html.escape(r)}</li>" for r in decision["reasons"]]
    parts.append("</ul><h2>Candidate vs production vs rules (frozen test)</h2>")
    parts.append(metrics_table(rows, METRICS + ("blocking_recall", "n_transfers")))
    gains = {}
    if checks.get("bootstrap"):
        gains["frozen test: candidate vs production"] = checks["bootstrap"]
    challenge = checks.get("challenge")
    if challenge:
        if challenge.get("kind") == "learning curve":
            label = f"production vs its predecessor version {challenge['challenger']}"
        else:
            label = f"version {challenge['challenger']} vs production"
        gains[f"out-of-time {challenge['month']}: {label}"] = challenge
        fall = challenge.get("degradation")
        if fall:  # a fall is a negative change of the same model between two fresh months (unpaired)
            gains[f"out-of-time: version {fall['version']} on {fall['month']} vs on {fall['from_month']}"] = {
                **fall,
                "gain": -fall["drop"],
                "lower": -fall["upper"],
                "upper": -fall["lower"],
                "samples": "normal",
            }
    if gains:
        parts.append(
            "<h2>Gains with their intervals</h2><p>Paired bootstrap on the same transfers; a fall of one model"
            " between two months: normal approximation, unpaired.</p>" + gain_intervals_table(gains)
        )
    slices = checks.get("slices") or {}
    if slices:
        tol = checks.get("slice_tolerance")
        parts.append(
            "<h2>Slices: exact-set accuracy drop with its interval</h2>"
            f"<p>A slice blocks only when its drop exceeds the tolerance ({tol}, dashed red) and its interval lies "
            "above 0 (grey). Intervals are Bonferroni-corrected for the number of slices.</p>"
            + slice_intervals_table(slices, tol)
        )
    parts.append("</body></html>")
    return "".join(parts)
