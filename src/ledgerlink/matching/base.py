"""The interface every model family shares, so pipelines, benchmarks and the service need not care which one
they hold: ``BaseMatcher`` (fit / match / predict / save / load, scikit-learn style parameters), what ``match``
returns (``MatchResult``), the input check at the boundary (``check_frame``) and ``MatchTimeout``."""

from __future__ import annotations

import inspect
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..data.contract import TABLES


class MatchTimeout(TimeoutError):
    """A match passed its ``deadline`` (an absolute ``time.monotonic()`` value) and stopped at ``stage``. Nothing
    of the call is kept; retry with more time or less input."""

    def __init__(self, stage: str, late_by: float = 0.0):
        self.stage = stage
        self.late_by = late_by
        super().__init__(f"match deadline passed during {stage} ({late_by:.3f} s late); the work was stopped")

    def __reduce__(self):  # raised in a worker process, re-raised in the caller's (matching.parallel)
        return (type(self), (self.stage, self.late_by))


@dataclass
class MatchResult:
    """What ``match`` returns. With ``explain=True``, ``links`` and ``decisions`` have one more column, ``reasons``:
    a tuple of plain-English phrases per row, most important first (why this invoice; why this set, or nothing)."""

    links: pd.DataFrame  # transfer_id, invoice_id, allocated_amount, confidence[, reasons]
    decisions: pd.DataFrame  # transfer_id, n_invoices, confidence, decision ("auto" | "review")[, reasons]
    candidates: pd.DataFrame  # transfer_id, invoice_id, probability, rank


def _dates(col: pd.Series) -> pd.Series:
    """Dates as datetime64 (NaT where a value is not a date). ISO text ("2025-03-04", what the API and most
    warehouses send) is parsed with its format known, 2x faster than pandas' guessing; anything else is guessed."""
    if pd.api.types.is_datetime64_any_dtype(col):
        return col
    parsed = pd.to_datetime(col, errors="coerce", format="ISO8601")
    if parsed.isna().any() and parsed.isna().sum() > col.isna().sum():
        parsed = pd.to_datetime(col, errors="coerce")
    return parsed


def check_frame(df: pd.DataFrame, table: str, scope: np.ndarray | None = None) -> pd.DataFrame:
    """Boundary check: required columns (``month`` is not needed to match), parseable dates and amounts, unique ids
    (within each ``scope``: several problems checked at once may reuse ids)."""
    if not isinstance(df, pd.DataFrame):
        raise TypeError(f"{table} must be a pandas DataFrame, got {type(df).__name__}")
    need = [c.name for c in TABLES[table] if c.required and c.name != "month"]
    if table == "links":
        need = ["transfer_id", "invoice_id"]
    missing = [c for c in need if c not in df.columns]
    if missing:
        raise ValueError(
            f"{table}: missing required column(s) {missing}; columns present: {list(df.columns)}. "
            "Map warehouse names to the canonical ones (ledgerlink.data.contract.ColumnMap)."
        )
    df = df.copy()
    for c in TABLES[table]:
        if c.name not in df.columns:
            continue
        if c.kind == "date":
            parsed = _dates(df[c.name])
            if parsed.isna().any():
                raise ValueError(f"{table}.{c.name}: {int(parsed.isna().sum())} value(s) are not dates")
            df[c.name] = parsed
        elif c.kind == "money" and c.name in need:
            col = df[c.name]
            parsed = col if col.dtype == np.float64 else pd.to_numeric(col, errors="coerce")
            if parsed.isna().any():
                raise ValueError(f"{table}.{c.name}: {int(parsed.isna().sum())} value(s) are not numbers")
            df[c.name] = parsed.astype(np.float64)
        elif c.kind in ("id",):
            df[c.name] = df[c.name].astype(str)
        elif c.kind == "currency":  # "eur" and "EUR " are EUR: pairs are only made within one currency
            col = df[c.name]
            df[c.name] = col.where(col.isna(), col.astype(str).str.strip().str.upper())
    key = {"invoices": ["invoice_id"], "transfers": ["transfer_id"], "links": ["transfer_id", "invoice_id"]}[table]
    dup = df.assign(_scope=scope).duplicated(key + ["_scope"]) if scope is not None else df.duplicated(key)
    if dup.any():
        where = f" in problem(s) {sorted(set(scope[dup.to_numpy()].tolist()))[:5]}" if scope is not None else ""
        raise ValueError(
            f"{table}: {int(dup.sum())} duplicate key(s) {key}{where}, e.g. {df.loc[dup, key].head(3).values.tolist()}"
        )
    return df


def _given_ids(col: pd.Series) -> pd.Series | None:
    """text id -> the caller's own value, or None when the caller's ids are text already."""
    if pd.api.types.infer_dtype(col, skipna=False) == "string":
        return None
    return pd.Series(col.to_numpy(), index=col.astype(str).to_numpy())  # one to one: check_frame refused clashes


def in_given_ids(result: MatchResult, invoices: pd.DataFrame, transfers: pd.DataFrame) -> MatchResult:
    """The result with ids as the caller wrote them. Inside, ids are text (``check_frame``); a caller whose key
    columns hold numbers gets numbers back, so that joining the answer to its own tables works (with text ids it
    silently found nothing: pair F1 0 against the caller's links)."""
    given = {"transfer_id": _given_ids(transfers["transfer_id"]), "invoice_id": _given_ids(invoices["invoice_id"])}
    if all(g is None for g in given.values()):
        return result
    frames = {}
    for name in ("links", "decisions", "candidates"):
        df = getattr(result, name).copy()
        for col, mapping in given.items():
            if mapping is not None and col in df.columns:
                df[col] = df[col].map(mapping)
        frames[name] = df
    return MatchResult(**frames)


def booking_batches(booked_at: np.ndarray, batch_size: int | None) -> list[np.ndarray]:
    """The row positions of each batch ``match`` cuts: consecutive booking dates (stable order), at most
    ``batch_size`` rows each, every batch in row order. One plan for ``match`` and for anything that must batch
    exactly as it does (the suggest run writes a batch's rows before matching the next)."""
    n = len(booked_at)
    size = int(batch_size) if batch_size else max(n, 1)
    order = np.argsort(booked_at, kind="stable")
    return [np.sort(order[lo : lo + size]) for lo in range(0, max(n, 1), size)]


class BaseMatcher:
    """fit(invoices, transfers, links) -> self; match(invoices, transfers, *, deadline=None, explain=False) ->
    MatchResult; match_many(problems, ...) -> one MatchResult per problem; predict -> links; save(dir) / load(dir)
    in the family's own file format (no pickle).

    As in scikit-learn, ``__init__`` only stores its parameters, ``get_params``/``set_params`` are derived from
    its signature (a family whose ``__init__`` takes ``**params`` adds its own to its parent's), and what ``fit``
    learns is stored in attributes ending in ``_``.
    ``deadline`` (absolute ``time.monotonic()`` seconds, None: no limit): past it, ``match`` raises
    ``MatchTimeout`` naming the stage it stopped in. ``explain``: each link and decision says why, in words (the
    ``reasons`` column); without it nothing is computed for that and the frames are as they were."""

    @classmethod
    def _param_defaults(cls) -> dict[str, object]:
        """Parameter name -> default of the class's ``__init__`` and, while an ``__init__`` passes ``**params``
        on, of its parents: the parents' names first, the most derived class's default."""
        chain: list[dict[str, object]] = []  # most derived first
        for klass in cls.__mro__:
            if "__init__" not in vars(klass) or klass is object:
                continue
            params = list(inspect.signature(klass.__init__).parameters.values())[1:]
            chain.append({p.name: p.default for p in params if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)})
            if not any(p.kind is p.VAR_KEYWORD for p in params):
                break
        names = dict.fromkeys(name for own in reversed(chain) for name in own)
        return {name: next(own[name] for own in chain if name in own) for name in names}

    @classmethod
    def _param_names(cls) -> list[str]:
        return list(cls._param_defaults())

    def get_params(self, deep: bool = True) -> dict:
        return {name: getattr(self, name) for name in self._param_names()}

    def set_params(self, **params) -> "BaseMatcher":
        valid = self._param_names()
        unknown = sorted(set(params) - set(valid))
        if unknown:
            raise ValueError(f"unknown parameter(s) {unknown} for {type(self).__name__}; valid: {valid}")
        for name, value in params.items():
            setattr(self, name, value)
        return self

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in self.get_params().items())})"

    def fit(self, invoices, transfers, links):
        raise NotImplementedError

    def match(self, invoices, transfers, *, deadline: float | None = None, explain: bool = False) -> MatchResult:
        raise NotImplementedError

    def match_many(
        self, problems: list[tuple[pd.DataFrame, pd.DataFrame]], *, deadline: float | None = None, explain: bool = False
    ) -> list[MatchResult]:
        """Independent (invoices, transfers) problems: each answered as ``match`` answers it alone. This default
        matches them one by one; a family that can match them in one call overrides it (``Matcher``)."""
        return [self.match(i, t, deadline=deadline, explain=explain) for i, t in problems]

    def predict(self, invoices, transfers) -> pd.DataFrame:
        return self.match(invoices, transfers).links

    def pair_feature_frame(self, invoices: pd.DataFrame, transfers: pd.DataFrame) -> pd.DataFrame:
        """The drift view of what the model sees: per transfer with candidates, the pair features of its best
        candidate, computed by the family's own blocking and pair-feature code (``features.best_pair_view``)."""
        raise NotImplementedError

    def save(self, path) -> None:
        raise NotImplementedError

    @classmethod
    def load(cls, path):
        raise NotImplementedError


FAMILY_FILE = "family.json"


def save_matcher(matcher: BaseMatcher, path) -> None:
    """Save any family and record which class wrote it, so ``load_matcher`` needs no type hint."""
    import json
    from pathlib import Path

    matcher.save(path)
    cls = type(matcher)
    (Path(path) / FAMILY_FILE).write_text(json.dumps({"class": f"{cls.__module__}:{cls.__qualname__}"}))


def load_matcher(path) -> BaseMatcher:
    import importlib
    import json
    from pathlib import Path

    marker = Path(path) / FAMILY_FILE
    if not marker.exists():
        from .model import Matcher

        return Matcher.load(path)
    module, _, name = json.loads(marker.read_text())["class"].partition(":")
    if not module.startswith("ledgerlink."):
        raise ValueError(f"refusing to load matcher class {module}:{name} from {path}: not a ledgerlink class")
    return getattr(importlib.import_module(module), name).load(path)
