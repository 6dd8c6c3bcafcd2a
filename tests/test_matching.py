"""Tests for ledgerlink.matching: normalisation, blocking, features, assignment, Matcher, RulesMatcher."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ledgerlink.data.synthetic import SyntheticConfig, generate
from ledgerlink.matching import Matcher, MatchResult, RulesMatcher, blocking_recall
from ledgerlink.matching.assignment import assign
from ledgerlink.matching.candidates import generate_candidates
from ledgerlink.matching.features import FEATURE_NAMES, Memory, pair_features
from ledgerlink.matching.normalize import (
    digit_ngrams, normalize_account, normalize_name, normalize_text, prepare_invoices, prepare_transfers, ref_chunks,
)

SMALL = dict(seed=3, months=3, contractors=40, transfers_per_month=150)
FAST = dict(n_estimators=40, max_depth=4, n_jobs=1)


def pair_f1(pred: pd.DataFrame, true: pd.DataFrame) -> float:
    key = ["transfer_id", "invoice_id"]
    m = pred[key].drop_duplicates().merge(true[key].drop_duplicates(), how="outer", indicator=True)
    tp = (m["_merge"] == "both").sum()
    p = tp / max(1, (m["_merge"] != "right_only").sum())
    r = tp / max(1, (m["_merge"] != "left_only").sum())
    return 0.0 if tp == 0 else 2 * p * r / (p + r)


def split(d: dict, test_month: str):
    inv, tr, ln = d["invoices"], d["transfers"], d["links"]
    train = (inv[inv["month"] < test_month], tr[tr["month"] < test_month], ln[ln["month"] < test_month])
    return train, (inv, tr[tr["month"] == test_month], ln[ln["month"] == test_month])


@pytest.fixture(scope="module")
def small():
    d = generate(SyntheticConfig(**SMALL))
    months = sorted(d["transfers"]["month"].unique())
    return d, months[-1]


@pytest.fixture(scope="module")
def fitted(small):
    d, test_month = small
    (inv, tr, ln), _ = split(d, test_month)
    return Matcher(**FAST).fit(inv, tr, ln)


# ----------------------------------------------------------------------------------------------------------------
# hand-made data


def _inv(rows):
    df = pd.DataFrame(rows, columns=["invoice_id", "invoice_number", "counterparty_name", "amount", "issued_at"])
    df["issued_at"] = pd.to_datetime(df["issued_at"])
    df["due_at"] = df["issued_at"] + pd.Timedelta(days=30)
    df["currency"], df["month"] = "EUR", df["issued_at"].dt.strftime("%Y-%m")
    df["description"] = None
    return df


def _tr(rows):
    df = pd.DataFrame(rows, columns=["transfer_id", "title", "counterparty_name", "counterparty_account", "amount", "booked_at"])
    df["booked_at"] = pd.to_datetime(df["booked_at"])
    df["currency"], df["month"] = "EUR", df["booked_at"].dt.strftime("%Y-%m")
    return df


INVOICES = _inv([
    ("I1", "FV/2025/03/0142", "Łódź Trans Sp. z o.o.", 1230.00, "2025-03-02"),
    ("I2", "FV/2025/03/0143", "Łódź Trans Sp. z o.o.", 500.00, "2025-03-03"),
    ("I3", "INV-2025-00077", "Nordwind Handels GmbH", 2000.00, "2025-03-05"),
    ("I4", "INV-2025-00078", "Nordwind Handels GmbH", 800.00, "2025-03-06"),
    ("I5", "KOR/2025/03/011", "Nordwind Handels GmbH", -300.00, "2025-03-07"),
    ("I6", "RE-2025-0456", "Acme Widgets Ltd", 990.00, "2025-03-10"),
])
TRANSFERS = _tr([
    ("T1", "Zapłata za FV/2025/03/0142", "LODZ TRANS SP Z O O", "PL11 2222 3333", 1230.00, "2025-03-20"),   # exact
    ("T2", "faktura FV/2025/03/0124", "Lodz Trans", "PL11 2222 3333", 500.00, "2025-03-21"),                # damaged
    ("T3", "Rechnung 202500077 202500078", "Nordwind Handels", "DE99 1", 2480.00, "2025-03-25"),            # multi+fee+CN
    ("T4", "RE 2025 0456 rata 1", "ACME WIDGETS", "GB00 7", 400.00, "2025-03-26"),                           # partial
    ("T5", "Odsetki za marzec", "mBank S.A.", "", 12.34, "2025-03-31"),                                      # nothing
])


def _prepared():
    inv, ic = prepare_invoices(INVOICES)
    tr, tc = prepare_transfers(TRANSFERS)
    return inv, ic, tr, tc


def _features(pairs_ids, memory=None, exclude=None):
    inv, ic, tr, tc = _prepared()
    ti = {t: k for k, t in enumerate(tr["transfer_id"])}
    ii = {i: k for k, i in enumerate(inv["invoice_id"])}
    pairs = pd.DataFrame({"t": [ti[a] for a, _ in pairs_ids], "i": [ii[b] for _, b in pairs_ids]})
    X = pair_features(pairs, inv, ic, tr, tc, memory=memory, exclude=exclude)
    X.index = pd.MultiIndex.from_tuples(pairs_ids)
    return X


# ----------------------------------------------------------------------------------------------------------------
# normalisation


def test_normalize_name_drops_legal_forms_case_and_diacritics():
    names = pd.Series(["Łódź Trans Sp. z o.o.", "LODZ TRANS SPOLKA Z OGRANICZONA ODPOWIEDZIALNOSCIA",
                       "Nordwind Handels GmbH & Co. KG", "Müller Bau AG", None, "AS Baltic AS"])
    assert normalize_name(names).tolist() == ["lodz trans", "lodz trans", "nordwind handels", "muller bau", "", "as baltic"]
    assert normalize_text(pd.Series(["Zapłata: FV/2025"])).tolist() == ["zaplata fv 2025"]
    assert normalize_account(pd.Series(["pl 11-2222 3333"])).tolist() == ["PL1122223333"]


def test_ref_chunks_find_numbers_in_any_format():
    ch = ref_chunks(pd.Series(["Zapłata za FV/2025/03/0142 i 12.03.2025", "RECHNUNG 2025 640 KR RATE 1", "brak", "RG 67"]))
    by_row = ch.groupby("row")["digits"].apply(set)
    assert {"2025030142", "12032025"} <= by_row[0]
    assert "2025640" in by_row[1]  # a number written with spaces is joined
    assert 2 not in by_row.index and 3 not in by_row.index  # no reference, and "67" is too short to be one
    assert ch.loc[ch["digits"] == "2025030142", "groups"].item() == "2025 3 142"  # leading zeros stripped
    whole = ref_chunks(pd.Series(["FS 012/2024"]), whole=True)
    assert whole["digits"].tolist() == ["0122024"]
    grams = digit_ngrams(pd.Series(["123456", "12"]), 4)
    assert grams.groupby("pos")["gram"].apply(list).tolist() == [["1234", "2345", "3456"], ["12"]]


# ----------------------------------------------------------------------------------------------------------------
# blocking


def test_blocking_finds_typos_and_is_capped():
    inv, ic, tr, tc = _prepared()
    c = generate_candidates(inv, ic, tr, tc, max_candidates=30)
    got = set(zip(tr["transfer_id"].to_numpy()[c["t"]], inv["invoice_id"].to_numpy()[c["i"]]))
    assert {("T1", "I1"), ("T2", "I2"), ("T3", "I3"), ("T3", "I4"), ("T4", "I6")} <= got  # T2's number has a typo
    assert ("T3", "I5") in got  # the credit note completes the amount, though the title does not name it
    capped = generate_candidates(inv, ic, tr, tc, max_candidates=2)
    assert capped.groupby("t").size().max() <= 2


def test_blocking_recall_on_generator_data_without_all_pairs(small):
    d, test_month = small
    (inv, tr, ln), (inv_all, tr_test, ln_test) = split(d, test_month)
    m = Matcher(**FAST).fit(inv, tr, ln)
    res = m.match(inv_all, tr_test)
    assert blocking_recall(res.candidates, ln_test) >= 0.95
    per = res.candidates.groupby("transfer_id").size()
    assert per.max() <= m.max_candidates_weak  # transfers without a number or an exact amount get more
    assert (per <= m.max_candidates).mean() > 0.8
    assert len(res.candidates) < 0.1 * len(tr_test) * len(inv_all)  # far from all pairs
    assert m.training_summary_["blocking_recall_train"] >= 0.95


# ----------------------------------------------------------------------------------------------------------------
# features, family by family


def test_reference_features():
    X = _features([("T1", "I1"), ("T1", "I2"), ("T2", "I2"), ("T3", "I3"), ("T2", "I6")])
    assert X.loc[("T1", "I1"), "ref_exact"] == 1 and X.loc[("T1", "I2"), "ref_exact"] == 0
    assert X.loc[("T1", "I1"), "ref_lev"] > X.loc[("T1", "I2"), "ref_lev"]
    assert X.loc[("T2", "I2"), "ref_exact"] == 0 and X.loc[("T2", "I2"), "ref_lev"] >= 0.8  # transposed digits
    assert X.loc[("T3", "I3"), "ref_digits_exact"] == 1  # other format: digits only
    assert X.loc[("T1", "I1"), "ref_suffix"] >= 4
    assert np.isnan(X.loc[("T2", "I6"), "ref_exact"]) or X.loc[("T2", "I6"), "ref_lev"] < 0.6


def test_name_features():
    X = _features([("T1", "I1"), ("T1", "I3"), ("T4", "I6")])
    assert X.loc[("T1", "I1"), "name_tset"] == pytest.approx(1.0)  # case, diacritics, legal form differ
    assert X.loc[("T1", "I3"), "name_tset"] < 0.5
    assert X.loc[("T4", "I6"), "name_tset"] == pytest.approx(1.0)


def test_amount_and_date_features():
    X = _features([("T1", "I1"), ("T3", "I3"), ("T3", "I4"), ("T3", "I5"), ("T4", "I6"), ("T5", "I5")])
    assert X.loc[("T1", "I1"), "amt_eq"] == 1 and X.loc[("T1", "I1"), "amt_fee"] == 0
    assert X.loc[("T4", "I6"), "amt_partial"] == 1
    assert X.loc[("T5", "I5"), "amt_sign_agree"] == 0
    # 2000 + 800 - 300 = 2500; the transfer is 2480 (fee 0.8%): the credit note completes the named invoices
    assert X.loc[("T3", "I5"), "completes_named"] == 1
    assert X.loc[("T3", "I3"), "named_sum_fits"] == 0
    assert X.loc[("T3", "I3"), "subset_fee"] == 1 and X.loc[("T3", "I5"), "subset_fee"] == 1
    assert X.loc[("T3", "I3"), "subset_exact"] == 0
    assert X.loc[("T1", "I1"), "days_since_issue"] == 18
    assert X.loc[("T1", "I1"), "days_to_due"] == 12


def test_memory_features_are_leave_one_out():
    inv, ic, tr, tc = _prepared()
    links = pd.DataFrame({"t": [0, 1], "i": [0, 1], "a": [1230.0, 500.0]})  # T1->I1, T2->I2 (same account)
    mem = Memory.learn(inv, tr, links)
    X = _features([("T1", "I1"), ("T2", "I1"), ("T4", "I6")], memory=mem)
    assert X.loc[("T1", "I1"), "mem_acc_n"] == 2  # the account paid Łódź Trans twice
    # payments count only when booked before the transfer: T1's own payment of I1 does not, for T2 it does
    assert X.loc[("T1", "I1"), "inv_paid_frac"] == pytest.approx(0.0)
    assert X.loc[("T2", "I1"), "inv_paid_frac"] == pytest.approx(1.0) and X.loc[("T2", "I1"), "inv_paid_n"] == 1
    Xl = _features([("T1", "I1")], memory=mem, exclude=Memory.exclusion(inv, tr, links))
    assert Xl.loc[("T1", "I1"), "mem_acc_n"] == 1  # its own link left out
    assert list(X.columns) == FEATURE_NAMES
    back = Memory.from_dict(mem.to_dict())
    pd.testing.assert_frame_equal(_features([("T1", "I1")], memory=back), _features([("T1", "I1")], memory=mem))


def test_features_work_without_optional_columns():
    inv = INVOICES.drop(columns=["invoice_number", "counterparty_name"]).assign(
        description=INVOICES["counterparty_name"] + " - services - " + INVOICES["invoice_number"])
    tr = TRANSFERS.drop(columns=["counterparty_name", "counterparty_account"])
    i, ic = prepare_invoices(inv)
    t, tc = prepare_transfers(tr)
    c = generate_candidates(i, ic, t, tc)
    X = pair_features(c, i, ic, t, tc)
    got = dict(zip(zip(c["t"], c["i"]), X["ref_exact"]))
    assert got[(0, 0)] == 1  # the number is found in the description
    # no counterparty columns: the contractor is the description's lead, the payer the title's words (no month)
    assert i["name_key"].tolist()[:3] == ["lodz trans", "lodz trans", "nordwind handels"]
    assert t["payer"].tolist()[4] == "odsetki za"


# ----------------------------------------------------------------------------------------------------------------
# assignment


def _assign(rows, t_amount, i_amount, p_none=None):
    c = pd.DataFrame(rows, columns=["t", "i", "probability"])
    links, dec = assign(c, np.array(t_amount, float), np.array(i_amount, float), len(t_amount),
                        p_none=None if p_none is None else np.array(p_none, float))
    return {tt: sorted(g["i"]) for tt, g in links.groupby("t")}, links, dec


def test_assignment_single_multi_partial_none():
    i_amount = [100.0, 60.0, 40.0, 1000.0, 77.0, -10.0, 60.0]
    rows = [
        (0, 0, 0.97), (0, 1, 0.05),                 # single
        (1, 1, 0.80), (1, 2, 0.75), (1, 0, 0.10),   # 60 + 40 = 100, paid 98.50 (1.5% fee)
        (2, 3, 0.90),                               # partial: 400 of 1000
        (3, 4, 0.03), (3, 0, 0.02),                 # nothing probable
        (4, 6, 0.60), (4, 5, 0.55),                 # 60 - 10 (credit note) = 50
    ]
    sets, links, dec = _assign(rows, [100.0, 98.5, 400.0, 55.0, 50.0], i_amount)
    assert sets[0] == [0] and sets[1] == [1, 2] and sets[2] == [3] and 3 not in sets and sets[4] == [5, 6]
    alloc = links.set_index(["t", "i"])["allocated_amount"]
    assert alloc[(1, 1)] + alloc[(1, 2)] == pytest.approx(98.5) and alloc[(1, 1)] == pytest.approx(59.1)
    assert alloc[(2, 3)] == pytest.approx(400.0)
    d = dec.set_index("t")
    assert d.loc[3, "n_invoices"] == 0 and d.loc[3, "confidence"] == pytest.approx(0.97 * 0.98)
    assert d.loc[0, "confidence"] == pytest.approx(0.97 * 0.95)
    assert (dec["confidence"].between(0, 1)).all()


def test_assignment_surely_paying_is_not_read_as_nothing():
    sets, _, dec = _assign([(0, 0, 0.1), (0, 1, 0.1)], [50.0], [100.0, 120.0], p_none=[0.02])
    assert dec.loc[0, "confidence"] < 0.2  # unsure which invoice -> low confidence, whatever is chosen


def test_assignment_conflicts_are_settled_greedily_unless_paid_in_parts():
    # two transfers both claim invoice 0 in full: the more confident keeps it, the other loses it and its confidence
    sets, _, dec = _assign([(0, 0, 0.99), (1, 0, 0.90), (1, 1, 0.2)], [100.0, 100.0], [100.0, 80.0])
    assert sets[0] == [0] and 1 not in sets
    assert dec.loc[1, "confidence"] < 0.2
    # two partial payments of one invoice fit in its amount: both keep it
    sets, _, _ = _assign([(0, 0, 0.95), (1, 0, 0.9)], [400.0, 600.0], [1000.0])
    assert sets == {0: [0], 1: [0]}


# ----------------------------------------------------------------------------------------------------------------
# Matcher and RulesMatcher


def test_rules_matcher_exact_number_and_amount():
    res = RulesMatcher().fit().match(INVOICES, TRANSFERS)
    assert isinstance(res, MatchResult)
    assert set(zip(res.links["transfer_id"], res.links["invoice_id"])) == {("T1", "I1")}
    d = res.decisions.set_index("transfer_id")
    assert d.loc["T1", "decision"] == "auto" and d.loc["T2", "decision"] == "review" and len(d) == len(TRANSFERS)
    two = _tr([("T9", "FV/2025/03/0142 + FV/2025/03/0143", "x", "", 1730.0, "2025-03-28")])
    assert len(RulesMatcher().match(INVOICES, two).links) == 2  # several numbers: their sum


def test_matcher_beats_rules_and_result_shape(small, fitted):
    d, test_month = small
    _, (inv, tr, ln) = split(d, test_month)
    res = fitted.match(inv, tr)
    assert list(res.links.columns) == ["transfer_id", "invoice_id", "allocated_amount", "confidence"]
    assert list(res.decisions.columns) == ["transfer_id", "n_invoices", "confidence", "decision"]
    assert list(res.candidates.columns) == ["transfer_id", "invoice_id", "probability", "rank"]
    assert res.decisions["transfer_id"].tolist() == tr["transfer_id"].tolist()
    assert set(res.decisions["decision"]) <= {"auto", "review"}
    assert (res.decisions.set_index("transfer_id").loc[res.links["transfer_id"], "n_invoices"] > 0).all()
    f1_model = pair_f1(res.links, ln)
    f1_rules = pair_f1(RulesMatcher().predict(inv, tr), ln)
    assert f1_model > f1_rules + 0.1, (f1_model, f1_rules)
    s = fitted.training_summary_
    assert {"n_transfers", "n_pairs", "fit_seconds", "blocking_recall_train"} <= set(s)
    assert 0 <= fitted.auto_threshold_ <= 1 and fitted.feature_names_ == FEATURE_NAMES


def test_save_load_round_trip_gives_identical_predictions(small, fitted, tmp_path):
    d, test_month = small
    _, (inv, tr, _) = split(d, test_month)
    fitted.save(tmp_path / "m")
    assert not list((tmp_path / "m").glob("*.pkl"))
    loaded = Matcher.load(tmp_path / "m")
    a, b = fitted.match(inv, tr), loaded.match(inv, tr)
    pd.testing.assert_frame_equal(a.links, b.links)
    pd.testing.assert_frame_equal(a.decisions, b.decisions)
    pd.testing.assert_frame_equal(a.candidates, b.candidates)
    assert loaded.auto_threshold_ == fitted.auto_threshold_ and loaded.get_params() == fitted.get_params()
    # serving helper scores the same pairs the same way
    pairs = a.candidates[["transfer_id", "invoice_id"]]
    pp = loaded.predict_proba_pairs(inv, pairs, transfers=tr)
    np.testing.assert_allclose(pp["probability"].to_numpy(), a.candidates["probability"].to_numpy(), rtol=1e-6)


@pytest.mark.parametrize("how", ["generator", "dropped"])
def test_description_only_data_still_matches(how):
    if how == "generator":
        d = generate(SyntheticConfig(**SMALL, description_only=True))
    else:
        d = generate(SyntheticConfig(**SMALL))
        d["invoices"] = d["invoices"].drop(columns=["invoice_number", "counterparty_name"]).assign(
            description=lambda x: d["invoices"]["counterparty_name"] + " " + d["invoices"]["invoice_number"])
        d["transfers"] = d["transfers"].drop(columns=["counterparty_name", "counterparty_account"])
    test_month = sorted(d["transfers"]["month"].unique())[-1]
    (inv, tr, ln), (inv_all, tr_test, ln_test) = split(d, test_month)
    assert "counterparty_name" not in tr.columns and "invoice_number" not in inv.columns
    m = Matcher(**FAST).fit(inv, tr, ln)
    res = m.match(inv_all, tr_test)
    assert len(res.decisions) == len(tr_test)
    assert pair_f1(res.links, ln_test) > max(0.6, pair_f1(RulesMatcher().predict(inv_all, tr_test), ln_test))


def test_match_when_blocking_finds_nothing(fitted):
    bare = pd.DataFrame([{"transfer_id": "T-x", "booked_at": "2019-01-01", "amount": 1.23, "currency": "EUR",
                          "title": "refund"}])
    only_desc = INVOICES.drop(columns=["invoice_number", "counterparty_name"])
    for inv, tr in [(only_desc, bare), (INVOICES, bare.drop(columns="title")), (INVOICES.iloc[:0], bare),
                    (INVOICES, TRANSFERS.iloc[:0])]:
        res = fitted.match(inv, tr)
        assert len(res.decisions) == len(tr) and res.links.empty
        # "no candidates" is "pays nothing" only as surely as validation found it to be
        assert np.allclose(res.decisions["confidence"], fitted.empty_confidence_)
        assert (res.decisions["decision"] == np.where(res.decisions["confidence"] >= fitted.auto_threshold_, "auto", "review")).all()


def test_inputs_are_checked_at_the_boundary(fitted):
    with pytest.raises(ValueError, match="amount"):
        fitted.match(INVOICES, TRANSFERS.drop(columns=["amount"]))
    with pytest.raises(RuntimeError, match="not fitted"):
        Matcher().match(INVOICES, TRANSFERS)
    with pytest.raises(ValueError, match="duplicate"):
        fitted.match(pd.concat([INVOICES, INVOICES]), TRANSFERS)


def test_library_does_not_import_zenml():
    code = "import sys, ledgerlink.matching; print('zenml' in sys.modules)"
    src = str(Path(__file__).resolve().parents[1] / "src")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([src, os.environ.get("PYTHONPATH", "")])}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env)
    assert out.stdout.strip() == "False"
