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
  2..6 invoices of one contractor, ``rate_partial`` pay part of one invoice, the rest pay one invoice.
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
  Phenomenon rates (number, fee, other payer, name variant) are shares of *paying* transfers;
  kind rates (none, multi, partial, outgoing) are shares of *all* transfers; the credit-note rate is
  a share of invoices. Counts are laid out exactly per month (no sampling noise on the rates).
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
"""

from __future__ import annotations

import dataclasses
import random
import re
import unicodedata
from dataclasses import dataclass

import numpy as np
import pandas as pd

__all__ = ["SyntheticConfig", "generate", "month_labels", "parse_drift_kind"]


@dataclass
class SyntheticConfig:
    seed: int = 7
    months: int = 24
    start_month: str = "2025-01"
    contractors: int = 200
    transfers_per_month: int = 800
    currency: str = "EUR"
    rate_exact_number: float = 0.45
    rate_damaged_number: float = 0.20
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
    drift_month: int | None = None
    drift_kind: str = "title_format"  # or "payer_change", or several joined by "+"
    drift_share_contractors: float = 0.5  # payer_change: share of customers the processor pays for
    description_only: bool = False


# ----------------------------------------------------------------------------------------------
# constants
SINGLE, MULTI, PARTIAL, NONE = 0, 1, 2, 3
KINDS = np.array(["single", "multi", "partial", "none"], dtype=object)
EXACT, DAMAGED, OTHER, ABSENT = 0, 1, 2, 3
CATS = np.array(["exact", "damaged", "other_format", "absent"], dtype=object)
REASONS = ["bank_fee", "interest", "salary", "tax", "card_settlement", "other_income", "refund", "advance", "duplicate"]
REASON_P = np.array([0.12, 0.05, 0.17, 0.07, 0.10, 0.08, 0.14, 0.17, 0.10])
R_REFUND, R_ADVANCE, R_DUPLICATE = 6, 7, 8
DRIFT_KINDS = ("title_format", "payer_change")
TAIL_MONTHS = 3  # months simulated past the horizon so late months hold invoices paid later
UNPAID_RATE = 0.04
BATCH_RATE, VOID_RATE = 0.02, 0.02
BIG_BANK = 0

_BASES = """Kowalski Nowak Wiśniewski Zieliński Lewandowski Wójcik Kamiński Mazur Krawczyk Dąbrowski
Nordwind Alpen Rhein Elbe Baltic Vistula Oder Tatra Karpat Bergmann Schneider Fischer Weber Becker
Hoffmann Schulz Acme Apex Summit Pioneer Horizon Crown Falcon Phoenix Atlas Orion Sterling Harbour
Kingsley Ashford Bright Silverline Greenfield Oakridge Redwood Bluewater Northgate Westbrook Amber
Polaris Vector Quantum Nova Delta Omega Zenit Meridian Sigma Proxima Lumen Vertex Granit Solaris
Borealis Merkur Hansa Helios Saturn Jantar Wawel Sudety Mazowsze Pomorze""".split()
_INDUSTRIES = """Logistics Handels Widgets Software Consulting Trans Bau Foods Systems Textil Energy Media
Pharma Metal Print Auto Agro Tech Design Service Solutions Trading Electric Medical Paper""".split()
_REGIONS = ["Polska", "Nord", "Süd", "International", "Europe", "Ost", "West", "Central"]
_FORMS = {
    "PL": ["Sp. z o.o.", "Sp. z o.o.", "S.A.", "Sp.j.", "sp.k."],
    "DE": ["GmbH", "GmbH", "AG", "GmbH & Co. KG", "KG"],
    "GB": ["Ltd", "Ltd", "PLC", "LLP"],
    "NL": ["B.V.", "N.V."],
    "CZ": ["s.r.o.", "a.s."],
}
_FORM_VARIANTS = {
    "Sp. z o.o.": [
        "Sp z oo",
        "SP. Z O.O.",
        "spółka z o.o.",
        "Sp. z o. o.",
        "sp. z o.o.",
        "Spółka z ograniczoną odpowiedzialnością",
    ],
    "S.A.": ["SA", "Spółka Akcyjna", "S.A"],
    "Sp.j.": ["Spółka Jawna", "SJ"],
    "sp.k.": ["Spółka Komandytowa", "SK"],
    "GmbH": ["GMBH", "Gesellschaft mbH", "G.m.b.H."],
    "AG": ["Aktiengesellschaft", "A.G."],
    "GmbH & Co. KG": ["GmbH + Co KG", "GMBH & CO KG", "GmbH&Co.KG"],
    "KG": ["K.G.", "Kommanditgesellschaft"],
    "Ltd": ["Limited", "LTD.", "Ltd."],
    "PLC": ["plc", "P.L.C."],
    "LLP": ["L.L.P."],
    "B.V.": ["BV", "B.V"],
    "N.V.": ["NV"],
    "s.r.o.": ["spol. s r.o.", "SRO"],
    "a.s.": ["as", "A.S."],
}
_COUNTRIES = np.array(["PL", "DE", "GB", "NL", "CZ"], dtype=object)
_COUNTRY_P = [0.45, 0.25, 0.15, 0.08, 0.07]
_VAT = {"PL": 1.23, "DE": 1.19, "GB": 1.20, "NL": 1.21, "CZ": 1.21}
_LANG = {"PL": "pl", "DE": "de", "GB": "en", "NL": "en", "CZ": "en"}
_FACTORS = [
    ("Pekao Faktoring", "Sp. z o.o.", "PL"),
    ("Coface Finanz", "GmbH", "DE"),
    ("BNP Paribas Factor", "GmbH", "DE"),
    ("Bibby Financial Services", "Ltd", "GB"),
    ("ING Commercial Finance", "B.V.", "NL"),
    ("mFaktoring", "S.A.", "PL"),
]
# payer_change drift: (legal name, names as banks show them, their weights, country, bank code, accounts,
# share of the affected contractors, short name for terse bank lines)
_PROCESSORS = [
    (
        "PayFlow Collections B.V.",
        ["PAYFLOW COLLECTIONS BV", "PayFlow Collections B.V.", "PAYFLOW COLL. BV"],
        [0.7, 0.2, 0.1],
        "NL",
        "BUNQ",
        3,
        0.65,
        "PAYFLOW COLLECTIONS",
    ),
    (
        "Nordic Factoring AB",
        ["Nordic Factoring AB", "NORDIC FACTORING AB", "Nordic Factoring AB (publ)"],
        [0.7, 0.2, 0.1],
        "SE",
        "500",
        2,
        0.35,
        "NORDIC FACTORING",
    ),
]
_T_PROC = [  # ({ref}, then optional {inv} numbers and {abbr} contractor name)
    [
        ("PAYFLOW REF {ref}", " INV {inv}", " FOR {abbr}"),
        ("{ref} PAYFLOW PAYOUT", " {inv}", " {abbr}"),
        ("PFC {ref}", " /INV/ {inv}", " /ORD/ {abbr}"),
    ],
    [
        ("Nordic Factoring remittance NF{ref}", " invoice {inv}", " on behalf of {abbr}"),
        ("NF{ref}", " faktura {inv}", " {abbr}"),
        ("Payment ref NF-{ref}", " inv. {inv}", " obo {abbr}"),
    ],
]
PROC_NUMBER_SHARE, PROC_ABBR_SHARE, PROC_FEE_SHARE, PROC_OTHER_ACCOUNT = 0.3, 0.4, 0.2, 0.05
_SPECIAL = {  # reason -> counterparties of transfers that pay nothing
    "bank": [("mBank", "S.A.", "PL")],
    "tax": [
        ("Urząd Skarbowy Warszawa-Śródmieście", "", "PL"),
        ("Finanzamt München", "", "DE"),
        ("HMRC", "", "GB"),
        ("ZUS", "", "PL"),
    ],
    "card": [
        ("Elavon Financial Services", "DAC", "PL"),
        ("PayU", "S.A.", "PL"),
        ("Adyen", "N.V.", "NL"),
        ("Stripe Payments Europe", "Ltd", "GB"),
    ],
    "other": [
        ("PZU", "S.A.", "PL"),
        ("Allianz Versicherungs", "AG", "DE"),
        ("Bank Gospodarstwa Krajowego", "", "PL"),
        ("Aviva", "PLC", "GB"),
    ],
}
_FIRST = (
    "Jan Anna Piotr Maria Tomasz Katarzyna Michael Julia Stefan Ewa Thomas Sabine David Emma Lukas Zofia Marek "
    "Agnieszka"
).split()
_LAST = (
    "Kowalczyk Szymański Woźniak Kaczmarek Müller Wagner Smith Jones Taylor Brown Jankowski Pawlak Richter Klein Wolf"
).split()
_SERVICES = [
    "consulting services",
    "transport services",
    "software licence",
    "maintenance",
    "office supplies",
    "spare parts",
    "subscription",
    "marketing services",
    "cleaning services",
    "IT support",
    "rent",
    "hosting",
    "translation",
    "training",
    "freight",
    "packaging",
    "installation",
    "audit",
]
_MON_EN = "January February March April May June July August September October November December".split()
_MON_PL = "styczeń luty marzec kwiecień maj czerwiec lipiec sierpień wrzesień październik listopad grudzień".split()
_MON_DE = "Januar Februar März April Mai Juni Juli August September Oktober November Dezember".split()

_T_NUM = {
    "en": [
        "Payment {n}",
        "Invoice {n}",
        "INV {n}",
        "{n}",
        "Payment for invoice {n}",
        "Ref: {n}",
        "inv. {n} thank you",
        "invoice no {n}",
    ],
    "pl": [
        "Zapłata za fakturę {n}",
        "Faktura {n}",
        "FV {n}",
        "Płatność za {n}",
        "zaplata {n}",
        "{n}",
        "Przelew faktura nr {n}",
        "fakt. {n}",
    ],
    "de": [
        "Rechnung {n}",
        "Zahlung RE {n}",
        "Re-Nr. {n}",
        "Begleichung Rechnung {n}",
        "{n}",
        "Rechnungsnr. {n}",
        "RG {n}",
    ],
}
_T_NONUM = {
    "en": [
        "payment",
        "{mon} services",
        "invoice payment",
        "services {mon} {y}",
        "transfer",
        "as agreed",
        "monthly fee {mon}",
        "settlement",
        "payment invoice",
    ],
    "pl": [
        "zaplata faktura",
        "płatność",
        "usługi {mon_pl}",
        "za fakturę",
        "przelew",
        "abonament {mm}/{y}",
        "należność",
        "zapłata za usługi",
    ],
    "de": [
        "Zahlung",
        "Rechnung",
        "Leistungen {mon_de}",
        "Überweisung",
        "Begleichung",
        "Miete {mm}/{y}",
        "Zahlung offene Posten",
    ],
}
_T_PART1 = {
    "en": ["partial payment", "instalment 1"],
    "pl": ["część 1", "rata 1/2", "czesciowa wplata"],
    "de": ["Teilzahlung", "Rate 1"],
}
_T_PART2 = {
    "en": ["remaining balance", "final instalment"],
    "pl": ["dopłata", "rata 2/2", "reszta"],
    "de": ["Restzahlung", "Rate 2"],
}
_T_REASON = {
    "bank_fee": [
        "Opłata za prowadzenie rachunku",
        "Account maintenance fee",
        "Prowizja za przelew",
        "Kontoführungsgebühr {mm}/{y}",
        "Bank charges {mon}",
        "SEPA transfer fee",
    ],
    "interest": ["Odsetki", "Interest {mon} {y}", "Kapitalisierung Zinsen", "Credit interest Q{q}"],
    "salary": ["Wynagrodzenie {mm}/{y}", "Salary {mon} {y}", "Gehalt {mon_de}", "wypłata {mon_pl}", "Premia Q{q}"],
    "tax": [
        "VAT-7 {mm}/{y}",
        "PIT-4R {mm}/{y}",
        "CIT-8 zaliczka {mm}/{y}",
        "Umsatzsteuer-Voranmeldung {mm}/{y}",
        "HMRC VAT {y}Q{q}",
        "ZUS DRA {mm}/{y}",
    ],
    "card_settlement": [
        "Rozliczenie kart {dd}.{mm}.{y}",
        "Card settlement batch {ref}",
        "Kartenumsätze {dd}.{mm}.",
        "POS settlement {y}{mm}{dd}",
        "payout {ref}",
    ],
    "other_income": [
        "odszkodowanie polisa {ref}",
        "insurance claim {ref}",
        "loan tranche {ref}",
        "dotacja",
        "Zuschuss {y}",
        "deposit return",
    ],
    "refund_num": ["zwrot nadpłaty {n}", "Refund {n}", "Rückerstattung {n}", "korekta {n} zwrot"],
    "refund": ["zwrot nadpłaty", "Refund overpayment", "Rückerstattung", "zwrot", "refund as agreed"],
    "advance": [
        "zaliczka",
        "zaliczka na poczet dostawy",
        "advance payment",
        "prepayment order {ref}",
        "Anzahlung Auftrag {ref}",
        "przedpłata zam. {ref}",
    ],
}
_D_REASON = {  # terse bank lines (description_only)
    "bank_fee": ["BANK FEE {MON}", "ACCOUNT FEE", "TRANSFER FEE"],
    "interest": ["INTEREST {MON}", "CREDIT INTEREST"],
    "salary": ["SALARY {MON} {PERSON}", "PAYROLL {MON}"],
    "tax": ["TAX PAYMENT {mm}/{y}", "VAT {mm}/{y}"],
    "card_settlement": ["CARD SETTLEMENT {mm}{dd}", "POS BATCH {ref}"],
    "other_income": ["INSURANCE CLAIM {ref}", "LOAN {ref}", "GRANT"],
    "refund": ["REFUND {NAME}", "REFUND {NAME} {n}"],
    "advance": ["{NAME} ADVANCE", "{NAME} PREPAYMENT {ref}"],
}
_FOLD = str.maketrans({"ł": "l", "Ł": "L", "ß": "ss", "ø": "o", "Ø": "O"})


def _fold(s: str) -> str:
    """Banks often transliterate names to ASCII."""
    s = s.translate(_FOLD)
    return "".join(c for c in unicodedata.normalize("NFKD", s) if not unicodedata.combining(c))


# ----------------------------------------------------------------------------------------------
# public API
def month_labels(config: SyntheticConfig | None = None) -> list[str]:
    """The ``YYYY-MM`` labels of the generated months, in order."""
    cfg = config or SyntheticConfig()
    start = pd.Period(cfg.start_month, freq="M")
    return [str(start + i) for i in range(cfg.months)]


def generate(config: SyntheticConfig | None = None, **overrides) -> dict[str, pd.DataFrame]:
    """Generate ``{"invoices", "transfers", "links", "truth"}``; identical for an identical config."""
    cfg = dataclasses.replace(config, **overrides) if config is not None else SyntheticConfig(**overrides)
    _validate(cfg)
    world = _World(cfg)
    plan = _Planner(cfg, world).run()
    return _Renderer(cfg, world, plan).frames()


def _validate(cfg: SyntheticConfig) -> None:
    rates = {f.name: getattr(cfg, f.name) for f in dataclasses.fields(cfg) if f.name.startswith("rate_")}
    bad = [k for k, v in rates.items() if not 0.0 <= v <= 1.0]
    if bad:
        raise ValueError(f"rates must lie in [0, 1]: {bad}")
    if cfg.rate_no_invoice + cfg.rate_multi_invoice + cfg.rate_partial > 1:
        raise ValueError("rate_no_invoice + rate_multi_invoice + rate_partial must not exceed 1")
    if cfg.rate_exact_number + cfg.rate_damaged_number + cfg.rate_no_number > 1:
        raise ValueError("rate_exact_number + rate_damaged_number + rate_no_number must not exceed 1")
    if cfg.months < 1 or cfg.transfers_per_month < 1 or cfg.contractors < 2:
        raise ValueError("need months >= 1, transfers_per_month >= 1 and contractors >= 2")
    if not re.fullmatch(r"[A-Z]{3}", cfg.currency):
        raise ValueError(f"currency must be a 3-letter code, got {cfg.currency!r}")
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


# ----------------------------------------------------------------------------------------------
def _group_sum(x: np.ndarray, starts: np.ndarray) -> np.ndarray:
    return np.add.reduceat(x, starts) if len(starts) else np.zeros(0)


def _iban(rng: np.random.Generator, country: str, bank_code: str) -> str:
    """IBAN-like account with valid mod-97 check digits (country-typical length)."""
    n = {"PL": 16, "DE": 10, "GB": 8, "NL": 10, "CZ": 16, "SE": 17}[country]
    bban = bank_code + "".join(map(str, rng.integers(0, 10, n)))
    num = "".join(str(int(c, 36)) for c in bban + country + "00")
    return f"{country}{98 - int(num) % 97:02d}{bban}"


class _World:
    """Entities (contractors, parents, factors, special counterparties, persons) and their traits."""

    def __init__(self, cfg: SyntheticConfig):
        rng = np.random.default_rng([cfg.seed, 0])
        C = cfg.contractors
        bases, forms, countries = [], [], []
        # unique contractor names: base x industry (x region when more are needed)
        nb, ni = len(_BASES), len(_INDUSTRIES)
        total = nb * ni * (1 + len(_REGIONS))
        picks = rng.permutation(nb * ni)[:C] if C <= nb * ni else rng.permutation(total)[:C]
        ctry = rng.choice(_COUNTRIES, C, p=_COUNTRY_P)
        for k, p in enumerate(picks):
            b, rest = _BASES[p % nb], p // nb
            ind, reg = _INDUSTRIES[rest % ni], rest // ni
            base = f"{b} {ind}" + (f" {_REGIONS[reg - 1]}" if reg else "") + (f" {k}" if k >= total else "")
            form = _FORMS[ctry[k]][rng.integers(len(_FORMS[ctry[k]]))]
            bases.append(base), forms.append(form), countries.append(ctry[k])
        # parent companies and factors
        G = max(1, C // 12)
        for g in range(G):
            c = str(rng.choice(_COUNTRIES, p=_COUNTRY_P))
            form = _FORMS[c][0]
            (
                bases.append(f"{_BASES[rng.integers(nb)]} {['Group', 'Holding', 'Capital'][g % 3]}"),
                forms.append(form),
                countries.append(c),
            )
        self.factor_ids = np.arange(len(bases), len(bases) + len(_FACTORS))
        for b, f, c in _FACTORS:
            bases.append(b), forms.append(f), countries.append(c)
        self.special = {}
        for key, items in _SPECIAL.items():
            self.special[key] = np.arange(len(bases), len(bases) + len(items))
            for b, f, c in items:
                bases.append(b), forms.append(f), countries.append(c)
        P = max(20, C // 4)
        self.special["person"] = np.arange(len(bases), len(bases) + P)
        for _ in range(P):
            (
                bases.append(f"{_FIRST[rng.integers(len(_FIRST))]} {_LAST[rng.integers(len(_LAST))]}"),
                forms.append(""),
                countries.append("PL"),
            )
        E = len(bases)
        self.base, self.form, self.country = bases, forms, countries
        self.legal = [f"{b} {f}".strip() for b, f in zip(bases, forms)]
        self.lang = [_LANG[c] if rng.random() < 0.8 else "en" for c in countries]
        self.bank = rng.choice(6, E, p=[0.4, 0.2, 0.15, 0.1, 0.1, 0.05])
        self.bank[self.special["bank"]] = 1  # our own bank is not the drifting one
        codes = {
            (c, b): (
                (
                    "".join(rng.choice(list("ABCDEFGHIJKLMNOPQRSTUVWXYZ"), 4))
                    + "".join(map(str, rng.integers(0, 10, 6 if c == "GB" else 0)))
                )
                if c in ("GB", "NL")
                else "".join(map(str, rng.integers(0, 10, 4 if c == "CZ" else 8)))
            )
            for c in _COUNTRIES
            for b in range(6)
        }
        self.account = [_iban(rng, c, codes[c, b]) for c, b in zip(countries, self.bank)]
        self.alt_account = [_iban(rng, c, codes[c, (b + 1) % 6]) for c, b in zip(countries, self.bank)]
        # contractor traits
        self.C = C
        sup = np.zeros(C, bool)
        sup[rng.permutation(C)[: min(C - 1, max(1, round(0.2 * C)))]] = True
        self.supplier = sup
        weight = np.exp(rng.normal(0.0, 1.0, C))  # a few big, many small contractors
        self.customers, self.suppliers = np.flatnonzero(~sup), np.flatnonzero(sup)
        self.cust_p = weight[self.customers] / weight[self.customers].sum()
        self.sup_p = weight[self.suppliers] / weight[self.suppliers].sum()
        self.scale = np.exp(rng.normal(np.log(1200), 0.9, C))
        self.vat = np.array([_VAT[c] for c in countries[:C]])
        self.term = rng.choice([7, 14, 14, 21, 30, 30, 30, 45, 60], C)
        fixed = np.zeros(C)
        subs = rng.permutation(C)[: round(cfg.rate_same_amount_siblings * C)]
        prices = np.array([49, 99, 149, 199, 249, 299, 350, 499, 799, 999, 1200, 1499, 2500, 2999, 4500])
        for c in subs:
            fixed[c] = (
                float(prices[np.abs(prices - self.scale[c]).argmin()])
                if rng.random() < 0.6
                else round(round(self.scale[c], -1) * self.vat[c], 2)
            )
        self.fixed = fixed
        self.fmt = np.where(sup, rng.choice([5, 6, 7], C), rng.choice(5, C, p=[0.3, 0.25, 0.15, 0.15, 0.15]))
        self.parent = np.where((rng.random(C) < 0.25) & ~sup, C + rng.integers(0, G, C), -1)
        self.factor = self.factor_ids[rng.integers(0, len(_FACTORS), C)]
        self.service = rng.integers(0, len(_SERVICES), C)


class _PayerChange:
    """payer_change drift: which customers each processor pays for, and from which of its accounts.

    Own random stream, so the world, the plan and every other draw are the same as without it."""

    def __init__(self, cfg: SyntheticConfig, world: _World):
        rng = np.random.default_rng([cfg.seed, 8])
        k = round(cfg.drift_share_contractors * len(world.customers))
        chosen = np.sort(rng.permutation(world.customers)[:k])
        self.proc = np.full(world.C, -1, np.int64)  # processor per contractor, -1: pays itself
        self.proc[chosen] = rng.choice(len(_PROCESSORS), k, p=[p[6] for p in _PROCESSORS])
        self.accounts = [[_iban(rng, p[3], p[4]) for _ in range(p[5])] for p in _PROCESSORS]
        n_acc = np.array([p[5] for p in _PROCESSORS])
        self.home = np.zeros(world.C, np.int64)  # the processor account a contractor's payments usually come from
        self.home[chosen] = (rng.random(k) * n_acc[self.proc[chosen]]).astype(np.int64)
        self.contractors = chosen


# ----------------------------------------------------------------------------------------------
class _Planner:
    """Numeric world month by month: transfers, the invoices they pay, links; no strings here."""

    def __init__(self, cfg: SyntheticConfig, world: _World):
        self.cfg, self.w = cfg, world
        start = pd.Period(cfg.start_month, freq="M")
        self.bounds = [
            (
                int(np.datetime64(str(start + i), "D").astype(np.int64)),
                int(np.datetime64(str(start + i + 1), "D").astype(np.int64)),
            )
            for i in range(cfg.months + TAIL_MONTHS + 1)
        ]
        self.start_day, self.end_day = self.bounds[0][0], self.bounds[cfg.months][0]
        self.inv: list[dict] = []
        self.n_inv = 0
        self.trf: list[dict] = []
        self.lnk: list[dict] = []
        self.pool = {
            k: np.zeros(0, t)
            for k, t in [("inv", np.int64), ("rest", float), ("due", np.int64), ("contr", np.int64), ("out", bool)]
        }

    def weekdays(self, i: int) -> np.ndarray:
        d = np.arange(*self.bounds[i])
        return d[(d + 3) % 7 < 5]

    def amounts(self, rng: np.random.Generator, c: np.ndarray) -> np.ndarray:
        """Log-normal around the contractor's scale; many round or round-net-plus-VAT amounts."""
        w, n = self.w, len(c)
        a = w.scale[c] * rng.lognormal(0.0, 0.6, n)
        s = rng.random(n)
        step = np.where(a >= 2000, 100.0, 10.0)
        rounded = np.maximum(np.round(a / step) * step, step)
        gross = np.round(rounded * w.vat[c], 2)
        a = np.where(s < 0.22, rounded, np.where(s < 0.37, gross, np.round(a, 2)))
        a = np.where((w.fixed[c] > 0) & (rng.random(n) < 0.9), w.fixed[c], a)
        return np.maximum(a, 5.0)

    def add_invoices(self, **cols) -> np.ndarray:
        n = len(cols["contr"])
        cols.setdefault("credit", np.zeros(n, bool))
        cols.setdefault("void", np.zeros(n, np.int8))  # 1 voided original, 2 its reversal
        cols.setdefault("void_ref", np.full(n, -1, np.int64))
        self.inv.append(cols)
        ids = np.arange(self.n_inv, self.n_inv + n)
        self.n_inv += n
        return ids

    def run(self) -> dict:
        for i in range(self.cfg.months + TAIL_MONTHS):
            self.month(i)
        return self.assemble()

    def month(self, i: int) -> None:
        cfg, w = self.cfg, self.w
        rng = np.random.default_rng([cfg.seed, 1, i])
        T = cfg.transfers_per_month
        days = self.weekdays(i)
        m0, m1 = self.bounds[i]
        booked = rng.choice(days, T)
        kind = np.full(T, SINGLE, np.int8)
        order = rng.permutation(T)
        n_none, n_multi, n_part = (
            round(r * T) for r in (cfg.rate_no_invoice, cfg.rate_multi_invoice, cfg.rate_partial)
        )
        kind[order[:n_none]] = NONE
        kind[order[n_none : n_none + n_multi]] = MULTI
        part_slots = order[n_none + n_multi : n_none + n_multi + n_part]
        kind[part_slots] = PARTIAL
        role = np.zeros(T, np.int8)  # 1 first part, 2 remainder
        # remainders of earlier partial payments that fall due now
        pool = self.pool
        elig = np.flatnonzero(pool["due"] < m1)
        elig = elig[np.argsort(pool["due"][elig], kind="stable")][: int(0.6 * len(part_slots))]
        rem_slots, first_slots = part_slots[: len(elig)], part_slots[len(elig) :]
        role[rem_slots], role[first_slots] = 2, 1
        due = pool["due"][elig]
        booked[rem_slots] = np.where(
            due >= m0, days[np.minimum(np.searchsorted(days, due), len(days) - 1)], booked[rem_slots]
        )
        out = np.zeros(T, bool)
        out[rem_slots] = pool["out"][elig]
        contr = np.full(T, -1, np.int64)
        contr[rem_slots] = pool["contr"][elig]
        # outgoing payments and their contractors
        new = np.flatnonzero((kind != NONE) & (role != 2))
        k_out = min(len(new), max(0, round(cfg.rate_outgoing * T) - int(out.sum())))
        out[rng.choice(new, k_out, replace=False)] = True
        new_in, new_out = new[~out[new]], new[out[new]]
        contr[new_in] = w.customers[rng.choice(len(w.customers), len(new_in), p=w.cust_p)]
        contr[new_out] = w.suppliers[rng.choice(len(w.suppliers), len(new_out), p=w.sup_p)]
        # phenomena among paying transfers, exact counts
        paying = np.flatnonzero(kind != NONE)
        n_pay = len(paying)
        cat = np.full(T, ABSENT, np.int8)
        p = rng.permutation(paying)
        ne, nd, na = (round(r * n_pay) for r in (cfg.rate_exact_number, cfg.rate_damaged_number, cfg.rate_no_number))
        cat[p[:ne]], cat[p[ne : ne + nd]], cat[p[ne + nd : ne + nd + na]], cat[p[ne + nd + na :]] = (
            EXACT,
            DAMAGED,
            ABSENT,
            OTHER,
        )

        def pick(pool_idx, rate):
            m = np.zeros(T, bool)
            m[rng.choice(pool_idx, min(len(pool_idx), round(rate * n_pay)), replace=False)] = True
            return m

        fee = pick(paying[kind[paying] != PARTIAL], cfg.rate_fee)
        other = pick(paying, cfg.rate_other_payer)
        variant = pick(paying, cfg.rate_name_variant)
        # invoices of the new paying transfers
        n_per = np.where(kind[new] == MULTI, rng.choice([2, 3, 4, 5, 6], len(new), p=[0.4, 0.25, 0.15, 0.12, 0.08]), 1)
        rep = np.repeat(new, n_per)
        N = len(rep)
        starts = (np.cumsum(n_per) - n_per).astype(np.int64)
        last = starts + n_per - 1
        ic = contr[rep]
        term = w.term[ic]
        u = rng.random(N)
        delay = np.where(
            u < 0.08,
            rng.uniform(0, 0.3, N) * term,
            np.where(u < 0.88, rng.uniform(0.3, 1.0, N) * term, term + rng.integers(1, 61, N)),
        )
        delay = np.minimum(np.round(delay).astype(np.int64), 90)
        issued = booked[rep] - delay
        early = issued < self.start_day
        issued[early] = self.start_day + (rng.random(early.sum()) * (booked[rep][early] - self.start_day + 1)).astype(
            np.int64
        )
        amount = self.amounts(rng, ic)
        credit = np.zeros(N, bool)
        n_unpaid = max(1, round(UNPAID_RATE * N))  # >= 1: every month has invoices
        n_cn = round(cfg.rate_credit_note * (N + n_unpaid))
        multi_in = np.flatnonzero((kind[new] == MULTI) & ~out[new])
        n_cn_linked = min(round(0.75 * n_cn), len(multi_in))
        g = rng.choice(multi_in, n_cn_linked, replace=False)
        others = _group_sum(amount, starts)[g] - amount[last[g]]
        amount[last[g]] = -np.round(rng.uniform(0.05, 0.45, len(g)) * others, 2)
        credit[last[g]] = True
        amount = np.where(out[rep], -amount, amount)
        gsum = np.round(_group_sum(amount, starts), 2)
        tamt = np.zeros(T)
        tamt[new] = gsum
        # fees / discounts: up to 2 % or a fixed 5-25, always below the invoice total
        f_new = fee[new]
        ded = np.where(
            rng.random(len(new)) < 0.4,
            rng.choice([5.0, 10.0, 15.0, 20.0, 25.0], len(new)),
            np.abs(gsum) * rng.uniform(0.002, 0.02, len(new)),
        )
        ded = np.maximum(0.01, np.round(np.minimum(ded, 0.02 * np.abs(gsum)), 2))
        tamt[new[f_new]] = np.round(gsum[f_new] - np.sign(gsum[f_new]) * ded[f_new], 2)
        # partial first parts: 30-70 %, often round; half get their remainder paid later
        fp = role[new] == 1
        share = np.abs(gsum[fp]) * rng.uniform(0.3, 0.7, fp.sum())
        step = np.where(np.abs(gsum[fp]) > 2000, 100.0, 10.0)
        part = np.where(rng.random(fp.sum()) < 0.5, np.round(share / step) * step, np.round(share, 2))
        part = np.where((part <= 0) | (part >= np.abs(gsum[fp])), np.round(share, 2), part) * np.sign(gsum[fp])
        tamt[new[fp]] = part
        later = rng.random(fp.sum()) < 0.5
        inv_ids = self.add_invoices(contr=ic, issued=issued, due=issued + term, amount=amount, credit=credit)
        self.pool = {
            k: np.concatenate([v[np.setdiff1d(np.arange(len(v)), elig)], add])
            for (k, v), add in zip(
                pool.items(),
                [
                    inv_ids[starts[fp]][later],
                    np.round(gsum[fp] - part, 2)[later],
                    booked[new[fp]][later] + rng.integers(7, 61, later.sum()),
                    contr[new[fp]][later],
                    out[new[fp]][later],
                ],
            )
        }
        tamt[rem_slots] = pool["rest"][elig]
        # allocations: invoice amounts, scaled proportionally under a fee; partials take the transfer amount
        ratio = np.where(fee[rep], tamt[rep] / np.repeat(gsum, n_per), 1.0)
        alloc = np.round(amount * ratio, 2)
        alloc[last] += np.round(tamt[new] - _group_sum(alloc, starts), 2)
        alloc = np.where(role[rep] == 1, tamt[rep], np.round(alloc, 2))
        link_t = np.concatenate([rep, rem_slots])
        link_i = np.concatenate([inv_ids, pool["inv"][elig]])
        link_a = np.concatenate([alloc, tamt[rem_slots]])
        # payer entity
        payer = contr.copy()
        op = np.flatnonzero(other)
        par = w.parent[contr[op]]
        use_parent = (par >= 0) & (rng.random(len(op)) < 0.6)
        payer[op] = np.where(use_parent, par, w.factor[contr[op]])
        # transfers paying nothing
        none = order[:n_none]
        reason = rng.choice(len(REASONS), n_none, p=REASON_P)
        ref = np.full(T, -1, np.int64)
        single_in = np.flatnonzero((kind[new] == SINGLE) & ~out[new])
        if len(single_in) == 0:  # nothing to refer to: no refunds, advances or duplicates
            reason[reason >= R_REFUND] = 4
        needs_ref = reason >= R_REFUND
        src = single_in[rng.integers(0, len(single_in), n_none)] if len(single_in) else np.zeros(n_none, np.int64)
        ref_local = starts[src] if len(single_in) else src
        nz = none[needs_ref]
        ref[nz] = inv_ids[ref_local[needs_ref]]
        contr[nz] = ic[ref_local[needs_ref]]
        payer[nz] = contr[nz]
        ramt = amount[ref_local] if len(single_in) else np.zeros(n_none)
        amt = np.zeros(n_none)
        for r, (lo, hi) in enumerate(
            [(1.0, 30.0), (5.0, 200.0), (2500.0, 9000.0), (300.0, 30000.0), (100.0, 20000.0), (500.0, 50000.0)]
        ):
            sel = reason == r
            amt[sel] = np.round(np.exp(rng.uniform(np.log(lo), np.log(hi), sel.sum())), 2)
        sal = reason == 2
        amt[sal] = np.where(rng.random(sal.sum()) < 0.4, np.round(amt[sal], -2), amt[sal])
        card_eq = (reason == 4) & (rng.random(n_none) < 0.15)  # coincidences with invoice amounts
        amt[card_eq] = np.abs(amount[rng.integers(0, N, card_eq.sum())]) if N else amt[card_eq]
        amt[reason == 5] = np.round(amt[reason == 5], -2)
        refund_full = rng.random(n_none) < 0.6
        amt = np.where(
            reason == R_REFUND, np.where(refund_full, ramt, np.round(ramt * rng.uniform(0.05, 0.5, n_none), 2)), amt
        )
        amt = np.where((reason == R_ADVANCE) | (reason == R_DUPLICATE), ramt, amt)
        amt = np.where(np.isin(reason, [0, 2, 3, R_REFUND]), -np.abs(amt), np.abs(amt))
        tamt[none] = amt
        dup = none[reason == R_DUPLICATE]
        after = booked[new[src[reason == R_DUPLICATE]]] + rng.integers(0, 21, len(dup))
        booked[dup] = days[np.minimum(np.searchsorted(days, after), len(days) - 1)]
        cat[none] = ABSENT
        cat[none[(reason == R_DUPLICATE) | ((reason == R_REFUND) & (rng.random(n_none) < 0.5))]] = EXACT
        variant[nz] = rng.random(len(nz)) < cfg.rate_name_variant
        spec = w.special
        for r, key in [(0, "bank"), (1, "bank"), (2, "person"), (3, "tax"), (4, "card"), (5, "other")]:
            sel = none[reason == r]
            payer[sel] = spec[key][rng.integers(0, len(spec[key]), len(sel))]
        rsn = np.full(T, -1, np.int8)
        rsn[none] = reason
        batch = np.zeros(T, bool)
        # unpaid invoices and open credit notes (customers mostly, some suppliers)
        cu = w.customers[rng.choice(len(w.customers), n_unpaid + (n_cn - n_cn_linked), p=w.cust_p)]
        nsup = rng.random(n_unpaid) < 0.2
        cu[:n_unpaid][nsup] = w.suppliers[rng.choice(len(w.suppliers), nsup.sum(), p=w.sup_p)]
        ua = self.amounts(rng, cu)
        ua[:n_unpaid][nsup] *= -1
        ucn = np.arange(len(cu)) >= n_unpaid
        ua[ucn] = -np.round(ua[ucn] * rng.uniform(0.05, 0.45, ucn.sum()), 2)
        ui = rng.integers(m0, m1, len(cu))
        self.add_invoices(contr=cu, issued=ui, due=ui + w.term[cu], amount=ua, credit=ucn)
        if cfg.description_only and i < cfg.months:  # extras on their own stream: the base world is unchanged
            link_t, link_i, link_a = self.description_extras(
                i, T, kind, role, fee, other, out, booked, contr, tamt, cat, batch, variant, N, link_t, link_i, link_a
            )
        self.trf.append(
            dict(
                month=np.full(T, i),
                booked=booked,
                kind=kind,
                role=role,
                out=out,
                contr=contr,
                payer=payer,
                amount=np.round(tamt, 2),
                cat=cat,
                fee=fee,
                other=other,
                variant=variant,
                reason=rsn,
                ref=ref,
                batch=batch,
            )
        )
        self.lnk.append(dict(t=link_t, inv=link_i, alloc=np.round(link_a, 2), month=np.full(len(link_t), i)))

    def description_extras(
        self, i, T, kind, role, fee, other, out, booked, contr, tamt, cat, batch, variant, N, link_t, link_i, link_a
    ):
        """Batch deposits (several contractors' invoices in one transfer) and voided/reversed invoices."""
        w = self.w
        rng = np.random.default_rng([self.cfg.seed, 2, i])
        cand = np.flatnonzero((kind == SINGLE) & (role == 0) & ~fee & ~other & ~out)
        b = rng.choice(cand, min(len(cand), round(BATCH_RATE * T)), replace=False)
        k = rng.integers(1, 5, len(b))
        rep = np.repeat(b, k)
        cc = w.customers[rng.choice(len(w.customers), len(rep), p=w.cust_p)]
        iss = np.maximum(self.start_day, booked[rep] - rng.integers(0, 41, len(rep)))
        amt = self.amounts(rng, cc)
        ids = self.add_invoices(contr=cc, issued=iss, due=iss + w.term[cc], amount=amt)
        np.add.at(tamt, rep, amt)
        kind[b], cat[b], batch[b], variant[b] = MULTI, ABSENT, True, False
        m0, m1 = self.bounds[i]
        nv = round(VOID_RATE * N)
        vc = w.customers[rng.choice(len(w.customers), nv, p=w.cust_p)]
        vi = rng.integers(m0, m1, nv)
        va = self.amounts(rng, vc)
        orig = self.add_invoices(contr=vc, issued=vi, due=vi + w.term[vc], amount=va, void=np.ones(nv, np.int8))
        ri = vi + rng.integers(0, 11, nv)
        self.add_invoices(contr=vc, issued=ri, due=ri, amount=-va, void=np.full(nv, 2, np.int8), void_ref=orig)
        return np.concatenate([link_t, rep]), np.concatenate([link_i, ids]), np.concatenate([link_a, amt])

    def assemble(self) -> dict:
        """Cut the tail: keep horizon transfers/links and invoices issued before the horizon end."""
        M = self.cfg.months
        inv = {k: np.concatenate([d[k] for d in self.inv]) for k in self.inv[0]}
        keep = inv["issued"] < self.end_day
        remap = np.cumsum(keep) - 1
        inv = {k: v[keep] for k, v in inv.items()}
        inv["void_ref"] = np.where(inv["void_ref"] >= 0, remap[inv["void_ref"]], -1)
        trf = {k: np.concatenate([d[k] for d in self.trf[:M]]) for k in self.trf[0]}
        offs = np.concatenate([[0], np.cumsum([len(d["kind"]) for d in self.trf[:M]])])
        lnk = {k: np.concatenate([d[k] for d in self.lnk[:M]]) for k in self.lnk[0]}
        lnk["t"] = lnk["t"] + offs[lnk["month"]]
        lnk["inv"] = remap[lnk["inv"]]
        trf["ref"] = np.where(trf["ref"] >= 0, remap[trf["ref"]], -1)
        assert keep[np.concatenate([d["inv"] for d in self.lnk[:M]])].all()
        return dict(inv=inv, trf=trf, lnk=lnk)


# ----------------------------------------------------------------------------------------------
def _number(fmt: int, y: int, m: int, n: int) -> str:
    if fmt == 0:
        return f"FV/{y}/{m:02d}/{n:04d}"
    if fmt == 1:
        return f"INV-{y}-{n:05d}"
    if fmt == 2:
        return f"{y}/{n}/KR"
    if fmt == 3:
        return f"F{n}/{m:02d}/{y % 100:02d}"
    if fmt == 4:
        return f"{n:07d}"
    if fmt == 5:
        return f"RE-{y}-{n:04d}"
    if fmt == 6:
        return f"FA {n}/{m:02d}/{y}"
    if fmt == 7:
        return f"{y}{m:02d}{n:03d}"
    if fmt == 8:
        return f"KOR/{y}/{m:02d}/{n:03d}"
    return f"CN-{y}-{n:04d}"


def _other_format(num: str, seq: int, x: float, sep: str) -> str:
    """Same number, other writing: digits only, separators changed or stripped, lower case.

    ``x`` picks the style, drawn once per title so that a multi-invoice title is consistent."""
    if x < 0.35:
        out = str(seq) if x < 0.2 else max(re.findall(r"\d+", num), key=lambda g: (str(int(g)) == str(seq), len(g)))
    elif x < 0.65:
        out = re.sub(r"[/\-\s.]", "", num)
    elif x < 0.9:
        out = re.sub(r"[/\-]", sep, num.replace(" ", "/"))
    else:
        out = num.lower().replace("/", " ")
    return out if out != num else str(seq)


def _damage(num: str, r: random.Random) -> str:
    """One-character typo, adjacent transposition, or truncation/missing digit."""
    s = list(num)
    digits = [i for i, ch in enumerate(s) if ch.isdigit()]
    x = r.random()
    pairs = [i for i in digits if i + 1 < len(s) and s[i + 1].isdigit() and s[i] != s[i + 1]]
    if x < 0.3 and pairs:
        i = r.choice(pairs[-4:])
        s[i], s[i + 1] = s[i + 1], s[i]
    elif x < 0.7 or len(digits) < 3:
        i = r.choice(digits[-4:])
        s[i] = r.choice([d for d in "0123456789" if d != s[i]])
    elif x < 0.85:
        s = s[: len(s) - r.choice([1, 2])]
    else:
        del s[r.choice(digits[-3:])]
    out = "".join(s)
    return out if out != num else num[:-1]


def _abbreviate(base: str, r: random.Random) -> str:
    """A contractor's name as a processor abbreviates it: "KOWA LOGI", "KOWALSKI", "KL", "KOWALSKI LOG"."""
    words = _fold(base).upper().split()
    x = r.random()
    if x < 0.4:
        return " ".join(w[:4] for w in words)
    if x < 0.7:
        return words[0]
    if x < 0.85 and len(words) > 1:
        return "".join(w[0] for w in words)
    return " ".join(words)[:12].rstrip()


class _Renderer:
    """Strings, ids and frames from the numeric plan."""

    def __init__(self, cfg: SyntheticConfig, world: _World, plan: dict):
        self.cfg, self.w = cfg, world
        self.inv, self.trf, self.lnk = plan["inv"], plan["trf"], plan["lnk"]
        self.r = random.Random(f"{cfg.seed}-transfers")  # transfers are rendered in month order, so drift
        self.r_inv = random.Random(f"{cfg.seed}-invoices")  # leaves earlier months' text untouched
        self.r_proc = random.Random(f"{cfg.seed}-payer_change")  # processor text: the main stream is untouched
        self.pc = _PayerChange(cfg, world)

    # numbers ----------------------------------------------------------------------------------
    def numbers(self) -> None:
        inv, w = self.inv, self.w
        d = inv["issued"].astype("datetime64[D]")
        y = d.astype("datetime64[Y]").astype(np.int64) + 1970
        m = d.astype("datetime64[M]").astype(np.int64) % 12 + 1
        c = inv["contr"]
        fmt = np.where(inv["credit"], np.where(np.isin(w.fmt[c], [0, 2, 3]), 8, 9), w.fmt[c])
        per_month = np.isin(fmt, [0, 3, 8])
        key = (
            fmt * 10**9
            + np.where(fmt >= 5, c, 0) % 10**6 * 10**3
            + np.where(fmt == 4, 0, (y % 100) * 13 + np.where(per_month, m, 0))
        )
        rng = np.random.default_rng([self.cfg.seed, 3])
        order = np.lexsort((rng.random(len(c)), inv["issued"]))
        seq = np.empty(len(c), np.int64)
        seq[order] = pd.Series(key[order]).groupby(key[order]).cumcount().to_numpy()
        ukeys, kidx = np.unique(key, return_inverse=True)
        seq += 1 + np.random.default_rng([self.cfg.seed, 4]).integers(0, 400, len(ukeys))[kidx]
        seq[inv["void"] == 2] = seq[inv["void_ref"][inv["void"] == 2]]
        self.seq, self.y, self.m = seq, y, m
        self.num = [_number(*a) for a in zip(fmt.tolist(), y.tolist(), m.tolist(), seq.tolist())]
        for k in np.flatnonzero(inv["void"] == 2):
            self.num[k] = self.num[inv["void_ref"][k]]

    # names ------------------------------------------------------------------------------------
    def variant(self, e: int) -> str:
        """Payer name as the bank shows it when it differs from the legal name."""
        for _ in range(5):
            name = self._variant(e)
            if name != self.w.legal[e]:
                return name
        return self.w.legal[e].upper() + "."

    def _variant(self, e: int) -> str:
        r, base, form = self.r, self.w.base[e], self.w.form[e]
        x = r.random()
        if x < 0.2:
            words = base.split()
            abbr = (
                "".join(wd[0] for wd in words).upper()
                if len(words) > 1 and r.random() < 0.5
                else " ".join(wd[:4] + "." if len(wd) > 5 else wd for wd in words)
            )
            return f"{abbr} {form}".strip()
        if x < 0.4:
            return base
        if x < 0.6:
            return f"{base} {r.choice(_FORM_VARIANTS.get(form, [form.upper() or 'Co']))}".strip()
        if x < 0.8:
            s = list(base)
            i = r.randrange(1, len(s))
            op = r.random()
            if op < 0.4:
                s[i] = r.choice("aeiourstnl")
            elif op < 0.7:
                del s[i]
            else:
                s.insert(i, s[i - 1])
            return f"{''.join(s)} {form}".strip()
        return _fold(f"{base} {form}".strip()).upper()[:20].rstrip()

    # frames -----------------------------------------------------------------------------------
    def frames(self) -> dict[str, pd.DataFrame]:
        self.numbers()
        cfg, inv, trf, lnk = self.cfg, self.inv, self.trf, self.lnk
        labels = month_labels(cfg)
        start = pd.Period(cfg.start_month, freq="M")
        inv_month = (
            inv["issued"].astype("datetime64[D]").astype("datetime64[M]").astype(np.int64)
            - (start.year - 1970) * 12
            - (start.month - 1)
        )
        inv_order = np.lexsort((np.random.default_rng([cfg.seed, 5]).random(len(inv_month)), inv_month))
        trf_order = np.lexsort((np.random.default_rng([cfg.seed, 6]).random(len(trf["month"])), trf["month"]))
        iw = max(7, len(str(len(inv_order))))
        tw = max(7, len(str(len(trf_order))))
        inv_id = np.empty(len(inv_order), object)
        inv_id[inv_order] = [f"INV-{k + 1:0{iw}d}" for k in range(len(inv_order))]
        trf_id = np.empty(len(trf_order), object)
        trf_id[trf_order] = [f"TRF-{k + 1:0{tw}d}" for k in range(len(trf_order))]
        month_lbl = np.array(labels, dtype=object)

        # link lookup per transfer
        lo = np.argsort(lnk["t"], kind="stable")
        lt, li = lnk["t"][lo], lnk["inv"][lo]
        bounds = np.searchsorted(lt, np.arange(len(trf["kind"]) + 1))

        n = len(trf["kind"])
        kinds = parse_drift_kind(cfg.drift_kind)
        post = trf["month"] + 1 >= cfg.drift_month if cfg.drift_month is not None else np.zeros(n, bool)
        retitled = np.zeros(n, bool)  # title_format
        if "title_format" in kinds:
            ent = trf["payer"]
            retitled = post & (ent >= 0) & (self.w.bank[np.maximum(ent, 0)] == BIG_BANK)
        proc = np.zeros(n, bool)  # payer_change: paid by a processor
        if "payer_change" in kinds:
            c = trf["contr"]
            proc = (
                post
                & (trf["kind"] != NONE)
                & ~trf["out"]
                & ~trf["batch"]
                & (c >= 0)
                & (self.pc.proc[np.clip(c, 0, self.w.C - 1)] >= 0)
            )
        titles, names, accounts, cats = self.transfer_text(li, bounds, retitled, proc)
        drifted = retitled | proc
        fee, other, variant = trf["fee"].copy(), trf["other"] | proc, trf["variant"].copy()
        variant[proc] = self.proc_variant[proc]
        if proc.any():
            fee = self.processor_fee(proc, fee, lo, bounds)
            trf, lnk = self.trf, self.lnk
        invoices = self.invoice_frame(inv_id, inv_month, month_lbl)
        transfers = (
            pd.DataFrame(
                {
                    "transfer_id": trf_id,
                    "month": month_lbl[trf["month"]],
                    "booked_at": trf["booked"].astype("datetime64[D]").astype("datetime64[us]"),
                    "amount": trf["amount"],
                    "currency": cfg.currency,
                    "title": titles,
                    "counterparty_name": names,
                    "counterparty_account": accounts,
                }
            )
            .iloc[trf_order]
            .reset_index(drop=True)
        )
        links = pd.DataFrame(
            {
                "transfer_id": trf_id[lnk["t"]],
                "invoice_id": inv_id[lnk["inv"]],
                "allocated_amount": lnk["alloc"],
                "month": month_lbl[lnk["month"]],
            }
        )
        links = links.iloc[np.lexsort((links["invoice_id"].to_numpy(), links["transfer_id"].to_numpy()))].reset_index(
            drop=True
        )
        truth = (
            pd.DataFrame(
                {
                    "transfer_id": trf_id,
                    "month": month_lbl[trf["month"]],
                    "kind": KINDS[trf["kind"]],
                    "number_in_title": CATS[cats],
                    "fee": fee,
                    "other_payer": other,
                    "name_variant": variant,
                    "drifted": drifted,
                    "outgoing": trf["out"],
                    "batch": trf["batch"],
                    "noise_numbers": self.noise,
                    "reason": np.where(
                        trf["reason"] >= 0, np.array(REASONS, dtype=object)[np.maximum(trf["reason"], 0)], None
                    ),
                    "n_invoices": np.diff(bounds),
                }
            )
            .iloc[trf_order]
            .reset_index(drop=True)
        )
        if cfg.description_only:
            invoices = invoices.drop(columns=["invoice_number", "counterparty_name"])
            transfers = transfers.drop(columns=["counterparty_name", "counterparty_account"])
        return {"invoices": invoices, "transfers": transfers, "links": links, "truth": truth}

    def invoice_frame(self, inv_id, inv_month, month_lbl) -> pd.DataFrame:
        inv, w, r = self.inv, self.w, self.r_inv
        legal = [w.legal[c] for c in inv["contr"].tolist()]
        desc = []
        for k, (c, credit, void, mon) in enumerate(
            zip(inv["contr"].tolist(), inv["credit"].tolist(), inv["void"].tolist(), (self.m - 1).tolist())
        ):
            service = "credit note" if credit else _SERVICES[(w.service[c] + (k % 3 == 0)) % len(_SERVICES)]
            if self.cfg.description_only:
                if void == 2:
                    desc.append(f"{r.choice(['VOID', 'STORNO'])} {self.num[k]} {legal[k]}")
                else:
                    desc.append(f"{legal[k]} - {service} {_MON_EN[mon]} - {self.num[k]}")
            else:
                desc.append(None if r.random() < 0.3 else f"{service} {mon + 1:02d}/{self.y[k]}")
        df = pd.DataFrame(
            {
                "invoice_id": inv_id,
                "month": month_lbl[inv_month],
                "issued_at": inv["issued"].astype("datetime64[D]").astype("datetime64[us]"),
                "due_at": inv["due"].astype("datetime64[D]").astype("datetime64[us]"),
                "amount": np.round(inv["amount"], 2),
                "currency": self.cfg.currency,
                "invoice_number": self.num,
                "counterparty_name": legal,
                "description": desc,
            }
        )
        return df.iloc[np.lexsort((inv_id, inv_month))].reset_index(drop=True)

    def transfer_text(self, li, bounds, drifted, proc):
        """Title, payer name and account per transfer. ``drifted``: title_format rewrite; ``proc``: paid by a
        processor (payer_change). Processor transfers draw their ordinary text first and then replace it, so
        the main random stream, and with it every other transfer's text, is the same as without payer_change."""
        cfg, w, r, trf = self.cfg, self.w, self.r, self.trf
        n = len(trf["kind"])
        titles, names, accounts = [None] * n, [None] * n, [None] * n
        cats = trf["cat"].copy()
        self.noise = np.zeros(n, bool)
        self.proc_variant = np.zeros(n, bool)
        num, seq, inv = self.num, self.seq, self.inv
        booked = trf["booked"].astype("datetime64[D]").astype(object)
        for t in range(n):
            e, cat = int(trf["payer"][t]), int(cats[t])
            lang = w.lang[e]
            d = booked[t]
            invs = li[bounds[t] : bounds[t + 1]].tolist()
            if trf["ref"][t] >= 0:
                invs = [int(trf["ref"][t])]
            ctx = dict(
                y=d.year,
                mm=f"{d.month:02d}",
                dd=f"{d.day:02d}",
                q=(d.month - 1) // 3 + 1,
                ref=r.randrange(10**5, 10**8),
                mon=_MON_EN[d.month - 1],
                mon_pl=_MON_PL[d.month - 1],
                mon_de=_MON_DE[d.month - 1],
                MON=_MON_EN[d.month - 1][:3].upper(),
            )
            if invs:
                im = int(self.m[invs[0]]) - 1
                ctx.update(mon=_MON_EN[im], mon_pl=_MON_PL[im], mon_de=_MON_DE[im], MON=_MON_EN[im][:3].upper())
            # numbers as they appear in the title
            shown = [k for k in invs if not inv["credit"][k] or r.random() < 0.5] or invs
            if cat == EXACT:
                parts = [num[k] for k in shown]
            elif cat == DAMAGED:
                j = r.randrange(len(shown))
                parts = [_damage(num[k], r) if i == j else num[k] for i, k in enumerate(shown)]
            elif cat == OTHER:
                style, sep = r.random(), r.choice([" ", "-", ".", "/"])
                parts = [_other_format(num[k], int(seq[k]), style, sep) for k in shown]
            else:
                parts = []
            if cfg.description_only and cat == OTHER:
                parts = [str(int(seq[k])) for k in shown]
            if drifted[t] and parts:
                if r.random() < 0.4:
                    parts, cats[t] = [], ABSENT
                else:
                    parts = [re.sub(r"[/\-\s.]", "", p).upper() for p in parts]
                    if cat == EXACT and any(p != num[k] for p, k in zip(parts, shown)):
                        cats[t] = OTHER
            noise = r.random() < 0.3
            self.noise[t] = noise
            name = w.legal[e] if not trf["variant"][t] else self.variant(e)
            reason = REASONS[trf["reason"][t]] if trf["reason"][t] >= 0 else None
            if cfg.description_only:
                title = self.bank_line(t, e, name, reason, parts, noise, ctx, drifted[t], len(invs))
            else:
                title = self.title(t, reason, lang, parts, noise, ctx)
                if title is None:
                    noise = self.noise[t] = False
                if drifted[t]:
                    title = ("SCT /REMI/ " + (title or "").upper()).strip()
                    name = _fold(name).upper()[:18].rstrip()
            titles[t] = title
            names[t] = name
            x = r.random()
            if reason not in ("bank_fee", "interest") and x >= 0.02:
                accounts[t] = w.alt_account[e] if x < 0.06 else w.account[e]
            if proc[t]:
                titles[t], names[t], accounts[t], cats[t], self.proc_variant[t] = self.processor_text(
                    int(trf["contr"][t]), invs
                )
                self.noise[t] = True  # the processor's reference number
        return titles, names, accounts, cats

    def processor_text(self, c: int, invs: list[int]):
        """(title, name, account, number category, name shown in a variant) of a transfer a processor pays for ``c``."""
        r, pc, inv = self.r_proc, self.pc, self.inv
        p = int(pc.proc[c])
        legal, shown, weights, _, _, n_acc, _, short = _PROCESSORS[p]
        name = r.choices(shown, weights)[0]
        home = int(pc.home[c])
        k = home if n_acc == 1 or r.random() >= PROC_OTHER_ACCOUNT else r.choice([a for a in range(n_acc) if a != home])
        account = pc.accounts[p][k]
        ref = str(r.randrange(10**13, 10**14) if p == 0 else r.randrange(10**10, 10**11))
        cat, parts = ABSENT, []
        if r.random() < PROC_NUMBER_SHARE:
            shown_inv = [i for i in invs if not inv["credit"][i]] or invs
            parts = [re.sub(r"[/\-\s.]", "", self.num[i]).upper() if p == 0 else self.num[i] for i in shown_inv]
            cat = EXACT if all(a == self.num[i] for a, i in zip(parts, shown_inv)) else OTHER
        abbr = _abbreviate(self.w.base[c], r) if r.random() < PROC_ABBR_SHARE else ""
        if self.cfg.description_only:
            title = " ".join([short, ref, *parts, abbr]).strip()
        else:
            head, with_inv, with_abbr = r.choice(_T_PROC[p])
            title = (
                head.format(ref=ref)
                + (with_inv.format(inv=" ".join(parts)) if parts else "")
                + (with_abbr.format(abbr=abbr) if abbr else "")
            )
        return title, name, account, cat, name != legal

    def processor_fee(self, proc, fee, lo, bounds) -> np.ndarray:
        """A small processor fee off some processor transfers (single/multi, no discount yet): the transfer amount
        drops by <= 2 % and its allocations are scaled as for a discount, cents residue on the last link."""
        trf, lnk = self.trf, self.lnk
        rng = np.random.default_rng([self.cfg.seed, 9])
        n = len(proc)
        u, fixed = rng.random(n), rng.random(n) < 0.5
        amt = trf["amount"]
        ded = np.where(fixed, rng.choice([0.5, 1.0, 1.5, 2.0, 2.5], n), np.abs(amt) * rng.uniform(0.001, 0.008, n))
        ded = np.maximum(0.01, np.round(np.minimum(ded, 0.02 * np.abs(amt)), 2))
        sel = np.flatnonzero(
            proc & np.isin(trf["kind"], [SINGLE, MULTI]) & (trf["role"] == 0) & ~fee & (u < PROC_FEE_SHARE)
        )
        amount, alloc = amt.copy(), lnk["alloc"].copy()
        for t in sel.tolist():
            new = round(float(amt[t] - np.sign(amt[t]) * ded[t]), 2)
            idx = lo[bounds[t] : bounds[t + 1]]
            a = np.round(alloc[idx] * (new / amt[t]), 2)
            a[-1] = round(a[-1] + round(new - a.sum(), 2), 2)
            alloc[idx], amount[t] = a, new
        self.trf = {**trf, "amount": amount}
        self.lnk = {**lnk, "alloc": alloc}
        fee = fee.copy()
        fee[sel] = True
        return fee

    def title(self, t, reason, lang, parts, noise, ctx) -> str | None:
        r = self.r
        if reason is not None and reason != "duplicate":
            key = "refund_num" if reason == "refund" and parts else reason
            title = r.choice(_T_REASON[key]).format(n=" ".join(parts), **ctx)
        elif parts:
            joiner = r.choice(
                [", ", " ", "; ", " + "]
                + ([" i ", " oraz "] if lang == "pl" else [" und "] if lang == "de" else [" and "])
            )
            title = r.choice(_T_NUM[lang]).format(n=joiner.join(parts))
        else:
            if r.random() < 0.01:
                return None
            title = r.choice(_T_NONUM[lang]).format(**ctx)
        if self.trf["role"][t] == 1:
            title += " " + r.choice(_T_PART1[lang])
        elif self.trf["role"][t] == 2:
            title += " " + r.choice(_T_PART2[lang])
        if noise:
            tok = self.noise_token(t, ctx)
            title = f"{tok} {title}" if r.random() < 0.4 else f"{title} {tok}"
        if r.random() < 0.08:
            title = title.upper()
        return title

    def noise_token(self, t, ctx) -> str:
        """Numbers that are not invoice numbers: orders, dates, account fragments, amounts, tax ids."""
        r = self.r
        a = abs(float(self.trf["amount"][t]))
        acct = self.w.account[int(self.trf["payer"][t])]
        return r.choice(
            [
                f"PO {r.randrange(10**6, 10**7)}",
                f"zam. {r.randrange(100, 9999)}/{ctx['y']}",
                f"ZAM/{ctx['y']}/{ctx['mm']}/{r.randrange(1, 999):04d}",
                f"{ctx['dd']}.{ctx['mm']}.{ctx['y']}",
                f"{ctx['y']}-{ctx['mm']}-{ctx['dd']}",
                f"acc ...{acct[-4:]}",
                f"kwota {a:,.2f}".replace(",", " ").replace(".", ","),
                f"EUR {a:.2f}",
                f"Kd-Nr. {r.randrange(10**5, 10**6)}",
                f"order {r.randrange(10**4, 10**5)}",
                f"NIP {r.randrange(10**9, 10**10)}",
                f"client no {r.randrange(10**5, 10**6)}",
            ]
        )

    def bank_line(self, t, e, name, reason, parts, noise, ctx, drifted, n_items) -> str:
        """Terse bank line for description_only: "NORDWIND HANDELS 142 MAR"."""
        r, trf = self.r, self.trf
        if trf["batch"][t]:
            return f"BATCH DEPOSIT {n_items} ITEMS"
        base = name if self.w.form[e] == "" or r.random() < 0.3 else name.replace(self.w.form[e], "")
        nm = _fold(base).upper().replace(".", "").strip()[: (12 if drifted else r.choice([16, 18, 20]))].rstrip()
        if reason is not None and reason != "duplicate":
            line = " ".join(r.choice(_D_REASON[reason]).format(NAME=nm, n=" ".join(parts), PERSON=nm, **ctx).split())
        else:
            line = " ".join([nm, *parts, ctx["MON"]])
            if trf["role"][t]:
                line += " PART"
        if noise:
            line += f" REF {r.randrange(10**4, 10**6)}"
        return ("SCT " + line) if drifted else line
