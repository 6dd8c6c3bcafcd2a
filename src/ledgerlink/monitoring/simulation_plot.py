"""The picture of a year of continuous training: accuracy, drift, and each promotion marked by its route."""

from __future__ import annotations

import io

# promotion route (``Decision.checks["route"]``) -> marker and colour
ROUTES = (
    ("first run", "P", "#059669", "first model (beats the rules baseline)"),
    ("frozen test", "*", "#4f46e5", "promoted by the frozen-test route"),
    ("out-of-time", "D", "#f97316", "promoted by the out-of-time route (fresh-month evidence)"),
)


def plot_simulation(
    records: list[dict], drift_month: str | None = None, title: str = "ledgerlink: a year of continuous training"
) -> bytes:
    """PNG bytes. ``records``: month, fresh_accuracy, challenger_fresh_accuracy, candidate, production, drift_share,
    promoted, route (which route promoted: "first run", "frozen test", "out-of-time"), version and auto_precision
    (the production model's suggestions for the month scored against its tags)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    months = [r["month"] for r in records]
    x = list(range(len(months)))
    fig, ax = plt.subplots(figsize=(10, 6.2), dpi=110)
    ax2 = ax.twinx()
    drift = [r.get("drift_share") or 0.0 for r in records]
    ax2.bar(x, drift, color="#f59e0b", alpha=0.25, width=0.6, label="drift share (Evidently)")
    ax2.set_ylim(0, 1)
    ax2.set_ylabel("drift share")

    def series(key):
        return [r.get(key) if r.get(key) is not None else float("nan") for r in records]

    ax.plot(x, series("fresh_accuracy"), "o-", color="#dc2626", label="production: fresh-month exact-set accuracy")
    ax.plot(
        x,
        series("challenger_fresh_accuracy"),
        "o--",
        color="#f97316",
        mfc="white",
        label="challenger (newer version, or production's predecessor): fresh-month exact-set accuracy",
    )
    ax.plot(x, series("candidate"), "s--", color="#4f46e5", label="candidate: frozen-test pair F1")
    ax.plot(x, series("production"), "^:", color="#059669", label="production: frozen-test pair F1")
    ax.plot(x, series("auto_precision"), "D-", color="#0891b2", label="production: auto precision of its suggestions")
    for route, marker, color, legend in ROUTES:
        hits = [
            (xi, r) for xi, r in zip(x, records) if r.get("promoted") and (r.get("route") or "frozen test") == route
        ]
        if not hits:
            continue
        ax.scatter(
            [xi for xi, _ in hits],
            [r.get("candidate") or 0 for _, r in hits],
            marker=marker,
            s=140,
            color=color,
            edgecolor="black",
            zorder=5,
            label=legend,
        )
        for xi, r in hits:
            label = f"v{r['version']}" if r.get("version") is not None else "promoted"
            ax.annotate(
                label,
                (xi, r.get("candidate") or 0),
                textcoords="offset points",
                xytext=(0, 10),
                ha="center",
                fontsize=8,
                color=color,
            )
    if drift_month in months:
        ax.axvline(months.index(drift_month) - 0.5, color="#6b7280", linestyle="--", linewidth=1)
        ax.text(months.index(drift_month) - 0.45, 0.01, "drift event", transform=ax.get_xaxis_transform(), fontsize=8)
    ax.set_xticks(x, months, rotation=45, ha="right")
    ax.set_ylabel("accuracy / F1")
    ax.set_title(title)
    ax.set_zorder(ax2.get_zorder() + 1)
    ax.patch.set_visible(False)
    lines = ax.get_legend_handles_labels()
    bars = ax2.get_legend_handles_labels()
    low, high = ax.get_ylim()
    ax.set_ylim(low, high + (high - low) * 0.06)  # room for the version labels above the markers
    fig.legend(lines[0] + bars[0], lines[1] + bars[1], loc="lower center", ncol=2, fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0.16, 1, 1))
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()
