"""Metrics of a matching, computed from one per-transfer outcome table.

Everything (pair precision/recall/F1, exact-set accuracy, auto-match rate and precision, slices and
the paired bootstrap) derives from ``transfer_outcomes``: one row per test transfer with its true
positives, false positives, false negatives, whether the chosen set is exactly right, and whether it
was auto-decided. Summing rows gives micro-averaged pair metrics, so resampling rows is a valid
bootstrap over transfers.
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd

METRICS = ("pair_precision", "pair_recall", "pair_f1", "exact_set_accuracy", "auto_match_rate", "auto_match_precision")


def transfer_outcomes(
    pred_links: pd.DataFrame, true_links: pd.DataFrame, transfers: pd.DataFrame, decisions: pd.DataFrame | None = None
) -> pd.DataFrame:
    """One row per transfer: n_true, n_pred, tp, fp, fn, exact, auto."""
    ids = transfers[["transfer_id"]].drop_duplicates().reset_index(drop=True)
    pred = pred_links[["transfer_id", "invoice_id"]].drop_duplicates()
    true = true_links[["transfer_id", "invoice_id"]].drop_duplicates()
    both = pred.merge(true, on=["transfer_id", "invoice_id"])
    out = ids.copy()
    for name, frame in (("n_pred", pred), ("n_true", true), ("tp", both)):
        out[name] = out["transfer_id"].map(frame.groupby("transfer_id").size()).fillna(0).astype(int)
    out["fp"] = out["n_pred"] - out["tp"]
    out["fn"] = out["n_true"] - out["tp"]
    out["exact"] = (out["fp"] == 0) & (out["fn"] == 0)
    if decisions is not None and len(decisions):
        auto = decisions.set_index("transfer_id")["decision"].eq("auto")
        out["auto"] = out["transfer_id"].map(auto).fillna(False).astype(bool)
    else:
        out["auto"] = False
    return out


def summarize(outcomes: pd.DataFrame) -> dict:
    tp, fp, fn = (float(outcomes[c].sum()) for c in ("tp", "fp", "fn"))
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    n = len(outcomes)
    auto = outcomes["auto"]
    return {
        "pair_precision": precision,
        "pair_recall": recall,
        "pair_f1": f1,
        "exact_set_accuracy": float(outcomes["exact"].mean()) if n else 0.0,
        "auto_match_rate": float(auto.mean()) if n else 0.0,
        "auto_match_precision": float(outcomes.loc[auto, "exact"].mean()) if auto.any() else 1.0,
        "n_transfers": int(n),
    }


def score_links(
    pred_links: pd.DataFrame,
    true_links: pd.DataFrame,
    transfers: pd.DataFrame | None = None,
    decisions: pd.DataFrame | None = None,
) -> dict:
    """Score predicted links against true links (public API). ``transfers`` defaults to all ids seen."""
    if transfers is None:
        ids = pd.concat([pred_links["transfer_id"], true_links["transfer_id"]]).drop_duplicates()
        transfers = pd.DataFrame({"transfer_id": ids})
    return summarize(transfer_outcomes(pred_links, true_links, transfers, decisions))


_DIGITS = re.compile(r"\d{3,}")
_LONG_DIGITS = re.compile(r"\d{5,}")  # a reference in free text: periods, dates and amounts have fewer in a row
PART_TOLERANCE = 0.02  # a link allocating less than its invoice by more than this share pays it in part


def _core_digits(number) -> str:
    runs = _DIGITS.findall(str(number or ""))
    return max(runs, key=len).lstrip("0") if runs else ""


def _description_digits(text) -> list[str]:
    return [r.lstrip("0") for r in _LONG_DIGITS.findall(str(text or ""))]


def slice_labels(transfers: pd.DataFrame, invoices: pd.DataFrame, true_links: pd.DataFrame) -> pd.DataFrame:
    """Per transfer, from the data contract alone (never a generator's truth): ``size`` (none/single/multi),
    ``number`` (present/absent; none when it pays nothing), ``number_in_description`` and the payment shapes
    ``part_payment``, ``overpayment``, ``remittance`` and ``credit_note``.

    A number is present when the longest digit run of a paid invoice's number (or description when there is no
    number column), or a reference of 5+ digits in its description, appears among the title's digits;
    ``number_in_description``: only a description reference does (a PO, contract or assignment number).
    ``part_payment``: a link allocates less than its invoice's amount (instalments, partial payments, a remittance
    paying one invoice in part); ``overpayment``: the transfer is larger than what its links allocate;
    ``remittance``: it pays 10 or more invoices; ``credit_note``: a link allocates against the transfer's sign.
    """
    ref_col = "invoice_number" if "invoice_number" in invoices.columns else "description"
    by_id = invoices.set_index("invoice_id")
    core = by_id[ref_col].map(_core_digits) if ref_col in invoices.columns else pd.Series(dtype=str)
    desc = (
        by_id["description"].map(_description_digits)
        if "description" in invoices.columns and ref_col != "description"
        else pd.Series(dtype=object)
    )
    titles = transfers.set_index("transfer_id")["title"] if "title" in transfers.columns else pd.Series(dtype=object)
    links = true_links[["transfer_id", "invoice_id", "allocated_amount"]].copy()
    links["core"] = links["invoice_id"].map(core).fillna("")
    links["desc"] = links["invoice_id"].map(desc)
    links["title_digits"] = (
        links["transfer_id"].map(titles).fillna("").astype(str).map(lambda s: "".join(_DIGITS.findall(s)))
    )
    links["by_number"] = [bool(c) and c in t for c, t in zip(links["core"], links["title_digits"])]
    links["by_description"] = [
        isinstance(d, list) and any(r in t for r in d if r) for d, t in zip(links["desc"], links["title_digits"])
    ]
    links["present"] = links["by_number"] | links["by_description"]
    inv_amount = links["invoice_id"].map(by_id["amount"]).astype(float)
    alloc = links["allocated_amount"].astype(float)
    t_amount = links["transfer_id"].map(transfers.drop_duplicates("transfer_id").set_index("transfer_id")["amount"])
    links["part"] = (np.sign(alloc) == np.sign(inv_amount)) & (alloc.abs() < inv_amount.abs() * (1 - PART_TOLERANCE))
    links["against"] = np.sign(alloc) != np.sign(t_amount.astype(float))
    g = links.groupby("transfer_id")
    n = g.size()
    present = g["present"].any()
    only_description = g["by_description"].any() & ~g["by_number"].any()
    allocated = g["allocated_amount"].sum()
    out = transfers[["transfer_id", "amount"]].drop_duplicates("transfer_id").copy()
    tid = out["transfer_id"]
    k = tid.map(n).fillna(0)
    out["size"] = np.select([k == 0, k == 1], ["none", "single"], "multi")
    out["number"] = np.where(k == 0, "none", np.where(tid.map(present).eq(True), "present", "absent"))
    out["number_in_description"] = tid.map(only_description).eq(True)
    out["part_payment"] = tid.map(g["part"].any()).eq(True)
    paid = tid.map(allocated)
    out["overpayment"] = (k > 0) & (np.sign(paid) == np.sign(out["amount"])) & (out["amount"].abs() > paid.abs() + 0.01)
    out["remittance"] = k >= 10
    out["credit_note"] = tid.map(g["against"].any()).eq(True)
    return out.drop(columns="amount")


SLICES = {
    "single": ("size", "single"),
    "multi": ("size", "multi"),
    "pays_nothing": ("size", "none"),
    "number_present": ("number", "present"),
    "number_absent": ("number", "absent"),
    "number_in_description": ("number_in_description", True),
    "part_payment": ("part_payment", True),
    "overpayment": ("overpayment", True),
    "remittance": ("remittance", True),
    "credit_note": ("credit_note", True),
}


def slice_metrics(outcomes: pd.DataFrame, labels: pd.DataFrame) -> dict[str, dict]:
    """Metrics per slice (``SLICES``) whose label column ``labels`` has (outcomes labelled before a slice existed
    simply lack it)."""
    overlap = [c for c in labels.columns if c in outcomes.columns and c != "transfer_id"]
    merged = outcomes.drop(columns=overlap).merge(labels, on="transfer_id", how="left")
    return {
        name: summarize(merged[merged[col] == value]) for name, (col, value) in SLICES.items() if col in merged.columns
    }


def blocking_recall(candidates: pd.DataFrame, true_links: pd.DataFrame) -> float:
    """Share of the distinct true (transfer_id, invoice_id) links that survive candidate generation."""
    key = ["transfer_id", "invoice_id"]
    true = true_links[key].drop_duplicates()
    if true.empty:
        return 1.0
    kept = true.merge(candidates[key].drop_duplicates(), on=key)
    return len(kept) / len(true)
