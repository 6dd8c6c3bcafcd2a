"""Scale, as a deployment sees it: train on a world's earlier months, match its next month; ledgerlink beside splink.

For each size N a world is generated (seed 7, ``--history-months`` + 1 months of N transfers each, N/8
contractors, at most 20k: the generator's limit). Both systems are trained on the same history: the earlier
months' transfers (a seeded sample of ``--train-cap`` of them when there are more: a fit on 300k transfers does
not fit this machine; 10k keeps its whole history) with their links and the invoices of those months, so payer
memory applies as in production. Then both match the next month's N transfers against the invoices open at its
start (issued up to its end and not settled by any earlier payment: the open items a finance system hands over).

- ledgerlink: ``Matcher`` (xgboost family, default parameters) fitted and saved, then loaded and ``match``
  timed, its batches on every available core (``Matcher.n_workers``);
- splink 5 (the ``bench`` extra): the link-only model of ``splink_peer.py`` (blocking on amount, reference
  and name tokens; comparisons on amount, reference, name and date; u by random sampling, m from the training
  links; one invoice per transfer above the threshold that maximises training pair F1), predict timed.

Each fit and each match runs in its own process. Peak memory is the largest sum of the proportional set sizes
(PSS) of that process and its children (worker processes), sampled every 20 ms during the timed call, and never
below the process's own resident high-water mark (reset after loading, via /proc/self/clear_refs). PSS, not RSS:
spawned workers map the same libraries, which a sum of resident sets would count once per process
(``peak_rss_sum_gb`` is that sum, for comparison). CPU seconds (the process and
its children) are shown too: on a shared machine they move less than wall time. The systems alternate
(``--repeats``; medians), so both see the same load.

Per size: seconds, peak GB, CPU seconds, pair F1 (links against the truth, ``evaluation.metrics``), blocking
recall (true links among the candidates; splink: among its blocked pairs) and the auto-match rate (ledgerlink's
decisions at its own threshold; splink has no such decision).

    .venv/bin/python benchmarks/scale.py                                  # 10k and 100k, both systems
    .venv/bin/python benchmarks/scale.py --sizes 10000 --systems ledgerlink
    .venv/bin/python benchmarks/scale.py --sizes 1000000 --systems ledgerlink --timeout 7200   # 1M, see README

Needs ``pip install -c constraints.txt -e ".[bench]"`` for splink (``make bench`` does it).
Last line: JSON with splink_ratio_100k (ledgerlink's seconds over splink's), splink_mem_ratio_100k (peak over
peak), f1_minus_splink_100k, growth_per_10x (ledgerlink's largest time ratio between sizes 10x apart, per 10x),
seconds_100k, peak_gb_100k, and every size's figures.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src"), str(ROOT / "benchmarks")]
SYSTEMS = ("ledgerlink", "splink")
TABLES = ("invoices", "transfers", "links")


# ----------------------------------------------------------------------------------------------------------------
# measuring a call in this process (and its worker processes)


class PeakMemory:
    """The peak memory of this process and its descendants (worker processes) while the block runs: the largest
    sum of their proportional set sizes (PSS: each shared page counted once over the processes that share it,
    so spawned workers are not charged again for the same libraries), sampled, and never below this process's
    own resident high-water mark since the block started (exact for single-process work). The largest sum of
    resident sets (RSS, shared pages counted in every process) is kept too (``peak_rss_sum``).

    PSS is read from ``/proc/<pid>/smaps_rollup``, which walks the process's page tables: 80-140 ms per read of a
    2 GB match worker on the shared 2-core machine, so reading every process every 20 ms kept this process busy on
    a core of its own (counted in the CPU seconds, and taken from the workers). So the resident sets (``statm``,
    cheap) are read every ``interval``, and the PSS sum only when their sum is within ``NEAR`` of its highest yet,
    at most every ``pss_every`` seconds, and at least every ``pss_idle`` seconds otherwise."""

    NEAR = 0.97

    def __init__(self, interval: float = 0.02, pss_every: float = 0.5, pss_idle: float = 5.0):
        import psutil

        self.me, self.interval, self._stop = psutil.Process(), interval, threading.Event()
        self.pss_every, self.pss_idle = pss_every, pss_idle
        self.peak = self.peak_rss_sum = 0
        self.pss_reads = 0

    def _processes(self) -> list:
        return [self.me, *self.me.children(recursive=True)]

    def _sum(self, procs: list, pss: bool) -> int:
        import psutil

        total = 0
        for p in procs:
            try:
                total += p.memory_full_info().pss if pss else p.memory_info().rss
            except psutil.Error:  # a worker that just ended
                pass
        return total

    def _sample(self) -> None:
        last_pss = -math.inf
        while not self._stop.is_set():
            procs = self._processes()
            rss = self._sum(procs, pss=False)
            self.peak_rss_sum = max(self.peak_rss_sum, rss)
            since = time.monotonic() - last_pss
            if since >= self.pss_idle or (since >= self.pss_every and rss >= self.NEAR * self.peak_rss_sum):
                self.peak = max(self.peak, self._sum(procs, pss=True))
                last_pss, self.pss_reads = time.monotonic(), self.pss_reads + 1
            self._stop.wait(self.interval)

    def __enter__(self):
        try:
            Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current RSS
        except OSError:
            pass
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, _status_kb("VmHWM") * 1024)

    @property
    def gb(self) -> float:
        return self.peak / 2**30


def _status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def _cpu_seconds() -> float:
    import resource

    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def _timed(fn):
    """(result, seconds, cpu seconds, PeakMemory) of ``fn()``."""
    import gc

    gc.collect()
    cpu0, t0 = _cpu_seconds(), time.perf_counter()
    with PeakMemory() as mem:
        out = fn()
    return out, time.perf_counter() - t0, _cpu_seconds() - cpu0, mem


# ----------------------------------------------------------------------------------------------------------------
# the world (subprocess: _world)


def cmd_world(n: int, history: int, train_cap: int, out: str) -> None:
    """Generate the world of size ``n`` and write the training and matching tables (Parquet) to ``out``."""
    import numpy as np

    from ledgerlink.data.synthetic import SyntheticConfig, generate
    from ledgerlink.matching.tolerances import is_settled

    t0 = time.perf_counter()
    cfg = SyntheticConfig(seed=7, months=history + 1, transfers_per_month=n, contractors=min(20000, max(200, n // 8)))
    d = generate(cfg)
    inv, tr, links = d["invoices"], d["transfers"], d["links"]
    month = sorted(tr["month"].unique())[-1]
    history_tr = tr[tr["month"] < month]
    sample = history_tr
    if len(history_tr) > train_cap:
        rows = np.sort(np.random.default_rng(0).choice(len(history_tr), train_cap, replace=False))
        sample = history_tr.iloc[rows]
    train = {
        "invoices": inv[inv["month"] < month],
        "transfers": sample,
        "links": links[links["transfer_id"].isin(sample["transfer_id"])],
    }
    # open at the start of the month: not settled by any earlier payment (the whole history, not just the sample)
    paid = links[links["transfer_id"].isin(history_tr["transfer_id"])].groupby("invoice_id")["allocated_amount"].sum()
    settled = is_settled(inv["amount"].to_numpy(), inv["invoice_id"].map(paid).fillna(0.0).to_numpy())
    now = tr[tr["month"] == month]
    match = {"invoices": inv[~settled], "transfers": now, "links": links[links["transfer_id"].isin(now["transfer_id"])]}
    for part, tables in (("train", train), ("match", match)):
        for name in TABLES:
            tables[name].reset_index(drop=True).to_parquet(Path(out) / f"{part}_{name}.parquet", index=False)
    print(
        json.dumps(
            {
                "generate_s": round(time.perf_counter() - t0, 1),
                "train_transfers": len(sample),
                "history_transfers": len(history_tr),
                "train_invoices": len(train["invoices"]),
                "invoices": len(match["invoices"]),
                "transfers": len(now),
            }
        )
    )


def _read(data: str, part: str) -> dict:
    import pandas as pd

    return {name: pd.read_parquet(Path(data) / f"{part}_{name}.parquet") for name in TABLES}


# ----------------------------------------------------------------------------------------------------------------
# fit and match (subprocesses: _fit, _match)


def cmd_fit(system: str, data: str, model: str) -> None:
    train = _read(data, "train")
    if system == "ledgerlink":
        from ledgerlink.matching import Matcher
        from ledgerlink.matching.base import save_matcher

        fitted, seconds, cpu, peak = _timed(
            lambda: Matcher().fit(train["invoices"], train["transfers"], train["links"])
        )
        save_matcher(fitted, model)
    else:
        import splink_peer

        _, seconds, cpu, peak = _timed(
            lambda: splink_peer.fit(train["invoices"], train["transfers"], train["links"], Path(model))
        )
    print(json.dumps({"fit_s": round(seconds, 1), "fit_cpu_s": round(cpu, 1), "fit_peak_gb": round(peak.gb, 2)}))


def cmd_match(system: str, data: str, model: str, workers: str, batch_size: str = "model") -> None:
    from ledgerlink.evaluation.metrics import blocking_recall, score_links

    new = _read(data, "match")
    base_gb = _status_kb("VmRSS") / 2**20
    if system == "ledgerlink":
        from ledgerlink.matching.base import load_matcher

        matcher = load_matcher(model)
        matcher.show_progress = True
        if workers != "auto":
            matcher.n_workers = int(workers)
        if batch_size != "model":
            matcher.batch_size = int(batch_size)
        base_gb = _status_kb("VmRSS") / 2**20
        result, seconds, cpu, peak = _timed(lambda: matcher.match(new["invoices"], new["transfers"]))
        links, candidates, decisions = result.links, result.candidates, result.decisions
        auto = round(float((decisions["decision"] == "auto").mean()), 4)
    else:
        import splink_peer

        result, seconds, cpu, peak = _timed(lambda: splink_peer.match(new["invoices"], new["transfers"], Path(model)))
        links, candidates, decisions, auto = result["links"], result["candidates"], None, None
    quality = score_links(links, new["links"], new["transfers"], decisions)
    print(
        json.dumps(
            {
                "seconds": round(seconds, 2),
                "cpu_s": round(cpu, 1),
                "peak_gb": round(peak.gb, 3),
                "peak_rss_sum_gb": round(peak.peak_rss_sum / 2**30, 3),
                "loaded_gb": round(base_gb, 3),
                "pair_f1": round(quality["pair_f1"], 4),
                "pair_precision": round(quality["pair_precision"], 4),
                "pair_recall": round(quality["pair_recall"], 4),
                "blocking_recall": round(blocking_recall(candidates, new["links"]), 4),
                "auto_rate": auto,
                "pairs_per_transfer": round(len(candidates) / max(len(new["transfers"]), 1), 1),
            }
        )
    )


# ----------------------------------------------------------------------------------------------------------------
# the driver


def _run(args: list[str], timeout: float) -> dict:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])}
    out = subprocess.run(
        [sys.executable, __file__, *args], stdout=subprocess.PIPE, stderr=None, text=True, timeout=timeout, env=env
    )
    if out.returncode != 0:
        raise RuntimeError(f"{args[0]} {args[1]} failed (exit {out.returncode}); its error is above")
    return json.loads(out.stdout.strip().splitlines()[-1])


def _median(rows: list[dict]) -> dict:
    keys = [k for k, v in rows[0].items() if isinstance(v, (int, float)) and not isinstance(v, bool)]
    return {**rows[0], **{k: statistics.median(r[k] for r in rows) for k in keys}, "runs": rows}


def _growth(done: dict[int, dict]) -> float | None:
    """Per 10x: ledgerlink's time ratio between sizes at least 10x apart, the largest (None: no such sizes). Closer
    sizes say little: fixed costs dominate small worlds."""
    rates = [
        (done[b]["seconds"] / done[a]["seconds"]) ** (1 / math.log10(b / a)) for a in done for b in done if b >= 10 * a
    ]
    return round(max(rates), 2) if rates else None


def main() -> None:
    commands = {"_world": cmd_world, "_fit": cmd_fit, "_match": cmd_match}
    if len(sys.argv) > 1 and sys.argv[1] in commands:
        args = sys.argv[2:]
        if sys.argv[1] == "_world":
            args = [int(a) for a in args[:3]] + args[3:]
        commands[sys.argv[1]](*args)
        return
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="10000,100000", help="comma-separated transfers per month")
    ap.add_argument("--systems", default="ledgerlink,splink", help="ledgerlink, splink or both")
    ap.add_argument("--history-months", type=int, default=3, help="months of history trained on")
    ap.add_argument("--train-cap", type=int, default=30000, help="at most this many history transfers trained on")
    ap.add_argument("--repeats", type=int, default=1, help="matches per system and size (alternating; medians)")
    ap.add_argument("--workers", default="auto", help="ledgerlink's n_workers (auto: one per available CPU)")
    ap.add_argument("--batch-size", default="model", help="ledgerlink's batch_size (model: as trained, the default)")
    ap.add_argument("--timeout", type=float, default=3600, help="seconds per step before giving up")
    args = ap.parse_args()
    systems = [s for s in args.systems.split(",") if s]
    unknown = sorted(set(systems) - set(SYSTEMS))
    if unknown:
        ap.error(f"unknown system(s) {unknown}; choose from {list(SYSTEMS)}")
    if "splink" in systems:
        try:
            import splink  # noqa: F401
        except ImportError:
            ap.error('splink is not installed: pip install -c constraints.txt -e ".[bench]" (or make bench)')
    sizes = [int(s) for s in args.sizes.split(",")]
    work = Path(tempfile.mkdtemp(prefix="ledgerlink-scale-"))
    print(
        f"cpus {len(os.sched_getaffinity(0))}, load {os.getloadavg()[0]:.1f}; history {args.history_months} months, "
        f"at most {args.train_cap} transfers trained on; {work}",
        flush=True,
    )
    rows: dict[int, dict] = {}
    for n in sizes:
        data = work / f"n{n}"
        data.mkdir()
        row: dict = {"load_before": round(os.getloadavg()[0], 1)}
        try:
            row["world"] = _run(
                ["_world", str(n), str(args.history_months), str(args.train_cap), str(data)], args.timeout
            )
            print(f"{n:>9} world: {row['world']}", flush=True)
            for s in systems:
                row[s] = _run(["_fit", s, str(data), str(data / f"model_{s}")], args.timeout)
                print(f"{n:>9} {s} fit: {row[s]}", flush=True)
            runs: dict[str, list] = {s: [] for s in systems}
            for rep in range(args.repeats):
                for s in systems if rep % 2 == 0 else systems[::-1]:
                    step = ["_match", s, str(data), str(data / f"model_{s}"), args.workers, args.batch_size]
                    r = _run(step, args.timeout)
                    runs[s].append(r)
                    print(f"{n:>9} {s} match {rep + 1}: {r}", flush=True)
            for s in systems:
                row[s] = {**row[s], **_median(runs[s])}
        except (RuntimeError, subprocess.TimeoutExpired) as exc:
            row["error"] = str(exc).strip().splitlines()[-1]
            print(f"{n:>9} did not complete: {row['error']}", flush=True)
        row["load_after"] = round(os.getloadavg()[0], 1)
        rows[n] = row

    print(f"\n{'':>9} {'':>8} " + "".join(f"{s:>44}" for s in systems))
    head = f"{'seconds':>8} {'cpu_s':>7} {'peak_GB':>7} {'F1':>6} {'block':>6} {'auto':>5}"
    print(f"{'transfers':>9} {'invoices':>8} " + "  ".join(head for _ in systems))
    for n, row in rows.items():
        cells = []
        for s in systems:
            r = row.get(s, {})
            if "seconds" not in r:
                cells.append(f"{'-':>44}")
                continue
            auto = f"{r['auto_rate']:>5.3f}" if r.get("auto_rate") is not None else f"{'-':>5}"
            cells.append(
                f"{r['seconds']:>8.1f} {r['cpu_s']:>7.1f} {r['peak_gb']:>7.2f} {r['pair_f1']:>6.3f} "
                f"{r['blocking_recall']:>6.3f} {auto}"
            )
        print(f"{n:>9} {row.get('world', {}).get('invoices', '-'):>8} " + "  ".join(cells))

    ours = {n: r["ledgerlink"] for n, r in rows.items() if "seconds" in r.get("ledgerlink", {})}
    peer = {n: r["splink"] for n, r in rows.items() if "seconds" in r.get("splink", {})}
    both = 100000 in ours and 100000 in peer
    out = {
        "splink_ratio_100k": round(ours[100000]["seconds"] / peer[100000]["seconds"], 3) if both else None,
        "splink_mem_ratio_100k": round(ours[100000]["peak_gb"] / peer[100000]["peak_gb"], 3) if both else None,
        "f1_minus_splink_100k": round(ours[100000]["pair_f1"] - peer[100000]["pair_f1"], 4) if both else None,
        "growth_per_10x": _growth(ours),
        "seconds_100k": ours.get(100000, {}).get("seconds"),
        "peak_gb_100k": ours.get(100000, {}).get("peak_gb"),
        "cpus": len(os.sched_getaffinity(0)),
        "history_months": args.history_months,
        "train_cap": args.train_cap,
        "repeats": args.repeats,
        "sizes": {str(n): r for n, r in rows.items()},
    }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
