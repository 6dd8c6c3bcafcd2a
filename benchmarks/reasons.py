"""What the reasons cost: ``match(..., explain=True)`` against ``match`` in the same run, on the same requests.

Trains a Matcher as ``benchmarks/serving.py`` does (synthetic data, 100 trees, n_jobs=2), then:
- ``/match`` in process: ``--requests`` single-transfer problems of ``--candidates`` candidate invoices, each run
  through ``match_many([problem])`` (the call the service's batcher makes) with and without ``explain``,
  alternating, ``--repeats`` times; the median over all requests and repeats of each;
- a month: the last month's transfers against all invoices, with and without ``explain`` (best of
  ``--repeats``), and the time per explained link.

    .venv/bin/python benchmarks/reasons.py                  # ~1-2 minutes on 2 cores

Last line: JSON with match_ms_plain, match_ms_explain, match_overhead, month_s_plain, month_s_explain.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
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
    return p.parse_args(argv)


def main(argv=None) -> int:
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
    for _ in range(args.repeats):
        for problem in problems:
            for explain in (False, True):
                t0 = time.perf_counter()
                matcher.match_many([problem], explain=explain)
                timing[explain].append((time.perf_counter() - t0) * 1000)
    plain, said = statistics.median(timing[False]), statistics.median(timing[True])
    print(
        f"/match in process ({len(problems)} requests of {args.candidates} candidates, x{args.repeats}): "
        f"median {plain:.2f} ms plain, {said:.2f} ms explained (+{said - plain:.2f} ms, {said / plain - 1:+.1%})",
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
    print(
        json.dumps(
            {
                "requests": len(problems),
                "candidates": args.candidates,
                "repeats": args.repeats,
                "match_ms_plain": round(plain, 3),
                "match_ms_explain": round(said, 3),
                "match_overhead": round(said / plain - 1, 4),
                "month_transfers": int(len(recent["transfers"])),
                "month_s_plain": round(month[False][0], 3),
                "month_s_explain": round(month[True][0], 3),
                "month_ms_per_link": round(per_link_ms, 3),
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
