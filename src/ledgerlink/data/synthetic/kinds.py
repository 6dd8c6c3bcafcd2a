"""What a month is made of, with the rate of each: payment kinds, how a title shows the invoice number, and
why a transfer pays nothing.

The monthly plan lays ``PAYMENT_KINDS`` and ``NUMBER_STYLES`` out in the order listed on a permutation of
the month's transfers, with exact counts (``round(rate * n)``, so no sampling noise on the rates); what is
left takes the default (``SINGLE``, ``OTHER``). Transfers that pay nothing draw a reason from
``NO_INVOICE_REASONS`` by probability, except duplicate payments, which get their exact count
(``rate_duplicate``) first.

To add a payment shape: add its code and a ``Share`` row here (with a ``SyntheticConfig`` rate field), and
its drawing step in ``plan.Planner.month``. Put the row last and the step after the existing ones, with
its own random stream (as ``description_extras`` does), so that every existing draw, and with it every
dataset generated before, stays the same.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# payment kinds (codes index KINDS)
SINGLE, MULTI, PARTIAL, NONE, INSTALMENT, REMITTANCE = 0, 1, 2, 3, 4, 5
KINDS = np.array(["single", "multi", "partial", "none", "instalment", "remittance"], dtype=object)
# how the title shows the invoice number(s) (codes index CATS); REFERENCE: the reference that the invoice's
# description carries (a PO, contract, order or assignment number), not its invoice number
EXACT, DAMAGED, OTHER, ABSENT, REFERENCE = 0, 1, 2, 3, 4
CATS = np.array(["exact", "damaged", "other_format", "absent", "reference"], dtype=object)


@dataclass(frozen=True)
class Share:
    """A code laid out on an exact share of a month's transfers; ``rate`` names the ``SyntheticConfig`` field."""

    code: int
    rate: str


# shares of all transfers; the rest pay one invoice (SINGLE)
PAYMENT_KINDS = (
    Share(NONE, "rate_no_invoice"),
    Share(MULTI, "rate_multi_invoice"),
    Share(PARTIAL, "rate_partial"),
    Share(INSTALMENT, "rate_instalment"),
    Share(REMITTANCE, "rate_remittance"),
)
# shares of paying transfers; the rest show the number in another format (OTHER)
NUMBER_STYLES = (
    Share(EXACT, "rate_exact_number"),
    Share(DAMAGED, "rate_damaged_number"),
    Share(ABSENT, "rate_no_number"),
    Share(REFERENCE, "rate_description_ref"),
)
# instalments: parts per invoice and their probabilities; days between two parts
INSTALMENT_PARTS, INSTALMENT_PARTS_P = [2, 3, 4, 5], [0.35, 0.3, 0.2, 0.15]
INSTALMENT_GAP_DAYS = (7, 35)
# remittances: invoices per transfer
REMITTANCE_SIZES = (10, 25)


@dataclass(frozen=True)
class Reason:
    """Why a transfer pays no invoice.

    ``amounts``: log-uniform range of its amount, or None when it takes the amount of a real invoice of a
    known contractor (refund, advance, duplicate: the hard ones). ``counterparty``: the kind of special
    entity that sends it (``World.special``), or None for that contractor. ``outgoing``: we pay (negative).
    """

    name: str
    p: float
    amounts: tuple[float, float] | None
    counterparty: str | None
    outgoing: bool


NO_INVOICE_REASONS = (  # p: among transfers that pay nothing, duplicates aside (their count is rate_duplicate)
    Reason("bank_fee", 0.13, (1.0, 30.0), "bank", True),
    Reason("interest", 0.06, (5.0, 200.0), "bank", False),
    Reason("salary", 0.19, (2500.0, 9000.0), "person", True),
    Reason("tax", 0.08, (300.0, 30000.0), "tax", True),
    Reason("card_settlement", 0.11, (100.0, 20000.0), "card", False),
    Reason("other_income", 0.09, (500.0, 50000.0), "other", False),
    Reason("refund", 0.15, None, None, True),
    Reason("advance", 0.19, None, None, False),
    Reason("duplicate", 0.0, None, None, False),
)
REASONS = [r.name for r in NO_INVOICE_REASONS]
REASON_P = np.array([r.p for r in NO_INVOICE_REASONS])
R_SALARY, R_CARD, R_OTHER_INCOME = (REASONS.index(n) for n in ("salary", "card_settlement", "other_income"))
R_REFUND, R_ADVANCE, R_DUPLICATE = (REASONS.index(n) for n in ("refund", "advance", "duplicate"))
REFERS_TO_INVOICE = np.array([r.amounts is None for r in NO_INVOICE_REASONS])  # refund, advance, duplicate
OUTGOING_REASONS = [i for i, r in enumerate(NO_INVOICE_REASONS) if r.outgoing]
