"""Run configuration: one YAML file says where data lives, how the model trains and how it is judged.

Like Kedro's catalog, locations are declared here once (warehouse, dataset store, model store) and the code
asks the config, never hard-codes a path. Each section is a pydantic model that owns its defaults, so a
config file names only what differs from the local default. ``Config.load`` is the one loader: it reads the
file, merges overrides, expands ``${VAR}`` / ``${VAR:-default}`` from the environment and ``{data_dir}``, and
validates everything before any work starts. A misspelt key, a wrong type or a value out of range is a
``ConfigError`` that names the key and the file::

    configs/local.yaml: 2 mistakes
      promotoin: unknown key (did you mean 'promotion'?)
      promotion.confidence: must be below 1; a fraction such as 0.95, not a percentage (got 95)

A file has a ``ledgerlink:`` section (or is that section itself) and, optionally, a ``zenml:`` section with
``pipeline.with_options`` settings for the stack (``cli.schedule.run_options``). Secrets never come from here:
a Slack webhook in the file is refused (it would be stored with every run); see ``alerts``.

``load_config`` is the plain-dict view of the same loader, for library functions that take a config mapping
(``open_store``, ``open_warehouse``).
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import os
import re
import typing
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_validator,
)

from .data.synthetic import SyntheticConfig

# The metrics the paired bootstrap of the promotion rule resamples (``evaluation.compare``); the auto-match
# metrics are not sums over transfers and cannot be a primary metric. tests/test_config.py keeps this in sync.
PRIMARY_METRICS = ("pair_f1", "pair_precision", "pair_recall", "exact_set_accuracy")
SLACK_WEBHOOK_ENV = "LEDGERLINK_SLACK_WEBHOOK"
SLACK_SECRET = "ledgerlink"  # zenml secret create ledgerlink --slack_webhook=...


class ConfigError(ValueError):
    """A configuration that cannot run: every mistake, with its key and the file it came from."""


class _KeyError(ValueError):
    """Raised inside a validator for a key below the validated field (e.g. ``params.n_estimatros``)."""

    def __init__(self, key: str, message: str):
        super().__init__(message)
        self.key, self.message = key, message


class Section(BaseModel):
    """A config section: unknown keys are errors, values are checked on assignment too."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


# -- warehouse ----------------------------------------------------------------------------------------------


class ColumnsConfig(Section):
    """Warehouse names of the contract's tables and columns (``ledgerlink.data.contract.ColumnMap``)."""

    tables: dict[str, str] = Field(default_factory=dict)
    columns: dict[str, dict[str, str | None]] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _known_names(self) -> "ColumnsConfig":
        from .data.contract import TABLES

        for table in list(self.tables) + list(self.columns):
            if table not in TABLES:
                where = "tables" if table in self.tables else "columns"
                raise _KeyError(f"{where}.{table}", f"not a contract table; expected one of {sorted(TABLES)}")
        for table, mapping in self.columns.items():
            known = [c.name for c in TABLES[table]]
            for column in mapping:
                if column not in known:
                    raise _KeyError(
                        f"columns.{table}.{column}", f"not a column of the contract's {table!r} table; expected {known}"
                    )
        return self


class WarehouseConfig(Section):
    kind: Literal["duckdb", "bigquery"] = "duckdb"
    path: str = "{data_dir}/warehouse.duckdb"  # duckdb
    seed_if_empty: bool = True  # duckdb: seed a missing warehouse with synthetic data
    project: str | None = None  # bigquery: the dataset's project
    billing_project: str | None = None  # bigquery: bill jobs here instead
    dataset: str = "ledgerlink"
    location: str | None = "EU"
    use_storage_api: bool = True  # bigquery: read through the Storage API (falls back to REST)
    columns: ColumnsConfig = Field(default_factory=ColumnsConfig)

    @model_validator(mode="after")
    def _bigquery_needs_a_project(self) -> "WarehouseConfig":
        if self.kind == "bigquery" and not self.project:
            raise _KeyError("project", "warehouse.kind bigquery needs the GCP project of the dataset")
        return self


# -- data ---------------------------------------------------------------------------------------------------


class StoreConfig(Section):
    uri: str = "{data_dir}/datasets"  # a folder, or gs://BUCKET/PREFIX


class SplitConfig(Section):
    test_fraction: float = Field(0.3, gt=0, lt=1)
    seed: int = 13


# -- model and its judgement --------------------------------------------------------------------------------


class ModelConfig(Section):
    family: str = "xgboost"  # ledgerlink.matching.registry.FAMILIES
    params: dict[str, Any] = Field(default_factory=dict)  # the family's __init__ arguments

    @field_validator("family")
    @classmethod
    def _known_family(cls, family: str) -> str:
        from .matching.registry import FAMILIES

        if family not in FAMILIES:
            raise ValueError(f"unknown model family; expected one of {list(FAMILIES)}{_did_you_mean(family, FAMILIES)}")
        return family

    @model_validator(mode="after")
    def _params_of_the_family(self) -> "ModelConfig":
        if not self.params:
            return self  # nothing to check: do not import the family (xgboost, torch) for it
        from .matching.registry import family_params

        known = family_params(self.family)
        for name, value in self.params.items():
            if name not in known:
                raise _KeyError(
                    f"params.{name}",
                    f"not a parameter of the {self.family} family{_did_you_mean(name, known)}",
                )
            default = known[name]
            if default is None or default is Ellipsis or value is None:
                continue
            expected = (int, float) if isinstance(default, float) else type(default)
            if isinstance(value, bool) != isinstance(default, bool) or not isinstance(value, expected):
                raise _KeyError(
                    f"params.{name}",
                    f"expected {type(default).__name__} like the default {default!r}, got {value!r}",
                )
        return self


class EvaluationConfig(Section):
    primary_metric: str = "pair_f1"

    @field_validator("primary_metric")
    @classmethod
    def _bootstrappable(cls, metric: str) -> str:
        if metric not in PRIMARY_METRICS:
            raise ValueError(
                f"not a primary metric; expected one of {list(PRIMARY_METRICS)} (the metrics the paired bootstrap "
                f"resamples){_did_you_mean(metric, PRIMARY_METRICS)}"
            )
        return metric


def _fraction(value: float) -> float:
    if value > 1:
        raise ValueError(f"must be at most 1; a fraction such as {value / 100:g}, not a percentage")
    return value


class PromotionConfig(Section):
    """The promotion rule's settings (``ledgerlink.evaluation.compare.decide``)."""

    min_delta: float = Field(0.002, ge=0)
    bootstrap_samples: int = Field(1000, ge=1)
    confidence: float = Field(0.95, gt=0)
    frozen_margin: float = Field(0.01, ge=0)  # out-of-time route: how much worse on the frozen test it may be
    slice_tolerance: float = Field(0.02, ge=0)
    min_slice_size: int = Field(30, ge=1)
    seed: int = 0

    @field_validator("min_delta", "frozen_margin", "slice_tolerance")
    @classmethod
    def _fraction(cls, value: float) -> float:
        return _fraction(value)

    @field_validator("confidence")
    @classmethod
    def _confidence(cls, value: float) -> float:
        if value >= 1:
            hint = f"; a fraction such as {value / 100:g}, not a percentage" if 1 < value < 100 else ""
            raise ValueError(f"must be below 1{hint}")
        return value

    @model_validator(mode="after")
    def _enough_samples(self) -> "PromotionConfig":
        # A two-sided interval needs at least one resample beyond each bound, or its ends are the extremes.
        needed = math.ceil(round(2 / (1 - self.confidence), 6))
        if self.bootstrap_samples < needed:
            raise _KeyError(
                "bootstrap_samples",
                f"{self.bootstrap_samples} resamples cannot give a {self.confidence:g} interval; use at least "
                f"{needed} (1000 is the default)",
            )
        return self


# -- deployment ---------------------------------------------------------------------------------------------


def _gcp_settings_fields() -> dict[str, Any]:
    from .deploy.gcp import GcpSettings

    return typing.get_type_hints(GcpSettings)


class DeployConfig(Section):
    deployer: str = "local"  # ledgerlink.deploy.deployers.DEPLOYERS
    smoke_test: bool = True  # serve the built Bento on loopback and check one real POST /match first
    model_dir: str = "{data_dir}/models"
    currencies: list[str] | None = None  # e.g. [EUR, PLN]: the service rejects others; None: any ISO 4217 code
    gcp: dict[str, Any] = Field(default_factory=dict)  # ledgerlink.deploy.gcp.GcpSettings (owns the defaults)

    @field_validator("deployer")
    @classmethod
    def _known_deployer(cls, deployer: str) -> str:
        from .deploy.deployers import DEPLOYERS

        if deployer not in DEPLOYERS:
            raise ValueError(f"unknown deployer; expected one of {list(DEPLOYERS)}{_did_you_mean(deployer, DEPLOYERS)}")
        return deployer

    @field_validator("currencies")
    @classmethod
    def _iso_codes(cls, currencies: list[str] | None) -> list[str] | None:
        if currencies is None:
            return None
        bad = [c for c in currencies if not re.fullmatch(r"[A-Za-z]{3}", c)]
        if bad or not currencies:
            raise ValueError(f"expected ISO 4217 codes such as EUR, PLN; got {bad or currencies}")
        return [c.upper() for c in currencies]

    @model_validator(mode="after")
    def _gcp_settings(self) -> "DeployConfig":
        hints = _gcp_settings_fields()
        for key, value in self.gcp.items():
            if key not in hints:
                raise _KeyError(f"gcp.{key}", f"unknown key{_did_you_mean(key, hints)}; known: {sorted(hints)}")
            try:
                TypeAdapter(hints[key]).validate_python(value)
            except ValidationError as exc:
                raise _KeyError(f"gcp.{key}", exc.errors()[0]["msg"]) from None
        if self.deployer == "gcp":
            for key in ("project", "bucket", "registry"):
                if not self.gcp.get(key):
                    raise _KeyError(
                        f"gcp.{key}",
                        "the gcp deployer needs deploy.gcp.project, deploy.gcp.bucket (gs://BUCKET[/PREFIX]) and "
                        "deploy.gcp.registry (REGION-docker.pkg.dev/PROJECT/REPO/IMAGE)",
                    )
        return self


# -- suggestions (batch matching of the open month) ---------------------------------------------------------

_TABLE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,1023}")


class SuggestConfig(Section):
    """The ``suggest`` pipeline (``ledgerlink.data.suggest``): which transfers are open, where suggestions go.

    ``open_transfers`` is a BigQuery Standard SQL condition on the warehouse's transfers table, aliased ``x`` with
    its own column names, that holds for a transfer nobody has tagged yet (e.g. ``x.status = 'untagged'``, or
    ``NOT EXISTS (SELECT 1 FROM `project.dataset.links` AS l WHERE l.transfer_id = x.transfer_id)``). It is added
    to the month's selection, so it runs on BigQuery as written and on DuckDB transpiled, like every extraction.
    The default ``TRUE`` takes every transfer of the month, which is what the synthetic warehouse needs: it holds
    every month's tags already, and the open month's own links are ignored (never read)."""

    table: str = "suggested_links"  # written to; never one of the contract tables
    dataset: str | None = None  # BigQuery dataset / DuckDB schema of the table; None: the warehouse's
    open_transfers: str = "TRUE"
    invoice_lookback_days: int = Field(180, ge=1)  # invoices issued this long before the month can still be open
    # transfers per match call (one progress step each); None: the matcher's own batch_size (50000), so the calls
    # cut the month exactly where one match() call would. Smaller batches cost quality: an invoice claimed in two
    # batches is not settled between them (a 300-transfer month in batches of 100: auto precision 0.984 -> 0.953)
    batch_size: int | None = Field(None, ge=1)

    @field_validator("table")
    @classmethod
    def _table_name(cls, table: str) -> str:
        if not _TABLE_NAME.fullmatch(table):
            raise ValueError("a table name is letters, digits and underscores, starting with a letter or underscore")
        return table

    @field_validator("dataset")
    @classmethod
    def _dataset_name(cls, dataset: str | None) -> str | None:
        if dataset is not None and not _TABLE_NAME.fullmatch(dataset):
            raise ValueError("a dataset name is letters, digits and underscores, starting with a letter or underscore")
        return dataset

    @field_validator("open_transfers")
    @classmethod
    def _one_condition(cls, condition: str) -> str:
        import sqlglot

        if not condition.strip():
            raise ValueError("an empty condition; use TRUE to take every transfer of the month")
        try:
            parsed = sqlglot.parse(f"SELECT 1 FROM t AS x WHERE ({condition})", read="bigquery")
        except sqlglot.errors.ParseError as exc:
            raise ValueError(f"not a BigQuery SQL condition: {str(exc).splitlines()[0]}") from None
        if len([p for p in parsed if p is not None]) != 1:
            raise ValueError("one condition, not several statements")
        return condition


# -- monitoring and alerts ----------------------------------------------------------------------------------


class MonitoringConfig(Section):
    """Retraining triggers (``ledgerlink.monitoring.triggers``); a threshold set to null never fires."""

    drift_share: float | None = Field(0.3, ge=0, le=1)
    accuracy_drop: float | None = Field(0.03, ge=0, le=1)
    auto_rate_drop: float | None = Field(0.05, ge=0, le=1)
    # production auto-match precision (a month's `auto` suggestions checked against its human tags) below this
    auto_precision_floor: float | None = Field(0.995, ge=0, le=1)
    retrain: Literal["always", "on_trigger"] = "always"
    max_rows: int = Field(20000, ge=100)  # rows per side that Evidently compares


class AlertsConfig(Section):
    """Alerts go to Slack through an incoming webhook, which is a secret: it is read at run time from
    ``$LEDGERLINK_SLACK_WEBHOOK`` or the ZenML secret ``ledgerlink`` (key ``slack_webhook``), never from a
    config file or a step parameter, both of which ZenML stores with every run."""

    @model_validator(mode="before")
    @classmethod
    def _no_secrets_here(cls, raw: Any) -> Any:
        if isinstance(raw, dict) and "slack_webhook" in raw:
            raise _KeyError(
                "slack_webhook",
                "a webhook URL is a secret and is not read from config files (ZenML would store it with every "
                f"run). Remove it here and export {SLACK_WEBHOOK_ENV}=<url>, or store it once with "
                f"`zenml secret create {SLACK_SECRET} --slack_webhook=<url>`",
            )
        return raw


# -- ZenML options ------------------------------------------------------------------------------------------


class ZenMLOptions(Section):
    """``pipeline.with_options`` keyword arguments for the stack (the file's top-level ``zenml:`` section)."""

    settings: dict[str, Any] = Field(default_factory=dict)
    steps: dict[str, dict[str, Any]] = Field(default_factory=dict)
    family_steps: dict[str, dict[str, dict[str, Any]]] = Field(default_factory=dict)  # merged over steps

    @field_validator("family_steps")
    @classmethod
    def _known_families(cls, value: dict) -> dict:
        from .matching.registry import FAMILIES

        for family in value:
            if family not in FAMILIES:
                raise _KeyError(family, f"unknown model family; expected one of {list(FAMILIES)}")
        return value


# -- the whole configuration --------------------------------------------------------------------------------


class Config(Section):
    project: str = "ledgerlink"
    model_name: str = Field("ledgerlink_matcher", min_length=1)
    data_dir: str = "${LEDGERLINK_HOME:-.ledgerlink}"
    warehouse: WarehouseConfig = Field(default_factory=WarehouseConfig)
    synthetic: SyntheticConfig = Field(default_factory=SyntheticConfig)
    store: StoreConfig = Field(default_factory=StoreConfig)
    split: SplitConfig = Field(default_factory=SplitConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    evaluation: EvaluationConfig = Field(default_factory=EvaluationConfig)
    promotion: PromotionConfig = Field(default_factory=PromotionConfig)
    deploy: DeployConfig = Field(default_factory=DeployConfig)
    monitoring: MonitoringConfig = Field(default_factory=MonitoringConfig)
    suggest: SuggestConfig = Field(default_factory=SuggestConfig)
    alerts: AlertsConfig = Field(default_factory=AlertsConfig)
    zenml: ZenMLOptions = Field(default_factory=ZenMLOptions)
    _source: str = PrivateAttr("config")  # the file it was loaded from, for error messages

    @model_validator(mode="before")
    @classmethod
    def _environment(cls, raw: Any) -> Any:
        if not isinstance(raw, dict):
            return raw
        # an empty section in YAML (`monitoring:` with every key commented out) is null: keep its defaults
        sections = {n for n, f in cls.model_fields.items() if f.default_factory is not None}
        return {k: _expand_env(v) for k, v in raw.items() if not (v is None and k in sections)}

    @model_validator(mode="after")
    def _suggestions_never_overwrite_the_contract_tables(self) -> "Config":
        from .data.contract import TABLES
        from .data.warehouse import SEED_MARKER

        same_dataset = self.suggest.dataset in (None, self.warehouse.dataset)
        taken = {self.warehouse.columns.tables.get(t, t).lower() for t in TABLES} | {SEED_MARKER.lower()}
        if same_dataset and self.suggest.table.lower() in taken:
            raise _KeyError(
                "suggest.table",
                f"{self.suggest.table!r} is a warehouse table ledgerlink reads (or its seed marker); suggestions "
                "need a table of their own",
            )
        return self

    @model_validator(mode="after")
    def _data_dir_everywhere(self) -> "Config":
        data_dir = _expand_env(self.data_dir)
        object.__setattr__(self, "data_dir", data_dir)
        for name in type(self).model_fields:
            value = getattr(self, name)
            if isinstance(value, Section):
                _replace_data_dir(value, data_dir)
        _mark_set(self)
        return self

    # -- loading ------------------------------------------------------------------------------------------
    @classmethod
    def load(cls, path: str | Path | None = None, overrides: dict | None = None) -> "Config":
        """Defaults, then the YAML file at ``path``, then ``overrides`` (deep-merged); checked before returning."""
        raw: dict = {}
        source = "defaults" if path is None else str(path)
        if path is not None:
            raw = _read_file(Path(path))
        if overrides:
            raw = _merge(raw, overrides)
            source += " (with overrides)"
        return cls.parse(raw, source)

    @classmethod
    def parse(cls, raw: dict, source: str = "config") -> "Config":
        """Validate a mapping shaped like a config file's ``ledgerlink:`` section (plus ``zenml:``)."""
        try:
            cfg = cls.model_validate(raw)
        except ValidationError as exc:
            raise ConfigError(_describe(exc, source)) from None
        cfg._source = source
        return cfg

    @classmethod
    def coerce(cls, cfg: "Config | dict") -> "Config":
        """A ``Config`` as is; a mapping (e.g. ``to_dict()`` edited by the simulation) validated into one."""
        return cfg if isinstance(cfg, Config) else cls.parse(dict(cfg), "config mapping")

    @property
    def source(self) -> str:
        return self._source

    # -- views --------------------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """The plain-dict view (JSON types) that library functions taking a config mapping read."""
        return self.model_dump(mode="json", exclude={"zenml"})

    def promotion_rule(self) -> dict[str, Any]:
        """What ``decide`` and the out-of-time ``challenge`` read: the promotion settings and the primary metric."""
        return {**self.promotion.model_dump(mode="json"), "primary_metric": self.evaluation.primary_metric}

    def unresolved(self) -> list[str]:
        """Keys whose value still holds an unset ``${VAR}``, as ``key (VAR)``."""
        found: list[str] = []

        def walk(value: Any, key: str) -> None:
            if isinstance(value, str):
                names = re.findall(r"\$\{?(\w+)", value)
                if names:
                    found.append(f"{key} ({', '.join(names)})")
            elif isinstance(value, dict):
                for k, v in value.items():
                    walk(v, f"{key}.{k}" if key else str(k))
            elif isinstance(value, list):
                for i, v in enumerate(value):
                    walk(v, f"{key}[{i}]")

        walk(self.model_dump(mode="json"), "")
        return found

    def check_environment(self) -> "Config":
        """Refuse to run with unset environment variables (e.g. ``GCP_PROJECT`` for configs/gcp.yaml)."""
        missing = self.unresolved()
        if missing:
            raise ConfigError(
                f"{self.source}: unset environment variable(s) in " + "; ".join(missing) + ". Export them first."
            )
        return self


def load_config(path: str | Path | None = None, overrides: dict | None = None) -> dict:
    """``Config.load(path, overrides).to_dict()``: the plain-dict view for library functions."""
    return Config.load(path, overrides).to_dict()


# -- helpers ------------------------------------------------------------------------------------------------


def _read_file(path: Path) -> dict:
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        loaded = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    loaded = loaded or {}
    if not isinstance(loaded, dict):
        raise ConfigError(f"{path}: must be a YAML mapping, got {type(loaded).__name__}")
    if "ledgerlink" in loaded:
        other = sorted(set(loaded) - {"ledgerlink", "zenml"})
        if other:
            raise ConfigError(
                f"{path}: {other[0]}: unknown top-level key; a config file has a `ledgerlink:` section and "
                "optionally a `zenml:` section"
            )
        body = loaded["ledgerlink"] or {}
        if not isinstance(body, dict):
            raise ConfigError(f"{path}: ledgerlink: must be a mapping, got {type(body).__name__}")
        return {**body, **({"zenml": loaded["zenml"]} if loaded.get("zenml") is not None else {})}
    return loaded


def _merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for key, value in over.items():
        out[key] = _merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


_DEFAULTED = re.compile(r"\$\{(\w+):-([^}]*)\}")


def _expand_env(value: Any) -> Any:
    """``${VAR:-default}``, ``${VAR}`` and ``$VAR`` from the environment; unset ones stay as written."""
    if isinstance(value, str):
        value = _DEFAULTED.sub(lambda m: os.environ.get(m.group(1)) or m.group(2), value)
        return os.path.expandvars(value)
    if isinstance(value, dict):
        return {k: _expand_env(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_expand_env(v) for v in value]
    return value


def _with_data_dir(value: Any, data_dir: str) -> Any:
    if isinstance(value, str):
        return value.replace("{data_dir}", data_dir)
    if isinstance(value, dict):
        return {k: _with_data_dir(v, data_dir) for k, v in value.items()}
    if isinstance(value, list):
        return [_with_data_dir(v, data_dir) for v in value]
    return value


def _replace_data_dir(section: Section, data_dir: str) -> None:
    for name in type(section).model_fields:
        value = getattr(section, name)
        if isinstance(value, Section):
            _replace_data_dir(value, data_dir)
        elif isinstance(value, (str, dict, list)):
            object.__setattr__(section, name, _with_data_dir(value, data_dir))


def _mark_set(model: BaseModel) -> None:
    """Count every field as set, defaults included: ZenML dumps step parameters with ``exclude_unset``, and a
    section that arrives in a step without its expanded defaults (``{data_dir}`` replaced) points elsewhere."""
    model.__pydantic_fields_set__.update(type(model).model_fields)
    for name in type(model).model_fields:
        value = getattr(model, name)
        if isinstance(value, BaseModel):
            _mark_set(value)


def _did_you_mean(word: str, choices) -> str:
    close = difflib.get_close_matches(str(word), [str(c) for c in choices], n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _fields_at(loc: tuple) -> list[str]:
    """Field names of the section (or dataclass) at ``loc``, for 'did you mean' hints."""
    model: Any = Config
    for part in loc:
        fields = getattr(model, "model_fields", {})
        if part not in fields:
            return []
        model = fields[part].annotation
    if dataclasses.is_dataclass(model):
        return [f.name for f in dataclasses.fields(model)]
    return list(getattr(model, "model_fields", {}))


def _describe(exc: ValidationError, source: str) -> str:
    lines = []
    for err in exc.errors():
        loc = tuple(str(p) for p in err["loc"])
        key = ".".join(loc)
        cause = (err.get("ctx") or {}).get("error")
        if isinstance(cause, _KeyError):
            key = ".".join([*loc, cause.key]) if key else cause.key
            lines.append(f"{key}: {cause.message}")
            continue
        if err["type"] in ("extra_forbidden", "unexpected_keyword_argument"):
            hint = _did_you_mean(loc[-1], _fields_at(loc[:-1]))
            lines.append(f"{key}: unknown key{hint}")
            continue
        message = err["msg"]
        if message.startswith("Value error, "):
            message = message[len("Value error, ") :]
        got = err.get("input")
        shown = "" if err["type"] == "missing" or isinstance(got, dict) else f" (got {got!r})"
        lines.append(f"{key or '(top level)'}: {message}{shown}")
    head = f"{source}: " + ("1 mistake" if len(lines) == 1 else f"{len(lines)} mistakes")
    return head + "\n" + "\n".join(f"  {line}" for line in lines)
