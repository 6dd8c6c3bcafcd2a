"""Time one monthly cycle (collection + training + deploy: Bento build and smoke test) through ZenML and as bare
library calls.

Runs at the default size and at 10x (``--scales 1 10``). The first cycle of each warms up (first
collection, frozen test split); the second, timed cycle collects month 2 and trains on months 1-2.
It also records the stored size of every step output of the ZenML runs. Prints a table and, last,
one JSON line: zenml_s, bare_s, overhead_ratio, max_artifact_bytes_excluding_model, rows (10x figures).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src"), str(ROOT)]
WORK = Path(tempfile.mkdtemp(prefix="ledgerlink-bench-"))
os.environ["ZENML_CONFIG_PATH"] = str(WORK / "zenml")
os.environ["ZENML_ANALYTICS_OPT_IN"] = "false"
os.environ["ZENML_LOGGING_VERBOSITY"] = "ERROR"
os.environ["BENTOML_HOME"] = str(WORK / "bentoml")
os.environ["BENTOML_DO_NOT_TRACK"] = "True"
os.environ.setdefault("AUTO_OPEN_DASHBOARD", "false")


def _config(home: Path, scale: int, model_name: str) -> dict:
    from ledgerlink.config import load_config

    return load_config(
        ROOT / "configs" / "local.yaml",
        {
            "data_dir": str(home),
            "model_name": model_name,
            "synthetic": {"months": 3, "transfers_per_month": 800 * scale},
            "warehouse": {"path": str(WORK / f"warehouse-{scale}.duckdb")},
            "store": {"uri": str(home / "datasets")},
            "deploy": {"model_dir": str(home / "models")},
            "promotion": {"bootstrap_samples": 1000},
        },
    )


def bare_cycle(cfg: dict) -> None:
    """The same work as the two pipelines (deploy included), without ZenML."""
    from ledgerlink.data.collect import collect_month
    from ledgerlink.data.store import open_store
    from ledgerlink.data.warehouse import open_warehouse
    from ledgerlink.deploy.deployers import ModelVersionInfo, deploy_promoted
    from ledgerlink.evaluation.compare import decide
    from ledgerlink.evaluation.evaluate import evaluate
    from ledgerlink.matching import RulesMatcher
    from ledgerlink.matching.registry import build_matcher

    store = open_store(cfg)
    ref, _ = collect_month(
        open_warehouse(cfg), store, test_fraction=cfg["split"]["test_fraction"], seed=cfg["split"]["seed"]
    )
    train, test = store.load_train(), store.load_test()
    matcher = build_matcher(cfg["model"]["family"], **cfg["model"].get("params", {}))
    matcher.fit(train["invoices"], train["transfers"], train["links"])
    cand, rules = evaluate(matcher, test, "candidate"), evaluate(RulesMatcher(), test, "rules")
    prod = bare_cycle.production
    decision = decide(cand, prod, rules, {**cfg["promotion"], **cfg["evaluation"]})
    if decision.promote:
        bare_cycle.production = cand
        info = ModelVersionInfo(
            model_name=cfg["model_name"],
            version=str(len(ref.months)),
            number=len(ref.months),
            model_version_id=f"bare-{len(ref.months)}",
            metrics=cand.metrics,
            months=ref.months,
            auto_threshold=getattr(matcher, "auto_threshold_", None),
        )
        deploy_promoted(matcher, info, cfg["deploy"], smoke_tables=test)


bare_cycle.production = None


def artifact_sizes(run) -> dict[str, int]:
    from zenml.io import fileio

    def size(uri: str) -> int:
        if not fileio.isdir(uri):
            return fileio.size(uri) or 0
        return sum(fileio.size(os.path.join(d, f)) or 0 for d, _, files in fileio.walk(uri) for f in files)

    out = {}
    for step_name, step in run.steps.items():
        for name, versions in step.outputs.items():
            for art in versions:
                out[f"{step_name}.{name}"] = size(art.uri)
    return out


def zenml_cycle(cfg: dict) -> dict[str, int]:
    from zenml.client import Client

    from cli.runner import collect, train

    collect(cfg)
    train(cfg, enable_cache=False)
    client = Client()
    sizes = {}
    for run in client.list_pipeline_runs(sort_by="desc:created", size=2).items:
        sizes.update(artifact_sizes(client.get_pipeline_run(run.id)))
    return sizes


def measure(scale: int) -> dict:
    from ledgerlink.data.warehouse import open_warehouse

    open_warehouse(_config(WORK / "seed", scale, "seed"))  # seed the warehouse outside the timings
    result = {"scale": scale}
    for mode in ("bare", "zenml"):
        home = WORK / f"{mode}-{scale}"
        shutil.rmtree(home, ignore_errors=True)
        cfg = _config(home, scale, f"bench_{mode}_{scale}")
        bare_cycle.production = None
        run = bare_cycle if mode == "bare" else zenml_cycle
        run(cfg)  # cycle 1: first collection and frozen split (warm-up)
        t0 = time.perf_counter()
        sizes = run(cfg)  # cycle 2: the timed monthly cycle
        result[f"{mode}_s"] = time.perf_counter() - t0
        if mode == "zenml":
            result["artifacts"] = sizes
    from ledgerlink.data.store import open_store

    ref = open_store(_config(WORK / f"zenml-{scale}", scale, "x")).ref()
    result["rows"] = ref.train_rows["transfers"] + ref.test_rows["transfers"]
    result["overhead_ratio"] = result["zenml_s"] / result["bare_s"]
    non_model = {k: v for k, v in result["artifacts"].items() if not k.endswith(".matcher")}
    result["max_artifact_bytes_excluding_model"] = max(non_model.values())
    result["largest_artifact"] = max(non_model, key=non_model.get)
    result["model_bytes"] = max((v for k, v in result["artifacts"].items() if k.endswith(".matcher")), default=0)
    return result


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--scales", type=int, nargs="+", default=[1, 10])
    args = p.parse_args()
    from rich.console import Console
    from rich.table import Table

    results = [measure(s) for s in args.scales]
    table = Table(title="One monthly cycle (collection + training): ZenML vs bare library calls")
    for col in (
        "scale",
        "rows",
        "bare_s",
        "zenml_s",
        "overhead_ratio",
        "max_artifact_bytes_excluding_model",
        "largest_artifact",
        "model_bytes",
    ):
        table.add_column(col)
    for r in results:
        table.add_row(
            *(
                f"{r[c]:.2f}" if isinstance(r[c], float) else str(r[c])
                for c in (
                    "scale",
                    "rows",
                    "bare_s",
                    "zenml_s",
                    "overhead_ratio",
                    "max_artifact_bytes_excluding_model",
                    "largest_artifact",
                    "model_bytes",
                )
            )
        )
    Console().print(table)
    for r in results:
        print(f"scale {r['scale']} step outputs (bytes): {json.dumps(r['artifacts'], sort_keys=True)}")
    last = results[-1]
    print(
        json.dumps(
            {
                k: (round(last[k], 3) if isinstance(last[k], float) else last[k])
                for k in ("zenml_s", "bare_s", "overhead_ratio", "max_artifact_bytes_excluding_model", "rows")
            }
        )
    )
    shutil.rmtree(WORK, ignore_errors=True)


if __name__ == "__main__":
    main()
