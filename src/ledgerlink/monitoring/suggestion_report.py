"""The suggest run's dashboard artifact: what the model proposes for the open month, at a glance.

Counts and amounts of the transfers matched automatically, sent to review and said to pay nothing, and the
confidence distribution per decision with the auto-match threshold, drawn as a PNG embedded in the page: the
dashboard shows HTML in a frame that blocks JavaScript, so the page holds no script.
"""

from __future__ import annotations

import base64
import html
import io

import numpy as np

from ..evaluation.report import STYLE

OUTCOMES = (
    ("auto", "matched automatically", "#059669"),
    ("review", "sent to review", "#d97706"),
    ("none", "pays no invoice (model)", "#6b7280"),
)


def confidence_png(histogram: dict[str, list[int]], threshold: float | None) -> bytes:
    """Bars of transfers per confidence bin, auto and review stacked, and the auto-match threshold."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    bins = len(next(iter(histogram.values()), [])) or 20
    edges = np.linspace(0.0, 1.0, bins + 1)
    width = edges[1] - edges[0]
    fig, ax = plt.subplots(figsize=(8, 3.6), dpi=110)
    bottom = np.zeros(bins)
    for decision, color in (("review", "#d97706"), ("auto", "#059669")):
        counts = np.asarray(histogram.get(decision, [0] * bins), dtype=float)
        ax.bar(edges[:-1], counts, width=width, align="edge", bottom=bottom, color=color, label=decision)
        bottom += counts
    if threshold is not None and threshold <= 1:
        ax.axvline(threshold, color="#111827", linestyle="--", linewidth=1)
        ax.text(
            threshold, 0.97, f" auto from {threshold:.3f}", fontsize=8, va="top", transform=ax.get_xaxis_transform()
        )
    ax.set_xlim(0, 1)
    ax.set_yscale("symlog", linthresh=10)
    ax.set_xlabel("confidence of the transfer's chosen set")
    ax.set_ylabel("transfers")
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()


def suggestions_html(summary: dict) -> str:
    """``summary``: ``SuggestionSummary.to_dict()``."""
    title = f"Suggested links for {summary['month']}: {summary['model_name']} version {summary['model_version']}"
    parts = [f"<html><head><meta charset='utf-8'>{STYLE}</head><body><h1>{html.escape(title)}</h1>"]
    if summary.get("skipped"):
        parts.append(f"<p>{html.escape(summary['skipped'])}</p></body></html>")
        return "".join(parts)
    total = max(summary["transfers"], 1)
    parts.append(
        f"<p>{summary['transfers']} open transfers against {summary['invoices']} open invoices; "
        f"{summary['rows']} rows written to <code>{html.escape(summary['table'])}</code> at "
        f"{html.escape(summary['suggested_at'])} ({summary['seconds']:.1f} s).</p>"
    )
    parts.append("<table><tr><th>transfers</th><th>count</th><th>share</th><th>amount</th></tr>")
    for key, label, color in OUTCOMES:
        count = summary["counts"].get(key, 0)
        share = count / total
        bar = f'<span class="bar" style="width:{int(share * 80)}px;background:{color}"></span>'
        parts.append(
            f"<tr><td>{html.escape(label)}</td><td>{count}</td><td>{bar}{share:.1%}</td>"
            f"<td>{summary['amounts'].get(key, 0.0):,.2f}</td></tr>"
        )
    parts.append(
        f"<tr><td>all</td><td>{summary['transfers']}</td><td></td>"
        f"<td>{sum(summary['amounts'].get(k, 0.0) for k, _, _ in OUTCOMES):,.2f}</td></tr></table>"
    )
    parts.append(
        f"<p>Allocated to invoices automatically: <b>{summary['amounts'].get('allocated_auto', 0.0):,.2f}</b>. "
        f"Of the transfers said to pay nothing, {summary['counts'].get('auto_none', 0)} were decided automatically, "
        "the others go to review.</p>"
    )
    png = confidence_png(summary["confidence_histogram"], summary.get("auto_threshold"))
    parts.append("<h2>Confidence</h2>")
    parts.append(f"<img style='max-width:100%' src='data:image/png;base64,{base64.b64encode(png).decode()}'/>")
    parts.append("</body></html>")
    return "".join(parts)
