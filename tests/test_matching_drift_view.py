"""The drift view on the model's own pair features (``pair_feature_frame``), which monitoring compares month to month.

Each family builds it with its own blocking and pair-feature code; a drift that only the pair features see (the
payers' bank writes its own reference where the invoice number was: the titles look the same, the numbers no
longer name invoices) fires ``ledgerlink.monitoring.drift.detect_drift`` on it.
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest

from ledgerlink.data.synthetic import SyntheticConfig, generate
from ledgerlink.matching import Matcher, RulesMatcher
from ledgerlink.matching.features import MEMORY_FEATURES, VIEW_FEATURES, VIEW_MISSING, pair_features
from ledgerlink.matching.normalize import Prepared
from ledgerlink.monitoring.drift import detect_drift, drift_summary_html, raw_columns

WORLD = dict(seed=5, months=4, contractors=100, transfers_per_month=500)
TRIGGER = 0.3  # the default drift-share trigger (monitoring.triggers)


@pytest.fixture(scope="module")
def world():
    d = generate(SyntheticConfig(**WORLD))
    months = sorted(d["transfers"]["month"].unique())
    train = months[:3]
    pick = lambda name, ms: d[name][d[name]["month"].isin(ms)]  # noqa: E731
    matcher = Matcher(n_estimators=80, max_depth=5, n_jobs=1).fit(
        pick("invoices", train), pick("transfers", train), pick("links", train)
    )
    # the reference: training months after the first (a synthetic world's first month has no earlier invoices, so
    # its days-since-issue differ from any later month's; a deployment's months all have a history)
    return d, matcher, pick("transfers", train[1:]), pick("transfers", months[3:])


def _scrambled(transfers: pd.DataFrame, seed: int = 0) -> pd.DataFrame:
    """Every digit of every title replaced by a random one: same lengths, same digit share, same look."""
    rng = np.random.default_rng(seed)
    titles = transfers["title"].fillna("").map(lambda s: re.sub(r"\d", lambda _: str(rng.integers(0, 10)), s))
    return transfers.assign(title=titles)


def test_each_family_builds_the_view_with_its_training_feature_code(world):
    d, matcher, _, current = world
    invoices = d["invoices"]
    view = matcher.pair_feature_frame(invoices, current)
    assert list(view.columns) == VIEW_FEATURES and not set(MEMORY_FEATURES) & set(view.columns)
    assert set(VIEW_FEATURES) <= set(matcher.feature_names_)  # the features the model was trained on
    assert view.index.is_unique and set(view.index) <= set(current["transfer_id"])
    assert len(view) >= 0.9 * len(current) and not view.isna().any().any()
    # independently: the public blocking + feature code, and the model's probability of each candidate
    cands = matcher.match(invoices, current).candidates
    proba = matcher.predict_proba_pairs(invoices, cands[["transfer_id", "invoice_id"]], transfers=current)
    P = Prepared.of(invoices, current)
    t_of = pd.Series(np.arange(len(P.tr)), index=P.tr["transfer_id"])
    i_of = pd.Series(np.arange(len(P.inv)), index=P.inv["invoice_id"])
    pairs = pd.DataFrame({"t": t_of[proba["transfer_id"]].to_numpy(), "i": i_of[proba["invoice_id"]].to_numpy()})
    X = pair_features(pairs, P, memory=matcher.memory_)
    best = proba.assign(row=np.arange(len(proba))).sort_values(["transfer_id", "probability"], ascending=[True, False])
    best = best.drop_duplicates("transfer_id")
    expected = X[VIEW_FEATURES].iloc[best["row"].to_numpy()].fillna(VIEW_MISSING)
    expected.index = pd.Index(best["transfer_id"].to_numpy(), name="transfer_id")
    got = view.loc[expected.index]
    same = (got.to_numpy() == expected.to_numpy()).all(axis=1)
    assert same.mean() > 0.97, got[~same].head()  # equal probabilities may pick another candidate
    rules_view = RulesMatcher().pair_feature_frame(invoices, current)
    assert list(rules_view.columns) == VIEW_FEATURES and len(rules_view) >= 0.9 * len(current)


def test_a_drift_only_the_pair_features_see_fires_on_the_view(world):
    d, matcher, reference, current = world
    invoices = d["invoices"]
    drifted = _scrambled(current)
    # the raw view cannot tell: its columns are the same for the scrambled month
    raw_same = detect_drift(raw_columns(reference), raw_columns(current), with_html=False)
    raw_drifted = detect_drift(raw_columns(reference), raw_columns(drifted), with_html=False)
    assert raw_drifted.drifted_columns == raw_same.drifted_columns and raw_drifted.drift_share < TRIGGER
    ref_view = matcher.pair_feature_frame(invoices, reference)
    same = detect_drift(ref_view, matcher.pair_feature_frame(invoices, current), "model pair features", with_html=False)
    moved = detect_drift(ref_view, matcher.pair_feature_frame(invoices, drifted), "model pair features")
    assert same.drift_share < TRIGGER and not {"ref_exact", "ref_digits_exact"} & set(same.drifted_columns), same
    assert moved.drift_share >= TRIGGER, moved.drifted_columns
    assert {"ref_exact", "ref_digits_exact", "ref_contains", "n_exact_refs_in_transfer"} <= set(moved.drifted_columns)
    assert "ref_exact" in moved.html and moved.summary()["view"] == "model pair features"
    table = drift_summary_html("2025-04", ["2025-02", "2025-03"], [raw_drifted, moved])
    assert "model pair features: drift share" in table and "<td>ref_exact</td>" in table
