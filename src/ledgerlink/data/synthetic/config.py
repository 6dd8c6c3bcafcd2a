"""The generator's one input: ``SyntheticConfig``, its checks, and the month labels it yields."""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass

import pandas as pd

from .kinds import NUMBER_STYLES, PAYMENT_KINDS

DRIFT_KINDS = ("title_format", "payer_change")


@dataclass
class SyntheticConfig:
    """Size, seed, phenomenon rates and drift of a generated world (see the package docstring for each rate)."""

    seed: int = 7
    months: int = 24
    start_month: str = "2025-01"
    contractors: int = 200
    transfers_per_month: int = 800
    currency: str = "EUR"  # the home currency; foreign contractors bill in one of FOREIGN_CURRENCIES
    rate_exact_number: float = 0.42
    rate_damaged_number: float = 0.18
    rate_no_number: float = 0.20
    rate_multi_invoice: float = 0.10
    rate_partial: float = 0.05
    rate_fee: float = 0.05
    rate_no_invoice: float = 0.08
    rate_other_payer: float = 0.15
    rate_name_variant: float = 0.35
    rate_credit_note: float = 0.03
    rate_outgoing: float = 0.05
    rate_same_amount_siblings: float = 0.15
    # payment shapes of real ledgers (issue 15); kinds are shares of all transfers, the rest as noted
    rate_instalment: float = 0.03  # transfers that pay one of 2-5 instalments of an invoice
    rate_remittance: float = 0.02  # transfers that pay 10-25 invoices of one customer (a remittance advice)
    rate_description_ref: float = 0.08  # paying transfers whose title quotes the invoice description's reference
    rate_overpayment: float = 0.02  # paying transfers larger than the one invoice they pay
    rate_duplicate: float = 0.01  # transfers that pay an already paid invoice a second time (they pay nothing)
    rate_invoice_reference: float = 0.45  # contractors that put a PO/contract/order reference in every description
    rate_foreign_currency: float = 0.25  # contractors that bill in another currency than ``currency``
    rate_large_amounts: float = 0.04  # contractors whose amounts are 30-1000x larger (up to ~10^7)
    rate_batch_issue: float = 0.3  # contractors that issue a month's invoices on one billing day
    drift_month: int | None = None
    drift_kind: str = "title_format"  # or "payer_change", or several joined by "+"
    drift_share_contractors: float = 0.5  # payer_change: share of customers the processor pays for
    description_only: bool = False


def month_labels(config: SyntheticConfig | None = None) -> list[str]:
    """The ``YYYY-MM`` labels of the generated months, in order."""
    cfg = config or SyntheticConfig()
    start = pd.Period(cfg.start_month, freq="M")
    return [str(start + i) for i in range(cfg.months)]


def validate(cfg: SyntheticConfig) -> None:
    """Raise ValueError naming the field of a config the generator cannot honour."""
    rates = {f.name: getattr(cfg, f.name) for f in dataclasses.fields(cfg) if f.name.startswith("rate_")}
    bad = [k for k, v in rates.items() if not 0.0 <= v <= 1.0]
    if bad:
        raise ValueError(f"rates must lie in [0, 1]: {bad}")
    for table in (PAYMENT_KINDS, NUMBER_STYLES):  # each is laid out on one permutation: the shares must fit
        if sum(getattr(cfg, share.rate) for share in table) > 1:
            raise ValueError(f"{' + '.join(share.rate for share in table)} must not exceed 1")
    if cfg.months < 1 or cfg.transfers_per_month < 1 or cfg.contractors < 2:
        raise ValueError("need months >= 1, transfers_per_month >= 1 and contractors >= 2")
    if not re.fullmatch(r"[A-Z]{3}", cfg.currency):
        raise ValueError(f"currency must be a 3-letter code, got {cfg.currency!r}")
    if cfg.rate_duplicate > cfg.rate_no_invoice:
        raise ValueError(
            f"rate_duplicate ({cfg.rate_duplicate}) must not exceed rate_no_invoice ({cfg.rate_no_invoice}): "
            "a duplicate payment is a transfer that pays nothing"
        )
    parse_drift_kind(cfg.drift_kind)
    if not 0.0 <= cfg.drift_share_contractors <= 1.0:
        raise ValueError(f"drift_share_contractors must lie in [0, 1], got {cfg.drift_share_contractors!r}")
    if cfg.drift_month is not None and cfg.drift_month < 1:
        raise ValueError("drift_month is 1-based and must be >= 1")
    pd.Period(cfg.start_month, freq="M")


def parse_drift_kind(kind: str) -> tuple[str, ...]:
    """``"title_format+payer_change"`` -> ``("title_format", "payer_change")``; unknown parts raise ValueError."""
    if not isinstance(kind, str):
        raise ValueError(
            f"drift_kind must be a string like 'title_format' or 'title_format+payer_change', got {kind!r}"
        )
    parts = [p.strip() for p in kind.split("+")]
    bad = [p for p in parts if p not in DRIFT_KINDS]
    if bad:
        raise ValueError(
            f"drift_kind {kind!r}: unknown part(s) {bad}; each '+'-joined part must be one of {list(DRIFT_KINDS)}"
        )
    return tuple(dict.fromkeys(parts))
