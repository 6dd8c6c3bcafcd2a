"""Run configuration: one YAML file says where data lives, how the model trains and how it is judged.

Like Kedro's catalog, locations are declared here once (warehouse, dataset store, model store) and the
code asks the config, never hard-codes a path. ``load_config`` merges a YAML file over the defaults
below, so a config names only what differs from the local default.
"""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any

import yaml

DEFAULTS: dict[str, Any] = {
    "project": "ledgerlink",
    "model_name": "ledgerlink_matcher",
    "data_dir": "${LEDGERLINK_HOME:-.ledgerlink}",
    "warehouse": {
        "kind": "duckdb",  # duckdb | bigquery
        "path": "{data_dir}/warehouse.duckdb",
        "seed_if_empty": True,
        "project": None,
        "dataset": "ledgerlink",
        "location": "EU",
        "columns": {},  # ColumnMap: {"tables": {...}, "columns": {table: {canonical: warehouse}}}
    },
    "synthetic": {
        "seed": 7,
        "months": 24,
        "contractors": 200,
        "transfers_per_month": 800,
        "start_month": "2025-01",
        "drift_month": None,
    },
    "store": {"uri": "{data_dir}/datasets"},
    "split": {"test_fraction": 0.3, "seed": 13},
    "model": {"family": "xgboost", "params": {}},
    "evaluation": {"primary_metric": "pair_f1"},
    "promotion": {
        "min_delta": 0.002,
        "bootstrap_samples": 1000,
        "confidence": 0.95,
        "frozen_margin": 0.01,
        "slice_tolerance": 0.02,
        "min_slice_size": 30,
        "seed": 0,
    },
    "deploy": {
        "deployer": "local",  # local | gcp (ledgerlink.deploy.deployers)
        "smoke_test": True,  # serve the built Bento on loopback and check one real POST /match first
        "model_dir": "{data_dir}/models",
        "currencies": None,  # e.g. [EUR, PLN]: the service rejects others; None: any ISO 4217 code
        "gcp": {
            "project": None,
            "bucket": None,  # gs://BUCKET[/PREFIX]: contexts go to models/<id>/
            "registry": None,  # REGION-docker.pkg.dev/PROJECT/REPO/IMAGE (tag added per build)
            "timeout_s": 1200,
            "poll_s": 10,
            "location": None,
        },
    },
    "monitoring": {
        "drift_share": 0.3,
        "accuracy_drop": 0.03,
        "auto_rate_drop": 0.05,
        "retrain": "always",
        "max_rows": 20000,
    },
    "alerts": {"slack_webhook": None},
}


def _expand(value: Any, data_dir: str) -> Any:
    if isinstance(value, str):
        return os.path.expandvars(value.replace("{data_dir}", data_dir))
    if isinstance(value, dict):
        return {k: _expand(v, data_dir) for k, v in value.items()}
    return value


def _merge(base: dict, over: dict) -> dict:
    out = copy.deepcopy(base)
    for key, value in (over or {}).items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def _data_dir(raw: str) -> str:
    # ${VAR:-default} is not understood by os.path.expandvars; resolve it here.
    if raw.startswith("${LEDGERLINK_HOME:-") and raw.endswith("}"):
        return os.environ.get("LEDGERLINK_HOME") or raw[len("${LEDGERLINK_HOME:-") : -1]
    return os.path.expandvars(raw)


def load_config(path: str | Path | None = None, overrides: dict | None = None) -> dict:
    """Defaults, then the YAML file at ``path``, then ``overrides``; paths expanded."""
    cfg = copy.deepcopy(DEFAULTS)
    if path:
        p = Path(path)
        if not p.exists():
            raise FileNotFoundError(f"config file not found: {p}")
        loaded = yaml.safe_load(p.read_text()) or {}
        if not isinstance(loaded, dict):
            raise ValueError(f"config {p} must be a YAML mapping, got {type(loaded).__name__}")
        cfg = _merge(cfg, loaded.get("ledgerlink", loaded))
    cfg = _merge(cfg, overrides or {})
    data_dir = _data_dir(str(cfg["data_dir"]))
    cfg["data_dir"] = data_dir
    return {k: (_expand(v, data_dir) if k != "data_dir" else v) for k, v in cfg.items()}
