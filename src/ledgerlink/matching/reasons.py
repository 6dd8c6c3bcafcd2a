"""Reasons in words: the one table from the models' features to plain-English phrases.

Each feature belongs to one evidence group (``PAIR_GROUPS`` for the pair model, ``SET_GROUPS`` for the set model);
a group's contribution is the sum of its features' contributions (``explain.py`` computes them), and its phrase is
written from the feature VALUES of that pair or set. A phrase function returns None when the values do not support
a sentence (an invoice-number phrase needs a number that matches; "amount equal" needs equal amounts), so the
group is left out rather than said wrongly. Numbers in a phrase are the values themselves.

The hand-weighted heuristic (``features.heuristic_score``) ranks candidates for ``heur_rank`` / ``heur_margin``,
which carry much of the pair model's weight (on a synthetic month, 5.8 of the mean |contribution| 10.6 of a
chosen pair). It is a weighted sum of evidence, so its features' contribution is shared among the groups by
``HEURISTIC_TERMS``: how much each term puts the pair ahead of the transfer's next best candidate. "Ranked first by
the heuristic" then reads as the evidence that ranked it first.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Callable

import numpy as np

MAX_LINK_REASONS = 4  # phrases per link (a multi-invoice set's link: its set's 2, then the pair's)
MAX_SET_REASONS = 2
MAX_DECISION_REASONS = 4
MIN_CONTRIBUTION = 0.05  # log-odds: a group that moved the model less than this is not a reason


@dataclass
class Evidence:
    """One pair's or set's feature values ``x`` and contributions ``c`` (log-odds, by feature), with what the
    phrases name: the invoice number as written (``number``), the contractor's name, the invoice ids of a set,
    the best candidate of a transfer that pays nothing."""

    x: Mapping[str, float]
    c: Mapping[str, float] = field(default_factory=dict)
    number: str = ""
    number_in_description: bool = False  # ``number`` is a reference of the invoice's description, not its number
    contractor: str = ""
    invoice_ids: tuple[str, ...] = ()
    best_candidate: str = ""
    member_reasons: tuple[str, ...] = ()
    set_size: int = 1  # a pair's: how many invoices its transfer's chosen set holds

    def __getitem__(self, name: str) -> float:
        v = self.x.get(name, math.nan)
        return math.nan if v is None else float(v)

    def on(self, name: str) -> bool:
        return self[name] > 0  # NaN > 0 is False

    def by_contribution(self, names: tuple[str, ...]) -> list[str]:
        """``names`` ordered by their contribution, largest first: a group's phrase speaks of what moved the model."""
        return sorted(names, key=lambda n: -self.c.get(n, 0.0))


Phrase = Callable[[Evidence], "str | None"]


@dataclass(frozen=True)
class Group:
    name: str
    features: tuple[str, ...]
    phrase: Phrase | None  # None: evidence the model uses that is no reason in words (the size of an amount)


def _n(x: float) -> int:
    return int(round(x))


def _days(n: int) -> str:
    return "1 day" if n == 1 else f"{n} days"


def _times(n: int) -> str:
    return {1: "once", 2: "twice"}.get(n, f"{n} times")


def _pct(x: float, digits: int = 0) -> str:
    return f"{100 * x:.{digits}f}%"


def _at_least(x: float) -> str:
    """A lower bound of a share, in words: "at least 97% of them"; "almost all of them" where it rounds to 100%."""
    return "almost all of them" if round(100 * x) >= 100 else f"at least {_pct(x)} of them"


# ----------------------------------------------------------------------------------------------------------------
# pair phrases


def _reference(e: Evidence) -> str | None:
    if not e.number:
        return None
    if e.number_in_description and (e.on("ref_exact") or e.on("ref_digits_exact") or e.on("ref_contains")):
        return f"reference {e.number} of the invoice's description in the title"
    if e.on("ref_exact") or e.on("ref_digits_exact"):
        return f"invoice number {e.number} in the title"
    if e.on("ref_contains"):
        return f"invoice number {e.number} in the title, cut short or inside a longer number"
    if e["ref_lev"] >= 0.75:
        return f"a number in the title close to invoice number {e.number} ({_pct(e['ref_lev'])} of its digits alike)"
    if e["ref_suffix"] >= 3:
        return f"a number in the title ends in the same {_n(e['ref_suffix'])} digits as invoice number {e.number}"
    if e["ref_groups"] >= 0.8:
        return f"the title holds the digit groups of invoice number {e.number} in another format"
    return None


def _amount(e: Evidence) -> str | None:
    if e.on("amt_eq"):
        return "amount equal"
    if e.set_size >= 2:
        return None  # paid together with other invoices: the set's sum phrase says how the amounts relate
    if e.on("amt_fee"):
        return f"amount {_pct(e['amt_reldiff'], 1)} below the invoice (a fee or discount)"
    if e.on("amt_partial"):
        return f"a part payment ({_pct(e['amt_ratio'])} of the invoice)"
    if e.on("amt_over"):
        return f"amount {_pct(e['amt_reldiff'], 1)} above the invoice"
    return None


def _name(e: Evidence) -> str | None:
    who = e.contractor
    if not who:
        return None
    for f in e.by_contribution(("name_tset", "name_in_title")):
        v = e[f]
        if f == "name_tset" and v >= 0.9:
            return f"the payer name matches the contractor ({who})"
        if f == "name_tset" and v >= 0.6:
            return f"the payer name resembles the contractor ({who}, {_pct(v)} alike)"
        if f == "name_in_title" and v >= 0.9:
            return f"the contractor's name in the title ({who})"
        if f == "name_in_title" and v >= 0.6:
            return f"the title resembles the contractor's name ({who}, {_pct(v)} alike)"
    return None


def _history(e: Evidence) -> str | None:
    acc, pay = e["mem_acc_n"], e["mem_pay_n"]
    if acc >= 1 and not pay > acc:
        n, total, who = _n(acc), e["mem_acc_total"], "the payer's account"
    elif pay >= 1:
        n, total, who = _n(pay), e["mem_pay_total"], "the payer"
    else:
        return None
    share = f" ({_pct(n / total)} of its payments)" if total > n else " (all its payments)" if total == n else ""
    return f"{who} has paid this contractor {_times(n)} before{share}"


def _title_words(e: Evidence) -> str | None:
    low = e["word_rate_min"]
    if not low >= 0.5:
        return None
    return f"earlier transfers with this title's words paid an invoice ({_at_least(low)})"


def _paid_before(e: Evidence) -> str | None:
    if e.on("amt_eq_remaining"):
        return f"the amount is what was left to pay on the invoice ({_pct(e['inv_paid_frac'])} paid before)"
    if e["inv_paid_n"] == 0:
        return "nothing paid on this invoice before"
    return None


def _amount_in_title(e: Evidence) -> str | None:
    """A remittance advice lists each invoice with its amount: the title writes this invoice's amount."""
    return "the title lists this invoice's amount" if e.on("amt_in_title") else None


def _currency(e: Evidence) -> str | None:
    return "the same currency" if e.on("currency_eq") else None


def _sums(e: Evidence) -> str | None:
    if e.on("grp_set") and e["grp_set_size"] >= 2:
        return f"one of {_n(e['grp_set_size'])} invoices of this contractor that sum to the amount exactly"
    if e.on("subset_exact"):
        return "it and other candidates sum to the amount exactly"
    if e.on("subset_fee"):
        return "it and other candidates sum to the amount, less a fee"
    return None


def _completes(e: Evidence) -> str | None:
    """``named_sum_fits`` is NaN when the title names no invoice exactly: then "completes" means "fits the amount
    alone (or with one other candidate)", which the amount and sum groups say."""
    names_some = not math.isnan(e["named_sum_fits"])
    if e.on("completes_named_exact"):
        return "with the invoices the title names, it makes up the amount exactly"
    if e.on("completes_named") and names_some:
        return "with the invoices the title names, it makes up the amount, less a fee"
    if e.on("completes_pair"):
        if names_some:
            return "with one other candidate it makes up what the title's invoices leave unpaid"
        return "with one other candidate it sums to the amount exactly"
    if e.on("named_sum_fits") and (e.on("ref_exact") or e.on("ref_digits_exact")):
        return "the invoices the title names add up to the amount"
    return None


def _same_amount(e: Evidence) -> str | None:
    if not e.on("amt_eq"):
        return None
    n = _n(e["n_same_amount"])
    if n == 1:
        return "the only candidate with this amount"
    if n >= 2 and e["same_amount_age_rank"] == 1:
        return f"the oldest of {n} candidates with this amount"
    return None


def _dates(e: Evidence) -> str | None:
    for f in e.by_contribution(("days_since_issue", "days_to_due", "title_month_diff")):
        v = e[f]
        if math.isnan(v):
            continue
        if f == "title_month_diff":
            if v == 0:
                return "the title names the month the invoice was issued"
            continue
        d = _n(v)
        if f == "days_since_issue":
            if d == 0:
                return "paid on the day the invoice was issued"
            return (
                f"paid {_days(d)} after the invoice was issued"
                if d > 0
                else f"paid {_days(-d)} before the invoice date"
            )
        if d == 0:
            return "paid on the due date"
        return f"paid {_days(d)} before the due date" if d > 0 else f"paid {_days(-d)} after the due date"
    return None


def _only_candidate(e: Evidence) -> str | None:
    return "the only candidate invoice found" if e["n_cands"] == 1 else None


def _text_model(e: Evidence) -> str | None:
    """The transformer family's own feature: the cross-encoder's score, or (``text_mode="embedding"``) the cosine
    of the two texts' embeddings and its gap to the transfer's best other candidate."""
    s = e["text_score"]
    if s >= 0.5:
        return f"the text model reads the title as this invoice ({s:.2f})"
    cos, gap = e["text_cosine"], e["text_cosine_gap"]
    if cos >= 0.5 and gap >= 0:
        return f"the title's text reads most like this invoice's (similarity {cos:.2f})"
    return None


PAIR_GROUPS: list[Group] = [
    Group(
        "reference",
        (
            "ref_exact",
            "ref_digits_exact",
            "ref_contains",
            "ref_lev",
            "ref_partial",
            "ref_groups",
            "ref_suffix",
            "ref_suffix_frac",
            "ref_margin",
            "n_title_refs",
            "inv_has_ref",
            "n_exact_refs_in_transfer",
        ),
        _reference,
    ),
    Group(
        "amount",
        ("amt_eq", "amt_ratio", "amt_absdiff", "amt_reldiff", "amt_fee", "amt_sign_agree", "amt_partial", "amt_over"),
        _amount,
    ),
    Group("amount in title", ("amt_in_title",), _amount_in_title),
    Group("name", ("name_tset", "name_partial", "name_in_title", "payer_present"), _name),
    Group(
        "payer history",
        ("mem_acc_n", "mem_acc_share", "mem_acc_total", "mem_pay_n", "mem_pay_share", "mem_pay_total"),
        _history,
    ),
    Group("title words", ("word_rate_min", "word_rate_mean"), _title_words),
    Group("paid before", ("inv_paid_frac", "inv_paid_n", "amt_eq_remaining"), _paid_before),
    Group("currency", ("currency_eq",), _currency),
    Group("amount size", ("amt_transfer_log", "amt_invoice_log"), None),
    Group(
        "sums", ("subset_exact", "subset_fee", "subset_size", "grp_set", "grp_set_size", "grp_sets_in_transfer"), _sums
    ),
    Group("completes", ("named_sum_fits", "completes_named", "completes_named_exact", "completes_pair"), _completes),
    Group("same amount", ("n_same_amount", "same_amount_age_rank"), _same_amount),
    Group("dates", ("days_since_issue", "days_to_due", "title_month_diff"), _dates),
    Group("candidates", ("n_cands",), _only_candidate),
    Group("heuristic", ("heur_rank", "heur_margin"), None),  # shared out among the groups by HEURISTIC_TERMS
    Group("text model", ("text_score", "text_cosine", "text_cosine_gap"), _text_model),
]
HEURISTIC_FEATURES = ("heur_rank", "heur_margin")


def heuristic_terms(X) -> dict[str, np.ndarray]:
    """The terms of ``features.heuristic_score`` by the group they belong to, for rows of a pair feature frame.
    Their sum is the heuristic score (a test holds the two together)."""
    g = lambda c: np.asarray(X[c], np.float64)  # noqa: E731
    z = lambda c: np.nan_to_num(g(c), nan=0.0)  # noqa: E731
    return {
        "reference": 3 * (z("ref_lev") + z("ref_contains")),
        "amount": 2 * g("amt_eq") + g("amt_fee") + 0.5 * g("amt_sign_agree"),
        "name": 1.5 * np.fmax(z("name_tset"), z("name_in_title")),
        "payer history": 1.5 * np.fmax(z("mem_acc_share"), z("mem_pay_share")),
        "completes": 2 * (np.fmax(g("completes_named"), g("completes_pair")) + g("completes_named_exact")),
        "sums": 2 * g("grp_set"),
        "dates": -0.002 * np.abs(g("days_since_issue")),
    }


# ----------------------------------------------------------------------------------------------------------------
# set phrases (the set model: which whole set a transfer pays, the empty set included)


def _set_ids(e: Evidence) -> str:
    return ", ".join(e.invoice_ids)


def _set_sum(e: Evidence) -> str | None:
    """How the set's amount relates to the transfer's, and whether another set of candidates fits too."""
    size, ratio = _n(e["size"]), e["amt_ratio"]
    if size == 0:
        return "no candidate invoice (nor set of them) fits the amount" if e["n_fit_sets"] == 0 else None
    if math.isnan(ratio):
        return None
    if size == 1:
        if e.on("amt_exact"):
            return "amount equal"
        if e.on("amt_partial"):
            return f"a part payment ({_pct(ratio)} of the invoice)"
        if e.on("amt_fits"):
            return f"amount {_pct(1 - ratio, 1)} below the invoice (a fee or discount)"
        return None
    one = " of one contractor" if e["n_groups"] == 1 else ""
    if e.on("amt_exact"):
        only = ", the only set of candidates that does" if e["n_exact_sets"] == 1 else ""
        return f"{size} invoices{one} sum to the amount exactly{only}"
    if e.on("amt_fits"):
        only = ", the only set of candidates that does" if e["n_fit_sets"] == 1 else ""
        return f"{size} invoices{one} sum to the amount (fee {_pct(1 - ratio, 1)}){only}"
    return None


def _set_amounts_in_title(e: Evidence) -> str | None:
    if _n(e["size"]) >= 2 and e.on("min_amt_in_title"):
        return "the title lists the amount of every invoice of the set"
    return None


def _set_credit(e: Evidence) -> str | None:
    return "a credit note among the invoices" if e.on("member_credit") else None


def _set_evidence(e: Evidence) -> str | None:
    size = _n(e["size"])
    if size == 1:
        return e.member_reasons[0] if e.member_reasons else None
    if size >= 2:
        lo = e["p_min"]
        if lo >= 0.5:
            return f"each invoice is likely on its own (lowest {lo:.2f})"
        return None
    top = e["p_top1"]  # the empty set: how likely the best candidate is
    if e.best_candidate and top < 0.5:
        return f"best candidate {e.best_candidate} only {top:.2f}"
    return None


def _set_left_out(e: Evidence) -> str | None:
    """The candidates the set leaves out (for the empty set: all of them, so the best candidate)."""
    best, size = e["p_out_max"], _n(e["size"])
    if size == 0:
        return f"best candidate {e.best_candidate} only {best:.2f}" if e.best_candidate and best < 0.5 else None
    if e["n_cands"] <= size:
        return "no other candidate invoice"
    return f"no candidate left out comes close (the best {best:.2f})" if best < 0.2 else None


def _set_references(e: Evidence) -> str | None:
    size = _n(e["size"])
    if size == 0:
        return "the title carries no invoice number" if e["n_title_refs"] == 0 else None
    if size == 1:
        return None  # the member's own reasons say it, with the number
    if e.on("min_ref_contains") or e["named_frac"] >= 1:
        return "the title names every invoice of the set"
    if e["named_cover"] >= 1 and e["named_frac"] > 0:  # a remittance advice that leaves some numbers out
        return f"the set holds every invoice the title names ({_n(e['named_frac'] * size)} of its {size})"
    if e.on("max_ref_digits_exact") or e.on("max_ref_exact"):
        return "the title names an invoice of the set"
    return None


def _set_names(e: Evidence) -> str | None:
    size = _n(e["size"])
    if size == 0:
        return "the transfer names no payer" if e["payer_present"] == 0 else None
    if size >= 2 and e["min_name_tset"] >= 0.9:
        who = f" ({e.contractor})" if e.contractor and e["n_groups"] == 1 else ""
        return f"the payer name matches the contractor of every invoice{who}"
    return None


def _set_history(e: Evidence) -> str | None:
    size = _n(e["size"])
    if size == 0:
        if e["mem_acc_total"] == 0 and e["mem_pay_total"] == 0:
            return "the payer has no earlier payments on record"
        return None
    share = max((v for v in (e["min_mem_acc_share"], e["min_mem_pay_share"]) if v == v), default=math.nan)
    if size >= 2 and share >= 0.5:
        return f"the payer's earlier payments went to these contractors ({_at_least(share)})"
    return None


def _set_title_words(e: Evidence) -> str | None:
    mean = e["word_rate_mean"]
    if _n(e["size"]) == 0 and mean < 0.5:
        return f"earlier transfers with this title's words seldom paid an invoice ({_pct(mean)} of them)"
    return None


def _set_paid_before(e: Evidence) -> str | None:
    if _n(e["size"]) >= 2 and e.on("max_amt_eq_remaining"):
        return "the amount is what was left to pay on an invoice of the set"
    return None


def _set_candidates(e: Evidence) -> str | None:
    return "the only candidate invoice found" if _n(e["size"]) == 1 and e["n_cands"] == 1 else None


SET_GROUPS: list[Group] = [
    Group(
        "sum",
        (
            "size",
            "amt_exact",
            "amt_fits",
            "amt_ratio",
            "amt_partial",
            "amt_over",
            "n_groups",
            "grp_exact",
            "n_exact_sets",
            "n_fit_sets",
        ),
        _set_sum,
    ),
    Group("credit", ("member_credit",), _set_credit),
    Group(
        "own evidence", ("logp", "logp_rank", "logp_gap", "p_min", "p_max", "p_mean", "p_top1", "p_top2"), _set_evidence
    ),
    Group("left out", ("p_out_max", "p_out_sum"), _set_left_out),
    Group(
        "references",
        (
            "min_ref_lev",
            "min_ref_contains",
            "min_ref_partial",
            "max_ref_exact",
            "max_ref_digits_exact",
            "max_inv_has_ref",
            "n_title_refs",
            "named_frac",
            "named_cover",
        ),
        _set_references,
    ),
    Group("amounts in title", ("min_amt_in_title",), _set_amounts_in_title),
    Group("names", ("min_name_tset", "min_name_in_title", "payer_present"), _set_names),
    Group("payer history", ("min_mem_acc_share", "min_mem_pay_share", "mem_acc_total", "mem_pay_total"), _set_history),
    Group("dates", ("min_days_to_due", "max_days_since_issue"), None),  # the members' own reasons give their dates
    Group("paid before", ("max_inv_paid_frac", "max_amt_eq_remaining"), _set_paid_before),
    Group("same amount", ("max_same_amount_age_rank", "n_same_amount"), None),
    Group("title words", ("word_rate_min", "word_rate_mean"), _set_title_words),
    Group("candidates", ("n_cands",), _set_candidates),
    Group("size", ("is_empty", "amt_transfer_log"), None),  # the prior of "pays nothing", the amount's size
]


# ----------------------------------------------------------------------------------------------------------------
# phrases without a model (fixed facts) and the rules baseline

NO_CANDIDATE = "no candidate invoice found (by number, amount, name or the payer's history)"
NO_CANDIDATE_SENT = "no candidate invoices were sent"
CANDIDATES_TAKEN = "its candidate invoices are paid by surer transfers in this batch"
RULE_MATCHED = "rule: the exact invoice number is in the title and the amount is equal"
RULE_MATCHED_SUM = "rule: the exact invoice numbers are in the title and their amounts sum to the transfer"
RULE_NO_NUMBER = "rule: no invoice number in the title matches an open invoice"
RULE_AMBIGUOUS = "rule: the title names {ids}, and more than one of them has the amount"
RULE_AMOUNT_DIFFERS = "rule: the title names {ids}, but the amount fits neither one of them alone nor their sum"


def conflict(ids: tuple[str, ...]) -> str:
    """The set model's first choice lost an invoice to another transfer (``sets.choose_sets`` settles conflicts
    by confidence, then booking date)."""
    what = ", ".join(ids)
    return f"its most likely choice ({what}) is claimed by a surer or earlier transfer"


def decided_again(ids: tuple[str, ...]) -> str:
    """Decided in the second pass, after surer transfers settled some of its candidates."""
    return f"decided again without {', '.join(ids)}, which surer transfers pay"


def paid_by_other(invoice_id: str, p: float) -> str:
    return f"best candidate {invoice_id} ({p:.2f}) is paid by another transfer"


def best_only(invoice_id: str, p: float) -> str:
    return f"best candidate {invoice_id} only {p:.2f}"


def nothing_likelier(invoice_id: str, p: float) -> str:
    return f"paying nothing is likelier than paying best candidate {invoice_id} ({p:.2f})"


def pair_model_choice(invoice_id: str, p: float) -> str:
    return f"the pair model gives {invoice_id} {p:.2f}"


def rule_number(number: str) -> str:
    return f"invoice number {number} in the title"


def rule_sum(n: int) -> str:
    return f"the {n} invoices the title names sum to the amount"


# ----------------------------------------------------------------------------------------------------------------
# from contributions to ordered phrases


class Row(Mapping):
    """One row of a feature or contribution matrix read by feature name, without building a dict per row."""

    def __init__(self, values: np.ndarray, index: dict[str, int]):
        self.values, self.index = values, index

    def __getitem__(self, name: str) -> float:
        return float(self.values[self.index[name]])

    def get(self, name: str, default=None):
        k = self.index.get(name)
        return default if k is None else float(self.values[k])

    def __iter__(self):
        return iter(self.index)

    def __len__(self) -> int:
        return len(self.index)


class Columns(Mapping):
    """The columns of a feature matrix by name (what ``heuristic_terms`` reads), without a DataFrame."""

    def __init__(self, values: np.ndarray, index: dict[str, int]):
        self.values, self.index = values, index

    def __getitem__(self, name: str) -> np.ndarray:
        return self.values[:, self.index[name]]

    def __iter__(self):
        return iter(self.index)

    def __len__(self) -> int:
        return len(self.index)


@lru_cache(maxsize=16)
def _group_matrix(groups: tuple[Group, ...], columns: tuple[str, ...]) -> np.ndarray:
    where = {f: k for k, g in enumerate(groups) for f in g.features}
    missing = [c for c in columns if c not in where]
    if missing:
        raise KeyError(f"features {missing} belong to no reason group; add them to ledgerlink.matching.reasons")
    m = np.zeros((len(columns), len(groups)))
    m[np.arange(len(columns)), [where[c] for c in columns]] = 1.0
    m.flags.writeable = False
    return m


def group_matrix(groups: list[Group], columns: list[str]) -> np.ndarray:
    """(features x groups) 0/1 matrix: contributions @ matrix sums each group's features. A column in no group is
    an error: a new feature needs its place in the table (and words, or None)."""
    return _group_matrix(tuple(groups), tuple(columns))


def ranked_groups(by_group: np.ndarray) -> list[list[tuple[int, float]]]:
    """Per row of a (rows x groups) contribution matrix: (group, contribution) of the groups that pushed towards the
    choice by at least MIN_CONTRIBUTION, the largest first (one sort for all rows)."""
    by_group = np.atleast_2d(by_group)
    order = np.argsort(-by_group, axis=1, kind="stable")
    top = np.take_along_axis(by_group, order, axis=1)
    keep = (top >= MIN_CONTRIBUTION).sum(axis=1)
    return [list(zip(o[:k].tolist(), t[:k].tolist())) for o, t, k in zip(order, top, keep.tolist())]


def phrases(
    groups: list[Group], ranked: list[tuple[int, float]], evidence: Evidence, limit: int
) -> list[tuple[str, float, str]]:
    """(phrase, contribution, group name) of the ``ranked`` groups (``ranked_groups``), each in words if its values
    support it; at most ``limit``, no phrase twice."""
    out: list[tuple[str, float, str]] = []
    for k, v in ranked:
        if len(out) >= limit:
            break
        g = groups[k]
        text = g.phrase(evidence) if g.phrase is not None else None
        if text and all(text != o[0] for o in out):
            out.append((text, v, g.name))
    return out
