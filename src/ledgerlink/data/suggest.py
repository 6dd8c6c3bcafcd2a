"""Suggest links for the open month: extract it, match it in batches, write the rows back in one atomic step.

Library code with no orchestration (like ``collect.py``), so the ZenML step, ``benchmarks/suggest_scale.py`` and a
notebook call the same thing. The open month is the month after the newest collected one unless a month is named;
a month already collected is refused, because its transfers are tagged and the model has trained on them.

Matching goes in batches of ``batch_size`` transfers, in booking order, each one ``matcher.match(invoices, batch,
explain=True)`` against the month's open invoices: one progress step per batch, and memory bounded by the batch (a
batch's rows go to the staging Parquet file before the next starts). By default the batches are the matcher's own
(``Matcher.batch_size``, cut in the same booking order), so the suggestions are exactly what one ``match`` call over
the month gives, the batched ``match`` of ``benchmarks/scale.py``; each call prepares the invoices again (about 2 s
for 200k). As inside ``match``, an invoice claimed by transfers of two batches is not settled between them.
"""

from __future__ import annotations

import datetime as dt
import logging
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from .contract import ContractError, conform, month_window
from .suggestions import DECISIONS, SuggestionTable, SuggestionWriter, suggestion_rows
from .warehouse import Warehouse

log = logging.getLogger(__name__)

CONFIDENCE_BINS = 20  # the histogram the run's report draws: 0.05 wide


class SuggestError(ValueError):
    """The suggest pipeline cannot run for this month (nothing written)."""


def no_production_model(model_name: str) -> SuggestError:
    return SuggestError(
        f"no production model of {model_name!r} in the Model Control Plane, so nothing can suggest links: run "
        "`python run.py --pipeline training` first (a version becomes production once it is promoted and deployed)"
    )


def open_month(collected_months: list[str], month: str | None = None) -> str:
    """``month`` if given and not collected yet, else the month after the newest collected one."""
    if month is not None:
        try:
            month_window(month)
        except ValueError:
            raise SuggestError(f"--month must look like YYYY-MM, got {month!r}") from None
        if month in collected_months:
            raise SuggestError(
                f"month {month} is collected already: its transfers are tagged and the model has trained on them. "
                "Suggestions are for a month not yet tagged"
                + (f", e.g. {_next(max(collected_months))}." if collected_months else ".")
            )
        return month
    if not collected_months:
        raise SuggestError("nothing is collected yet, so there is no open month after it; run the training first")
    return _next(max(collected_months))


def _next(month: str) -> str:
    return month_window(month)[1].strftime("%Y-%m")


def check_open_month(tables: dict[str, pd.DataFrame], month: str) -> dict[str, pd.DataFrame]:
    """Contract checks of the extracted open month: the transfers are the month's (date inside it, month label),
    the invoices valid rows of any earlier month. Stops with a ``ContractError`` naming the rows, as collection."""
    transfers = conform("transfers", tables["transfers"], month=month)
    invoices = conform("invoices", tables["invoices"])
    start, end = (pd.Timestamp(d) for d in month_window(month))
    outside = (transfers["booked_at"] < start) | (transfers["booked_at"] >= end)
    if outside.any():
        raise ContractError(
            "transfers",
            "booked_at",
            f"{int(outside.sum())} row(s) dated outside month {month} (their month column says {month})",
            transfers[outside],
        )
    return {"invoices": invoices, "transfers": transfers}


@dataclass
class SuggestionSummary:
    """What a run wrote, for its report and the run's metadata: per transfer outcome, counts and amounts."""

    month: str
    model_name: str
    model_version: str
    transfers: int = 0
    invoices: int = 0
    rows: int = 0
    counts: dict[str, int] = field(default_factory=dict)  # auto / review / none (pays nothing), and auto_none
    amounts: dict[str, float] = field(default_factory=dict)  # transfer amounts per outcome; allocated_auto
    confidence_histogram: dict[str, list[int]] = field(default_factory=dict)  # decision -> counts per bin
    auto_threshold: float | None = None
    suggested_at: str = ""
    table: str = ""
    seconds: float = 0.0
    skipped: str | None = None

    def add(self, rows: pd.DataFrame, transfers: pd.DataFrame) -> None:
        per = rows.groupby("transfer_id", sort=False).agg(
            decision=("decision", "first"),
            confidence=("confidence", "first"),
            pays=("invoice_id", "count"),
            allocated=("allocated_amount", lambda s: float(np.abs(s.to_numpy(np.float64)).sum())),
        )
        per["amount"] = per.index.map(transfers.set_index("transfer_id")["amount"].abs())
        outcome = np.where(per["pays"] == 0, "none", per["decision"])
        self.transfers += len(per)
        self.rows += len(rows)
        for name in ("auto", "review", "none"):
            sel = outcome == name
            self.counts[name] = self.counts.get(name, 0) + int(sel.sum())
            self.amounts[name] = self.amounts.get(name, 0.0) + float(per.loc[sel, "amount"].sum())
        auto_none = int(((per["pays"] == 0) & (per["decision"] == "auto")).sum())
        self.counts["auto_none"] = self.counts.get("auto_none", 0) + auto_none
        self.amounts["allocated_auto"] = self.amounts.get("allocated_auto", 0.0) + float(
            per.loc[per["decision"] == "auto", "allocated"].sum()
        )
        edges = np.linspace(0.0, 1.0, CONFIDENCE_BINS + 1)
        for decision in DECISIONS:
            conf = per.loc[per["decision"] == decision, "confidence"].to_numpy(np.float64)
            hist = np.histogram(np.clip(conf, 0.0, 1.0), bins=edges)[0]
            old = self.confidence_histogram.get(decision, [0] * CONFIDENCE_BINS)
            self.confidence_histogram[decision] = [int(a + b) for a, b in zip(old, hist)]

    def to_dict(self) -> dict:
        return asdict(self)


def batches(transfers: pd.DataFrame, batch_size: int | None) -> list[pd.DataFrame]:
    """The transfers cut as ``match`` cuts its batches (``booking_batches``: booking order, ``batch_size`` rows)."""
    from ..matching.base import booking_batches

    return [transfers.iloc[rows] for rows in booking_batches(transfers["booked_at"].to_numpy(), batch_size)]


def suggest_month(
    warehouse: Warehouse,
    table: SuggestionTable,
    matcher,
    month: str,
    model_name: str,
    model_version: str,
    open_transfers: str = "TRUE",
    lookback_days: int = 180,
    batch_size: int | None = None,
    show_progress: bool = True,
    workdir: str | Path | None = None,
) -> SuggestionSummary:
    """Extract ``month``'s open transfers and invoices, match them with ``matcher`` in batches, and replace the
    rows of (month, model_name, model_version) in ``table`` with the suggestions. Nothing is written when the
    month has no open transfer (earlier suggestions stay)."""
    import time

    t0 = time.perf_counter()
    suggested_at = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
    summary = SuggestionSummary(
        month,
        model_name,
        str(model_version),
        auto_threshold=getattr(matcher, "auto_threshold_", None),
        suggested_at=suggested_at.isoformat(),
        table=table.name,
    )
    raw = warehouse.extract_open_month(month, open_transfers, lookback_days)
    if raw["transfers"].empty:
        summary.skipped = (
            f"no open transfers in {month} (none in the month, or none meeting suggest.open_transfers); nothing "
            "written, earlier suggestions are kept"
        )
        log.warning(summary.skipped)
        return summary
    data = check_open_month(raw, month)
    invoices, transfers = data["invoices"], data["transfers"]
    summary.invoices = len(invoices)
    parts = batches(transfers, batch_size or getattr(matcher, "batch_size", None) or len(transfers))
    bar = _progress(show_progress, len(transfers), f"suggest {month}")
    with tempfile.TemporaryDirectory(prefix="ledgerlink-suggest-", dir=workdir) as tmp:
        writer = SuggestionWriter(Path(tmp) / "suggested_links.parquet")
        try:
            for batch in parts:
                result = matcher.match(invoices, batch, explain=True)
                rows = suggestion_rows(result, month, model_name, model_version, suggested_at)
                missing = set(batch["transfer_id"]) - set(rows["transfer_id"])
                if missing:
                    raise RuntimeError(f"no decision for {len(missing)} transfer(s), e.g. {min(missing)}")
                writer.add(rows)
                summary.add(rows, batch)
                if bar is not None:
                    bar.update(len(batch))
        finally:
            path = writer.close()
            if bar is not None:
                bar.close()
        written = table.replace(month, model_name, str(model_version), path)
    if written != summary.rows:
        raise RuntimeError(f"{table.name}: {written} rows written for {summary.rows} suggested")
    summary.seconds = round(time.perf_counter() - t0, 2)
    log.info(
        "suggested %d links for %d transfers of %s with %s v%s into %s",
        summary.rows,
        summary.transfers,
        month,
        model_name,
        model_version,
        table.name,
    )
    return summary


def _progress(enabled: bool, total: int, desc: str):
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="transfer")
