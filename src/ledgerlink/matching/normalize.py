"""Text normalisation shared by blocking, features and the rules baseline.

The public functions take and return pandas Series; each string goes through one per-string function in a list
comprehension (pandas ``.str`` chains loop in Python too, but pay a fixed cost per call that dominated a
one-transfer request). The same functions run in fit, match and serving, so a string is normalised the same way
wherever it is compared.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Union

import numpy as np
import pandas as pd

from .runtime import check_deadline

# Letters that NFKD does not decompose into ASCII + combining mark.
_SPECIAL = str.maketrans(
    {
        "ł": "l",
        "Ł": "L",
        "ø": "o",
        "Ø": "O",
        "đ": "d",
        "Đ": "D",
        "ß": "ss",
        "æ": "ae",
        "Æ": "AE",
        "œ": "oe",
        "Œ": "OE",
        "ı": "i",
        "þ": "th",
    }
)

# Legal forms, written as normalise_text() leaves them. Long forms go anywhere; short ones only at the end,
# where they cannot be an ordinary word of the name ("AS Baltic" keeps "as").
_LONG_FORMS = [
    "spolka z ograniczona odpowiedzialnoscia",
    "spolka akcyjna",
    "spolka komandytowa",
    "spolka jawna",
    "spolka cywilna",
    "spolka komandytowo akcyjna",
    "gesellschaft mit beschrankter haftung",
    "sp z o o",
    "sp z oo",
    "sp zoo",
]
_SHORT_FORMS = [
    "sp k",
    "sp j",
    "sp p",
    "s k a",
    "s a",
    "s c",
    "sp",
    "gmbh co kg",
    "gmbh",
    "co kg",
    "kg",
    "ag",
    "ug",
    "ltd",
    "limited",
    "llc",
    "llp",
    "inc",
    "incorporated",
    "plc",
    "corp",
    "corporation",
    "company",
    "co",
    "bv",
    "b v",
    "nv",
    "n v",
    "srl",
    "s r l",
    "sarl",
    "sas",
    "spa",
    "s p a",
    "oy",
    "oyj",
    "ab",
    "as",
    "a s",
    "aps",
    "sro",
    "s r o",
    "kft",
    "zrt",
    "doo",
    "d o o",
    "sa",
    "se",
    "gmbh",
    "ohg",
    "ek",
    "e k",
    "pte",
    "pty",
    "lp",
]
_LONG_RE = re.compile(r"\b(?:" + "|".join(sorted(map(re.escape, _LONG_FORMS), key=len, reverse=True)) + r")\b")
_SHORT_RE = re.compile(r"(?:^|\s)(?:" + "|".join(sorted(map(re.escape, _SHORT_FORMS), key=len, reverse=True)) + r")$")

# A reference chunk: alphanumeric runs joined by in-number separators (FV/2024/03/0123, INV-2024-17, 12.03.2024).
_CHUNK_RE = r"([a-z0-9]+(?:[/\-._\\][a-z0-9]+)*)"
MIN_CHUNK_DIGITS = 3
# A reference is read from its first 64 characters. Invoice numbers are far shorter; the cap bounds the work on a
# hostile "number" (2,000 digits: one-deletion variants are quadratic in its length, and fuzzy scores of 100
# invoices x 10 transfers took 333 s).
MAX_CHUNK_CHARS = 64
# A number written with spaces ("2025 640 KR", "f90 03 25"): short tokens in a row, at least two with digits.
_TOK = r"(?:[a-z]{0,4}\d+[a-z]{0,3}|[a-z]{1,3})"
_SPACED_RE = r"(?<![a-z0-9/\-._])(" + _TOK + r"(?: " + _TOK + r"){1,5})(?![a-z0-9/\-._])"


def _strs(s: pd.Series | np.ndarray) -> list[str]:
    """The values as Python strings, missing ones as ''."""
    v = s.to_numpy(dtype=object) if isinstance(s, pd.Series) else np.asarray(s, dtype=object)
    return ["" if miss else str(x) for x, miss in zip(v, pd.isna(v))]


def _objects(values: list) -> np.ndarray:
    """A 1-D object array of ``values`` (lists stay list elements, never a second dimension)."""
    return np.fromiter(values, dtype=object, count=len(values))


def _series(values: list, s: pd.Series) -> pd.Series:
    return pd.Series(_objects(values), index=s.index, name=s.name)


_NON_ALNUM_RE = re.compile(r"[^0-9a-z]+")
_SPACES_RE = re.compile(r"\s+")
_DIGIT_WORD_RE = re.compile(r"\b\w*\d\w*\b")
_ACCOUNT_JUNK_RE = re.compile(r"[^0-9A-Z]+")


def _fold1(x: str) -> str:
    """fold() of one string."""
    if x.isascii():  # translate and NFKD leave ASCII as it is
        return x.lower()
    return unicodedata.normalize("NFKD", x.translate(_SPECIAL)).encode("ascii", "ignore").decode("ascii").lower()


def _text1(x: str) -> str:
    return _NON_ALNUM_RE.sub(" ", _fold1(x)).strip()


@lru_cache(maxsize=1 << 14)  # a service sees the same contractors and payers request after request (~2 MB)
def _name1(x: str) -> str:
    t = _SPACES_RE.sub(" ", _LONG_RE.sub(" ", _text1(x))).strip()
    for _ in range(2):  # "... GmbH & Co. KG", "... sp. k." stacked forms
        t = _SHORT_RE.sub("", t).strip()
    return t


def _strip_digits1(x: str) -> str:
    return _SPACES_RE.sub(" ", _DIGIT_WORD_RE.sub(" ", _text1(x))).strip()


def fold(s: pd.Series) -> pd.Series:
    """Lower case, diacritics stripped to ASCII (Łódź -> lodz). Missing values become ''."""
    return _series([_fold1(x) for x in _strs(s)], s)


def normalize_text(s: pd.Series) -> pd.Series:
    """fold() then every non-alphanumeric run becomes one space."""
    return _series([_text1(x) for x in _strs(s)], s)


def normalize_name(s: pd.Series) -> pd.Series:
    """Company/person name without legal form, case, diacritics or punctuation ("ACME Sp. z o.o." -> "acme")."""
    return _series([_name1(x) for x in _strs(s)], s)


def normalize_account(s: pd.Series) -> pd.Series:
    """Bank account as upper-case alphanumerics only (IBAN spacing and dashes differ between banks)."""
    return _series([_ACCOUNT_JUNK_RE.sub("", x.upper()) for x in _strs(s)], s)


def strip_digits(s: pd.Series) -> pd.Series:
    """Words only: what is left of a description/title once reference numbers are removed (for names)."""
    return _series([_strip_digits1(x) for x in _strs(s)], s)


_CHUNK_FIND = re.compile(_CHUNK_RE)
_SPACED_FIND = re.compile(_SPACED_RE)
_SPACED_NUMBER_RE = re.compile(r"(?:^| )[a-z]{0,4}\d")
_NON_ALNUM1_RE = re.compile(r"[^0-9a-z]")
_DIGITS_RE = re.compile(r"\d+")
_MIN_DIGITS_RE = re.compile(r"\D*".join([r"\d"] * MIN_CHUNK_DIGITS))  # that many digits, anywhere
_CHUNK_COLUMNS = ["alnum", "digits", "groups", "long_groups"]


def _text_chunks(text: str, whole: bool) -> tuple[list[str], list[str]]:
    """(the regular chunks in text order, the spaced numbers) of one text: its candidate chunks."""
    if whole:
        return [_NON_ALNUM_RE.sub("/", _fold1(text)).strip("/")], []
    f = _fold1(text)
    spaced = [
        sp.replace(" ", "/")
        for sp in _SPACED_FIND.findall(_SPACES_RE.sub(" ", f))
        if len(_SPACED_NUMBER_RE.findall(sp)) >= 2
    ]
    return _CHUNK_FIND.findall(f), spaced


# In free text (an invoice's description), a period or a date ("consulting 03/2025", "delivered 2025-03-14") and an
# amount ("net 1200.00") are no references; in an invoice number or a bank title the same shapes may be one
# ("FV 12/2025"), so only descriptions drop them.
_DATE_CHUNK_RE = re.compile(
    r"(?:(?:0?[1-9]|[12]\d|3[01])[./-])?(?:0?[1-9]|1[0-2])[./-](?:19|20)?\d\d"
    r"|(?:19|20)\d\d[./-](?:0?[1-9]|1[0-2])(?:[./-](?:0?[1-9]|[12]\d|3[01]))?"
)
_AMOUNT_CHUNK_RE = re.compile(r"\d+[.,]\d\d")
_YEAR_RE = re.compile(r"(?:19|20)\d\d")  # a bare year ("services 2025", "DOK 2025 004411") is no reference anywhere


def _is_free_text_noise(chunk: str) -> bool:
    return bool(_DATE_CHUNK_RE.fullmatch(chunk) or _AMOUNT_CHUNK_RE.fullmatch(chunk))


_Parts = tuple[str, str, str, tuple[str, ...]]  # (alnum, digits, groups, long_groups): _chunk_parts
# Texts up to this long keep their references in a cache: a service sees the same open invoices request after
# request, and their regular expressions were ~0.4 ms of a /match request's 50 candidates. Longer texts are not
# cached, so a request of 2,000-character texts does not leave hundreds of MB behind (~16k entries of ~1 kB).
CACHED_REFERENCE_CHARS = 256


def _text_references_of(text: str, whole: bool, free_text: bool) -> tuple[tuple[_Parts, ...], tuple[_Parts, ...]]:
    """The references of one text, as (those of its regular chunks, those of its spaced numbers), each alnum once
    (a spaced number the text already has as a regular chunk is left out). ``free_text``: drop dates and amounts."""
    regular, spaced = _text_chunks(text, whole)
    seen: set[str] = set()
    out: tuple[list[_Parts], list[_Parts]] = ([], [])
    for kept, chunks in zip(out, (regular, spaced)):
        for c in chunks:
            if not _MIN_DIGITS_RE.search(c):  # fewer than MIN_CHUNK_DIGITS digits: no reference (checked in C)
                continue
            if (free_text and _is_free_text_noise(c)) or (not whole and _YEAR_RE.fullmatch(c)):
                continue
            parts = _chunk_parts(c[:MAX_CHUNK_CHARS])
            if len(parts[1]) < MIN_CHUNK_DIGITS or parts[0] in seen:  # short ones (and empty chunks) are none
                continue
            seen.add(parts[0])
            kept.append(parts)
    return tuple(out[0]), tuple(out[1])


_cached_text_references = lru_cache(maxsize=1 << 14)(_text_references_of)


def _chunk_columns(texts: list[str], positions, whole: bool, free_text: bool = False) -> dict[str, list]:
    """ref_chunks of ``texts`` as lists, ``key`` = ``positions[row]``; ``free_text``: drop dates and amounts. All
    texts' regular chunks in text order come first, then all their spaced numbers."""
    per = []
    for k, x in enumerate(texts):
        if k % 4096 == 4095:
            check_deadline("text preparation: references")
        refs = _cached_text_references if len(x) <= CACHED_REFERENCE_CHARS else _text_references_of
        per.append(refs(x, whole, free_text))
    check_deadline("text preparation: references")
    out = {"key": [], "alnum": [], "digits": [], "groups": [], "long_groups": []}
    for side in (0, 1):
        for r, refs_of_text in enumerate(per):
            for alnum, digits, groups, long_groups in refs_of_text[side]:
                out["key"].append(positions[r])
                out["alnum"].append(alnum)
                out["digits"].append(digits)
                out["groups"].append(groups)
                out["long_groups"].append(list(long_groups))
    return out


@lru_cache(maxsize=1 << 14)  # a service sees the same open invoices request after request (~4 MB)
def _chunk_parts(chunk: str) -> tuple[str, str, str, tuple[str, ...]]:
    """(alnum, digits, groups, long_groups) of one chunk."""
    runs = _DIGITS_RE.findall(chunk)
    stripped = [d.lstrip("0") or "0" for d in runs]
    return (
        _NON_ALNUM1_RE.sub("", chunk),
        "".join(runs),
        " ".join(stripped),
        tuple(g for g, d in zip(stripped, runs) if len(d) >= MIN_CHUNK_DIGITS),
    )


def _chunk_frame(columns: dict[str, list], key: str) -> pd.DataFrame:
    return pd.DataFrame(
        {key: np.array(columns["key"], dtype=np.int64), **{c: _objects(columns[c]) for c in _CHUNK_COLUMNS}}, copy=False
    )


def ref_chunks(s: pd.Series, whole: bool = False) -> pd.DataFrame:
    """Reference-like chunks of each text, one row per chunk.

    Columns: ``row`` (position in ``s``), ``alnum`` (letters+digits, no separators), ``digits`` (all digits),
    ``groups`` (the digit runs with leading zeros stripped, space-joined: other formats of the same number
    share them, "FV/2024/03/0123" and "123/3/2024" both give {2024, 3, 123}).
    ``whole=True`` treats each text as one number (an ``invoice_number`` column): spaces inside it do not split.
    Chunks with fewer than 3 digits are dropped (they are dates' days, quantities, not references).
    """
    texts = _strs(s)
    return _chunk_frame(_chunk_columns(texts, range(len(texts)), whole), "row")


def digit_ngrams(digits: pd.Series, n: int = 4) -> pd.DataFrame:
    """Character n-grams of digit strings, one row per (position in ``digits``, gram).

    A typo, transposition or truncation breaks only the grams around it, so the rest still hit the index.
    Strings shorter than n give themselves as the one gram.
    """
    pos, grams = string_ngrams(list(digits), n)
    return pd.DataFrame({"pos": np.array(pos, dtype=np.int64), "gram": _objects(grams)})


def string_ngrams(strings: list[str], n: int) -> tuple[list[int], list[str]]:
    """digit_ngrams as (positions, grams) lists."""
    pos, grams = [], []
    for p, s in enumerate(strings):
        g = [s[k : k + n] for k in range(max(len(s) - n + 1, 1))]
        pos += [p] * len(g)
        grams += g
    return pos, grams


# --------------------------------------------------------------------------------------------------------------
# Prepared views: each side normalised once per call, then shared by blocking, features, memory and rules.


# A side to prepare: a checked contract frame (``base.check_frame``), or the same columns as numpy arrays (the
# service's records, checked once by its request model: ``single.checked_columns``). ``name in table`` and
# ``table[name]`` read both; without a frame a /match request builds two DataFrames and ~15 Series fewer (~0.3 ms).
Table = Union[pd.DataFrame, Mapping[str, np.ndarray]]


def n_rows(table: Table) -> int:
    """The number of rows of a frame or of a mapping of equal-length columns."""
    if isinstance(table, pd.DataFrame):
        return len(table)
    return len(next(iter(table.values()))) if len(table) else 0


def _col(df: Table, name: str) -> list[str]:
    """An optional text column as strings, or all-empty when the warehouse does not have it."""
    if name in df:
        return _strs(df[name])
    return [""] * n_rows(df)


def _floats(amount: pd.Series | np.ndarray) -> np.ndarray:
    """A new float64 array of the amounts."""
    if isinstance(amount, pd.Series):
        return amount.to_numpy(dtype=np.float64, copy=True)
    return np.array(amount, dtype=np.float64)


def _cents(amount: pd.Series | np.ndarray) -> np.ndarray:
    return np.round(_floats(amount) * 100.0).astype(np.int64)


def _ids(ids: pd.Series | np.ndarray) -> np.ndarray:
    """Ids as an object array of Python strings."""
    if isinstance(ids, pd.Series):
        return ids.astype(str).to_numpy()
    return _objects([str(x) for x in ids])


def _days(dates: pd.Series | np.ndarray) -> np.ndarray:
    """Dates as datetime64[D] (parsed unless they already are numpy datetimes, which parsing leaves as they are)."""
    if isinstance(dates, np.ndarray) and dates.dtype.kind == "M":
        return dates.astype("datetime64[D]")
    if not (isinstance(dates.dtype, np.dtype) and dates.dtype.kind == "M"):
        dates = pd.to_datetime(dates)
    return dates.to_numpy(dtype="datetime64[D]")


_LEAD_SPLIT_RE = re.compile(r"\s+[-–|]\s+")
_LEAD_SEP_RE = re.compile(r"\s[-–|]\s")


def _invoice_name_key(cp: str, desc: str) -> str:
    """The counterparty's name; without one, the lead of a description "Name - what - number"."""
    key = _name1(cp)
    if key == "" and _LEAD_SEP_RE.search(desc):
        key = _strip_digits1(_name1(_LEAD_SPLIT_RE.split(desc, maxsplit=1)[0]))
    return key


def prepare_invoices(invoices: Table) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(frame, chunks) for invoices. ``frame`` row i is invoice position i.

    Without ``invoice_number`` the reference chunks come from ``description``; without ``counterparty_name`` the
    name is the description's words. ``name_key`` (the memory key) needs a real counterparty name.
    """
    number, cp = _col(invoices, "invoice_number"), _col(invoices, "counterparty_name")
    desc = _col(invoices, "description")
    name_key = [_invoice_name_key(c, d) for c, d in zip(cp, desc)]
    check_deadline("text preparation: invoice names")
    frame = pd.DataFrame(
        {
            "invoice_id": _ids(invoices["invoice_id"]),
            "amount": _floats(invoices["amount"]),
            "cents": _cents(invoices["amount"]),
            "currency": _objects(_col(invoices, "currency")),
            "issued_at": _days(invoices["issued_at"]),
            "due_at": _days(invoices["due_at"]),
            "name": _objects([k if k != "" else _strip_digits1(d) for k, d in zip(name_key, desc)]),
            "name_key": _objects(name_key),
            "text": _objects(
                [_fold1(n + " | " + c + " | " + d) for n, c, d in zip(number, cp, desc)]
            ),  # for text models
        },
        copy=False,
    )  # all columns are new arrays
    check_deadline("text preparation: invoice texts")
    # references from every text field: the invoice number (spaces inside it do not split it) and any reference
    # in the description (a PO, contract, order, assignment or document number counts like the invoice number)
    with_num = [k for k, n in enumerate(number) if n.strip() != ""]
    with_desc = [k for k, x in enumerate(desc) if x.strip() != ""]
    chunks = _chunk_columns([number[k] for k in with_num], with_num, True)
    from_desc = _chunk_columns([desc[k] for k in with_desc], with_desc, False, free_text=True)
    seen = set(zip(chunks["key"], chunks["alnum"]))
    keep = [j for j, ka in enumerate(zip(from_desc["key"], from_desc["alnum"])) if ka not in seen]
    for col, values in from_desc.items():
        chunks[col] += [values[j] for j in keep]
    order = np.argsort(np.asarray(chunks["key"], np.int64), kind="stable")  # invoice by invoice: number first
    chunks = {col: [values[j] for j in order] for col, values in chunks.items()}
    return frame, _chunk_frame(chunks, "i")


_MONTHS = {  # folded month names and abbreviations (en, pl nominative/genitive, de) -> 1..12
    **{
        w: k + 1
        for k, ws in enumerate(
            [
                "january jan styczen stycznia januar",
                "february feb luty lutego februar",
                "march mar marzec marca marz",
                "april apr kwiecien kwietnia",
                "may maj maja mai",
                "june jun czerwiec czerwca juni",
                "july jul lipiec lipca juli",
                "august aug sierpien sierpnia",
                "september sep sept wrzesien wrzesnia",
                "october oct pazdziernik pazdziernika oktober okt",
                "november nov listopad listopada",
                "december dec grudzien grudnia dezember dez",
            ]
        )
        for w in ws.split()
    },
}
_MONTH_WORD_RE = r"\b(" + "|".join(sorted(_MONTHS, key=len, reverse=True)) + r")\b"
_MONTH_NUM_RE = r"(?<![0-9])(0?[1-9]|1[0-2])[/.\-](?:20)?\d\d(?![0-9/.\-])"
_MONTH_WORD_FIND = re.compile(_MONTH_WORD_RE)
_MONTH_NUM_FIND = re.compile(_MONTH_NUM_RE)


def _title_month1(folded: str) -> float:
    m = _MONTH_WORD_FIND.search(folded)
    if m:
        return float(_MONTHS[m.group(1)])
    m = _MONTH_NUM_FIND.search(folded)
    return float(m.group(1)) if m else np.nan


def title_month(s: pd.Series) -> np.ndarray:
    """The month a title mentions ("services March", "usługi marzec", "Miete 04/2025", "... MAR"), NaN if none."""
    return np.array([_title_month1(_fold1(x)) for x in _strs(s)], dtype=np.float64)


# An amount written in a title ("EUR 1200.00", "kwota 1 200,00", "1.200,00", "remit 2025/0142 1200.00; ..."): digits
# with two decimals, optionally grouped by thousands, not glued to other digits or separators (a date "14.03.2025"
# or a number "FV.2025.01.0588" is none). A remittance advice lists what it pays on each invoice this way.
_TITLE_AMOUNT_RE = re.compile(r"(?<![\w.,/-])(\d{1,3}(?:[ .,'\u00a0]\d{3})+|\d+)[.,](\d\d)(?![\w]|[.,/-]\d)")
_GROUP_SEP_RE = re.compile(r"[ .,'\u00a0]")


def _title_amounts1(text: str) -> tuple[str, tuple[int, ...]]:
    """(text without its amounts, the amounts in cents)."""
    if not any(ch in text for ch in ".,"):
        return text, ()
    cents = []

    def take(m: re.Match) -> str:
        cents.append(int(_GROUP_SEP_RE.sub("", m.group(1))) * 100 + int(m.group(2)))
        return " "

    return _TITLE_AMOUNT_RE.sub(take, text), tuple(cents)


def prepare_transfers(transfers: Table) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(frame, chunks) for transfers. The payer name falls back to the title's words when there is none. Amounts
    written in the title are read into ``title_amounts`` (cents) and are no reference chunks."""
    title, cp = _col(transfers, "title"), _col(transfers, "counterparty_name")
    title_amounts = [_title_amounts1(x) for x in title]
    words = [_strip_digits1(x) for x in title]
    check_deadline("text preparation: titles")
    if "counterparty_name" in transfers:
        payer = [_name1(x) for x in cp]
    else:  # a terse bank line carries the payer's name: its words, no month
        payer = [_name1(_SPACES_RE.sub(" ", _MONTH_WORD_FIND.sub(" ", w)).strip()) for w in words]
    frame = pd.DataFrame(
        {
            "transfer_id": _ids(transfers["transfer_id"]),
            "amount": _floats(transfers["amount"]),
            "cents": _cents(transfers["amount"]),
            "currency": _objects(_col(transfers, "currency")),
            "booked_at": _days(transfers["booked_at"]),
            "payer": _objects(payer),
            "title_words": _objects(words),
            "name": _objects([p if p != "" else w for p, w in zip(payer, words)]),
            "account": _objects([_ACCOUNT_JUNK_RE.sub("", x.upper()) for x in _col(transfers, "counterparty_account")]),
            "title_month": np.array([_title_month1(_fold1(x)) for x in title], dtype=np.float64),
            "text": _objects([_fold1(t + " | " + c) for t, c in zip(title, cp)]),
            "title_amounts": _objects([a for _, a in title_amounts]),
        },
        copy=False,
    )  # all columns are new arrays
    check_deadline("text preparation: transfer texts")
    bare = [x for x, _ in title_amounts]
    return frame, _chunk_frame(_chunk_columns(bare, range(len(bare)), False), "t")


@dataclass(frozen=True)
class Prepared:
    """Both sides of a matching problem, normalised once: ``inv`` (row i = invoice position i) and its reference
    chunks ``inv_chunks`` (column ``i``), ``tr`` and ``tr_chunks`` (column ``t``). Blocking, pair features, the
    set choice and the rules baseline all read this one record."""

    inv: pd.DataFrame
    inv_chunks: pd.DataFrame
    tr: pd.DataFrame
    tr_chunks: pd.DataFrame

    @classmethod
    def of(cls, invoices: Table, transfers: Table) -> "Prepared":
        """Prepare checked contract frames (``base.check_frame``), or their columns (``Table``)."""
        inv, inv_chunks = prepare_invoices(invoices)
        tr, tr_chunks = prepare_transfers(transfers)
        return cls(inv, inv_chunks, tr, tr_chunks)

    @classmethod
    def concat(cls, parts: list["Prepared"]) -> "Prepared":
        """Several problems one after the other; chunk positions shifted to the joined rows."""
        i_off = np.r_[0, np.cumsum([len(p.inv) for p in parts])]
        t_off = np.r_[0, np.cumsum([len(p.tr) for p in parts])]
        return cls(
            pd.concat([p.inv for p in parts], ignore_index=True),
            pd.concat(
                [p.inv_chunks.assign(i=p.inv_chunks["i"] + i_off[k]) for k, p in enumerate(parts)], ignore_index=True
            ),
            pd.concat([p.tr for p in parts], ignore_index=True),
            pd.concat(
                [p.tr_chunks.assign(t=p.tr_chunks["t"] + t_off[k]) for k, p in enumerate(parts)], ignore_index=True
            ),
        )

    def ids_only(self) -> "Prepared":
        """The same rows with only their ids (``invoice_id``, ``transfer_id``) and no reference chunks: what a
        result needs once the batches have been matched elsewhere (``match``'s worker processes)."""
        ids = lambda df, col: pd.DataFrame({col: df[col].to_numpy(copy=True)})  # noqa: E731  (no view of df's block)
        return Prepared(
            ids(self.inv, "invoice_id"),
            self.inv_chunks.iloc[:0].copy(),
            ids(self.tr, "transfer_id"),
            self.tr_chunks.iloc[:0].copy(),
        )

    def with_transfers(self, idx: np.ndarray) -> "Prepared":
        """The same invoices with the transfers at positions ``idx`` (sorted), renumbered 0..len(idx)-1."""
        if len(idx) == len(self.tr):
            return self
        new_t = np.full(len(self.tr), -1, np.int64)
        new_t[idx] = np.arange(len(idx))
        keep = np.isin(self.tr_chunks["t"].to_numpy(), idx)
        tc = self.tr_chunks[keep].assign(t=lambda d: new_t[d["t"].to_numpy()]).reset_index(drop=True)
        return Prepared(self.inv, self.inv_chunks, self.tr.iloc[idx].reset_index(drop=True), tc)
