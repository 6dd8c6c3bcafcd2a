"""The payment shapes of issue 15, each on hand-made frames (not generated): references in the description,
instalments with the paid-so-far memory, overpayments, large remittances (named sets past the top k, one invoice
paid in part, numbers left out), duplicate payments, credit notes netted, currencies, amounts written in titles,
and no link of 0.00."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ledgerlink.matching import candidates as C
from ledgerlink.matching.candidates import generate_candidates
from ledgerlink.matching.features import pair_features
from ledgerlink.matching.memory import Memory
from ledgerlink.matching.normalize import Prepared, _title_amounts1
from ledgerlink.matching.sets import (
    INCLUDE_AT,
    REMNANT_MIN,
    allocate_all,
    choose_sets,
    enumerate_sets,
    first_choices,
    set_gain,
    set_labels,
    set_preference,
)
from ledgerlink.matching.subsets import TOP_K


def invoices(rows, currency="EUR"):
    """rows: (invoice_id, invoice_number, counterparty_name, amount, issued_at, description)."""
    df = pd.DataFrame(
        rows, columns=["invoice_id", "invoice_number", "counterparty_name", "amount", "issued_at", "description"]
    )
    df["issued_at"] = pd.to_datetime(df["issued_at"])
    df["due_at"] = df["issued_at"] + pd.Timedelta(days=30)
    df["currency"] = currency
    df["month"] = df["issued_at"].dt.strftime("%Y-%m")
    return df


def transfers(rows, currency="EUR"):
    """rows: (transfer_id, title, counterparty_name, amount, booked_at)."""
    df = pd.DataFrame(rows, columns=["transfer_id", "title", "counterparty_name", "amount", "booked_at"])
    df["counterparty_account"] = "PL11 2222 3333 4444"
    df["booked_at"] = pd.to_datetime(df["booked_at"])
    df["currency"] = currency
    df["month"] = df["booked_at"].dt.strftime("%Y-%m")
    return df


def pairs_of(P: Prepared, c: pd.DataFrame) -> set[tuple[str, str]]:
    return set(zip(P.tr["transfer_id"].to_numpy()[c["t"]], P.inv["invoice_id"].to_numpy()[c["i"]]))


def features_of(P: Prepared, ids: list[tuple[str, str]], memory=None) -> pd.DataFrame:
    ti = {t: k for k, t in enumerate(P.tr["transfer_id"])}
    ii = {i: k for k, i in enumerate(P.inv["invoice_id"])}
    pairs = pd.DataFrame({"t": [ti[a] for a, _ in ids], "i": [ii[b] for _, b in ids]})
    X = pair_features(pairs, P, memory=memory)
    X.index = pd.MultiIndex.from_tuples(ids)
    return X


# ----------------------------------------------------------------------------------------------------------------
# references in the description


def test_a_reference_in_the_description_counts_like_an_invoice_number():
    inv = invoices(
        [
            ("I1", "FV/2025/03/0142", "Kowalski Logistics", 3000.0, "2025-03-02", "Assignment ASG-2025-004411 - audit"),
            ("I2", "FV/2025/03/0143", "Kowalski Logistics", 3000.0, "2025-03-02", "Assignment ASG-2025-004412 - audit"),
            ("I3", "FV/2025/03/0150", "Kowalski Logistics", 800.0, "2025-03-03", "consulting 03/2025, net 650.41"),
            ("I4", "FV/2025/03/0151", "Kowalski Logistics", 900.0, "2025-03-03", "PO 4500123456; rent 2025-03-01"),
        ]
    )
    tr = transfers(
        [
            ("T1", "asg 2025 004411 rata 2/3", "KOWALSKI LOGISTIC", 1000.0, "2025-03-20"),
            ("T2", "zam. PO4500123456", "Kowalski Logistics", 900.0, "2025-03-21"),
        ]
    )
    P = Prepared.of(inv, tr)
    chunks = P.inv_chunks.assign(invoice=P.inv["invoice_id"].to_numpy()[P.inv_chunks["i"]])
    per_invoice = chunks.groupby("invoice")["alnum"].apply(set)
    assert {"fv2025030142", "asg2025004411"} <= per_invoice["I1"]  # the number and the description's reference
    assert per_invoice["I3"] == {"fv2025030150"}  # a period and an amount in free text are no references
    assert per_invoice["I4"] == {"fv2025030151", "4500123456"}  # nor is a date
    c = generate_candidates(P)
    found = pairs_of(P, c)
    assert ("T1", "I1") in found and ("T2", "I4") in found
    X = features_of(P, [("T1", "I1"), ("T1", "I2"), ("T2", "I4"), ("T2", "I3")])
    assert X.loc[("T1", "I1"), "ref_exact"] == 1.0 and X.loc[("T1", "I2"), "ref_exact"] == 0.0
    assert X.loc[("T1", "I1"), "ref_lev"] > X.loc[("T1", "I2"), "ref_lev"]  # the sibling assignment is one digit off
    assert X.loc[("T2", "I4"), "ref_digits_exact"] == 1.0 and X.loc[("T2", "I3"), "ref_exact"] == 0.0


def test_description_only_invoices_keep_their_numbers_and_references():
    inv = invoices(
        [("I1", None, None, 120.0, "2025-03-02", "Nordwind Handels GmbH - audit March - INV-2025-00142 - KTR/2024/118")]
    )
    P = Prepared.of(inv.drop(columns=["invoice_number", "counterparty_name"]), transfers([]))
    assert set(P.inv_chunks["alnum"]) == {"inv202500142", "ktr2024118"}


# ----------------------------------------------------------------------------------------------------------------
# instalments


def test_instalments_share_one_invoice_and_memory_knows_what_is_paid_so_far():
    inv = invoices(
        [
            ("I1", "RE-2025-0456", "Acme Widgets Ltd", 3000.0, "2025-03-01", "Document DOK 2025 004411"),
            ("I2", "RE-2025-0457", "Acme Widgets Ltd", 1000.0, "2025-03-01", "Document DOK 2025 004412"),
        ]
    )
    tr = transfers(
        [
            ("T1", "DOK 2025 004411 rata 1/3", "ACME WIDGETS", 1000.0, "2025-03-05"),
            ("T2", "DOK 2025 004411 rata 2/3", "ACME WIDGETS", 1000.0, "2025-03-25"),
            ("T3", "rata 3/3", "ACME WIDGTS", 990.0, "2025-04-20"),  # the last part, 10 short, no reference
        ]
    )
    P = Prepared.of(inv, tr)
    memory = Memory.learn(P.inv, P.tr, pd.DataFrame({"t": [0, 1], "i": [0, 0], "a": [1000.0, 1000.0]}))
    X = features_of(P, [("T2", "I1"), ("T3", "I1"), ("T3", "I2")], memory=memory)
    assert X.loc[("T2", "I1"), "inv_paid_frac"] == pytest.approx(1 / 3)  # T1's part, booked before T2
    assert X.loc[("T3", "I1"), "inv_paid_frac"] == pytest.approx(2 / 3) and X.loc[("T3", "I1"), "inv_paid_n"] == 2
    assert X.loc[("T3", "I1"), "amt_eq_remaining"] == 1.0  # 990 is what is left of 3000, less a small deduction
    assert X.loc[("T3", "I2"), "amt_eq_remaining"] == 0.0 and X.loc[("T3", "I2"), "amt_fee"] == 1.0
    # the invoice stays a candidate while it is not settled
    found = pairs_of(P, generate_candidates(P, memory=memory))
    assert ("T3", "I1") in found
    # three parts of one invoice fit in its amount: each transfer keeps it
    t = np.array([0, 1, 2])
    table = enumerate_sets(t, np.full(3, 0.9), np.full(3, 3000.0), np.array([1000.0, 1000.0, 990.0]), np.zeros(3))
    members = [tuple(r) for r in table.member_lists()]
    q = np.array([0.9 if len(m) == 1 else 0.05 for m in members])
    links, dec = choose_sets(
        table, q, t, np.zeros(3, np.int64), np.full(3, 0.9), np.array([1000, 1000, 990.0]), np.array([3000.0]), 3
    )
    assert links["i"].tolist() == [0, 0, 0] and links["allocated_amount"].tolist() == [1000.0, 1000.0, 990.0]


# ----------------------------------------------------------------------------------------------------------------
# multi-invoice payments without a number, among many open invoices of one contractor


def test_an_exact_set_among_a_busy_contractors_invoices_is_enumerated():
    """A customer with 60 open invoices pays four of them, no number in the title; the four rank low by pair
    probability (no top-k subset holds them) and the contractor has far more than MAX_GROUP candidates (no
    exhaustive search). The paired search still puts the exact set before the set model, unless the amounts are so
    small that many sets of its size would sum to it by chance; with 12 candidates the exhaustive one does, and
    another contractor's invoices never join the set."""
    rng = np.random.default_rng(0)
    n = 60
    ia = np.round(rng.uniform(100, 5000, n), 2)
    paid = [7, 23, 41, 58]
    ta = np.array([ia[paid].sum()])
    t, group = np.zeros(n + 3, np.int64), np.r_[np.zeros(n, np.int64), np.ones(3, np.int64)]
    p = np.r_[np.linspace(0.6, 0.05, n), [0.7, 0.7, 0.7]]
    ia = np.r_[ia, ta[0] - ia[paid[:3]].sum(), 10.0, 20.0]  # another contractor's invoice completes three of them
    table = enumerate_sets(t, p, ia, ta, group)
    sets = [sorted(m.tolist()) for m in table.member_lists()]
    assert paid in sets and sorted([7, 23, 41, n]) not in sets
    # small amounts: C(60, 4) four-sets over 6,000 cents, so many sum to it by chance that one is no evidence
    cheap = np.r_[np.round(rng.uniform(1, 30, n), 2), 0.0, 0.0, 0.0]
    table = enumerate_sets(t, p, cheap, np.array([cheap[paid].sum()]), group)
    assert paid not in [sorted(m.tolist()) for m in table.member_lists()]
    # a contractor with few candidates: the exhaustive search (unchanged) finds the same set
    small = np.r_[paid, 0, 1, 2, 3, 4, 5, 6, 8, 9]
    table = enumerate_sets(t[small], p[small], ia[small], ta, group[small])
    assert [0, 1, 2, 3] in [sorted(m.tolist()) for m in table.member_lists()]


# ----------------------------------------------------------------------------------------------------------------
# overpayments


def test_an_overpayment_allocates_the_invoice_amount():
    # one transfer of 1,200 pays an invoice of 1,000; another of 1,500 pays 600 + 700; a third pays 980 of 1,000
    t = np.array([0, 1, 1, 2])
    ta = np.array([1200.0, 1500.0, 980.0])
    ia = np.array([1000.0, 600.0, 700.0, 1000.0])
    np.testing.assert_allclose(allocate_all(t, ta, ia), [1000.0, 600.0, 700.0, 980.0])
    np.testing.assert_allclose(allocate_all(np.array([0, 0]), np.array([98.5]), np.array([60.0, 40.0])), [59.1, 39.4])
    # the set choice keeps the overpaid invoice, allocated its amount (the surplus stays on account)
    table = enumerate_sets(np.array([0]), np.array([0.9]), np.array([1000.0]), np.array([1200.0]), np.zeros(1))
    q = np.array([0.1 if s == 0 else 0.8 for s in table.sets["size"]])
    links, dec = choose_sets(
        table, q, np.array([0]), np.array([0]), np.array([0.9]), np.array([1200.0]), np.array([1000.0]), 1
    )
    assert links[["i", "allocated_amount"]].values.tolist() == [[0, 1000.0]] and dec.loc[0, "n_invoices"] == 1


# ----------------------------------------------------------------------------------------------------------------
# large remittances


def _remittance(n: int, listed: int, partial: float = 0.0, extra: int = 0):
    """One transfer paying ``n`` invoices of one customer (rows 0..n-1), of which the first ``listed`` are named in the
    title; the last one paid only ``partial`` short; ``extra`` more open invoices of that customer (not paid)."""
    rng = np.random.default_rng(1)
    ia = np.round(rng.uniform(200, 900, n + extra), 2)
    t = np.zeros(n + extra, np.int64)
    named = np.arange(n + extra) < listed
    p = np.where(np.arange(n + extra) < n, np.where(named, 0.97, 0.3), 0.2)
    ta = np.array([round(ia[:n].sum() - partial, 2)])
    return t, p, ia, ta, named


def test_a_remittance_naming_more_invoices_than_the_top_k_is_one_set():
    n = 3 * TOP_K
    t, p, ia, ta, named = _remittance(n, n, partial=150.0)  # one invoice paid in part: the sum does not fit
    table = enumerate_sets(t, p, ia, ta, np.zeros(n, np.int64), named=named, completer=np.zeros(n, bool))
    members = {tuple(sorted(r)) for r in table.member_lists()}
    assert tuple(range(n)) in members
    labels = set_labels(table, np.arange(n), pd.DataFrame({"t": 0, "i": np.arange(n)}))
    size = table.sets["size"].to_numpy()
    assert labels[size == n, 0].tolist() == [1.0]  # it is exactly the true set
    # a stand-in set model: the named set is right with probability 0.3, each of its members with 0.95
    q = np.column_stack([np.where(size == n, 0.3, 0.01), np.where(size == n, 0.95, 0.5)])
    links, dec = choose_sets(table, q, t, np.arange(n), p, ta, ia, 1)
    assert sorted(links["i"]) == list(range(n)) and dec.loc[0, "confidence"] < 0.5  # chosen, but for review
    assert links["allocated_amount"].sum() == pytest.approx(ta[0]) and (links["allocated_amount"].abs() >= 0.01).all()


def test_the_invoices_a_remittance_leaves_out_make_up_the_rest_of_the_amount():
    n, listed, extra = 14, 11, 9  # three left out, hidden among nine more open invoices of the customer
    t, p, ia, ta, named = _remittance(n, listed, extra=extra)
    m = n + extra
    table = enumerate_sets(t, p, ia, ta, np.zeros(m, np.int64), named=named, completer=np.zeros(m, bool))
    members = {tuple(sorted(r)) for r in table.member_lists()}
    assert tuple(range(n)) in members and tuple(range(listed)) in members


def test_a_remittance_that_loses_invoices_in_a_conflict_keeps_the_rest():
    # T0 (booked first, no number) claims invoices 0 and 1 by an exact sum; T1, a remittance naming invoices 0..9,
    # loses them to it: it still pays the other eight (each its amount, the rest stays on account), for review
    i_amount = 100.0 + np.arange(10)
    t = np.r_[np.zeros(2, np.int64), np.ones(10, np.int64)]
    i = np.r_[np.arange(2), np.arange(10)]
    ta = np.array([i_amount[:2].sum(), i_amount.sum()])
    p = np.r_[0.9, 0.9, np.full(10, 0.97)]
    named = t == 1
    table = enumerate_sets(t, p, i_amount[i], ta, np.zeros(12, np.int64), named=named, completer=np.zeros(12, bool))
    size, st = table.sets["size"].to_numpy(), table.sets["t"].to_numpy()
    sure_set = ((st == 0) & (size == 2)) | ((st == 1) & (size == 10))
    q = np.column_stack([np.where(sure_set, np.where(st == 0, 0.9, 0.3), 0.01), np.where(sure_set, 0.95, 0.3)])
    booked = np.array(["2025-03-10", "2025-03-17"], dtype="datetime64[D]")
    links, dec = choose_sets(table, q, t, i, p, ta, i_amount, 2, booked=booked)
    assert links.loc[links["t"] == 0, "i"].tolist() == [0, 1]
    kept = links[links["t"] == 1]
    assert kept["i"].tolist() == list(range(2, 10)) and dec.loc[1, "n_invoices"] == 8
    np.testing.assert_allclose(kept["allocated_amount"], i_amount[2:])
    assert dec.loc[1, "confidence"] == pytest.approx(0.3 * (1 - 0.9))  # it lost two invoices to a likely claim
    # a pair that loses one invoice keeps no remnant of one (REMNANT_MIN): its best set that still fits, here none
    assert REMNANT_MIN == 2
    t, i, ia = np.array([0, 1, 1]), np.array([0, 0, 1]), np.array([100.0, 100.0, 150.0])
    ta, p = np.array([100.0, 250.0]), np.array([0.9, 0.9, 0.9])
    table = enumerate_sets(t, p, ia, ta, np.zeros(3, np.int64))
    size, st = table.sets["size"].to_numpy(), table.sets["t"].to_numpy()
    sure_set = ((st == 0) & (size == 1)) | ((st == 1) & (size == 2))
    q = np.column_stack([np.where(sure_set, 0.9, 0.2), np.where(sure_set, 0.95, 0.4)])
    links, dec = choose_sets(table, q, t, i, p, ta, np.array([100.0, 150.0]), 2, booked=booked)
    assert links["t"].tolist() == [0] and dec.loc[1, "n_invoices"] == 0


def test_blocking_keeps_every_invoice_a_long_title_names():
    n = 30
    rows = [
        (f"I{k}", f"FV/2025/03/{100 + k:04d}", "Baltic Textil Sp. z o.o.", 100.0 + k, "2025-03-02", None)
        for k in range(n)
    ]
    title = "remit " + "; ".join(f"FV/2025/03/{100 + k:04d} {100.0 + k:.2f}" for k in range(n))
    tr = transfers([("T1", title, "BALTIC TEXTIL", sum(100.0 + k for k in range(n)), "2025-03-25")])
    P = Prepared.of(invoices(rows), tr)
    assert P.tr.loc[0, "title_amounts"] == tuple(10000 + 100 * k for k in range(n))  # amounts are read ...
    assert set(P.tr_chunks["alnum"]) == {f"fv202503{100 + k:04d}" for k in range(n)}
    c = generate_candidates(P, max_candidates=10)
    assert len(pairs_of(P, c)) == n > 10 and n >= C.MANY_NAMED  # ... and every named invoice kept, past the cap
    X = features_of(P, [("T1", f"I{k}") for k in range(n)])
    assert (X["amt_in_title"] == 1.0).all() and (X["ref_exact"] == 1.0).all()


@pytest.mark.parametrize(
    "title,amounts",
    [
        ("EUR 1200.00", (120000,)),
        ("kwota 1 200,00 zł", (120000,)),
        ("Rechnung 1.200,00 und 3,50", (120000, 350)),
        ("remit 2025/0142 1200.00; 2025/0150 830.50", (120000, 83050)),
        ("14.03.2025 FV.2025.01.0588", ()),  # a date and a number with dots are no amounts
        ("FV 12/2025", ()),
    ],
)
def test_amounts_written_in_a_title_are_read_and_are_no_references(title, amounts):
    rest, cents = _title_amounts1(title)
    assert cents == amounts
    assert all(f"{c // 100}" not in rest.replace(" ", "") or c < 1000 for c in cents)


# ----------------------------------------------------------------------------------------------------------------
# duplicate payments and credit notes


def test_of_two_sure_payments_of_one_invoice_the_earlier_is_the_payment():
    # T1 (the factor, no number, booked first) and T2 (quotes number and amount, booked a week later) both pay I0
    t, i = np.array([0, 1]), np.array([0, 0])
    table = enumerate_sets(t, np.array([0.9, 0.99]), np.array([500.0, 500.0]), np.array([500.0, 500.0]), np.zeros(2))
    size = table.sets["size"].to_numpy()
    st = table.sets["t"].to_numpy()
    q = np.column_stack([np.where(size == 1, np.where(st == 0, 0.85, 0.99), 0.05), np.where(size == 1, 0.9, 0.0)])
    booked = np.array(["2025-03-10", "2025-03-17"], dtype="datetime64[D]")
    links, dec = choose_sets(
        table, q, t, i, np.array([0.9, 0.99]), np.array([500.0, 500.0]), np.array([500.0]), 2, booked=booked
    )
    assert links["t"].tolist() == [0] and dec.loc[1, "n_invoices"] == 0  # the later one is the duplicate


def test_a_credit_note_netted_inside_a_payment_gets_a_negative_allocation():
    inv = invoices(
        [
            ("I1", "INV-2025-00077", "Nordwind Handels GmbH", 2000.0, "2025-03-05", None),
            ("I2", "INV-2025-00078", "Nordwind Handels GmbH", 800.0, "2025-03-06", None),
            ("I3", "KOR/2025/03/011", "Nordwind Handels GmbH", -300.0, "2025-03-07", "credit note 03/2025"),
        ]
    )
    tr = transfers([("T1", "Rechnung INV-2025-00077 INV-2025-00078", "Nordwind Handels", 2500.0, "2025-03-25")])
    P = Prepared.of(inv, tr)
    c = generate_candidates(P)
    assert pairs_of(P, c) >= {("T1", "I1"), ("T1", "I2"), ("T1", "I3")}
    X = features_of(P, [("T1", "I1"), ("T1", "I2"), ("T1", "I3")])
    assert X.loc[("T1", "I3"), "completes_named_exact"] == 1.0  # what the two named invoices leave: -300
    np.testing.assert_allclose(
        allocate_all(np.zeros(3, np.int64), np.array([2500.0]), inv["amount"].to_numpy()), [2000.0, 800.0, -300.0]
    )


# ----------------------------------------------------------------------------------------------------------------
# currencies, and no 0.00 link


def test_blocking_pairs_only_rows_of_one_currency():
    rows = [("I1", "FV/2025/03/0142", "Acme Widgets Ltd", 1230.0, "2025-03-02", None)]
    inv = pd.concat([invoices(rows), invoices([("I2", *rows[0][1:])], currency="PLN")], ignore_index=True)
    tr = pd.concat(
        [
            transfers([("T1", "FV/2025/03/0142", "ACME WIDGETS", 1230.0, "2025-03-20")]),
            transfers([("T2", "FV/2025/03/0142", "ACME WIDGETS", 1230.0, "2025-03-20")], currency="PLN"),
        ],
        ignore_index=True,
    )
    P = Prepared.of(inv, tr)
    assert pairs_of(P, generate_candidates(P)) == {("T1", "I1"), ("T2", "I2")}
    # with problem scopes as well (the service's batches): each problem, each currency, on its own
    scope_i, scope_t = C.currency_scopes(P.inv, P.tr, np.array([0, 0]), np.array([0, 0]))
    assert scope_i.tolist() == scope_t.tolist() == [0, 1]
    assert C.currency_scopes(P.inv.iloc[:1], P.tr.iloc[:1], None, None) == (None, None)  # one currency: unchanged


def test_no_link_of_zero_is_made():
    # three probable invoices share a transfer of 0.02 in proportion: the 0.01 invoice's share rounds to 0.00
    t = np.zeros(3, np.int64)
    ia = np.array([1.0, 1.0, 0.01])
    table = enumerate_sets(t, np.full(3, 0.9), ia, np.array([0.02]), np.zeros(3, np.int64))
    size = table.sets["size"].to_numpy()
    q = np.where(size == 3, 0.9, 0.01)
    links, dec = choose_sets(table, q, t, np.arange(3), np.full(3, 0.9), np.array([0.02]), ia, 1)
    assert links["allocated_amount"].tolist() == [0.01, 0.01]  # the third link would allocate 0.00: none is made
    assert dec.loc[0, "n_invoices"] == 2


def test_a_set_that_is_probably_exactly_right_is_chosen_over_its_surer_looking_subset():
    # 22 named invoices (exactly right with 0.04, precision 0.996) against those 22 + the invoice that makes up the
    # amount to the cent (exactly right with 0.93, precision estimate 0.970): exactly right means all members right
    sets = pd.DataFrame({"t": [0, 0, 0], "size": [0, 22, 23]})
    q = np.array([[0.001, 0.002], [0.04, 0.996], [0.93, 0.970]])
    assert first_choices(sets, q).tolist() == [2]
    assert set_gain(np.array([22, 23]), np.array([0.996, 0.970])).argmax() == 0  # precision alone chose the 22
    qn, sure, _ = set_preference(sets, q, 1)
    np.testing.assert_allclose(qn, q[:, 0])  # the confidences stay the probabilities of being exactly right
    np.testing.assert_allclose(sure, q[:, 1])


def test_the_set_gain_includes_a_set_only_when_most_of_it_is_right():
    assert set_gain(np.array([0, 1, 1, 20]), np.array([0.0, INCLUDE_AT - 0.1, 0.9, 0.9])).tolist() == pytest.approx(
        [0.0, -0.1, 0.4, 8.0]
    )


# ----------------------------------------------------------------------------------------------------------------
# evaluation slices of the shapes, from the data contract alone


def test_shape_slices_come_from_the_contract_columns():
    from ledgerlink.evaluation.metrics import SLICES, slice_labels, slice_metrics, transfer_outcomes

    inv = invoices(
        [("I1", "FV/1001", "A", 1000.0, "2025-03-01", "Assignment ASG-2025-004411")]
        + [(f"R{k}", f"FV/20{k:02d}", "B", 100.0, "2025-03-01", None) for k in range(10)]
        + [("C1", "KOR/1", "B", -50.0, "2025-03-01", None), ("I2", "FV/3001", "D", 500.0, "2025-03-01", None)]
    )
    tr = transfers(
        [
            ("T1", "ASG-2025-004411 rata 1/3", "A", 400.0, "2025-03-10"),  # instalment, quoting the description
            ("T2", "remit FV/2000 ... FV/2009", "B", 950.0, "2025-03-11"),  # ten invoices less a credit note
            ("T3", "FV/3001", "D", 600.0, "2025-03-12"),  # overpays 500
            ("T4", "odsetki", "Bank", 3.0, "2025-03-13"),
        ]
    )
    links = pd.DataFrame(
        [("T1", "I1", 400.0)]
        + [("T2", f"R{k}", 100.0) for k in range(10)]
        + [("T2", "C1", -50.0), ("T3", "I2", 500.0)],
        columns=["transfer_id", "invoice_id", "allocated_amount"],
    )
    lab = slice_labels(tr, inv, links).set_index("transfer_id")
    assert lab["part_payment"].tolist() == [True, False, False, False]
    assert lab["number_in_description"].tolist() == [True, False, False, False]
    assert lab["remittance"].tolist() == [False, True, False, False]
    assert lab["credit_note"].tolist() == [False, True, False, False]
    assert lab["overpayment"].tolist() == [False, False, True, False]
    assert lab["number"].tolist() == ["present", "present", "present", "none"]
    out = transfer_outcomes(links.iloc[:1], links, tr)
    slices = slice_metrics(out, lab.reset_index())
    assert set(slices) == set(SLICES) and slices["remittance"]["n_transfers"] == 1
    assert slices["part_payment"]["exact_set_accuracy"] == 1.0 and slices["remittance"]["exact_set_accuracy"] == 0.0
    # outcomes labelled before these slices existed still score the old ones
    assert set(slice_metrics(out, lab.reset_index()[["transfer_id", "size", "number"]])) == {
        "single",
        "multi",
        "pays_nothing",
        "number_present",
        "number_absent",
    }
