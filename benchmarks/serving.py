"""Serving speed: the built Bento under ``bentoml serve`` on loopback, against its two peers measured in the same run.

Trains a Matcher on synthetic data, saves it to a temporary BentoML store and builds the Bento (or serves
``--bento TAG`` from the store in ``$BENTOML_HOME``), starts ``bentoml serve`` on a free 127.0.0.1 port and
drives ``POST /match`` with ``--candidates`` candidate invoices per transfer from a thread-pool load
generator (keep-alive connections) at each concurrency in ``--concurrency``, each level bounded by
``--requests`` and ``--max-seconds``. Every level runs ``--repeats`` times; medians are reported.

The two peers, so that every figure is a ratio measured on this machine at this moment:
- the HTTP stack's limit: ``noop_service.py``, a BentoML service with the same request and response models, the
  same middleware and the same number of workers, which validates each request and answers without matching.
  It is served beside ours and loaded in turn with the same requests (``noop_*``; ``rps_c8_vs_noop``);
- the work itself: ``inprocess_ms``, the library call the service makes for a lone request
  (``matching.single.match_one`` on the validated request, explained as served), median over the requests,
  measured between the HTTP levels of each repeat (``p99_c8_vs_inprocess``: the c8 tail over it).
  ``inprocess_match_ms`` is the general path (``Matcher.match`` on the request's frames), for comparison.

The server batches concurrent ``/match`` requests (``LEDGERLINK_MAX_MATCH_BATCH``, ``--max-batch``; 1 turns
it off; a lone request takes the fast path); the in-process ``match_many`` figures show what a batch of 8 or 32
costs per request. Every HTTP answer is compared with the one-by-one in-process ``Matcher.match`` answer
(``deploy.payloads.same_answer``: chosen invoices and allocations, ranked probabilities, decision and
confidence, reasons word for word): ``mismatches``. ``--profile`` prints where the in-process time goes (cProfile).

    .venv/bin/python benchmarks/serving.py                      # ~4-6 minutes on 2 cores
    .venv/bin/python benchmarks/serving.py --max-batch 1             # without adaptive batching
    .venv/bin/python benchmarks/serving.py --workers 1 --repeats 3 --profile

Last line: JSON with rps_c8_vs_noop, p99_c8_vs_inprocess, noop_rps_c8, inprocess_ms, p50_ms_c8, p99_ms_c8,
rps_c8, mismatches (over all levels and repeats; answers_compared: how many) and the other levels, both servers,
the setup.
"""

from __future__ import annotations

import argparse
import cProfile
import http.client
import io
import json
import os
import pstats
import statistics
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src"), str(ROOT)]
os.environ.setdefault("BENTOML_DO_NOT_TRACK", "True")


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--bento", help="serve this Bento tag from $BENTOML_HOME instead of training and building one")
    p.add_argument("--candidates", type=int, default=50, help="candidate invoices per transfer")
    p.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    p.add_argument("--requests", type=int, default=300, help="requests per level and repeat (at most)")
    p.add_argument("--max-seconds", type=float, default=20.0, help="time per level and repeat (at most)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument(
        "--workers", type=int, default=2, help="BentoML server worker processes (2 on these 2-core machines)"
    )
    p.add_argument("--max-batch", type=int, default=16, help="the server's LEDGERLINK_MAX_MATCH_BATCH (1: no batching)")
    p.add_argument("--pool", type=int, default=40, help="distinct requests to cycle through")
    p.add_argument("--months", type=int, default=3)
    p.add_argument("--contractors", type=int, default=200)
    p.add_argument("--transfers-per-month", type=int, default=400)
    p.add_argument("--n-estimators", type=int, default=100)
    p.add_argument("--profile", action="store_true", help="cProfile the in-process call")
    return p.parse_args(argv)


def _pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, max(0, int(round(q / 100 * (len(s) - 1)))))]


def prepare(args):
    """(matcher, bento tag, model tag, requests with their in-process answers, short share: the transfers tried
    that have fewer open invoices in their currency than ``--candidates``, left out)."""
    from ledgerlink.data.synthetic import generate
    from ledgerlink.deploy import bento as deploy
    from ledgerlink.deploy.payloads import candidate_invoices, inprocess_answer, match_request, pick_transfers
    from ledgerlink.matching import Matcher
    from ledgerlink.matching.base import save_matcher

    data = generate(months=args.months, contractors=args.contractors, transfers_per_month=args.transfers_per_month)
    if args.bento:
        import bentoml

        bento = bentoml.bentos.get(args.bento)
        model_tag = str(bento.info.models[0].tag)
        matcher = Matcher.load(bentoml.models.get(model_tag).path_of(deploy.MATCHER_SUBDIR))
        bento_tag = str(bento.tag)
    else:
        t0 = time.perf_counter()
        matcher = Matcher(n_estimators=args.n_estimators, n_jobs=2).fit(
            data["invoices"], data["transfers"], data["links"]
        )
        print(f"trained on {len(data['transfers'])} transfers in {time.perf_counter() - t0:.1f}s", flush=True)
        with tempfile.TemporaryDirectory() as tmp:
            save_matcher(matcher, tmp)
            model_tag = str(
                deploy.save_to_model_store(
                    tmp,
                    labels={"zenml_model_name": "bench", "zenml_model_version": 1},
                    metadata={"threshold": float(matcher.auto_threshold_)},
                )
            )
        bento_tag = str(deploy.build_bento(model_tag))
        import bentoml

        # in process, use the model exactly as the server loads it (not the object that was just fitted)
        matcher = Matcher.load(bentoml.models.get(model_tag).path_of(deploy.MATCHER_SUBDIR))
    requests, tried, short = [], 0, 0
    last_month = sorted(data["transfers"]["month"].unique())[-1]
    recent = {**data, "transfers": data["transfers"][data["transfers"]["month"] == last_month]}
    for _, t in pick_transfers(recent, "any", 10 * args.pool).iterrows():
        tried += 1
        req = match_request(t, candidate_invoices(t, data["invoices"], data["links"], args.candidates, seed=tried))
        if len(req["candidates"]) < args.candidates:  # fewer open invoices in its currency than asked for
            short += 1
            continue
        # a request the matcher cannot answer in process is a bug: the benchmark stops and names it rather than
        # timing a pool with the hard requests left out
        requests.append((req, inprocess_answer(matcher, req)))
        if len(requests) == args.pool:
            break
    if not requests:
        sys.exit(f"none of {tried} transfers has {args.candidates} candidate invoices in its currency")
    return matcher, bento_tag, model_tag, requests, short / tried


def inprocess(matcher, requests, repeats: int = 3) -> list[float]:
    """Milliseconds of the service's library call for a lone request (``match_one`` on the validated request,
    explained as the service asks)."""
    from ledgerlink.matching.single import match_one
    from ledgerlink.serving.schemas import MatchRequest

    validated = [MatchRequest.model_validate(req) for req, _ in requests]
    times = []
    for _ in range(repeats):
        for req in validated:
            t0 = time.perf_counter()
            match_one(matcher, req.transfer, req.candidates, explain=True)
            times.append((time.perf_counter() - t0) * 1000)
    return times


def inprocess_general(matcher, requests, repeats: int = 1) -> list[float]:
    """Milliseconds of ``Matcher.match`` on each request's frames (the general path, what the answers are checked
    against)."""
    from ledgerlink.deploy.payloads import inprocess_answer

    times = []
    for _ in range(repeats):
        for req, _ in requests:
            t0 = time.perf_counter()
            inprocess_answer(matcher, req)
            times.append((time.perf_counter() - t0) * 1000)
    return times


def batch_estimate(matcher, requests, size: int, rounds: int = 3) -> dict:
    """What the service's adaptive batching does with ``size`` concurrent requests: ONE ``Matcher.match_many`` call,
    explained as the service calls it. ``disagree`` is the share of requests whose chosen set or reasons differ from
    the one-by-one answer (0 by design)."""
    from ledgerlink.deploy.payloads import request_frames

    groups = [requests[k : k + size] for k in range(0, len(requests) - size + 1, size)] or [requests]
    per_request, disagree, n = [], 0, 0
    for group in groups:
        problems = [request_frames(r) for r, _ in group]
        for _ in range(rounds):
            t0 = time.perf_counter()
            results = matcher.match_many(problems, explain=True)
            per_request.append((time.perf_counter() - t0) * 1000 / len(problems))
        for (req, expected), result in zip(group, results):
            disagree += (
                result.links["invoice_id"].tolist() != [c[0] for c in expected["chosen"]]
                or [list(r) for r in result.links["reasons"]] != expected["chosen_reasons"]
            )
            n += 1
    return {"ms_per_request": statistics.median(per_request), "disagree": disagree / max(n, 1)}


def profile(matcher, requests) -> str:
    from ledgerlink.matching.single import match_one
    from ledgerlink.serving.schemas import MatchRequest

    validated = [MatchRequest.model_validate(req) for req, _ in requests[:20]]
    prof = cProfile.Profile()
    prof.enable()
    for req in validated:
        match_one(matcher, req.transfer, req.candidates, explain=True)
    prof.disable()
    out = io.StringIO()
    stats = pstats.Stats(prof, stream=out).sort_stats("cumulative")
    stats.print_stats(r"ledgerlink", 25)
    return out.getvalue()


def load(host: str, port: int, requests, concurrency: int, n_max: int, seconds: float, check: bool = True) -> dict:
    """``concurrency`` threads, one keep-alive connection each, cycling through ``requests``. With ``check`` each
    answer is compared with the in-process one (``payloads.same_answer``: chosen invoices, probabilities, decision,
    reasons); the no-op server's are not."""
    from ledgerlink.deploy.payloads import same_answer

    bodies = [(json.dumps(r).encode(), a) for r, a in requests]
    lock = threading.Lock()
    state = {"next": 0, "lat": [], "errors": 0, "mismatch": 0}
    deadline = time.perf_counter() + seconds

    def worker():
        conn = http.client.HTTPConnection(host, port, timeout=120)
        while True:
            with lock:
                k = state["next"]
                if k >= n_max or time.perf_counter() > deadline:
                    break
                state["next"] += 1
            body, expected = bodies[k % len(bodies)]
            t0 = time.perf_counter()
            try:
                conn.request("POST", "/match", body, {"Content-Type": "application/json"})
                resp = conn.getresponse()
                raw = resp.read()
                ok = resp.status == 200
            except (OSError, http.client.HTTPException):
                conn.close()
                conn = http.client.HTTPConnection(host, port, timeout=120)
                ok, raw = False, b""
            ms = (time.perf_counter() - t0) * 1000
            with lock:
                if ok:
                    state["lat"].append(ms)
                    if check and same_answer(json.loads(raw), expected):
                        state["mismatch"] += 1
                else:
                    state["errors"] += 1
        conn.close()

    t0 = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        for f in [pool.submit(worker) for _ in range(concurrency)]:
            f.result()
    wall = time.perf_counter() - t0
    lat = state["lat"]
    return {
        "n": len(lat),
        "errors": state["errors"],
        "mismatch": state["mismatch"],
        "p50_ms": _pct(lat, 50) if lat else float("nan"),
        "p99_ms": _pct(lat, 99) if lat else float("nan"),
        "rps": len(lat) / wall if wall else 0.0,
    }


def main(argv=None) -> int:
    args = parse_args(argv)
    own_home = None
    if not args.bento:  # an isolated BentoML store: nothing is left in the user's
        own_home = tempfile.mkdtemp(prefix="ledgerlink-bench-bentoml-")
        os.environ["BENTOML_HOME"] = own_home
    from ledgerlink.deploy.local import BentoServer

    matcher, bento_tag, model_tag, requests, short = prepare(args)
    print(
        f"bento {bento_tag}: {len(requests)} distinct requests of {args.candidates} candidates; "
        f"{short:.0%} of the transfers tried were skipped (fewer open invoices in their currency than that)",
        flush=True,
    )
    from ledgerlink.matching.parallel import threads_per_process

    served_n_jobs = threads_per_process(args.workers)  # what each server worker uses (bentos/service.py)
    matcher.set_threads(served_n_jobs)
    ip = inprocess(matcher, requests)
    other_n_jobs = 1 if served_n_jobs != 1 else 2
    matcher.set_threads(other_n_jobs)
    ip_other = inprocess(matcher, requests)
    matcher.set_threads(served_n_jobs)
    inprocess_ms = statistics.median(ip)
    print(
        f"in process: median {inprocess_ms:.1f} ms, p99 {_pct(ip, 99):.1f} ms per request (n_jobs={served_n_jobs}, as "
        f"served); median {statistics.median(ip_other):.1f} ms with n_jobs={other_n_jobs}",
        flush=True,
    )
    if args.profile:
        print(profile(matcher, requests), flush=True)
    batching = {}
    for size in (8, 32):
        if len(requests) >= size:
            est = batch_estimate(matcher, requests, size)
            batching[size] = est
            print(
                f"in process, {size} requests in one match_many() call (what the server's batching does): "
                f"{est['ms_per_request']:.1f} ms per request (vs {inprocess_ms:.1f} alone); "
                f"{est['disagree']:.0%} of the answers differ from one-by-one",
                flush=True,
            )

    servers = {"ledgerlink": bento_tag, "noop": "noop_service:NoopMatch"}
    results: dict[str, dict[int, list[dict]]] = {name: {c: [] for c in args.concurrency} for name in servers}
    inprocess_reps: list[float] = []
    env = {"LEDGERLINK_MAX_MATCH_BATCH": str(args.max_batch)}
    with (
        BentoServer(bento_tag, workers=args.workers, env=env) as ours,
        BentoServer(servers["noop"], workers=args.workers, env=env, cwd=Path(__file__).parent) as noop,
    ):
        running = {"ledgerlink": ours, "noop": noop}
        for server in running.values():
            load(server.host, server.port, requests[:4], 2, 8, 30, check=False)  # warm-up
        for rep in range(args.repeats):
            ip_rep = inprocess(matcher, requests, repeats=1)  # same moment as the HTTP levels: the ratio is fair
            inprocess_reps.append(statistics.median(ip_rep))
            print(f"repeat {rep + 1} in process: median {inprocess_reps[-1]:.1f} ms", flush=True)
            for name in servers if rep % 2 == 0 else list(servers)[::-1]:  # alternating: both see the same load
                server = running[name]
                for c in args.concurrency:
                    r = load(
                        server.host,
                        server.port,
                        requests,
                        c,
                        max(args.requests, 2 * c),
                        args.max_seconds,
                        check=name == "ledgerlink",
                    )
                    results[name][c].append(r)
                    print(
                        f"repeat {rep + 1} {name:>10} c={c:>2}: n={r['n']:>4} errors={r['errors']} "
                        f"mismatches={r['mismatch']} p50={r['p50_ms']:.1f} ms p99={r['p99_ms']:.1f} ms "
                        f"{r['rps']:.1f} req/s",
                        flush=True,
                    )
        alive = ours.alive()

    inprocess_ms = statistics.median(inprocess_reps)
    general = inprocess_general(matcher, requests)
    summary = {
        "candidates": args.candidates,
        "workers": args.workers,
        "repeats": args.repeats,
        "inprocess_ms": round(inprocess_ms, 2),
        "inprocess_match_ms": round(statistics.median(general), 2),
        f"inprocess_ms_njobs{other_n_jobs}": round(statistics.median(ip_other), 2),
        "server_alive_after": alive,
        "short_of_candidates_share": round(short, 3),
        "cpus": len(os.sched_getaffinity(0)),
        "load_avg_1m": round(os.getloadavg()[0], 2),
        "max_match_batch": args.max_batch,
        **{f"batch{k}_ms_per_request": round(v["ms_per_request"], 2) for k, v in batching.items()},
        **{f"batch{k}_answers_changed": round(v["disagree"], 3) for k, v in batching.items()},
    }
    print(
        f"\n{'server':>10} {'conc':>4} {'p50 ms':>8} {'p99 ms':>8} {'req/s':>7} {'p50/in-process':>15}"
        f"   (medians of {args.repeats}; in process {inprocess_ms:.1f} ms)"
    )
    for name, levels in results.items():
        prefix = "" if name == "ledgerlink" else "noop_"
        for c, rs in levels.items():
            p50 = statistics.median(r["p50_ms"] for r in rs)
            p99 = statistics.median(r["p99_ms"] for r in rs)
            rps = statistics.median(r["rps"] for r in rs)
            summary.update(
                {
                    f"{prefix}p50_ms_c{c}": round(p50, 2),
                    f"{prefix}p99_ms_c{c}": round(p99, 2),
                    f"{prefix}rps_c{c}": round(rps, 2),
                    f"{prefix}errors_c{c}": sum(r["errors"] for r in rs),
                }
            )
            if name == "ledgerlink":
                summary[f"mismatches_c{c}"] = sum(r["mismatch"] for r in rs)
            print(f"{name:>10} {c:>4} {p50:>8.1f} {p99:>8.1f} {rps:>7.1f} {p50 / inprocess_ms:>15.2f}")
    if summary.get("noop_errors_c8") or summary.get("errors_c8"):  # a ratio of failed levels means nothing
        print("errors at c8: the ratios are left out (see the errors above)", flush=True)
    elif 8 in args.concurrency:
        summary["rps_c8_vs_noop"] = round(summary["rps_c8"] / summary["noop_rps_c8"], 3)
        summary["p99_c8_vs_inprocess"] = round(summary["p99_ms_c8"] / inprocess_ms, 2)
        summary["p99_c8_vs_noop"] = round(summary["p99_ms_c8"] / summary["noop_p99_ms_c8"], 2)
    summary["mismatches"] = sum(r["mismatch"] for rs in results["ledgerlink"].values() for r in rs)
    summary["answers_compared"] = sum(r["n"] for rs in results["ledgerlink"].values() for r in rs)
    summary["http_overhead_ratio_c1"] = round(summary.get("p50_ms_c1", float("nan")) / inprocess_ms, 2)
    if own_home:
        import shutil

        shutil.rmtree(own_home, ignore_errors=True)
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
