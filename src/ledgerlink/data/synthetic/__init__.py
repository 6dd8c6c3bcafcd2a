"""Deterministic synthetic warehouse data: invoices, bank transfers and the human links between them.

It is the embedded default warehouse, the test data and the benchmark data, so the world is built
to be hard in the ways real bank matching is hard, at configurable and measured rates.

World model
-----------
* **Contractors** (``contractors``) have a legal name ("Kowalski Logistics Sp. z o.o."), a country
  and language (pl/de/en), a heavy-tailed activity weight, an amount scale, a payment term, an
  invoice-number format and a stable IBAN-like account at one of six banks. About 20 % are suppliers
  (we pay them: negative invoices, outgoing negative transfers); the rest are customers. A share
  ``rate_same_amount_siblings`` bills a fixed amount (subscriptions), so they have several open
  invoices of exactly the same amount. Some customers belong to a group whose parent company may
  pay for them; every customer has a factoring company that may pay instead.
* **Invoice numbers** come from numbering series per format, e.g. ``FV/2025/03/0142`` (monthly
  reset), ``INV-2025-00142``, ``2025/142/KR``, ``F142/03/25``, ``0000142`` for our sales invoices,
  per-supplier series (``RE-2025-0117``, ``FA 117/03/2025``, ``202503117``) for supplier invoices
  and ``KOR/...``/``CN-...`` for credit notes. Numbers are sequential by issue date, so a one-digit
  typo often hits another real invoice number, and the same digits recur across series and months.
* **Transfers**: exactly ``transfers_per_month`` per month, booked on weekdays. Each month the
  kinds are laid out with exact counts: ``rate_no_invoice`` pay nothing, ``rate_multi_invoice`` pay
  2..6 invoices of one contractor, ``rate_partial`` pay part of one invoice, ``rate_instalment`` one part of an
  instalment plan, ``rate_remittance`` 10-25 invoices, the rest pay one invoice.
  ``rate_outgoing`` of all transfers are outgoing payments of supplier invoices.
  Invoices are issued 0..90 days before the payment (most within the payment term, ~12 % late,
  some early; remainders of partial payments up to ~150 days), never before the first month, so
  links point to the transfer's month or earlier. The first month has only young invoices.
* **Partial payments** pay 30-70 % of one invoice. Half of them get the remainder paid 7..60 days
  later by another (also "partial") transfer, so that invoice has two links; the other half stay
  partly open forever.
* **Fees/discounts** (``rate_fee``): the transfer is up to 2 % (or a fixed 5-25) below the invoice
  total. Allocation: proportional to the invoice amounts, cents residue on the last link, so the
  allocations of a transfer always sum exactly to the transfer amount.
* **Credit notes** (``rate_credit_note`` of invoices, negative): most are offset inside incoming
  multi-invoice transfers (their link carries a *negative* allocation in a positive transfer); the
  rest stay open.
* **Transfers that pay nothing**: bank fees, interest, salaries, taxes, card settlements, other
  income, and three genuinely hard ones from known contractors: refunds (negative, amount of a real
  invoice, sometimes quoting its number), advance payments (amount equal to an open invoice of the
  same contractor) and duplicate payments (exact number and amount of an invoice already paid).
* **Open invoices**: besides invoices not yet paid, ~4 % of invoices are never paid, and the last
  months also hold invoices whose payment falls after the horizon (simulated, then cut off), so
  every month has many open distractors.
* **Text**: titles carry the exact number (``rate_exact_number``), a damaged one
  (``rate_damaged_number``: typo, adjacent transposition, truncation), none (``rate_no_number``) or,
  for the rest, the number in another format (digits only, separators changed or stripped). ~30 %
  of titles also carry noise numbers (order numbers, dates, account fragments, amounts, tax ids).
  English, Polish and German words are mixed by the payer's country. The payer name is a variant
  (``rate_name_variant``: abbreviation, legal form dropped/changed, typo, upper-cased and truncated
  to 20 characters) and/or another entity (``rate_other_payer``: parent company or factor). Accounts
  are stable per payer; ~4 % of transfers come from the payer's second account, ~2 % carry none.
  Phenomenon rates (number, description reference, fee, overpayment, other payer, name variant) are shares of
  *paying* transfers; kind rates (none, multi, partial, instalment, remittance, outgoing, duplicate) are shares
  of *all* transfers; the credit-note rate is a share of invoices; reference, currency, large-amount and
  batch-issue rates are shares of contractors. Counts are laid out exactly per month (no sampling noise on the rates).
* **Payment shapes of real ledgers** (issue 15), each at its own rate, laid out with exact counts like the kinds:

  - *instalments* (``rate_instalment`` of all transfers): an invoice (1.5-4x the usual amount) paid by 2-5
    transfers 7-35 days apart (across months), roughly equal, often round parts, the last what is left; 15 % of
    the parts lose a small deduction. The invoice's description carries an assignment or document number
    (``ASG-2025-004411``, ``DOK 2025 004411``) that 65 % of the titles quote instead of the invoice number; 60 %
    of the payer names are damaged. Truth: kind ``instalment``, ``instalment_part`` of ``n_parts``.
  - *description references* (``rate_invoice_reference`` of contractors put a PO, contract, order, project, case,
    delivery-note or agreement reference in every description, in ten styles and three languages; contract
    numbers cover blocks of four invoices) and ``rate_description_ref`` of paying transfers quote that reference
    instead of the invoice number (number_in_title ``reference``).
  - *overpayments* (``rate_overpayment`` of paying transfers): one invoice paid with a round surplus or 1-30 %
    more; the link allocates the invoice amount, the surplus stays on account.
  - *remittances* (``rate_remittance`` of all transfers): one of the big customers (top fifth by activity) pays
    10-25 invoices in one transfer; the title lists each number with probability 0.92, in 40 % of the advices
    with the amount paid on it ("remit 2025/0142 1200.00; 2025/0150 830.50"); a third pay their last invoice only
    in part (``remittance_partial``); credit notes are netted in them as in multi payments.
  - *duplicate payments*: ``rate_duplicate`` of all transfers pay an already paid invoice again (they pay nothing).
  - *currencies and large amounts*: ``rate_foreign_currency`` of contractors bill in one of eight other currencies
    (PLN, USD, GBP, CHF, CZK, SEK, NOK, HUF; the country's own more often), their amounts scaled by the exchange
    rate; ``rate_large_amounts`` of contractors bill 30-1000x more (up to ~10^7). A transfer is in the currency
    of the invoices it pays.
  - *batch issue dates*: ``rate_batch_issue`` of contractors issue all of a month's invoices on their billing day,
    so dates say little about which of them a transfer pays.

  Truth columns: ``overpayment``, ``remittance_partial``, ``credit_note`` (a credit note netted inside),
  ``currency``, ``foreign_currency``, ``large_amount``, ``batch_issued``, ``description_ref``.
* **Drift** (``drift_month``, 1-based): from that month on the world changes; ``drift_kind`` names
  the change, or several joined by "+" (``"title_format+payer_change"``). Months before
  ``drift_month`` are byte-identical to a run without drift. ``truth.drifted`` marks the affected
  transfers (of any kind); ``truth.number_in_title`` describes the title as written (after drift).

  - ``title_format``: the big bank (bank 0, ~40 % of payers) rewrites the titles of its customers'
    transfers: a ``SCT /REMI/`` prefix, upper case, invoice numbers stripped of separators, 40 % of
    numbers dropped altogether, and the payer name upper-cased and truncated to 18 characters. The
    links are unchanged; only text changes.
  - ``payer_change``: a payment processor / factoring company starts paying on behalf of a share
    ``drift_share_contractors`` of the customers (picked by count, fixed per seed): every incoming
    paying transfer of theirs (not batch deposits) comes from one of the processor's few new
    accounts, with the processor's name ("PAYFLOW COLLECTIONS BV", "Nordic Factoring AB") as
    counterparty, and a title in the processor's format: its own long reference number (not an
    invoice number), the invoice number(s) in only ~30 % of titles, the contractor's name
    abbreviated in ~40 %. ~20 % of single/multi payments without a discount lose a small processor
    fee (<= 2 %, truth ``fee``; allocations scaled as for discounts). Truth: ``other_payer`` is set
    and ``name_variant`` says whether the processor's name is shown in a variant. Which transfers
    are paid and how they link is unchanged; the remaining transfers' text is unchanged too.
* **description_only=True**: the same world (same draws) but invoices carry one ``description``
  ("Nordwind Handels GmbH - consulting services March - INV-2025-00142") and transfers one terse
  bank line ``title`` ("NORDWIND HANDELS 142 MAR"); the columns invoice_number, counterparty_name
  and counterparty_account are absent. Added on top: ~2 % voided invoices with a same-size negative
  reversal ("VOID ..."/"STORNO ..."), neither ever paid, and ~2 % batch deposits (one transfer
  paying 2..5 invoices of different contractors, "BATCH DEPOSIT 3 ITEMS", truth kind "multi").

``generate`` returns ``{"invoices", "transfers", "links", "truth"}``; ``truth`` holds ground-truth
phenomena per transfer for tests and evaluation slices and is never written to the warehouse.
IDs (``INV-0000001``, ``TRF-0000001``) are assigned after shuffling within each month, so they say
nothing about the links. Rows are ordered by month, shuffled within a month.

Package layout: ``config`` (SyntheticConfig, its checks), ``kinds`` (payment kinds, number styles and
no-invoice reasons with their rates: where a new payment shape starts), ``vocabulary`` (names and
phrasings), ``world`` (entities and their traits), ``plan`` (the numeric month-by-month plan, one
``MonthDraft`` per month), ``text`` (number formats and damage) and ``render`` (strings, ids and frames).
"""

from __future__ import annotations

import dataclasses

import pandas as pd

from .config import SyntheticConfig, month_labels, parse_drift_kind, validate
from .plan import Planner
from .render import Renderer
from .world import World

__all__ = ["SyntheticConfig", "generate", "month_labels", "parse_drift_kind"]


def generate(config: SyntheticConfig | None = None, **overrides) -> dict[str, pd.DataFrame]:
    """Generate ``{"invoices", "transfers", "links", "truth"}``; identical for an identical config."""
    cfg = dataclasses.replace(config, **overrides) if config is not None else SyntheticConfig(**overrides)
    validate(cfg)
    world = World(cfg)
    plan = Planner(cfg, world).run()
    return Renderer(cfg, world, plan).frames()
