"""The bodies of the HTTP API: requests, answers and errors (pydantic models, published as the OpenAPI schema).

Validation is the whole boundary. A request that passes is one the matcher answers, so nothing a caller sent can
fail later inside a micro-batch of other callers' requests:
- dates are ``YYYY-MM-DD`` between 1900-01-01 and 2199-12-31 (pandas cannot hold 0001-01-01; it used to pass here
  and fail in the matcher as "not dates", without naming the field);
- amounts are finite, non-zero, below 1e12, in cents (a transfer of 0.00 pays nothing; the data contract refuses a
  link of 0.00, which such a transfer used to get);
- every invoice is in the currency of the transfer(s) (see ``_one_currency``);
- ids are unique, and counts stay within the limits.

What depends on the deployment (allowed currencies, size limits) arrives as pydantic's validation context, a
``Limits``::

    MatchRequest.model_validate_json(body, context=Limits.from_env(model_currencies))

Without a context the defaults apply (``DEFAULT_LIMITS``: any ISO currency).
"""

from __future__ import annotations

import math
import re
from datetime import date, datetime
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic.json_schema import SkipJsonSchema
from pydantic_core import InitErrorDetails, PydanticCustomError

from .limits import (
    CURRENCIES,
    DEFAULT_LIMITS,
    MAX_BATCH_PAIRS,
    MAX_BATCH_TRANSFERS,
    MAX_CANDIDATES,
    MAX_OPEN_INVOICES,
    Limits,
)

EARLIEST, LATEST = date(1900, 1, 1), date(2199, 12, 31)
_ISO_DAY = re.compile(r"\d{4}-\d{2}-\d{2}")


def limits_of(info: ValidationInfo) -> Limits:
    return info.context if isinstance(info.context, Limits) else DEFAULT_LIMITS


def over_limit(kind: str, message: str, setting: str, **values) -> PydanticCustomError:
    """A limit error: ``ctx["setting"]`` names the setting (environment variable) that sets the limit."""
    return PydanticCustomError(kind, message + " ({setting})", {**values, "setting": setting})


def _served_currency(code: str, info: ValidationInfo) -> str:
    allowed = limits_of(info).currencies
    if allowed is not None and code not in allowed:
        raise over_limit(
            "currency_not_served",
            "currency {code} is not one this model serves; allowed: {allowed}",
            CURRENCIES,
            code=code,
            allowed=", ".join(sorted(allowed)),
        )
    return code


def _amount(x: float) -> float:
    if not math.isfinite(x) or abs(x) >= 1e12:
        raise ValueError("amount must be a finite number below 1e12 in absolute value")
    x = round(x, 2)
    if x == 0:
        raise ValueError(
            "amount must not be 0.00: a transfer of 0.00 pays nothing, an invoice of 0.00 needs no payment"
        )
    return x


def _iso_day(v):
    """A date is ``YYYY-MM-DD`` text (or a ``date``): not a number of seconds, not a datetime."""
    if (isinstance(v, date) and not isinstance(v, datetime)) or (isinstance(v, str) and _ISO_DAY.fullmatch(v)):
        return v
    raise PydanticCustomError("date_format", "a date is YYYY-MM-DD text")


def _in_range(d: date) -> date:
    if not EARLIEST <= d <= LATEST:
        raise ValueError(f"date {d.isoformat()} is outside {EARLIEST.isoformat()}..{LATEST.isoformat()}")
    return d


Id = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
Text = Annotated[str, StringConstraints(max_length=2000)]
Currency = Annotated[str, StringConstraints(pattern=r"^[A-Z]{3}$"), AfterValidator(_served_currency)]
# strict: "12.50" as text is a type error
Money = Annotated[float, Field(strict=True, description="non-zero, below 1e12, in cents"), AfterValidator(_amount)]
Day = Annotated[
    date,
    BeforeValidator(_iso_day),
    AfterValidator(_in_range),
    Field(json_schema_extra={"pattern": r"^(19|20|21)\d\d-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])$"}),
]
Month = Annotated[str, StringConstraints(pattern=r"^\d{4}-\d{2}$")]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")  # a misspelt field is an error, not silently ignored


class Invoice(_Strict):
    invoice_id: Id
    issued_at: Day
    due_at: Day
    amount: Money
    currency: Currency
    invoice_number: Text | None = None
    counterparty_name: Text | None = None
    description: Text | None = None
    month: Month | None = None

    @field_validator("due_at")
    @classmethod
    def _due_after_issue(cls, v: date, info: ValidationInfo) -> date:
        issued = info.data.get("issued_at")
        if issued is not None and v < issued:
            raise ValueError(f"due_at {v} is before issued_at {issued}")
        return v


class Transfer(_Strict):
    transfer_id: Id
    booked_at: Day
    amount: Money
    currency: Currency
    title: Text | None = None
    counterparty_name: Text | None = None
    counterparty_account: Text | None = None
    month: Month | None = None


INVOICE_COLUMNS = list(Invoice.model_fields)
TRANSFER_COLUMNS = list(Transfer.model_fields)


def _unique(items: list, key: str, what: str) -> None:
    seen: set[str] = set()
    dup: list[str] = []
    for it in items:
        k = getattr(it, key)
        if k in seen:
            dup.append(k)
        seen.add(k)
    if dup:
        raise ValueError(f"duplicate {what} {key}(s): {sorted(set(dup))[:5]}")


def _at_most(items: list, limit: int, what: str, setting: str) -> None:
    if len(items) > limit:
        raise over_limit("too_many", "too many {what}: {n} > {limit}", setting, what=what, n=len(items), limit=limit)


def _one_currency(currency: str, invoices: list[Invoice], where: str, title: str) -> None:
    """Every invoice in ``currency``, or a ValidationError naming each invoice that is not.

    Why refuse rather than match: the model has no exchange rates, and what it learns from pairs transfers with
    invoices of their own currency (one currency per synthetic world), so ``currency_eq`` never varies in training
    and the trees ignore it: a USD transfer matched a EUR invoice at 0.988, auto. A request the model was not
    trained for is refused here, naming the invoice. This is the one door through which requests reach the served
    model; the same rule belongs in the matcher's blocking (pair only rows of one currency, in fit and in match),
    so that training, evaluation and serving agree on any data."""
    errors = [
        InitErrorDetails(
            type=PydanticCustomError(
                "currency_mismatch",
                "invoice in {invoice}, transfer in {transfer}: a transfer is matched only to invoices in its own "
                "currency (send one request per currency)",
                {"invoice": inv.currency, "transfer": currency},
            ),
            loc=(where, k, "currency"),
            input=inv.currency,
        )
        for k, inv in enumerate(invoices)
        if inv.currency != currency
    ]
    if errors:
        raise ValidationError.from_exception_data(title, errors)


class MatchRequest(_Strict):
    transfer: Transfer
    candidates: list[Invoice]
    top_k: int = Field(10, ge=1, le=1000, description="how many ranked invoices to return")

    @field_validator("candidates")
    @classmethod
    def _candidates(cls, v: list[Invoice], info: ValidationInfo) -> list[Invoice]:
        _at_most(v, limits_of(info).max_candidates, "candidates", MAX_CANDIDATES)
        _unique(v, "invoice_id", "candidate")
        return v

    @model_validator(mode="after")
    def _one_currency(self) -> "MatchRequest":
        _one_currency(self.transfer.currency, self.candidates, "candidates", type(self).__name__)
        return self


class BatchRequest(_Strict):
    transfers: list[Transfer] = Field(min_length=1)
    invoices: list[Invoice]

    @field_validator("transfers")
    @classmethod
    def _transfers(cls, v: list[Transfer], info: ValidationInfo) -> list[Transfer]:
        _at_most(v, limits_of(info).max_batch_transfers, "transfers", MAX_BATCH_TRANSFERS)
        _unique(v, "transfer_id", "transfer")
        return v

    @field_validator("invoices")
    @classmethod
    def _invoices(cls, v: list[Invoice], info: ValidationInfo) -> list[Invoice]:
        limits = limits_of(info)
        _at_most(v, limits.max_open_invoices, "invoices", MAX_OPEN_INVOICES)
        _unique(v, "invoice_id", "invoice")
        transfers = info.data.get("transfers")
        if transfers and len(transfers) * len(v) > limits.max_batch_pairs:
            raise over_limit(
                "too_much_work",
                "too much work: {transfers} transfers x {invoices} invoices = {pairs} pairs > {limit}; "
                "send fewer transfers or invoices per request",
                MAX_BATCH_PAIRS,
                transfers=len(transfers),
                invoices=len(v),
                pairs=len(transfers) * len(v),
                limit=limits.max_batch_pairs,
            )
        return v

    @model_validator(mode="after")
    def _one_currency(self) -> "BatchRequest":
        currency = self.transfers[0].currency
        mixed = [
            InitErrorDetails(
                type=PydanticCustomError(
                    "currency_mismatch",
                    "transfer in {other}, the first transfer in {first}: a batch holds one currency "
                    "(send one request per currency)",
                    {"other": t.currency, "first": currency},
                ),
                loc=("transfers", k, "currency"),
                input=t.currency,
            )
            for k, t in enumerate(self.transfers)
            if t.currency != currency
        ]
        if mixed:
            raise ValidationError.from_exception_data(type(self).__name__, mixed)
        _one_currency(currency, self.invoices, "invoices", type(self).__name__)
        return self


class RankedInvoice(BaseModel):
    invoice_id: str
    probability: float
    rank: int


Reasons = Annotated[
    list[str],
    Field(description="why, in plain English, most important first (from the model's own feature contributions)"),
]


class ChosenInvoice(BaseModel):
    invoice_id: str
    allocated_amount: float
    confidence: float
    reasons: Reasons  # why this invoice, e.g. "invoice number FV/2025/02/0142 in the title", "amount equal"


class MatchResponse(BaseModel):
    transfer_id: str
    decision: Literal["auto", "review"]
    confidence: float
    auto_threshold: float
    reasons: Reasons  # why this set of invoices, or why none ("no candidate invoice (nor set of them) fits ...")
    chosen: list[ChosenInvoice]  # empty: the transfer pays none of the candidates
    ranked: list[RankedInvoice]
    unscored_invoice_ids: list[str]  # candidates the blocking stage ruled out (e.g. issued long before)
    model: str


class TransferAssignment(BaseModel):
    transfer_id: str
    decision: Literal["auto", "review"]
    confidence: float
    n_invoices: int
    reasons: Reasons
    links: list[ChosenInvoice]


class BatchResponse(BaseModel):
    results: list[TransferAssignment]
    auto_threshold: float
    model: str


class ErrorDetail(BaseModel):
    loc: list[str | int] = Field(description='where in the request, e.g. ["candidates", 0, "issued_at"]')
    msg: str
    type: str = Field(description="what kind of error: missing, value_error, currency_mismatch, too_large, ...")


class ErrorResponse(BaseModel):
    """Every refusal (4xx) and every deadline (503) of ``/match`` and ``/match_batch`` has this body."""

    error: str = Field(description="what is wrong, in one sentence")
    detail: list[ErrorDetail] = Field(default_factory=list)
    # The setting (environment variable) of the limit the request passed; absent when no limit was involved.
    limit: str | SkipJsonSchema[None] = Field(None, description="the setting of the limit the request passed")
