"""The adversarial ``/match_batch`` of issue 11.1 against a served Bento: time and the worker's peak memory.

The request (``ledgerlink.deploy.payloads.adversarial_batch``, 3.2 MB, within the default size limits): 1000
transfers of 406-415 EUR titled "as agreed" from the payer "someone", against 19,992 invoices of 1,666 payers
(12 each, 100-111 EUR, no invoice numbers). Before the fixes it took ~40 s of CPU and 8.5 GB in one worker, and
three at once turned into 504s while the work went on.

Trains a small Matcher on synthetic data in a temporary BentoML store, builds the Bento, serves it with
``--workers`` workers (1: the target is per worker), sends the request once, then ``--concurrent`` copies at once.
For each phase it prints the wall time and status of every answer and the worker's peak resident memory
(``VmHWM`` of the worker processes, reset before each phase through ``/proc/<pid>/clear_refs``).

Target: any request within the limits is answered in under 10 s and 1 GB on one worker, or refused up front with
a 4xx naming the limit it would pass.

    .venv/bin/python benchmarks/adversarial.py                    # ~1-2 minutes on 2 cores
    .venv/bin/python benchmarks/adversarial.py --deadline 60 --env LEDGERLINK_MAX_BATCH_PAIRS=100000000

Last line: JSON with single_s, single_status, single_peak_rss_mb, concurrent_max_s, concurrent_statuses,
concurrent_peak_rss_mb, idle_rss_mb, body_mb, and the limits served with.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src"), str(ROOT)]
os.environ.setdefault("BENTOML_DO_NOT_TRACK", "True")


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--workers", type=int, default=1, help="server worker processes (the target is per worker)")
    p.add_argument("--concurrent", type=int, default=3, help="copies sent at once in the second phase")
    p.add_argument("--transfers", type=int, default=1000)
    p.add_argument("--payers", type=int, default=1666)
    p.add_argument("--per-payer", type=int, default=12)
    p.add_argument("--deadline", type=float, help="the server's LEDGERLINK_REQUEST_DEADLINE_S (default: its own)")
    p.add_argument("--env", action="append", default=[], help="more server settings, NAME=VALUE (repeatable)")
    p.add_argument("--timeout", type=float, default=300.0, help="client timeout per request, seconds")
    p.add_argument("--bento", help="serve this Bento tag from $BENTOML_HOME instead of training and building one")
    return p.parse_args(argv)


def build_bento() -> str:
    """A small Matcher on synthetic data, in the (temporary) model store, built into a Bento."""
    from ledgerlink.data.synthetic import generate
    from ledgerlink.deploy import bento as deploy
    from ledgerlink.matching import Matcher
    from ledgerlink.matching.base import save_matcher

    data = generate(months=2, contractors=60, transfers_per_month=300)
    matcher = Matcher(n_estimators=60, n_jobs=1).fit(data["invoices"], data["transfers"], data["links"])
    with tempfile.TemporaryDirectory(prefix="ledgerlink-adversarial-") as d:
        save_matcher(matcher, d)
        model_tag = deploy.save_to_model_store(
            d, metadata={"threshold": float(matcher.auto_threshold_), "currencies": ["EUR"]}
        )
    return str(deploy.build_bento(model_tag))


def _status_kb(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    return 0


def reset_peaks(pids: list[int]) -> bool:
    """Reset the peak RSS (VmHWM) of ``pids`` to their current RSS (Linux >= 4.0); False if not allowed."""
    try:
        for pid in pids:
            Path(f"/proc/{pid}/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def peak_mb(pids: list[int]) -> float:
    return max((_status_kb(p, "VmHWM") for p in pids), default=0) / 1024


def rss_mb(pids: list[int]) -> float:
    return max((_status_kb(p, "VmRSS") for p in pids), default=0) / 1024


def send(url: str, body: bytes, timeout: float) -> tuple[int, float, dict | str]:
    from ledgerlink.deploy.local import http_json

    t0 = time.perf_counter()
    try:
        status, answer = http_json("POST", f"{url}/match_batch", body, timeout=timeout)
    except OSError as exc:  # the client gave up
        status, answer = 0, f"{type(exc).__name__}: {exc}"
    return status, time.perf_counter() - t0, answer


def describe(status: int, answer) -> str:
    if status == 200 and isinstance(answer, dict):
        n = len(answer.get("results", []))
        linked = sum(1 for r in answer.get("results", []) if r.get("links"))
        return f"200: {n} transfers answered, {linked} linked"
    if isinstance(answer, dict):
        return f"{status}: {answer.get('error', '')[:160]}" + (f" [{answer['limit']}]" if answer.get("limit") else "")
    return f"{status}: {str(answer)[:160]}"


def main(argv=None) -> int:
    args = parse_args(argv)
    own_home = None
    if not args.bento:
        own_home = tempfile.mkdtemp(prefix="ledgerlink-bench-bentoml-")
        os.environ["BENTOML_HOME"] = own_home
    from ledgerlink.deploy.local import BentoServer
    from ledgerlink.deploy.payloads import adversarial_batch
    from ledgerlink.serving.limits import Limits

    env = dict(e.split("=", 1) for e in args.env)
    if args.deadline:
        env["LEDGERLINK_REQUEST_DEADLINE_S"] = str(args.deadline)
    limits = Limits.from_env(environ={**os.environ, **env})
    body = json.dumps(adversarial_batch(args.transfers, args.payers, args.per_payer)).encode()
    print(f"request: {args.transfers} transfers x {args.payers * args.per_payer} invoices, {len(body) / 1e6:.2f} MB")
    bento = args.bento or build_bento()
    summary: dict = {"body_mb": round(len(body) / 1e6, 2), "workers": args.workers, "cpus": os.cpu_count()}
    summary.update({"deadline_s": limits.deadline_s, "max_batch_pairs": limits.max_batch_pairs})
    with BentoServer(bento, workers=args.workers, env=env) as server:
        pids = server.worker_pids()
        summary["idle_rss_mb"] = round(rss_mb(pids), 1)
        print(f"served {bento} on {server.url}: {len(pids)} worker(s), idle RSS {summary['idle_rss_mb']:.0f} MB")
        summary["peak_reset"] = reset_peaks(pids)
        status, seconds, answer = send(server.url, body, args.timeout)
        summary.update(single_s=round(seconds, 2), single_status=status, single_peak_rss_mb=round(peak_mb(pids), 1))
        peak = summary["single_peak_rss_mb"]
        print(f"1 request: {seconds:.1f} s, {describe(status, answer)}; worker peak {peak:.0f} MB")
        summary["rss_after_single_mb"] = round(rss_mb(pids), 1)
        reset_peaks(pids)
        t0 = time.perf_counter()
        with ThreadPoolExecutor(args.concurrent) as pool:
            runs = list(pool.map(lambda _: send(server.url, body, args.timeout), range(args.concurrent)))
        wall = time.perf_counter() - t0
        for k, (status, seconds, answer) in enumerate(runs):
            print(f"  {k + 1}/{args.concurrent} at once: {seconds:.1f} s, {describe(status, answer)}")
        summary.update(
            concurrent=args.concurrent,
            concurrent_max_s=round(max(s for _, s, _ in runs), 2),
            concurrent_wall_s=round(wall, 2),
            concurrent_statuses=[s for s, _, _ in runs],
            concurrent_peak_rss_mb=round(peak_mb(pids), 1),
            rss_after_concurrent_mb=round(rss_mb(pids), 1),
            server_alive_after=server.alive(),
        )
        print(
            f"{args.concurrent} at once: all answered within {summary['concurrent_max_s']:.1f} s; worker peak "
            f"{summary['concurrent_peak_rss_mb']:.0f} MB; RSS after {summary['rss_after_concurrent_mb']:.0f} MB"
        )
    if own_home:
        import shutil

        shutil.rmtree(own_home, ignore_errors=True)
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
