"""Scale: match 10k, 100k (and, asked for, 1M) transfers against their month's open invoices.

A model is trained once on small data (the default synthetic world, 3 months; ``quality.py`` defaults to 6) and saved.
For each size N a fresh world is generated (seed 7, one month of N transfers, N/8 contractors; every invoice
issued that month is open at its start, ~2N invoices, since many are paid only in later months; at most 20k
contractors, the generator's limit) and written to
Parquet; then a separate process loads the model and the data and times ``match`` alone: blocking, pair
features, scoring (fold trees), set enumeration, set model and choice (including the second pass). Peak memory
is that process's resident set during ``match`` (its high-water mark is reset after loading, via
/proc/self/clear_refs), also shown with the process total. A process per size keeps the figures independent.

    .venv/bin/python benchmarks/scale.py                         # 10k and 100k (~3-5 min on 2 busy cores)
    .venv/bin/python benchmarks/scale.py --sizes 10000,100000,1000000   # with 1M (over 20 minutes, several GB)
    .venv/bin/python benchmarks/scale.py --family transformer    # the transformer family instead

Last line: JSON with seconds_100k, peak_gb_100k, growth_per_10x (the largest time ratio between sizes 10x
apart, per 10x; 1M included when run), and every size's figures.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src")]


def _rss_gb(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024 / 1024
    return float("nan")


def _reset_peak() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def cmd_generate(n: int, out: str) -> None:
    from ledgerlink.data.synthetic import SyntheticConfig, generate

    t0 = time.perf_counter()
    # the generator's name pool ends near 20k distinct contractors (it fails above), so 1M gets 50 per contractor
    d = generate(SyntheticConfig(seed=7, months=1, transfers_per_month=n, contractors=min(20000, max(200, n // 8))))
    for name in ("invoices", "transfers", "links"):
        d[name].to_parquet(Path(out) / f"{name}.parquet", index=False)
    print(json.dumps({"generate_s": round(time.perf_counter() - t0, 1)}))


def cmd_match(model_dir: str, data: str) -> None:
    import gc

    import pandas as pd

    from ledgerlink.evaluation.metrics import blocking_recall
    from ledgerlink.matching.base import load_matcher

    model = load_matcher(model_dir)
    inv = pd.read_parquet(Path(data) / "invoices.parquet")
    tr = pd.read_parquet(Path(data) / "transfers.parquet")
    links = pd.read_parquet(Path(data) / "links.parquet")
    gc.collect()
    base_gb = _rss_gb("VmRSS")
    reset = _reset_peak()
    t0 = time.perf_counter()
    res = model.match(inv, tr)
    seconds = time.perf_counter() - t0
    peak_gb = _rss_gb("VmHWM")
    print(
        json.dumps(
            {
                "transfers": len(tr),
                "invoices": len(inv),
                "seconds": round(seconds, 2),
                "peak_gb": round(peak_gb, 3),
                "loaded_gb": round(base_gb, 3),
                "peak_reset": reset,
                "pairs": int(len(res.candidates)),
                "pairs_per_transfer": round(len(res.candidates) / max(len(tr), 1), 1),
                "blocking_recall": round(blocking_recall(res.candidates, links), 4),
                "auto_rate": round(float((res.decisions["decision"] == "auto").mean()), 4),
            }
        )
    )


def _run(args: list[str], timeout: float) -> dict:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])}
    out = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True, timeout=timeout, env=env)
    if out.returncode != 0:
        raise RuntimeError(f"{args[0]} failed (exit {out.returncode}):\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def train_model(family: str, model_dir: str) -> float:
    from ledgerlink.data.synthetic import SyntheticConfig, generate
    from ledgerlink.matching.base import save_matcher
    from ledgerlink.matching.registry import build_matcher

    d = generate(SyntheticConfig(months=4))
    train = {k: d[k][d[k]["month"] < "2025-04"] for k in ("invoices", "transfers", "links")}
    t0 = time.perf_counter()
    model = build_matcher(family).fit(train["invoices"], train["transfers"], train["links"])
    seconds = time.perf_counter() - t0
    save_matcher(model, model_dir)
    return seconds


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] in ("_generate", "_match"):
        {"_generate": cmd_generate, "_match": cmd_match}[sys.argv[1]](
            *([int(sys.argv[2])] if sys.argv[1] == "_generate" else [sys.argv[2]]) + sys.argv[3:]
        )
        return
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="10000,100000", help="comma-separated transfer counts (1000000 for 1M)")
    ap.add_argument("--family", default="xgboost")
    ap.add_argument("--timeout", type=float, default=3600, help="seconds per size before giving up")
    args = ap.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    work = Path(tempfile.mkdtemp(prefix="ledgerlink-scale-"))
    model_dir = str(work / "model")
    fit_s = train_model(args.family, model_dir)
    print(f"model: {args.family} trained once on 3 months x 800 transfers in {fit_s:.1f}s", flush=True)
    print(
        f"{'transfers':>10} {'invoices':>10} {'generate_s':>10} {'match_s':>8} {'peak_GB':>8} {'loaded_GB':>9} "
        f"{'pairs/tr':>8} {'blocking':>8} {'auto':>6}",
        flush=True,
    )
    rows = {}
    for n in sizes:
        data = work / f"n{n}"
        data.mkdir()
        try:
            gen = _run(["_generate", str(n), str(data)], args.timeout)
            r = _run(["_match", model_dir, str(data)], args.timeout)
        except (RuntimeError, subprocess.TimeoutExpired) as exc:
            print(f"{n:>10} did not complete: {str(exc).strip().splitlines()[-1]}", flush=True)
            rows[n] = {"error": str(exc).strip().splitlines()[-1]}
            continue
        r["generate_s"] = gen["generate_s"]
        rows[n] = r
        print(
            f"{n:>10} {r['invoices']:>10} {gen['generate_s']:>10.1f} {r['seconds']:>8.1f} {r['peak_gb']:>8.2f} "
            f"{r['loaded_gb']:>9.2f} {r['pairs_per_transfer']:>8.1f} {r['blocking_recall']:>8.4f} "
            f"{r['auto_rate']:>6.3f}",
            flush=True,
        )
    done = {n: r for n, r in rows.items() if "seconds" in r}
    growth = []
    for a in done:
        for b in done:
            if b > a:
                steps = math.log10(b / a)
                growth.append((done[b]["seconds"] / done[a]["seconds"]) ** (1 / steps))
    out = {
        "seconds_100k": done.get(100000, {}).get("seconds"),
        "peak_gb_100k": done.get(100000, {}).get("peak_gb"),
        "growth_per_10x": round(max(growth), 2) if growth else None,
        "family": args.family,
        "sizes": {str(n): r for n, r in rows.items()},
    }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
