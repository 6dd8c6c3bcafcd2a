"""Collect the next month: extract, validate, split (first month only) and commit to the store.

Library code with no orchestration, so the ZenML step, a benchmark or a notebook call the same thing.
"""

from __future__ import annotations

import logging

import pandas as pd

from .contract import ContractError, check_month
from .split import split_month
from .store import DatasetRef, DatasetStore, fingerprint
from .warehouse import Warehouse

log = logging.getLogger(__name__)


def next_month(warehouse: Warehouse, store: DatasetStore) -> str | None:
    """The oldest warehouse month newer than everything collected, or None when up to date."""
    collected = store.collected_months()
    newest = max(collected) if collected else ""
    for month in warehouse.months():
        if month > newest:
            return month
    return None


def month_statistics(tables: dict[str, pd.DataFrame], month: str) -> dict:
    """Statistics checked at collection; a month without any tagged link is not ready for training."""
    t, links = tables["transfers"], tables["links"]
    stats = {
        "month": month,
        "invoices": int(len(tables["invoices"])),
        "transfers": int(len(t)),
        "links": int(len(links)),
        "linked_share": float(t["transfer_id"].isin(links["transfer_id"]).mean()) if len(t) else 0.0,
        "amount_median": float(t["amount"].abs().median()) if len(t) else 0.0,
    }
    if stats["links"] == 0:
        raise ContractError(
            "links",
            None,
            f"month {month} has {stats['transfers']} transfers but no tagged links; "
            "has the finance team finished tagging it?",
        )
    return stats


def collect_month(
    warehouse: Warehouse, store: DatasetStore, month: str | None = None, test_fraction: float = 0.3, seed: int = 13
) -> tuple[DatasetRef, dict]:
    """Collect ``month`` (default: the next one). Returns the store reference and the month's statistics."""
    month = month or next_month(warehouse, store)
    if month is None:
        ref = store.ref(message="no new month in the warehouse; the store is up to date")
        return ref, {}
    raw = warehouse.extract_month(month)
    known = set()
    if store.collected_months():
        known = set(store.load_train()["invoices"]["invoice_id"])
    tables = check_month(raw, month, known_invoice_ids=known)
    stats = month_statistics(tables, month)
    source_fp = fingerprint(tables)
    if not store.collected_months() and store.read_manifest().test is None:
        train, test = split_month(tables, test_fraction, seed)
        train["invoices"] = tables["invoices"]
        test["invoices"] = tables["invoices"]
        written, message = store.add_month(month, train, test, source_fingerprint=source_fp)
    else:
        written, message = store.add_month(month, tables, source_fingerprint=source_fp)
    log.info(message)
    return store.ref(new_month=month, collected=written, message=message), stats
