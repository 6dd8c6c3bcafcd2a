"""Scale of the suggest pipeline's work: one open month of 10k and 100k transfers, extracted, matched and written.

As ``scale.py``, a model is trained once on small data (the default synthetic world, 3 months) and saved, and each
size gets a fresh world (seed 7, one month of N transfers, N/8 contractors, ~2N open invoices), here seeded into an
embedded DuckDB warehouse. A separate process per size then loads the model and times ``suggest_month`` end to end:
the open-month extraction (the production SQL on DuckDB), the batched ``match(..., explain=True)`` with its progress
bar, the staging Parquet file and the one-transaction write of ``suggested_links``; then it runs again (a rerun
replaces the rows: the count must not change). Peak memory is that process's resident set during the first run (its
high-water mark is reset after loading, via /proc/self/clear_refs); the target is the scale benchmark's 4 GB. CPU
seconds (all threads) are printed beside the wall time: on busy shared cores they move less.

    .venv/bin/python benchmarks/suggest_scale.py                    # 10k and 100k (~5-10 min on 2 busy cores)
    .venv/bin/python benchmarks/suggest_scale.py --sizes 10000

Last line: JSON with seconds_100k, cpu_seconds_100k, peak_gb_100k, rows_100k, rerun_replaced (the table holds exactly
the rerun's rows, no duplicates) and every size's figures (same_suggestions: the rerun suggested the same links).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src")]

MONTH = "2025-01"


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
    from ledgerlink.data.warehouse import DuckDBWarehouse

    t0 = time.perf_counter()
    d = generate(SyntheticConfig(seed=7, months=1, transfers_per_month=n, contractors=min(20000, max(200, n // 8))))
    DuckDBWarehouse(Path(out) / "warehouse.duckdb").seed(d)
    print(json.dumps({"generate_s": round(time.perf_counter() - t0, 1), "transfers": len(d["transfers"])}))


def cmd_suggest(model_dir: str, data: str) -> None:
    import gc

    from ledgerlink.data.suggest import suggest_month
    from ledgerlink.data.suggestions import DuckDBSuggestions
    from ledgerlink.data.warehouse import DuckDBWarehouse
    from ledgerlink.matching.base import load_matcher

    model = load_matcher(model_dir)
    wh = DuckDBWarehouse(Path(data) / "warehouse.duckdb")
    table = DuckDBSuggestions(wh.path, "ledgerlink")
    gc.collect()
    base_gb = _rss_gb("VmRSS")
    reset = _reset_peak()
    t0, c0 = time.perf_counter(), time.process_time()
    first = suggest_month(wh, table, model, MONTH, "bench", "1", workdir=data)
    seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    peak_gb = _rss_gb("VmHWM")
    rows_first = _stored(wh.path)
    t1 = time.perf_counter()
    second = suggest_month(wh, table, model, MONTH, "bench", "1", workdir=data, show_progress=False)
    rerun_s = time.perf_counter() - t1
    rows_second = _stored(wh.path)
    key = ["transfer_id", "invoice_id"]
    print(
        json.dumps(
            {
                "transfers": first.transfers,
                "invoices": first.invoices,
                "rows": first.rows,
                "seconds": round(seconds, 2),
                "cpu_seconds": round(cpu, 2),  # all threads: the figure that busy cores inflate least
                "peak_gb": round(peak_gb, 3),
                "loaded_gb": round(base_gb, 3),
                "peak_reset": reset,
                "rerun_seconds": round(rerun_s, 2),
                # the table holds exactly the rerun's rows, no duplicate link
                "rerun_replaced": len(rows_second) == second.rows and not rows_second.duplicated(key).any(),
                # the two runs suggested the same links (the matcher is deterministic on the same input)
                "same_suggestions": rows_first[key + ["decision"]]
                .sort_values(key)
                .reset_index(drop=True)
                .equals(rows_second[key + ["decision"]].sort_values(key).reset_index(drop=True)),
                "counts": first.counts,
            }
        )
    )


def _stored(path):
    import duckdb

    with duckdb.connect(str(path), read_only=True) as con:
        return con.execute("SELECT transfer_id, invoice_id, decision FROM ledgerlink.suggested_links").df()


def _run(args: list[str], timeout: float) -> dict:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])}
    out = subprocess.run([sys.executable, __file__, *args], stdout=subprocess.PIPE, text=True, timeout=timeout, env=env)
    if out.returncode != 0:
        raise RuntimeError(f"{args[0]} failed (exit {out.returncode})")
    return json.loads(out.stdout.strip().splitlines()[-1])


def train_model(family: str, model_dir: str) -> float:
    """Fit ``family`` on the default synthetic world's first three months and save it; the fit's seconds."""
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
    if len(sys.argv) > 1 and sys.argv[1] in ("_generate", "_suggest"):
        if sys.argv[1] == "_generate":
            cmd_generate(int(sys.argv[2]), sys.argv[3])
        else:
            cmd_suggest(sys.argv[2], sys.argv[3])
        return
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="10000,100000", help="comma-separated open transfers per month")
    ap.add_argument("--timeout", type=float, default=3600, help="seconds per size before giving up")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="ledgerlink-suggest-scale-"))
    model_dir = str(work / "model")
    fit_s = train_model("xgboost", model_dir)
    print(f"model: xgboost trained once on 3 months x 800 transfers in {fit_s:.1f}s", flush=True)
    rows = {}
    for n in (int(s) for s in args.sizes.split(",")):
        data = work / f"n{n}"
        data.mkdir()
        try:
            gen = _run(["_generate", str(n), str(data)], args.timeout)
            r = _run(["_suggest", model_dir, str(data)], args.timeout)
        except (RuntimeError, subprocess.TimeoutExpired) as exc:
            print(f"{n:>8} did not complete: {exc}", flush=True)
            rows[n] = {"error": str(exc)}
            continue
        r["generate_s"] = gen["generate_s"]
        rows[n] = r
        print(
            f"{n:>8} transfers, {r['invoices']} open invoices: {r['seconds']:.1f} s, peak {r['peak_gb']:.2f} GB "
            f"(loaded {r['loaded_gb']:.2f}), cpu {r['cpu_seconds']:.0f} s, {r['rows']} rows; rerun "
            f"{r['rerun_seconds']:.1f} s, rows replaced: {r['rerun_replaced']}, same suggestions: "
            f"{r['same_suggestions']}",
            flush=True,
        )
    big = rows.get(100000, {})
    print(
        json.dumps(
            {
                "seconds_100k": big.get("seconds"),
                "peak_gb_100k": big.get("peak_gb"),
                "rows_100k": big.get("rows"),
                "cpu_seconds_100k": big.get("cpu_seconds"),
                "rerun_replaced": all(r.get("rerun_replaced") for r in rows.values()),
                "sizes": {str(n): r for n, r in rows.items()},
            }
        )
    )


if __name__ == "__main__":
    main()
