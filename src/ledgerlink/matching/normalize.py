"""Text normalisation shared by blocking, features and the rules baseline.

Everything here is vectorised over pandas Series, and the same functions run in fit, match and serving,
so a string is normalised the same way wherever it is compared.
"""
from __future__ import annotations

import re

import numpy as np
import pandas as pd

# Letters that NFKD does not decompose into ASCII + combining mark.
_SPECIAL = str.maketrans({"ł": "l", "Ł": "L", "ø": "o", "Ø": "O", "đ": "d", "Đ": "D", "ß": "ss", "æ": "ae",
                          "Æ": "AE", "œ": "oe", "Œ": "OE", "ı": "i", "þ": "th"})

# Legal forms, written as normalise_text() leaves them. Long forms go anywhere; short ones only at the end,
# where they cannot be an ordinary word of the name ("AS Baltic" keeps "as").
_LONG_FORMS = [
    "spolka z ograniczona odpowiedzialnoscia", "spolka akcyjna", "spolka komandytowa", "spolka jawna",
    "spolka cywilna", "spolka komandytowo akcyjna", "gesellschaft mit beschrankter haftung", "sp z o o",
    "sp z oo", "sp zoo",
]
_SHORT_FORMS = [
    "sp k", "sp j", "sp p", "s k a", "s a", "s c", "sp", "gmbh co kg", "gmbh", "co kg", "kg", "ag", "ug", "ltd",
    "limited", "llc", "llp", "inc", "incorporated", "plc", "corp", "corporation", "company", "co", "bv", "b v",
    "nv", "n v", "srl", "s r l", "sarl", "sas", "spa", "s p a", "oy", "oyj", "ab", "as", "a s", "aps", "sro",
    "s r o", "kft", "zrt", "doo", "d o o", "sa", "se", "gmbh", "ohg", "ek", "e k", "pte", "pty", "lp",
]
_LONG_RE = re.compile(r"\b(?:" + "|".join(sorted(map(re.escape, _LONG_FORMS), key=len, reverse=True)) + r")\b")
_SHORT_RE = re.compile(r"(?:^|\s)(?:" + "|".join(sorted(map(re.escape, _SHORT_FORMS), key=len, reverse=True)) + r")$")

# A reference chunk: alphanumeric runs joined by in-number separators (FV/2024/03/0123, INV-2024-17, 12.03.2024).
_CHUNK_RE = r"([a-z0-9]+(?:[/\-._\\][a-z0-9]+)*)"
MIN_CHUNK_DIGITS = 3
# A number written with spaces ("2025 640 KR", "f90 03 25"): short tokens in a row, at least two with digits.
_TOK = r"(?:[a-z]{0,4}\d+[a-z]{0,3}|[a-z]{1,3})"
_SPACED_RE = r"(?<![a-z0-9/\-._])(" + _TOK + r"(?: " + _TOK + r"){1,5})(?![a-z0-9/\-._])"


def _str(s: pd.Series) -> pd.Series:
    return s.astype(object).where(s.notna(), "").astype(str)


def fold(s: pd.Series) -> pd.Series:
    """Lower case, diacritics stripped to ASCII (Łódź -> lodz). Missing values become ''."""
    s = _str(s).str.translate(_SPECIAL).str.normalize("NFKD").str.encode("ascii", "ignore").str.decode("ascii")
    return s.str.lower()


def normalize_text(s: pd.Series) -> pd.Series:
    """fold() then every non-alphanumeric run becomes one space."""
    return fold(s).str.replace(r"[^0-9a-z]+", " ", regex=True).str.strip()


def normalize_name(s: pd.Series) -> pd.Series:
    """Company/person name without legal form, case, diacritics or punctuation ("ACME Sp. z o.o." -> "acme")."""
    t = normalize_text(s).str.replace(_LONG_RE, " ", regex=True).str.replace(r"\s+", " ", regex=True).str.strip()
    for _ in range(2):  # "... GmbH & Co. KG", "... sp. k." stacked forms
        t = t.str.replace(_SHORT_RE, "", regex=True).str.strip()
    return t


def normalize_account(s: pd.Series) -> pd.Series:
    """Bank account as upper-case alphanumerics only (IBAN spacing and dashes differ between banks)."""
    return _str(s).str.upper().str.replace(r"[^0-9A-Z]+", "", regex=True)


def strip_digits(s: pd.Series) -> pd.Series:
    """Words only: what is left of a description/title once reference numbers are removed (for names)."""
    return normalize_text(s).str.replace(r"\b\w*\d\w*\b", " ", regex=True).str.replace(r"\s+", " ", regex=True).str.strip()


def ref_chunks(s: pd.Series, whole: bool = False) -> pd.DataFrame:
    """Reference-like chunks of each text, one row per chunk.

    Columns: ``row`` (position in ``s``), ``alnum`` (letters+digits, no separators), ``digits`` (all digits),
    ``groups`` (the digit runs with leading zeros stripped, space-joined: other formats of the same number
    share them, "FV/2024/03/0123" and "123/3/2024" both give {2024, 3, 123}).
    ``whole=True`` treats each text as one number (an ``invoice_number`` column): spaces inside it do not split.
    Chunks with fewer than 3 digits are dropped (they are dates' days, quantities, not references).
    """
    f = fold(s)
    if whole:
        chunks = f.str.replace(r"[^0-9a-z]+", "/", regex=True).str.strip("/").to_frame("chunk")
        chunks["row"] = np.arange(len(f))
    else:
        ex = f.str.extractall(_CHUNK_RE)
        sp = f.str.replace(r"\s+", " ", regex=True).str.extractall(_SPACED_RE)
        sp = sp[sp[0].str.count(r"(?:^| )[a-z]{0,4}\d") >= 2]
        chunks = pd.DataFrame({"row": np.r_[ex.index.get_level_values(0), sp.index.get_level_values(0)],
                               "chunk": np.r_[ex[0].to_numpy(), sp[0].str.replace(" ", "/").to_numpy()]})
        pos = pd.Series(np.arange(len(f)), index=f.index)
        chunks["row"] = pos.reindex(chunks["row"]).to_numpy()
    chunks = chunks[chunks["chunk"].str.len() > 0]
    c = chunks["chunk"]
    out = pd.DataFrame({
        "row": chunks["row"].to_numpy(dtype=np.int64),
        "alnum": c.str.replace(r"[^0-9a-z]", "", regex=True).to_numpy(),
        "digits": c.str.replace(r"\D", "", regex=True).to_numpy(),
    })
    runs = c.str.findall(r"\d+")
    out["groups"] = runs.map(lambda rs: " ".join(r.lstrip("0") or "0" for r in rs)).to_numpy()
    out["long_groups"] = runs.map(lambda rs: [r.lstrip("0") or "0" for r in rs if len(r) >= MIN_CHUNK_DIGITS]).to_numpy()
    out = out[out["digits"].str.len() >= MIN_CHUNK_DIGITS]
    out = out.drop_duplicates(["row", "alnum"]).reset_index(drop=True)
    return out.astype({"row": np.int64, "alnum": object, "digits": object, "groups": object, "long_groups": object})


def digit_ngrams(digits: pd.Series, n: int = 4) -> pd.DataFrame:
    """Character n-grams of digit strings, one row per (position in ``digits``, gram).

    A typo, transposition or truncation breaks only the grams around it, so the rest still hit the index.
    Strings shorter than n give themselves as the one gram.
    """
    d = digits.reset_index(drop=True)
    lens = d.str.len().to_numpy()
    n_grams = np.maximum(lens - n + 1, 1)
    rows = np.repeat(np.arange(len(d)), n_grams)
    starts = np.arange(n_grams.sum()) - np.repeat(np.cumsum(n_grams) - n_grams, n_grams)
    src = d.to_numpy()[rows]
    grams = [s[i:i + n] for s, i in zip(src, starts)]
    return pd.DataFrame({"pos": rows.astype(np.int64), "gram": pd.Series(grams, dtype=object)})


# --------------------------------------------------------------------------------------------------------------
# Prepared views: each side normalised once per call, then shared by blocking, features, memory and rules.


def _col(df: pd.DataFrame, name: str) -> pd.Series:
    """An optional text column, or all-empty when the warehouse does not have it."""
    if name in df.columns:
        return _str(df[name])
    return pd.Series([""] * len(df), index=df.index, dtype=object)


def _cents(amount: pd.Series) -> np.ndarray:
    return np.round(amount.to_numpy(dtype=np.float64) * 100.0).astype(np.int64)


def prepare_invoices(invoices: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(frame, chunks) for invoices. ``frame`` row i is invoice position i.

    Without ``invoice_number`` the reference chunks come from ``description``; without ``counterparty_name`` the
    name is the description's words. ``name_key`` (the memory key) needs a real counterparty name.
    """
    inv = invoices.reset_index(drop=True)
    number, cp, desc = _col(inv, "invoice_number"), _col(inv, "counterparty_name"), _col(inv, "description")
    name_key = normalize_name(cp)
    if (name_key == "").any():  # no counterparty column: a description "Name - what - number" leads with the name
        lead = desc.str.split(r"\s+[-–|]\s+", n=1, regex=True).str[0]
        lead = normalize_name(lead.where(desc.str.contains(r"\s[-–|]\s", regex=True), ""))
        name_key = name_key.where(name_key != "", strip_digits(lead))
    name = name_key.where(name_key != "", strip_digits(desc))
    frame = pd.DataFrame({
        "invoice_id": inv["invoice_id"].astype(str).to_numpy(),
        "amount": inv["amount"].to_numpy(dtype=np.float64),
        "cents": _cents(inv["amount"]),
        "currency": _col(inv, "currency").to_numpy(),
        "issued_at": pd.to_datetime(inv["issued_at"]).to_numpy(dtype="datetime64[D]"),
        "due_at": pd.to_datetime(inv["due_at"]).to_numpy(dtype="datetime64[D]"),
        "name": name.to_numpy(),
        "name_key": name_key.to_numpy(),
        "text": fold(number + " | " + cp + " | " + desc).to_numpy(),  # the raw text, for text models
    })
    has_num = number.str.strip() != ""
    parts = [ref_chunks(number[has_num], whole=True).assign(row=lambda c: np.flatnonzero(has_num.to_numpy())[c["row"]])]
    if (~has_num).any():
        parts.append(ref_chunks(desc[~has_num]).assign(row=lambda c: np.flatnonzero(~has_num.to_numpy())[c["row"]]))
    chunks = pd.concat(parts, ignore_index=True).rename(columns={"row": "i"})
    return frame, chunks


_MONTHS = {  # folded month names and abbreviations (en, pl nominative/genitive, de) -> 1..12
    **{w: k + 1 for k, ws in enumerate([
        "january jan styczen stycznia januar", "february feb luty lutego februar", "march mar marzec marca marz",
        "april apr kwiecien kwietnia", "may maj maja mai", "june jun czerwiec czerwca juni",
        "july jul lipiec lipca juli", "august aug sierpien sierpnia", "september sep sept wrzesien wrzesnia",
        "october oct pazdziernik pazdziernika oktober okt", "november nov listopad listopada",
        "december dec grudzien grudnia dezember dez"]) for w in ws.split()},
}
_MONTH_WORD_RE = r"\b(" + "|".join(sorted(_MONTHS, key=len, reverse=True)) + r")\b"
_MONTH_NUM_RE = r"(?<![0-9])(0?[1-9]|1[0-2])[/.\-](?:20)?\d\d(?![0-9/.\-])"


def title_month(s: pd.Series) -> np.ndarray:
    """The month a title mentions ("services March", "usługi marzec", "Miete 04/2025", "... MAR"), NaN if none."""
    f = fold(s)
    word = f.str.extract(_MONTH_WORD_RE, expand=False).map(_MONTHS)
    num = pd.to_numeric(f.str.extract(_MONTH_NUM_RE, expand=False), errors="coerce")
    return word.fillna(num).to_numpy(dtype=np.float64)


def prepare_transfers(transfers: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(frame, chunks) for transfers. The payer name falls back to the title's words when there is none."""
    tr = transfers.reset_index(drop=True)
    title, cp = _col(tr, "title"), _col(tr, "counterparty_name")
    payer = normalize_name(cp)
    words = strip_digits(title)
    if "counterparty_name" not in tr.columns:  # a terse bank line carries the payer's name: its words, no month
        payer = normalize_name(words.str.replace(_MONTH_WORD_RE, " ", regex=True).str.replace(r"\s+", " ", regex=True).str.strip())
    frame = pd.DataFrame({
        "transfer_id": tr["transfer_id"].astype(str).to_numpy(),
        "amount": tr["amount"].to_numpy(dtype=np.float64),
        "cents": _cents(tr["amount"]),
        "currency": _col(tr, "currency").to_numpy(),
        "booked_at": pd.to_datetime(tr["booked_at"]).to_numpy(dtype="datetime64[D]"),
        "payer": payer.to_numpy(),
        "title_words": words.to_numpy(),
        "name": payer.where(payer != "", words).to_numpy(),
        "account": normalize_account(_col(tr, "counterparty_account")).to_numpy(),
        "title_month": title_month(title),
        "text": fold(title + " | " + cp).to_numpy(),
    })
    chunks = ref_chunks(title).rename(columns={"row": "t"})
    return frame, chunks
