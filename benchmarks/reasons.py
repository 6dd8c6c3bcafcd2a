"""What the reasons cost: ``match(..., explain=True)`` against ``match`` in the same run, on the same requests.

Trains a Matcher as ``benchmarks/serving.py`` does (synthetic data, 100 trees, n_jobs=2), then:
- ``/match`` in process: ``--requests`` single-transfer problems of ``--candidates`` candidate invoices, each run
  through ``match_many([problem])`` (the call the service's batcher makes) with and without ``explain``,
  alternating, ``--repeats`` times; the median over all requests and repeats of each, wall time and the process's
  CPU time (on a machine shared with other work, wall time measures the others too);
- a month: the last month's transfers against all invoices, with and without ``explain`` (best of
  ``--repeats``), and the time per explained link;
- with ``--scale N``: one generated month of N transfers (as ``benchmarks/scale.py`` makes it), matched in a
  fresh process per mode: seconds and peak resident memory during ``match`` (high-water mark reset after loading).

    .venv/bin/python benchmarks/reasons.py                  # ~1-2 minutes on 2 cores
    .venv/bin/python benchmarks/reasons.py --scale 100000   # + 100k transfers, plain and explained (~10 minutes)

Last line: JSON with match_ms_plain, match_ms_explain, match_overhead, month_s_plain, month_s_explain (and the
scale figures when asked).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src"), str(ROOT)]


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--requests", type=int, default=40)
    p.add_argument("--candidates", type=int, default=50)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--months", type=int, default=3)
    p.add_argument("--contractors", type=int, default=200)
    p.add_argument("--transfers-per-month", type=int, default=400)
    p.add_argument("--n-estimators", type=int, default=100)
    p.add_argument("--scale", type=int, default=0, help="also match one month of this many transfers (0: no)")
    return p.parse_args(argv)


def _rss_gb(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024 / 1024
    return float("nan")


def scale_match(model_dir: str, data: str, explain: str) -> None:
    """In a fresh process: load, reset the memory high-water mark, time one ``match``."""
    import gc

    import pandas as pd

    from ledgerlink.matching.base import load_matcher

    model = load_matcher(model_dir)
    inv, tr = (pd.read_parquet(Path(data) / f"{name}.parquet") for name in ("invoices", "transfers"))
    gc.collect()
    Path("/proc/self/clear_refs").write_text("5")
    t0 = time.perf_counter()
    result = model.match(inv, tr, explain=explain == "1")
    seconds = time.perf_counter() - t0
    print(json.dumps({"seconds": round(seconds, 2), "peak_gb": round(_rss_gb("VmHWM"), 3), "links": len(result.links)}))


def scale(matcher, n: int) -> dict:
    from ledgerlink.data.synthetic import SyntheticConfig, generate
    from ledgerlink.matching.base import save_matcher

    work = Path(tempfile.mkdtemp(prefix="ledgerlink-reasons-"))
    save_matcher(matcher, work / "model")
    world = generate(SyntheticConfig(seed=7, months=1, transfers_per_month=n, contractors=min(20000, max(200, n // 8))))
    for name in ("invoices", "transfers"):
        world[name].to_parquet(work / f"{name}.parquet", index=False)
    del world
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])}
    out = {}
    for explain in ("0", "1"):
        run = subprocess.run(
            [sys.executable, __file__, "_scale", str(work / "model"), str(work), explain],
            capture_output=True,
            text=True,
            env=env,
            check=True,
        )
        out[explain] = json.loads(run.stdout.strip().splitlines()[-1])
    return {"plain": out["0"], "explain": out["1"]}


def main(argv=None) -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "_scale":
        scale_match(*sys.argv[2:5])
        return 0
    args = parse_args(argv)
    from ledgerlink.data.synthetic import generate
    from ledgerlink.deploy.payloads import candidate_invoices, match_request, pick_transfers, request_frames
    from ledgerlink.matching import Matcher

    data = generate(months=args.months, contractors=args.contractors, transfers_per_month=args.transfers_per_month)
    last = sorted(data["transfers"]["month"].unique())[-1]
    train = {k: v[v["month"] < last] for k, v in data.items()}
    t0 = time.perf_counter()
    matcher = Matcher(n_estimators=args.n_estimators, n_jobs=2).fit(
        train["invoices"], train["transfers"], train["links"]
    )
    print(f"trained on {len(train['transfers'])} transfers in {time.perf_counter() - t0:.1f} s", flush=True)

    recent = {**data, "transfers": data["transfers"][data["transfers"]["month"] == last]}
    problems = []
    for k, (_, t) in enumerate(pick_transfers(recent, "any", 10 * args.requests).iterrows()):
        cands = candidate_invoices(t, data["invoices"], data["links"], args.candidates, seed=k)
        if len(cands) == args.candidates:
            problems.append(request_frames(match_request(t, cands)))
        if len(problems) == args.requests:
            break
    timing = {False: [], True: []}
    cpu = {False: [], True: []}
    for _ in range(args.repeats):
        for problem in problems:
            for explain in (False, True):
                t0, c0 = time.perf_counter(), time.process_time()
                matcher.match_many([problem], explain=explain)
                timing[explain].append((time.perf_counter() - t0) * 1000)
                cpu[explain].append((time.process_time() - c0) * 1000)
    plain, said = statistics.median(timing[False]), statistics.median(timing[True])
    cpu_plain, cpu_said = statistics.median(cpu[False]), statistics.median(cpu[True])
    print(
        f"/match in process ({len(problems)} requests of {args.candidates} candidates, x{args.repeats}): "
        f"median {plain:.2f} ms plain, {said:.2f} ms explained (+{said - plain:.2f} ms, {said / plain - 1:+.1%}); "
        f"CPU {cpu_plain:.2f} ms plain, {cpu_said:.2f} ms explained ({cpu_said / cpu_plain - 1:+.1%})",
        flush=True,
    )

    month = {}
    for explain in (False, True):
        best = float("inf")
        for _ in range(max(1, args.repeats // 2)):
            t0 = time.perf_counter()
            result = matcher.match(data["invoices"], recent["transfers"], explain=explain)
            best = min(best, time.perf_counter() - t0)
        month[explain] = (best, len(result.links))
    per_link_ms = (month[True][0] - month[False][0]) * 1000 / max(month[True][1], 1)
    print(
        f"a month ({len(recent['transfers'])} transfers, {month[True][1]} links): {month[False][0]:.2f} s plain, "
        f"{month[True][0]:.2f} s explained ({per_link_ms:.2f} ms per link)",
        flush=True,
    )
    scaled = {}
    if args.scale:
        s = scale(matcher, args.scale)
        print(
            f"one month of {args.scale} transfers: {s['plain']['seconds']:.1f} s, peak {s['plain']['peak_gb']:.2f} GB "
            f"plain; {s['explain']['seconds']:.1f} s, peak {s['explain']['peak_gb']:.2f} GB explained",
            flush=True,
        )
        scaled = {
            "scale_transfers": args.scale,
            "scale_s_plain": s["plain"]["seconds"],
            "scale_s_explain": s["explain"]["seconds"],
            "scale_peak_gb_plain": s["plain"]["peak_gb"],
            "scale_peak_gb_explain": s["explain"]["peak_gb"],
        }
    print(
        json.dumps(
            {
                "requests": len(problems),
                "candidates": args.candidates,
                "repeats": args.repeats,
                "match_ms_plain": round(plain, 3),
                "match_ms_explain": round(said, 3),
                "match_overhead": round(said / plain - 1, 4),
                "match_cpu_ms_plain": round(cpu_plain, 3),
                "match_cpu_ms_explain": round(cpu_said, 3),
                "match_cpu_overhead": round(cpu_said / cpu_plain - 1, 4),
                "month_transfers": int(len(recent["transfers"])),
                "month_s_plain": round(month[False][0], 3),
                "month_s_explain": round(month[True][0], 3),
                "month_ms_per_link": round(per_link_ms, 3),
                **scaled,
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
