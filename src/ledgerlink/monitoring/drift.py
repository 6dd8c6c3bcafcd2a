"""Data drift between the production model's training data and the newest month, with Evidently 0.7.

Evidently is called directly (ZenML's integration pins an old Evidently). Two views are compared:
raw columns people understand (amount, text lengths, share of titles with a reference number, ...)
and the model's own pair features, which is what the model actually sees. The dashboard gets a plain
summary table (``drift_summary_html``, which renders in its sandboxed frame) followed by the full Evidently
report (download it to open in a browser); a small JSON summary (drift share, drifted columns) is what
triggers and metadata use.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

_REF = re.compile(r"\d{3,}")


RAW_VIEW = "raw columns"
PAIR_FEATURE_VIEW = "model pair features"  # matcher.pair_feature_frame: what the model itself sees


def raw_columns(transfers: pd.DataFrame) -> pd.DataFrame:
    """Per-transfer columns whose distribution should stay put from month to month."""
    title = (
        transfers["title"].fillna("").astype(str)
        if "title" in transfers.columns
        else pd.Series("", index=transfers.index)
    )
    name = (
        transfers["counterparty_name"].fillna("").astype(str)
        if "counterparty_name" in transfers.columns
        else pd.Series("", index=transfers.index)
    )
    amount = transfers["amount"].astype(float)
    return pd.DataFrame(
        {
            "log_amount": np.log10(amount.abs() + 1.0),
            "outgoing": (amount < 0).astype(int).astype(str),
            "title_length": title.str.len().astype(float),
            "title_has_reference": title.map(lambda s: bool(_REF.search(s))).astype(int).astype(str),
            "title_digit_share": title.map(lambda s: sum(c.isdigit() for c in s) / max(len(s), 1)).astype(float),
            "title_upper_share": title.map(
                lambda s: sum(c.isupper() for c in s) / max(sum(c.isalpha() for c in s), 1)
            ).astype(float),
            "name_length": name.str.len().astype(float),
            "day_of_month": pd.to_datetime(transfers["booked_at"]).dt.day.astype(float),
        }
    ).reset_index(drop=True)


@dataclass
class DriftResult:
    view: str
    drift_share: float
    drifted_columns: list[str]
    columns: dict[str, dict] = field(default_factory=dict)
    html: str = field(default="", repr=False)

    def summary(self) -> dict:
        return {
            "view": self.view,
            "drift_share": self.drift_share,
            "drifted_columns": self.drifted_columns,
            "columns": self.columns,
        }


def _sample(df: pd.DataFrame, n: int, seed: int) -> pd.DataFrame:
    return df.sample(n=n, random_state=seed) if len(df) > n else df


def detect_drift(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    view: str = "raw",
    max_rows: int = 20_000,
    seed: int = 0,
    with_html: bool = True,
) -> DriftResult:
    """Run Evidently's DataDriftPreset column by column; a column drifts by Evidently's own per-column test."""
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    cols = [c for c in reference.columns if c in current.columns]
    if not cols:
        raise ValueError(f"drift view '{view}': reference and current share no columns")
    ref, cur = _sample(reference[cols], max_rows, seed), _sample(current[cols], max_rows, seed)
    # Evidently reads a frame's index as a time axis for its plots: rows keyed by id (the pair-feature view is
    # indexed by transfer_id) would break it
    ref, cur = ref.reset_index(drop=True), cur.reset_index(drop=True)
    categorical = [c for c in cols if not pd.api.types.is_numeric_dtype(ref[c])]
    numerical = [c for c in cols if c not in categorical]
    definition = DataDefinition(numerical_columns=numerical, categorical_columns=categorical)
    snapshot = Report([DataDriftPreset()]).run(
        current_data=Dataset.from_pandas(cur, data_definition=definition),
        reference_data=Dataset.from_pandas(ref, data_definition=definition),
    )
    per_column = {}
    for metric in snapshot.dict()["metrics"]:
        conf = metric["config"]
        if not conf.get("type", "").endswith("ValueDrift"):
            continue
        value, threshold, method = float(metric["value"]), float(conf["threshold"]), conf["method"]
        drifted = value < threshold if "p_value" in method else value >= threshold
        per_column[conf["column"]] = {
            "method": method,
            "value": value,
            "threshold": threshold,
            "drifted": bool(drifted),
        }
    drifted = sorted(c for c, v in per_column.items() if v["drifted"])
    share = len(drifted) / len(per_column) if per_column else 0.0
    return DriftResult(view, share, drifted, per_column, snapshot.get_html_str(as_iframe=False) if with_html else "")


def drift_summary_html(month: str, reference_months: list[str], results: list[DriftResult]) -> str:
    """A plain table (no JavaScript) that renders in the dashboard's sandboxed frame."""
    import html as _html

    parts = [f"<h1>Data drift: {month} vs {', '.join(reference_months)}</h1>"]
    for r in results:
        parts.append(
            f"<h2>{_html.escape(r.view)}: drift share {r.drift_share:.2f} "
            f"({len(r.drifted_columns)} of {len(r.columns)} columns)</h2>"
            "<table border=1 cellpadding=4><tr><th>column</th><th>test</th><th>score</th><th>threshold</th>"
            "<th>drifted</th></tr>"
        )
        for name, c in sorted(r.columns.items(), key=lambda kv: (not kv[1]["drifted"], kv[0])):
            parts.append(
                f"<tr><td>{_html.escape(name)}</td><td>{_html.escape(c['method'])}</td><td>{c['value']:.4g}</td>"
                f"<td>{c['threshold']:.4g}</td><td>{'<b>yes</b>' if c['drifted'] else 'no'}</td></tr>"
            )
        parts.append("</table>")
    return "".join(parts)
