"""Drift detection with Evidently 0.7 on raw transfer columns."""

import numpy as np
import pandas as pd

from ledgerlink.monitoring.drift import detect_drift, raw_columns


def _transfers(n, seed, title_fn):
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "amount": np.round(rng.lognormal(6, 1, n), 2),
            "title": [title_fn(i, rng) for i in range(n)],
            "counterparty_name": ["Nordwind Handels GmbH"] * n,
            "booked_at": pd.Timestamp("2025-01-01") + pd.to_timedelta(rng.integers(0, 28, n), unit="D"),
        }
    )


def test_stable_data_does_not_drift_and_a_title_format_change_does():
    def old(i, rng):
        return f"Payment for invoice INV-2025-{rng.integers(100, 999)}"

    def new(i, rng):
        return f"/ROC/{rng.integers(10**9, 10**10)}//PAYMENT REF NORDWIND HANDELS" if i % 2 else "TRANSFER"

    ref = raw_columns(_transfers(800, 1, old))
    same = detect_drift(ref, raw_columns(_transfers(800, 2, old)), with_html=False)
    assert same.drift_share <= 0.25, same.columns
    moved = detect_drift(ref, raw_columns(_transfers(800, 3, new)))
    assert {"title_length", "title_upper_share"} <= set(moved.drifted_columns)
    assert moved.drift_share > same.drift_share
    assert moved.html.lstrip().lower().startswith("<!doctype html>") and "root_metric_" in moved.html
    s = moved.summary()
    assert s["drift_share"] == moved.drift_share and set(s["columns"]) == set(ref.columns)
