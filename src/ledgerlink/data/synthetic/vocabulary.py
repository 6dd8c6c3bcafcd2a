"""The words and formats the synthetic world is written in: company names, legal forms, banks' and payers'
phrasings in English, Polish and German, the counterparties of transfers that pay no invoice, and the
payment processors of the payer_change drift. Data only (and ``fold``); which one is used where is
decided by the plan and the rendering.
"""

from __future__ import annotations

import unicodedata
from typing import NamedTuple

import numpy as np

BASES = """Kowalski Nowak Wiśniewski Zieliński Lewandowski Wójcik Kamiński Mazur Krawczyk Dąbrowski
Nordwind Alpen Rhein Elbe Baltic Vistula Oder Tatra Karpat Bergmann Schneider Fischer Weber Becker
Hoffmann Schulz Acme Apex Summit Pioneer Horizon Crown Falcon Phoenix Atlas Orion Sterling Harbour
Kingsley Ashford Bright Silverline Greenfield Oakridge Redwood Bluewater Northgate Westbrook Amber
Polaris Vector Quantum Nova Delta Omega Zenit Meridian Sigma Proxima Lumen Vertex Granit Solaris
Borealis Merkur Hansa Helios Saturn Jantar Wawel Sudety Mazowsze Pomorze""".split()
INDUSTRIES = """Logistics Handels Widgets Software Consulting Trans Bau Foods Systems Textil Energy Media
Pharma Metal Print Auto Agro Tech Design Service Solutions Trading Electric Medical Paper""".split()
REGIONS = ["Polska", "Nord", "Süd", "International", "Europe", "Ost", "West", "Central"]
FORMS = {
    "PL": ["Sp. z o.o.", "Sp. z o.o.", "S.A.", "Sp.j.", "sp.k."],
    "DE": ["GmbH", "GmbH", "AG", "GmbH & Co. KG", "KG"],
    "GB": ["Ltd", "Ltd", "PLC", "LLP"],
    "NL": ["B.V.", "N.V."],
    "CZ": ["s.r.o.", "a.s."],
}
FORM_VARIANTS = {
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
COUNTRIES = np.array(["PL", "DE", "GB", "NL", "CZ"], dtype=object)
COUNTRY_P = [0.45, 0.25, 0.15, 0.08, 0.07]
VAT = {"PL": 1.23, "DE": 1.19, "GB": 1.20, "NL": 1.21, "CZ": 1.21}
LANG = {"PL": "pl", "DE": "de", "GB": "en", "NL": "en", "CZ": "en"}
# currencies: units per EUR (rounded rates; only the scale of amounts matters), the one a country bills in
FX_PER_EUR = {
    "EUR": 1.0,
    "PLN": 4.3,
    "USD": 1.08,
    "GBP": 0.85,
    "CHF": 0.95,
    "CZK": 25.0,
    "SEK": 11.5,
    "NOK": 11.7,
    "HUF": 395.0,
}
FOREIGN_CURRENCIES = list(FX_PER_EUR)  # a foreign contractor bills in one of these (not the home currency)
COUNTRY_CURRENCY = {"PL": "PLN", "GB": "GBP", "CZ": "CZK"}
BILLING_DAYS = [1, 1, 10, 15, 20, 25, 28]  # days of the month a batch-issuing contractor bills on
FACTORS = [
    ("Pekao Faktoring", "Sp. z o.o.", "PL"),
    ("Coface Finanz", "GmbH", "DE"),
    ("BNP Paribas Factor", "GmbH", "DE"),
    ("Bibby Financial Services", "Ltd", "GB"),
    ("ING Commercial Finance", "B.V.", "NL"),
    ("mFaktoring", "S.A.", "PL"),
]


class Processor(NamedTuple):
    """A payment processor / factoring company that starts paying for customers (payer_change drift)."""

    legal: str  # legal name
    shown: list[str]  # names as banks show them
    weights: list[float]  # how often each is shown
    country: str
    bank_code: str
    n_accounts: int
    share: float  # share of the affected contractors
    short: str  # short name for terse bank lines


PROCESSORS = [  # payer_change drift
    Processor(
        "PayFlow Collections B.V.",
        ["PAYFLOW COLLECTIONS BV", "PayFlow Collections B.V.", "PAYFLOW COLL. BV"],
        [0.7, 0.2, 0.1],
        "NL",
        "BUNQ",
        3,
        0.65,
        "PAYFLOW COLLECTIONS",
    ),
    Processor(
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
T_PROC = [  # ({ref}, then optional {inv} numbers and {abbr} contractor name)
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
SPECIAL = {  # reason -> counterparties of transfers that pay nothing
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
FIRST_NAMES = (
    "Jan Anna Piotr Maria Tomasz Katarzyna Michael Julia Stefan Ewa Thomas Sabine David Emma Lukas Zofia Marek "
    "Agnieszka"
).split()
LAST_NAMES = (
    "Kowalczyk Szymański Woźniak Kaczmarek Müller Wagner Smith Jones Taylor Brown Jankowski Pawlak Richter Klein Wolf"
).split()
SERVICES = [
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
MON_EN = "January February March April May June July August September October November December".split()
MON_PL = "styczeń luty marzec kwiecień maj czerwiec lipiec sierpień wrzesień październik listopad grudzień".split()
MON_DE = "Januar Februar März April Mai Juni Juli August September Oktober November Dezember".split()

T_NUM = {
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
T_NONUM = {
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
T_PART1 = {
    "en": ["partial payment", "instalment 1"],
    "pl": ["część 1", "rata 1/2", "czesciowa wplata"],
    "de": ["Teilzahlung", "Rate 1"],
}
T_PART2 = {
    "en": ["remaining balance", "final instalment"],
    "pl": ["dopłata", "rata 2/2", "reszta"],
    "de": ["Restzahlung", "Rate 2"],
}
T_INST = {  # an instalment ({n}: the number or reference, {k} of {of} parts)
    "en": [
        "{n} instalment {k}/{of}",
        "instalment {k} of {of} - {n}",
        "{n} part payment {k}",
        "{n}",
        "payment {k}/{of} {n}",
        "{n} partial",
    ],
    "pl": ["rata {k}/{of} {n}", "{n} rata {k}", "wpłata {k} z {of} {n}", "{n} częściowa wpłata", "{n}", "{n} cz. {k}"],
    "de": ["{k}. Rate {n}", "Ratenzahlung {k}/{of} {n}", "Teilzahlung {n}", "{n} Rate {k} von {of}", "{n}"],
}
T_INST_NONUM = {
    "en": ["instalment {k}/{of}", "part payment {k}", "instalment"],
    "pl": ["rata {k}", "rata {k}/{of}", "wpłata częściowa"],
    "de": ["{k}. Rate", "Ratenzahlung", "Teilzahlung {k}"],
}
T_REMIT = {  # a remittance advice ({n}: the listed numbers, {count} of them)
    "en": ["remit {n}", "payment advice: {n}", "invoices {n}", "{n}", "Remittance {count} invoices: {n}"],
    "pl": ["płatność za faktury: {n}", "faktury {n}", "{n}", "zapłata {count} faktur {n}"],
    "de": ["Zahlungsavis {n}", "Sammelzahlung Rechnungen {n}", "{n}", "Rechnungen {n}"],
}
T_REASON = {
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
D_REASON = {  # terse bank lines (description_only)
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


def fold(s: str) -> str:
    """Banks often transliterate names to ASCII."""
    s = s.translate(_FOLD)
    return "".join(c for c in unicodedata.normalize("NFKD", s) if not unicodedata.combining(c))
