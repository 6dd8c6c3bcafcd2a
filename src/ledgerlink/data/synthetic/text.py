"""How invoice numbers are written and damaged, and how names get abbreviated: pure string functions."""

from __future__ import annotations

import random
import re

from .vocabulary import fold


def invoice_number(fmt: int, y: int, m: int, n: int) -> str:
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


def other_format(num: str, seq: int, x: float, sep: str) -> str:
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


def damage(num: str, r: random.Random) -> str:
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


def abbreviate(base: str, r: random.Random) -> str:
    """A contractor's name as a processor abbreviates it: "KOWA LOGI", "KOWALSKI", "KL", "KOWALSKI LOG"."""
    words = fold(base).upper().split()
    x = r.random()
    if x < 0.4:
        return " ".join(w[:4] for w in words)
    if x < 0.7:
        return words[0]
    if x < 0.85 and len(words) > 1:
        return "".join(w[0] for w in words)
    return " ".join(words)[:12].rstrip()


# References an invoice's free description carries besides its number (a PO, contract, order, assignment or
# document number): how each style writes one, and what a description calls it, per language. Style 0 and 4 are
# unique per invoice (assignments, documents: what instalment invoices carry); CONTRACT refs are shared by a block
# of CONTRACT_BLOCK invoices (one contract bills several times).
REF_STYLES = [
    (lambda y, m, n: f"ASG-{y}-{n:06d}", {"en": "Assignment", "pl": "Zlecenie", "de": "Auftrag"}),
    (lambda y, m, n: f"45{n % 10**8:08d}", {"en": "PO", "pl": "Zamówienie nr", "de": "Bestellung"}),
    (lambda y, m, n: f"KTR/{y}/{n:03d}", {"en": "Contract", "pl": "Umowa", "de": "Vertrag"}),
    (lambda y, m, n: f"ORD-{n:05d}", {"en": "Order", "pl": "Zam.", "de": "Bestell-Nr."}),
    (lambda y, m, n: f"DOK {y} {n:06d}", {"en": "Document", "pl": "Dokument", "de": "Beleg"}),
    (lambda y, m, n: f"PRJ.{y % 100:02d}.{n:04d}", {"en": "Project", "pl": "Projekt", "de": "Projekt"}),
    (lambda y, m, n: f"{n:05d}/{y % 100:02d}/Z", {"en": "Case", "pl": "Sprawa", "de": "Vorgang"}),
    (lambda y, m, n: f"WZ {n}/{m:02d}/{y}", {"en": "Delivery note", "pl": "WZ", "de": "Lieferschein"}),
    (lambda y, m, n: f"REF{y}{n:05d}", {"en": "Ref", "pl": "Ref.", "de": "Ref."}),
    (lambda y, m, n: f"A{n:06d}-{y % 100:02d}", {"en": "Agreement", "pl": "Porozumienie", "de": "Vereinbarung"}),
]
N_REF_STYLES = len(REF_STYLES)
UNIQUE_REF_STYLES = (0, 4)  # what an instalment plan's invoice carries
CONTRACT_STYLE, CONTRACT_BLOCK = 2, 4


def reference(style: int, y: int, m: int, n: int) -> str:
    return REF_STYLES[style][0](y, m, n)


def ref_label(style: int, lang: str) -> str:
    return REF_STYLES[style][1][lang]


def money(amount: float, lang: str, r: random.Random) -> str:
    """An amount as a payer writes it: "1200.00", "1,200.00" (en), "1 200,00" (pl), "1.200,00" (de)."""
    plain = f"{abs(amount):.2f}"
    if r.random() < 0.5:
        return plain if lang == "en" else plain.replace(".", ",")
    grouped = f"{abs(amount):,.2f}"
    if lang == "pl":
        return grouped.replace(",", " ").replace(".", ",")
    if lang == "de":
        return grouped.replace(",", "_").replace(".", ",").replace("_", ".")
    return grouped
