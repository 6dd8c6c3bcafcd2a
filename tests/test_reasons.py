"""Reasons in words (``match(..., explain=True)``): the words come from the models' own contributions and from the
values of the pair or set they explain, never from something the values do not support."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest

from ledgerlink.data.synthetic import SyntheticConfig, generate
from ledgerlink.matching import FEATURE_NAMES, Matcher, RulesMatcher
from ledgerlink.matching import reasons as R
from ledgerlink.matching.embeddings import EMBEDDING_FEATURES
from ledgerlink.matching.explain import InvoiceTexts
from ledgerlink.matching.features import heuristic_score
from ledgerlink.matching.normalize import Prepared
from ledgerlink.matching.sets import SET_FEATURE_NAMES
from ledgerlink.matching.transformer import TEXT_FEATURE

WORLD = dict(seed=3, months=3, contractors=40, transfers_per_month=150)
FAST = dict(n_estimators=40, max_depth=4, n_jobs=1)


@pytest.fixture(scope="module")
def world():
    return generate(SyntheticConfig(**WORLD))


@pytest.fixture(scope="module")
def fitted(world):
    return Matcher(**FAST).fit(world["invoices"], world["transfers"], world["links"])


def _invoices(rows):
    df = pd.DataFrame(rows, columns=["invoice_id", "invoice_number", "counterparty_name", "amount", "issued_at"])
    df["issued_at"] = pd.to_datetime(df["issued_at"])
    df["due_at"] = df["issued_at"] + pd.Timedelta(days=30)
    df["currency"], df["description"] = "EUR", None
    return df


def _transfers(rows):
    cols = ["transfer_id", "title", "counterparty_name", "counterparty_account", "amount", "booked_at"]
    df = pd.DataFrame(rows, columns=cols)
    df["booked_at"] = pd.to_datetime(df["booked_at"])
    df["currency"] = "EUR"
    return df


# contractors the model has never seen: nothing but the texts, amounts and dates speaks for a link
OPEN = _invoices(
    [
        ("A1", "FV/2025/04/0142", "Nordwind Handels GmbH", 1234.56, "2025-04-02"),
        ("A2", "FV/2025/04/0157", "Nordwind Handels GmbH", 1234.56, "2025-04-03"),  # the same amount: only the number
        ("B1", "RE-2025-0301", "Helios Print KG", 410.00, "2025-04-01"),
        ("B2", "RE-2025-0302", "Helios Print KG", 275.50, "2025-04-04"),
        ("B3", "RE-2025-0303", "Helios Print KG", 99.90, "2025-04-05"),
        ("C1", "INV-2025-00991", "Vistula Service Sp. z o.o.", 2875.13, "2025-04-06"),
        ("D1", "2025/777/KR", "Quantum Medical AG", 640.00, "2025-04-01"),
    ]
)
NEW = _transfers(
    [
        ("T1", "Zahlung FV/2025/04/0142", "Nordwind Handels GmbH", "DE11 1111", 1234.56, "2025-04-20"),
        ("T2", "RE-2025-0301 RE-2025-0302 RE-2025-0303", "Helios Print KG", "DE22 2222", 785.40, "2025-04-21"),
        ("T3", "przelew", "Vistula Service", "PL33 3333", 2875.13, "2025-04-22"),  # no number: the amount
        ("T4", "Gehalt April", "Jan Kowalski", "PL44 4444", -3120.77, "2025-04-23"),  # pays nothing
    ]
)


@pytest.fixture(scope="module")
def explained(fitted):
    return fitted.match(OPEN, NEW, explain=True)


def _link(result, transfer_id):
    return result.links[result.links["transfer_id"] == transfer_id]


def _decision(result, transfer_id):
    return result.decisions.set_index("transfer_id").loc[transfer_id]


def test_the_number_in_the_title_is_the_first_reason(explained):
    link = _link(explained, "T1")
    assert link["invoice_id"].tolist() == ["A1"]  # A2 has the same amount: the number decided
    assert link["reasons"].iloc[0][0] == "invoice number FV/2025/04/0142 in the title"


def test_an_equal_amount_is_said(explained):
    link = _link(explained, "T3")
    assert link["invoice_id"].tolist() == ["C1"]
    assert "amount equal" in link["reasons"].iloc[0]


def test_a_multi_invoice_set_says_its_sum(explained):
    links = _link(explained, "T2")
    assert sorted(links["invoice_id"]) == ["B1", "B2", "B3"]
    summed = re.compile(
        r"^3 invoices( of one contractor)? sum to the amount (exactly|\(fee [0-9.]+%\))(, the only .*)?$"
    )
    for reasons in links["reasons"]:
        assert any(summed.match(r) for r in reasons), reasons
    assert any(summed.match(r) for r in _decision(explained, "T2")["reasons"])
    # each link also says why this invoice: its own number
    numbers = {f"invoice number {n} in the title" for n in ("RE-2025-0301", "RE-2025-0302", "RE-2025-0303")}
    assert {r for reasons in links["reasons"] for r in reasons} & numbers == numbers


def test_a_transfer_that_pays_nothing_says_why(explained):
    d = _decision(explained, "T4")
    assert d["n_invoices"] == 0 and _link(explained, "T4").empty
    assert d["reasons"] == (R.NO_CANDIDATE,)


def test_a_transfer_with_candidates_that_pays_nothing_names_its_best_candidate(fitted):
    odd = _transfers([("T9", "Kaution Rueckzahlung", "Nordwind Handels GmbH", "DE11 1111", 77.77, "2025-04-24")])
    result = fitted.match(OPEN, odd, explain=True)
    assert result.links.empty and len(result.candidates)  # candidates by the payer's name, none paid
    reasons = result.decisions["reasons"].iloc[0]
    assert reasons and all(isinstance(r, str) and r for r in reasons)
    best = result.candidates.sort_values("rank")["invoice_id"].iloc[0]
    assert any(best in r for r in reasons) or "no candidate invoice (nor set of them) fits the amount" in reasons


def test_every_link_and_decision_of_a_month_has_reasons_and_explain_changes_nothing_else(fitted, world):
    month = sorted(world["transfers"]["month"].unique())[-1]
    tr = world["transfers"][world["transfers"]["month"] == month]
    plain = fitted.match(world["invoices"], tr)
    said = fitted.match(world["invoices"], tr, explain=True)
    assert "reasons" not in plain.links.columns and "reasons" not in plain.decisions.columns
    pd.testing.assert_frame_equal(said.links.drop(columns="reasons"), plain.links)
    pd.testing.assert_frame_equal(said.decisions.drop(columns="reasons"), plain.decisions)
    pd.testing.assert_frame_equal(said.candidates, plain.candidates)
    for col in (said.links["reasons"], said.decisions["reasons"]):
        assert col.map(lambda r: isinstance(r, tuple) and len(r) > 0 and all(isinstance(x, str) for x in r)).all()
    # batches of transfers (match) and problems matched together (match_many) give the same words
    fitted.set_params(batch_size=40)
    try:
        batched = fitted.match(world["invoices"], tr, explain=True)
    finally:
        fitted.set_params(batch_size=Matcher().batch_size)
    assert batched.links["reasons"].map(len).gt(0).all() and batched.decisions["reasons"].map(len).gt(0).all()
    alone = [fitted.match(OPEN, NEW.iloc[[k]], explain=True) for k in range(len(NEW))]
    many = fitted.match_many([(OPEN, NEW.iloc[[k]]) for k in range(len(NEW))], explain=True)
    for a, m in zip(alone, many):
        assert a.links["reasons"].tolist() == m.links["reasons"].tolist()
        assert a.decisions["reasons"].tolist() == m.decisions["reasons"].tolist()


def test_no_phrase_states_what_the_values_do_not_support(fitted, world):
    """Checked against the raw rows of a whole month: equal amounts, numbers in titles, days, payment counts."""
    month = sorted(world["transfers"]["month"].unique())[-1]
    tr = world["transfers"][world["transfers"]["month"] == month].set_index("transfer_id")
    inv = world["invoices"].set_index("invoice_id")
    said = fitted.match(world["invoices"], tr.reset_index(), explain=True)
    fold = lambda s: re.sub(r"[^0-9a-z]", "", str(s).lower())  # noqa: E731
    # the same number, maybe typed without the leading zeros of its digit groups ("237" for "0000237")
    unpadded = lambda s: fold(re.sub(r"(?<!\d)0+(?=\d)", "", str(s)))  # noqa: E731
    checked = {"amount equal": 0, "number": 0, "days": 0}
    for link in said.links.itertuples():
        t, i = tr.loc[link.transfer_id], inv.loc[link.invoice_id]
        for r in link.reasons:
            if r == "amount equal":
                assert abs(t["amount"] - i["amount"]) < 0.005, (link, r)
                checked["amount equal"] += 1
            if m := re.fullmatch(r"invoice number (.+) in the title", r):
                number, title = i["invoice_number"], t["title"]
                assert m.group(1) == number, (link, r)
                assert fold(number) in fold(title) or unpadded(number) in unpadded(title), (link, r)
                checked["number"] += 1
            if m := re.fullmatch(r"reference (.+) of the invoice's description in the title", r):
                quoted = m.group(1)
                assert quoted in i["description"], (link, r)
                assert fold(quoted) in fold(t["title"]) or unpadded(quoted) in unpadded(t["title"]), (link, r)
            if m := re.fullmatch(r"paid (\d+) days? after the invoice was issued", r):
                assert (t["booked_at"] - i["issued_at"]).days == int(m.group(1)), (link, r)
                checked["days"] += 1
    assert all(checked.values()), checked  # each kind of phrase was seen and checked


def test_every_feature_has_its_place_in_the_table():
    # raises for a feature in no group: every family's pair features (the transformer's in both text modes)
    R.group_matrix(R.PAIR_GROUPS, FEATURE_NAMES + [TEXT_FEATURE])
    R.group_matrix(R.PAIR_GROUPS, FEATURE_NAMES + EMBEDDING_FEATURES)
    R.group_matrix(R.SET_GROUPS, SET_FEATURE_NAMES)
    for groups in (R.PAIR_GROUPS, R.SET_GROUPS):
        names = [f for g in groups for f in g.features]
        assert len(names) == len(set(names)), "a feature in two groups"
    with pytest.raises(KeyError, match="belong to no reason group"):
        R.group_matrix(R.PAIR_GROUPS, ["a_new_feature"])


def test_the_heuristic_is_shared_out_by_its_own_terms(fitted, world):
    """The terms the heuristic's contribution is shared among add up to the heuristic itself."""
    P = Prepared.of(world["invoices"], world["transfers"].head(200))
    pairs = fitted._block(P, fitted.memory_, None)
    X = fitted._featurize(pairs, P, fitted.memory_, None)
    terms = R.heuristic_terms(X)
    assert set(terms) <= {g.name for g in R.PAIR_GROUPS}
    np.testing.assert_allclose(sum(terms.values()), heuristic_score(X), rtol=1e-6, atol=1e-6)


def test_contributions_are_xgboosts_pred_contribs(fitted, world):
    """The numpy paths a request's few rows take give xgboost's own Saabas contributions (``pred_contribs`` with
    ``approx_contribs``), for the fold pair models and each of the set model's two outputs; larger inputs are
    xgboost's call itself."""
    import xgboost as xgb

    from ledgerlink.matching import contributions as K

    P = Prepared.of(world["invoices"], world["transfers"].head(300))
    pairs = fitted._block(P, fitted.memory_, None)
    X = fitted._featurize(pairs, P, fitted.memory_, None)
    _, SX = fitted._sets(pairs, X, fitted._pair_proba(X), P)
    cases = [(fitted.pair_boosters_, X, None), ([fitted.set_booster_], SX, 0), ([fitted.set_booster_], SX, 1)]
    for boosters, frame, output in cases:
        values, cols = frame.to_numpy(np.float64), list(frame.columns)
        d = xgb.DMatrix(frame[boosters[0].feature_names].to_numpy(np.float32), feature_names=boosters[0].feature_names)
        got = [b.predict(d, pred_contribs=True, approx_contribs=True) for b in boosters]
        assert all(g.ndim == (2 if output is None else 3) for g in got)  # the set model has two outputs
        want = np.mean([(g if output is None else g[:, output])[:, :-1] for g in got], axis=0)
        order = [cols.index(n) for n in boosters[0].feature_names]
        out = output or 0
        small = np.concatenate([K.contributions(boosters, values[k : k + 50], cols, out) for k in range(0, 200, 50)])
        np.testing.assert_allclose(small[:, order], want[:200], atol=1e-5)
        assert len(values) > K.NUMPY_MAX_ROWS  # the whole frame goes to xgboost
        np.testing.assert_allclose(K.contributions(boosters, values, cols, out)[:, order], want, atol=1e-6)
        assert all(K._paths(b, out) is not None for b in boosters)


def test_phrases_need_their_values():
    e = R.Evidence(x={"amt_eq": 0.0, "amt_fee": 0.0, "amt_partial": 0.0, "amt_over": 0.0}, number="FV/1/2")
    assert R._amount(e) is None
    assert R._reference(R.Evidence(x={"ref_exact": 0.0, "ref_lev": 0.3}, number="FV/1/2")) is None
    assert R._reference(R.Evidence(x={"ref_digits_exact": 1.0})) is None  # no number to name
    assert R._history(R.Evidence(x={"mem_acc_n": 0.0, "mem_pay_n": float("nan")})) is None
    assert R._history(R.Evidence(x={"mem_acc_n": 14.0, "mem_acc_total": 20.0})) == (
        "the payer's account has paid this contractor 14 times before (70% of its payments)"
    )
    # "completes the named invoices" only when the title names some (named_sum_fits is NaN otherwise)
    assert R._completes(R.Evidence(x={"completes_named": 1.0, "named_sum_fits": float("nan")})) is None
    assert R._set_sum(R.Evidence(x={"size": 3.0, "amt_exact": 0.0, "amt_fits": 1.0, "amt_ratio": 0.992, "n_groups": 2}))
    assert R._set_sum(R.Evidence(x={"size": 3.0, "amt_fits": 1.0, "amt_ratio": 0.992, "n_groups": 2.0})) == (
        "3 invoices sum to the amount (fee 0.8%)"
    )
    assert R.ranked_groups(np.full(len(R.PAIR_GROUPS), R.MIN_CONTRIBUTION / 2)) == [[]]  # too small to be a reason


def test_a_description_only_invoice_is_named_by_the_number_in_its_description():
    texts = InvoiceTexts.of(pd.DataFrame({"description": ["Acme - services March - 2025/0451/KR, thanks", "x 12"]}))
    assert texts.number_of(0, {"20250451"}) == "2025/0451/KR"
    assert texts.number_of(0, set()) == "2025/0451/KR"  # the first number of 3+ digits
    assert texts.number_of(1, set()) == ""
    assert texts.contractor_of(0, "acme") == "Acme" and texts.contractor_of(1, "x") == "x"


def test_a_reference_of_the_description_is_named_as_one():
    """An instalment's title quotes the assignment number of the invoice's description, not its invoice number."""
    texts = InvoiceTexts.of(
        pd.DataFrame({"invoice_number": ["FV/7/2025"], "description": ["Assignment ASG-2025-004411 - cleaning"]})
    )
    assert texts.reference_of(0, {"2025004411"}) == ("ASG-2025-004411", True)
    assert texts.reference_of(0, {"72025", "2025004411"}) == ("FV/7/2025", False)  # the number itself is there
    assert texts.reference_of(0, set()) == ("FV/7/2025", False)
    e = R.Evidence(x={"ref_exact": 1.0}, number="ASG-2025-004411", number_in_description=True)
    reference = [g.name for g in R.PAIR_GROUPS].index("reference")
    assert R.phrases(R.PAIR_GROUPS, [(reference, 1.0)], e, 1)[0][0] == (
        "reference ASG-2025-004411 of the invoice's description in the title"
    )


def test_the_rules_baseline_gives_its_rule():
    result = RulesMatcher().match(OPEN, NEW, explain=True)
    t1 = _link(result, "T1")
    assert t1["reasons"].tolist() == [("invoice number FV/2025/04/0142 in the title", "amount equal")]
    assert _link(result, "T2")["reasons"].map(lambda r: r[1]).tolist() == [R.rule_sum(3)] * 3
    assert _decision(result, "T1")["reasons"] == (R.RULE_MATCHED,)
    assert _decision(result, "T2")["reasons"] == (R.RULE_MATCHED_SUM,)
    assert _decision(result, "T3")["reasons"] == (R.RULE_NO_NUMBER,)
    wrong = NEW.iloc[[0]].assign(amount=1000.00)
    assert RulesMatcher().match(OPEN, wrong, explain=True).decisions["reasons"].iloc[0] == (
        R.RULE_AMOUNT_DIFFERS.format(ids="A1"),
    )
    assert "reasons" not in RulesMatcher().match(OPEN, NEW).links.columns


def test_without_a_set_model_the_pair_model_speaks(world):
    """A Matcher fitted without cross-fitting has no set model: decisions take their links' own first reasons, or
    the best candidate of a transfer that pays nothing."""
    single = Matcher(validation_fraction=0, **FAST).fit(world["invoices"], world["transfers"], world["links"])
    assert single.set_booster_ is None
    result = single.match(OPEN, NEW, explain=True)
    assert _link(result, "T1")["reasons"].iloc[0][0] == "invoice number FV/2025/04/0142 in the title"
    assert result.decisions["reasons"].map(len).gt(0).all()
    t1 = _decision(result, "T1")["reasons"]
    assert t1 == (_link(result, "T1")["reasons"].iloc[0][0],)
