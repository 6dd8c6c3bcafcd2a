"""The synthetic generator: contract, determinism, realised rates and the phenomena it claims."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ledgerlink.data.contract import check_month
from ledgerlink.data.synthetic import SyntheticConfig, generate, month_labels, parse_drift_kind

SMALL = SyntheticConfig(months=6, transfers_per_month=500, contractors=80)
CHANGED = dict(
    rate_exact_number=0.25,
    rate_damaged_number=0.30,
    rate_no_number=0.35,
    rate_multi_invoice=0.20,
    rate_partial=0.10,
    rate_fee=0.15,
    rate_no_invoice=0.15,
    rate_other_payer=0.30,
    rate_name_variant=0.60,
    rate_credit_note=0.08,
    rate_outgoing=0.12,
    rate_same_amount_siblings=0.40,
    rate_instalment=0.05,
    rate_remittance=0.01,
    rate_description_ref=0.05,
    rate_overpayment=0.04,
    rate_duplicate=0.03,
    rate_foreign_currency=0.5,
    rate_batch_issue=0.6,
)
TABLES = ("invoices", "transfers", "links")


@pytest.fixture(scope="module")
def small():
    return generate(SMALL)


@pytest.fixture(scope="module")
def changed():
    return generate(SMALL, **CHANGED)


@pytest.fixture(scope="module")
def payer():
    return generate(SMALL, drift_month=4, drift_kind="payer_change")


def months_of(d, cfg):
    """Yield (month, conformed tables) checked in order, earlier invoices known."""
    known: set[str] = set()
    for m in month_labels(cfg):
        out = check_month({t: d[t][d[t]["month"] == m] for t in TABLES}, m, known_invoice_ids=known)
        known |= set(out["invoices"]["invoice_id"])
        yield m, out


def linked(d):
    """Links joined with their transfer, invoice and truth."""
    return (
        d["links"]
        .merge(d["transfers"], on=["transfer_id", "month"])
        .merge(d["invoices"].rename(columns={"month": "month_i"}), on="invoice_id", suffixes=("_t", "_i"))
        .merge(d["truth"], on=["transfer_id", "month"])
    )


# ---------------------------------------------------------------------------------------------- basics
def test_same_config_gives_identical_frames_and_other_seed_differs(small):
    again = generate(SMALL)
    for key in ("invoices", "transfers", "links", "truth"):
        pd.testing.assert_frame_equal(small[key], again[key])
    other = generate(SMALL, seed=8)
    assert not small["transfers"]["title"].equals(other["transfers"]["title"])
    assert not small["transfers"]["amount"].equals(other["transfers"]["amount"])


@pytest.mark.parametrize(
    "extra",
    [
        {},
        {"drift_month": 3},
        {"description_only": True},
        CHANGED,
        {"drift_month": 3, "drift_kind": "title_format+payer_change"},
        {"drift_month": 2, "drift_kind": "payer_change", "description_only": True, "drift_share_contractors": 0.8},
    ],
)
def test_every_month_passes_the_contract(extra):
    cfg = SyntheticConfig(months=4, transfers_per_month=300, contractors=60, **extra)
    months = [m for m, _ in months_of(generate(cfg), cfg)]
    assert months == month_labels(cfg) == ["2025-01", "2025-02", "2025-03", "2025-04"]


def test_size_ids_and_row_order(small):
    tr, inv, truth = small["transfers"], small["invoices"], small["truth"]
    assert tr["month"].value_counts().to_dict() == {m: 500 for m in month_labels(SMALL)}
    assert len(generate(months=2, transfers_per_month=1234)["transfers"]) == 2468
    assert tr["transfer_id"].is_unique and inv["invoice_id"].is_unique
    assert tr["transfer_id"].str.fullmatch(r"TRF-\d{7}").all() and inv["invoice_id"].str.fullmatch(r"INV-\d{7}").all()
    assert (
        list(tr["month"]) == sorted(tr["month"]) and not tr["booked_at"].is_monotonic_increasing
    )  # shuffled in a month
    assert truth["transfer_id"].tolist() == tr["transfer_id"].tolist()
    for df, col in [(tr, "amount"), (inv, "amount"), (small["links"], "allocated_amount")]:
        assert np.allclose(df[col] * 100, (df[col] * 100).round(), atol=1e-6)
    assert (tr["booked_at"].dt.dayofweek < 5).all()


def test_default_config_size():
    d = generate()
    assert len(d["transfers"]) == 24 * 800 and d["transfers"]["month"].nunique() == 24
    assert d["transfers"]["month"].iloc[-1] == "2026-12"


def test_invalid_config_is_rejected():
    with pytest.raises(ValueError, match="rates"):
        generate(months=1, rate_fee=1.5)
    with pytest.raises(ValueError, match="rate_exact_number"):
        generate(months=1, rate_exact_number=0.7, rate_damaged_number=0.4)
    with pytest.raises(ValueError, match="drift_kind"):
        generate(months=1, drift_kind="nope")
    with pytest.raises(ValueError, match="drift_share_contractors"):
        generate(months=1, drift_kind="payer_change", drift_share_contractors=1.2)


# ---------------------------------------------------------------------------------------------- rates
def realised(d) -> dict[str, float]:
    truth, inv = d["truth"], d["invoices"]
    pay = truth[truth["kind"] != "none"]
    pos = inv[inv["amount"] > 0]
    top = pos.groupby("counterparty_name")["amount"].agg(lambda a: a.value_counts().iloc[0] / len(a))
    n = pos.groupby("counterparty_name").size()
    return {
        "rate_exact_number": (pay["number_in_title"] == "exact").mean(),
        "rate_damaged_number": (pay["number_in_title"] == "damaged").mean(),
        "rate_no_number": (pay["number_in_title"] == "absent").mean(),
        "rate_multi_invoice": (truth["kind"] == "multi").mean(),
        "rate_partial": (truth["kind"] == "partial").mean(),
        "rate_no_invoice": (truth["kind"] == "none").mean(),
        "rate_fee": pay["fee"].mean(),
        "rate_other_payer": pay["other_payer"].mean(),
        "rate_name_variant": pay["name_variant"].mean(),
        "rate_outgoing": truth["outgoing"].mean(),
        "rate_credit_note": inv["invoice_number"].str.match(r"(KOR/|CN-)").mean(),
        "rate_same_amount_siblings": ((top >= 0.6) & (n >= 5)).sum() / (n >= 5).sum(),
        "rate_instalment": (truth["kind"] == "instalment").mean(),
        "rate_remittance": (truth["kind"] == "remittance").mean(),
        "rate_description_ref": (pay["number_in_title"] == "reference").mean(),
        "rate_overpayment": pay["overpayment"].mean(),
        "rate_duplicate": (truth["reason"] == "duplicate").mean(),
    }


@pytest.mark.parametrize("which", ["default", "changed"])
def test_each_rate_is_realised(which, small, changed):
    d, cfg = (small, SMALL) if which == "default" else (changed, SyntheticConfig(**CHANGED))
    for rate, value in realised(d).items():
        tol = 0.08 if rate == "rate_same_amount_siblings" else 0.02
        assert abs(value - getattr(cfg, rate)) <= tol, (rate, value, getattr(cfg, rate))


def test_truth_matches_the_frames(small):
    """The truth flags describe what really is in the frames."""
    L = linked(small)
    exact = L[L["number_in_title"] == "exact"]
    has_number = [num in title for num, title in zip(exact["invoice_number"], exact["title"])]
    assert np.mean(has_number) > 0.9  # the rest are credit notes left out of a multi title
    absent = L[L["number_in_title"] == "absent"]
    assert not any(num in (title or "") for num, title in zip(absent["invoice_number"], absent["title"]))
    damaged = L[(L["number_in_title"] == "damaged") & (L["kind"] == "single")]
    assert not any(num in title for num, title in zip(damaged["invoice_number"], damaged["title"]))
    own = L[~L["other_payer"] & (L["kind"] == "single")]
    assert (own["counterparty_name_t"] == own["counterparty_name_i"]).groupby(own["name_variant"]).mean().to_dict() == {
        False: 1.0,
        True: 0.0,
    }
    other = L[L["other_payer"]]
    assert (other["counterparty_name_t"] != other["counterparty_name_i"]).all()
    truth = small["truth"].set_index("transfer_id")
    assert set(small["links"]["transfer_id"]) == set(truth.index[truth["kind"] != "none"])
    out = L[L["outgoing"]]
    assert (out["amount_t"] < 0).all() and (out["amount_i"] < 0).all()
    assert (L.loc[~L["outgoing"], "amount_t"] > 0).all()


# ---------------------------------------------------------------------------------------------- phenomena
def test_amounts_and_allocations(small):
    L = linked(small)
    alloc = small["links"].groupby("transfer_id")["allocated_amount"].sum().round(2)
    amount = small["transfers"].set_index("transfer_id")["amount"].reindex(alloc.index)
    over = small["truth"].set_index("transfer_id")["overpayment"].reindex(alloc.index)
    assert (alloc[~over] == amount[~over]).all()  # allocations sum to the transfer amount, but for overpayments
    by_t = L.groupby("transfer_id").agg(
        amount=("amount_t", "first"),
        total=("amount_i", "sum"),
        fee=("fee", "first"),
        kind=("kind", "first"),
        over=("overpayment", "first"),
    )
    full = by_t[by_t["kind"].isin(["single", "multi"]) & ~by_t["over"]]
    assert np.allclose(full.loc[~full["fee"], "amount"], full.loc[~full["fee"], "total"])
    f = full[full["fee"]]
    assert ((f["amount"].abs() < f["total"].abs()) & (f["amount"].abs() >= 0.98 * f["total"].abs() - 0.01)).all()
    delay = (L["booked_at"] - L["issued_at"]).dt.days
    assert delay.min() >= 0 and delay.quantile(0.95) <= 90 and delay.max() <= 160
    assert (L["month_i"] <= L["month"]).all() and (L["month_i"] < L["month"]).mean() > 0.2
    assert (small["invoices"]["amount"] % 10 == 0).mean() > 0.2  # many round amounts


def test_multi_partial_signed_and_sibling_invoices(small):
    L = linked(small)
    sizes = L[L["kind"] == "multi"].groupby("transfer_id").size()
    assert sizes.min() == 2 and sizes.max() == 6
    counts = small["links"]["invoice_id"].value_counts()
    twice = L[L["invoice_id"].isin(counts.index[counts >= 2])]
    assert twice["invoice_id"].nunique() >= 10 and twice["kind"].isin(["partial", "instalment"]).all()
    part = L[L["kind"] == "partial"]
    assert (part["allocated_amount"].abs() < part["amount_i"].abs()).all()
    credit = L[L["invoice_number"].str.match(r"(KOR/|CN-)")]
    assert len(credit) and (credit["allocated_amount"] < 0).all() and (credit["amount_t"] > 0).all()
    assert (small["transfers"]["amount"] < 0).any() and (small["invoices"]["amount"] < 0).any()
    # equal-amount invoices of one contractor, open at the same time as a transfer paying one of them
    inv = small["invoices"]
    for _, row in L[L["kind"] == "single"].iterrows():
        same = inv[
            (inv["counterparty_name"] == row["counterparty_name_i"])
            & (inv["amount"] == row["amount_i"])
            & (inv["issued_at"] <= row["booked_at"])
            & (inv["invoice_id"] != row["invoice_id"])
        ]
        paid_later = ~same["invoice_id"].isin(L.loc[L["booked_at"] < row["booked_at"], "invoice_id"])
        if paid_later.sum() >= 2:
            break
    else:
        pytest.fail("no contractor with several open invoices of equal amount")


def test_transfers_paying_nothing_are_hard(small):
    truth = small["truth"]
    none = small["transfers"].merge(truth, on=["transfer_id", "month"]).query("kind == 'none'")
    assert {"refund", "advance", "duplicate", "salary", "bank_fee"} <= set(none["reason"])
    names = set(small["invoices"]["counterparty_name"])
    hard = none[none["reason"].isin(["refund", "advance", "duplicate"])]
    assert hard["counterparty_name"].isin(names).mean() > 0.5  # from known contractors
    amounts = set(small["invoices"]["amount"].abs())
    assert hard["amount"].abs().isin(amounts).mean() > 0.7  # equal to real invoice amounts
    # duplicates quote the exact number and amount of an invoice another transfer already paid
    L = linked(small)
    inv = small["invoices"]
    dup = none[none["reason"] == "duplicate"]
    assert len(dup) > 10
    for _, t in dup.iterrows():
        quoted = inv[
            np.array([n in t["title"] for n in inv["invoice_number"]]) & (inv["amount"] == t["amount"]).to_numpy()
        ]
        paid = L[L["invoice_id"].isin(quoted["invoice_id"]) & (L["booked_at"] <= t["booked_at"])]
        assert len(paid), t["title"]


def test_titles_and_names_are_varied(small):
    titles = small["transfers"]["title"].dropna()
    assert (
        titles.str.contains(r"\b(?:Faktura|Zapłata|zaplata)\b").any()
        and titles.str.contains(r"\b(?:Rechnung|Zahlung)\b").any()
    )
    assert titles.str.contains(r"\b(?:PO \d{7}|NIP \d{10}|\d\d\.\d\d\.\d{4})").any()  # noise numbers
    numbers = small["invoices"]["invoice_number"]
    for pattern in [r"FV/\d{4}/\d\d/\d{4}", r"INV-\d{4}-\d{5}", r"\d{4}/\d+/KR", r"F\d+/\d\d/\d\d", r"\d{7}"]:
        assert numbers.str.fullmatch(pattern).any(), pattern
    names = small["transfers"]["counterparty_name"].dropna()
    assert names.str.fullmatch(r"[A-Z0-9 .&,'-]{15,20}").any()  # upper-cased, truncated by the bank
    assert small["transfers"]["counterparty_account"].str.fullmatch(r"[A-Z]{2}\d{2}[A-Z0-9]{10,30}").mean() > 0.9


# ------------------------------------------------------------------------------------ drift and description_only
def test_drift_changes_titles_only_from_drift_month(small):
    drifted = generate(SMALL, drift_month=4)
    tr, truth = drifted["transfers"], drifted["truth"]
    before = tr["month"] < "2025-04"
    pd.testing.assert_frame_equal(tr[before], small["transfers"][before])
    pd.testing.assert_frame_equal(drifted["links"], small["links"])
    pd.testing.assert_frame_equal(drifted["invoices"], small["invoices"])
    prefixed = tr["title"].fillna("").str.startswith("SCT /REMI/")
    assert not prefixed[before].any() and (prefixed == truth["drifted"]).all()
    assert 0.2 < truth.loc[~before, "drifted"].mean() < 0.6
    after = truth[~before & (truth["kind"] != "none")]
    assert (after.loc[after["drifted"], "number_in_title"] == "absent").mean() > (
        after.loc[~after["drifted"], "number_in_title"] == "absent"
    ).mean() + 0.15
    assert tr.loc[truth["drifted"], "counterparty_name"].str.len().max() <= 18


def test_description_only_world(small):
    cfg = dataclasses_replace(SMALL, description_only=True)
    d = generate(cfg)
    assert list(d["invoices"].columns) == [
        "invoice_id",
        "month",
        "issued_at",
        "due_at",
        "amount",
        "currency",
        "description",
    ]
    assert list(d["transfers"].columns) == ["transfer_id", "month", "booked_at", "amount", "currency", "title"]
    for _ in months_of(d, cfg):
        pass
    inv, truth = d["invoices"], d["truth"]
    assert inv["description"].str.fullmatch(r".+ - .+ - .+|(VOID|STORNO) .+").all()
    # voided invoices: a reversal of the same size, neither ever paid
    rev = inv[inv["description"].str.match(r"(VOID|STORNO) ")]
    assert len(rev) > 20 and (rev["amount"] < 0).all()
    linked_ids = set(d["links"]["invoice_id"])
    for _, r in rev.head(20).iterrows():
        number = r["description"].split()[1]
        orig = inv[inv["description"].str.endswith(" - " + number) & (inv["amount"] == -r["amount"])]
        assert len(orig) >= 1 and r["invoice_id"] not in linked_ids
        assert not orig["invoice_id"].isin(linked_ids).all()
    # batch deposits: several invoices of different contractors
    batch = d["transfers"].merge(truth, on=["transfer_id", "month"]).query("batch")
    assert 0.01 < len(batch) / len(truth) < 0.03 and (batch["kind"] == "multi").all()
    L = d["links"].merge(inv, on="invoice_id")
    L["contractor"] = L["description"].str.split(" - ").str[0]
    b = L[L["transfer_id"].isin(batch["transfer_id"])].groupby("transfer_id")
    assert (b["contractor"].nunique() >= 2).mean() > 0.9
    n_items = batch.set_index("transfer_id")["title"].str.extract(r"BATCH DEPOSIT (\d) ITEMS")[0].astype(int)
    assert (n_items == b.size().reindex(n_items.index)).all()
    # same underlying world: non-batch transfers have the same ids, dates and amounts
    keep = ~truth["batch"]
    cols = ["transfer_id", "booked_at", "amount"]
    pd.testing.assert_frame_equal(d["transfers"].loc[keep, cols], small["transfers"].loc[keep, cols])
    line = d["transfers"]["title"].dropna()
    assert line.str.fullmatch(r"[A-Z0-9 /&.'-]+").mean() > 0.95  # terse upper-case bank lines


def dataclasses_replace(cfg, **kw):
    import dataclasses

    return dataclasses.replace(cfg, **kw)


# ------------------------------------------------------------------------------------ drift kinds and payer_change
PROCESSOR_NAMES = {
    "PAYFLOW COLLECTIONS BV",
    "PayFlow Collections B.V.",
    "PAYFLOW COLL. BV",
    "Nordic Factoring AB",
    "NORDIC FACTORING AB",
    "Nordic Factoring AB (publ)",
}


def test_drift_kind_combinations_and_unknown_parts():
    assert parse_drift_kind("title_format") == ("title_format",)
    assert parse_drift_kind("title_format+payer_change") == ("title_format", "payer_change")
    assert parse_drift_kind(" payer_change + title_format+payer_change") == ("payer_change", "title_format")
    for bad, part in [("title_format+nope", "nope"), ("payer_change+", ""), ("Title_Format", "Title_Format")]:
        with pytest.raises(
            ValueError, match=rf"drift_kind .*unknown part\(s\) \['{part}'\].*title_format.*payer_change"
        ):
            generate(months=1, drift_kind=bad)
    with pytest.raises(ValueError, match="drift_kind"):
        parse_drift_kind(None)


def test_payer_change_only_from_drift_month_and_deterministic(small, payer):
    tr, truth = payer["transfers"], payer["truth"]
    before = tr["month"] < "2025-04"
    for key in ("transfers", "truth"):
        pd.testing.assert_frame_equal(payer[key][before], small[key][before])
    pd.testing.assert_frame_equal(payer["invoices"], small["invoices"])
    old_links = small["links"]["month"] < "2025-04"
    pd.testing.assert_frame_equal(payer["links"][payer["links"]["month"] < "2025-04"], small["links"][old_links])
    assert not truth.loc[before, "drifted"].any()
    assert truth.loc[~before].groupby("month")["drifted"].mean().between(0.15, 0.6).all()
    again = generate(SMALL, drift_month=4, drift_kind="payer_change")
    for key in ("invoices", "transfers", "links", "truth"):
        pd.testing.assert_frame_equal(payer[key], again[key])
    # only processor transfers change text: every other transfer reads as without drift
    same = ~truth["drifted"]
    for col in ("title", "counterparty_name", "counterparty_account", "amount"):
        assert tr.loc[same, col].equals(small["transfers"].loc[same, col]), col
    # only paying, incoming transfers are taken over
    hit = truth[truth["drifted"]]
    assert (hit["kind"] != "none").all() and not hit["outgoing"].any() and hit["other_payer"].all()


def test_payer_change_new_accounts_names_and_processor_titles(small, payer):
    tr, truth = payer["transfers"], payer["truth"]
    hit = truth["drifted"]
    proc = tr[hit]
    assert set(proc["counterparty_name"]) <= PROCESSOR_NAMES
    assert proc["counterparty_name"].isin(["PAYFLOW COLLECTIONS BV", "Nordic Factoring AB"]).mean() > 0.5
    known_names = set(tr.loc[~hit, "counterparty_name"].dropna()) | set(payer["invoices"]["counterparty_name"])
    assert not proc["counterparty_name"].isin(known_names).any()
    accounts = set(proc["counterparty_account"])
    assert proc["counterparty_account"].notna().all() and 2 <= len(accounts) <= 5  # the processors' few accounts
    assert not accounts & set(tr.loc[~hit, "counterparty_account"].dropna())  # never seen before, nor by anyone else
    assert proc["counterparty_account"].str.fullmatch(r"(NL\d{2}BUNQ\d{10}|SE\d{2}\d{20})").all()
    assert (
        proc["title"]
        .str.fullmatch(
            r"(PAYFLOW REF \d{14}|\d{14} PAYFLOW PAYOUT|PFC \d{14}|Nordic Factoring remittance NF\d{11}"
            r"|NF\d{11}|Payment ref NF-\d{11})( .*)?"
        )
        .all()
    )
    # the long processor reference is never an invoice number; the invoice number is there only for some
    L = linked(payer)
    L = L[L["drifted"]]
    refs = L["title"].str.extract(r"(\d{11,14})")[0]
    assert refs.notna().all() and not refs.isin(set(payer["invoices"]["invoice_number"])).any()
    per_t = truth[hit]
    assert 0.55 < (per_t["number_in_title"] == "absent").mean() < 0.85
    absent = L[L["number_in_title"] == "absent"]
    assert not any(
        n in t or n.replace("/", "").replace("-", "") in t for n, t in zip(absent["invoice_number"], absent["title"])
    )
    exact = L[(L["number_in_title"] == "exact") & (L["amount_i"] > 0)]
    assert len(exact) and all(n in t for n, t in zip(exact["invoice_number"], exact["title"]))
    # sometimes the contractor's name, abbreviated, is in the title
    first = L["counterparty_name_i"].str.upper().str.split().str[0].str[:4]
    assert 0.2 < np.mean([f in t.upper() for f, t in zip(first, L["title"])]) < 0.7
    # amounts: unchanged, or a small processor fee; allocations still sum to the transfer amount
    alloc = payer["links"].groupby("transfer_id")["allocated_amount"].sum().round(2)
    over = truth.set_index("transfer_id")["overpayment"].reindex(alloc.index)
    assert (alloc[~over] == tr.set_index("transfer_id")["amount"].reindex(alloc.index)[~over]).all()
    full = (
        L[L["kind"].isin(["single", "multi"]) & ~L["overpayment"]]
        .groupby("transfer_id")
        .agg(amount=("amount_t", "first"), total=("amount_i", "sum"), fee=("fee", "first"))
    )
    assert np.allclose(full.loc[~full["fee"], "amount"], full.loc[~full["fee"], "total"])
    f = full[full["fee"]]
    assert len(f) and ((f["amount"] < f["total"]) & (f["amount"] >= 0.98 * f["total"] - 0.01)).all()


def test_payer_change_takes_over_the_configured_share_of_contractors(small, payer):
    def taken_over(d):
        L = linked(d)
        L = L[(L["month"] >= "2025-04") & ~L["outgoing"] & ~L["batch"] & (L["kind"] != "none")]
        return L.groupby("counterparty_name_i")["drifted"].agg(["min", "max"])

    per_c = taken_over(payer)
    assert (per_c["min"] == per_c["max"]).all()  # all of a contractor's payments, or none
    assert 0.35 < per_c["max"].mean() < 0.65
    few = taken_over(generate(SMALL, drift_month=4, drift_kind="payer_change", drift_share_contractors=0.2))
    assert (few["min"] == few["max"]).all() and 0.05 < few["max"].mean() < 0.35
    assert set(few.index[few["max"]]) != set(per_c.index[per_c["max"]])
    everyone = generate(SMALL, drift_month=4, drift_kind="payer_change", drift_share_contractors=1.0)
    assert taken_over(everyone)["min"].all()
    nobody = generate(SMALL, drift_month=4, drift_kind="payer_change", drift_share_contractors=0.0)
    for key in ("invoices", "transfers", "links", "truth"):
        pd.testing.assert_frame_equal(nobody[key], small[key])


def test_combined_drift_is_the_union(small, payer):
    title_only = generate(SMALL, drift_month=4)
    both = generate(SMALL, drift_month=4, drift_kind="title_format+payer_change")
    tr, truth = both["transfers"], both["truth"]
    before = tr["month"] < "2025-04"
    for key in ("transfers", "truth"):
        pd.testing.assert_frame_equal(tr[before] if key == "transfers" else truth[before], small[key][before])
    proc = payer["truth"]["drifted"]
    retitled = title_only["truth"]["drifted"]
    assert (truth["drifted"] == (proc | retitled)).all()
    assert (retitled & ~proc).any() and (proc & ~retitled).any() and (proc & retitled).any()
    for col in ("title", "counterparty_name", "counterparty_account", "amount"):
        assert tr.loc[~proc, col].equals(title_only["transfers"].loc[~proc, col]), col
        assert tr.loc[proc, col].equals(payer["transfers"].loc[proc, col]), (
            col
        )  # the processor's own text, no bank rewrite
    pd.testing.assert_frame_equal(both["links"], payer["links"])


# ---------------------------------------------------------------------------------------------- structure
@pytest.mark.parametrize(
    "config,expected",
    [
        (dict(months=3), "134ebd02af459123"),
        (
            dict(
                months=4, contractors=80, transfers_per_month=300, drift_month=2, drift_kind="title_format+payer_change"
            ),
            "934f244319b08614",
        ),
        (dict(seed=11, months=3, contractors=60, transfers_per_month=250, description_only=True), "d00d14763c47f98b"),
    ],
    ids=["default", "both-drifts", "description-only"],
)
def test_the_generated_data_is_pinned(config, expected):
    """Golden check: content fingerprints of the generated data. First pinned when the generator became a package
    (12.8); re-pinned for the payment shapes of issue 15 (instalments, remittances, overpayments, duplicates,
    currencies, batch issue dates), which changed every seed's data. A change here changes every dataset, benchmark
    figure and test world; make it on purpose, new draws last."""
    from ledgerlink.data.store import fingerprint

    assert fingerprint(generate(SyntheticConfig(**config))) == expected


def test_every_laid_out_share_names_a_config_rate():
    """The tables a new payment shape is added to (kinds.py) and the config stay in step."""
    import dataclasses

    from ledgerlink.data.synthetic.kinds import NO_INVOICE_REASONS, NUMBER_STYLES, PAYMENT_KINDS

    fields = {f.name for f in dataclasses.fields(SyntheticConfig)}
    for table in (PAYMENT_KINDS, NUMBER_STYLES):
        assert {share.rate for share in table} <= fields
        assert len({share.code for share in table}) == len(table)
    assert sum(r.p for r in NO_INVOICE_REASONS) == pytest.approx(1.0)


# ---------------------------------------------------------------------------------------------- payment shapes (15)
def test_instalments_pay_one_invoice_in_parts_quoting_its_assignment(small):
    L = linked(small)
    inst = L[L["kind"] == "instalment"]
    parts = inst.groupby("invoice_id").agg(n=("transfer_id", "size"), paid=("allocated_amount", "sum"))
    assert parts["n"].between(1, 5).all() and parts["n"].max() >= 4 and (parts["n"] >= 2).mean() > 0.5
    full = parts[parts["n"] >= 2].join(small["invoices"].set_index("invoice_id")["amount"])
    assert (full["paid"] <= full["amount"] + 0.01).all()  # the parts never pay more than the invoice ...
    assert ((full["amount"] - full["paid"]) < 0.02 * full["amount"] + 0.01).mean() > 0.3  # ... and often all of it
    assert not (inst["amount_t"] == inst["amount_i"]).any()  # no part pays the whole invoice
    gaps = inst.sort_values("booked_at").groupby("invoice_id")["booked_at"].diff().dt.days.dropna()
    assert gaps.min() >= 1 and gaps.median() >= 7  # days or weeks apart
    # the title quotes the assignment/document number that only the description carries
    ref = inst[inst["number_in_title"] == "reference"]
    assert len(ref) > 0.4 * len(inst)
    quoted = ref["description"].str.extract(r"((?:ASG-\d{4}-\d{6})|(?:DOK \d{4} \d{6}))")[0]
    assert quoted.notna().all()
    assert (
        np.mean(
            [
                q.lower() in t.lower() or q.replace(" ", "").replace("-", "") in t.upper().replace(" ", "")
                for q, t in zip(quoted, ref["title"])
            ]
        )
        > 0.6
    )
    assert not any(q in n for q, n in zip(quoted, ref["invoice_number"]))
    assert inst["name_variant"].mean() > 0.5  # damaged payer names


def test_description_references_and_the_titles_that_quote_them(small):
    inv = small["invoices"]
    refs = (
        r"ASG-\d{4}-\d{6}|45\d{8}|KTR/\d{4}/\d{3}|ORD-\d{5}|DOK \d{4} \d{6}|PRJ\.\d\d\.\d{4}|\d{5}/\d\d/Z"
        r"|WZ \d+/|REF\d{9}|A\d{6}-\d\d"
    )
    with_ref = inv["description"].fillna("").str.contains(refs)
    assert 0.1 < with_ref.mean() < 0.8
    L = linked(small)
    ref = L[(L["number_in_title"] == "reference") & (L["kind"] != "instalment")]
    assert len(ref) >= 20
    assert (ref["invoice_number"].apply(lambda n: n not in "")).all()
    assert not any(n in t for n, t in zip(ref["invoice_number"], ref["title"]))


def test_overpayments_allocate_the_invoice_amount(small):
    L = linked(small)
    over = L[L["overpayment"]]
    assert len(over) >= 10 and (over["kind"] == "single").all()
    assert (over["amount_t"] > over["amount_i"]).all() and (over["allocated_amount"] == over["amount_i"]).all()


def test_remittances_pay_many_invoices_and_list_most_of_them(small):
    L = linked(small)
    rem = L[L["kind"] == "remittance"]
    sizes = rem.groupby("transfer_id").size()
    assert sizes.between(10, 25).all() and len(sizes) >= 10
    assert (rem.groupby("transfer_id")["counterparty_name_i"].nunique() == 1).all()  # one customer
    listed = rem.assign(hit=[n in t for n, t in zip(rem["invoice_number"], rem["title"])])
    exact = listed[listed["number_in_title"] == "exact"]
    assert 0.8 < exact["hit"].mean() < 1.0  # most numbers, not always all
    titles = small["transfers"].set_index("transfer_id").loc[sizes.index, "title"]
    assert titles.str.contains(r"\d[.,]\d\d\b").any()  # some list the amount paid per invoice
    partial = rem[rem["remittance_partial"]]
    assert partial["transfer_id"].nunique() >= 1
    short = partial[partial["allocated_amount"] < partial["amount_i"]]
    assert (short.groupby("transfer_id").size() == 1).all()  # one invoice paid in part


def test_duplicate_payments_credit_notes_currencies_large_amounts_and_batch_dates(small):
    truth, inv = small["truth"], small["invoices"]
    assert (truth["reason"] == "duplicate").sum() == round(
        SMALL.rate_duplicate * SMALL.transfers_per_month
    ) * SMALL.months
    assert truth["credit_note"].sum() >= 10
    L = linked(small)
    assert (L["currency_t"] == L["currency_i"]).all()  # a transfer pays invoices of its own currency
    assert inv["currency"].nunique() >= 6 and (inv["currency"] == "EUR").mean() > 0.5
    assert inv["amount"].abs().max() > 1e5
    big = generate(SyntheticConfig(months=1, transfers_per_month=2000, contractors=400))["invoices"]
    assert big["currency"].nunique() == 9 and 1e6 < big["amount"].abs().max() < 5e7  # up to ~10^7
    # invoices issued in batches: many share a contractor's billing day
    same_day = inv.groupby(["counterparty_name", "issued_at"]).size()
    assert (same_day >= 3).sum() >= 20
