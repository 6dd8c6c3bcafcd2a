"""Golden check for the matcher: the same inputs must give identical outputs before and after a refactor.

    python scripts/golden_check.py --save DIR      # record what the current code computes
    python scripts/golden_check.py --compare DIR   # recompute and fail (exit 1) on any difference

Three cases, all from seeded synthetic data (``ledgerlink.data.synthetic.generate``):

- ``month``: a Matcher fitted on three months matches the fourth. Recorded: the candidate pairs and the pair
  feature matrix of the match month (the first pass, as ``match`` computes them), the final links, decisions and
  ranked candidates with their probabilities, and a fingerprint of the fit (the boosters' bytes, the threshold,
  the training summary, the learnt memory).
- ``description_only``: the same for a world without invoice numbers and counterparty names.
- ``requests``: 40 single ``POST /match``-shaped problems (one transfer and its candidate invoices, built with
  ``ledgerlink.deploy.payloads``), answered one by one with ``match`` and in batches of 8 with ``match_many``;
  the two must also agree with each other.

Ids and pairs must be equal; floats must be equal bit for bit (every NaN counts as the same NaN). The fit runs
on one thread so that xgboost's sums are reproducible. About a minute on 2 cores.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from ledgerlink.data.synthetic import SyntheticConfig, generate
from ledgerlink.deploy.payloads import candidate_invoices, match_request, pick_transfers, request_frames
from ledgerlink.matching import Matcher

MONTH_WORLD = dict(months=4, contractors=150, transfers_per_month=800)  # default seed
DESC_WORLD = dict(months=3, contractors=80, transfers_per_month=400, description_only=True)
MATCHER = dict(n_jobs=1, random_state=0)
N_REQUESTS, BATCH, N_CANDIDATES = 40, 8, 30


# ----------------------------------------------------------------------------------------------------------------
# what the current code computes


def _pairs_and_features(matcher, invoices: pd.DataFrame, transfers: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The first-pass candidate pairs (t, i) and pair features of one ``match`` batch, through the matcher's own
    internals. The internals change shape in refactors; this adapter follows them, the values must not move."""
    from ledgerlink.matching import model as M

    invoices, transfers = M.check_frame(invoices, "invoices"), M.check_frame(transfers, "transfers")
    if hasattr(M, "Prepared"):  # the Prepared record
        P = M.Prepared.of(invoices, transfers)
        pairs = matcher._block(P, matcher.memory_, None)
        return pairs, matcher._featurize(pairs, P, matcher.memory_, None)
    inv, ic = M.prepare_invoices(invoices)
    tr, tc = M.prepare_transfers(transfers)
    pairs = matcher._block(inv, ic, tr, tc, matcher.memory_, None)
    return pairs, matcher._featurize(pairs, inv, ic, tr, tc, matcher.memory_, None)


def _fit_fingerprint(matcher) -> dict:
    def digest(booster) -> str:
        return hashlib.sha256(bytes(booster.save_raw("ubj"))).hexdigest()

    summary = {k: v for k, v in matcher.training_summary_.items() if not k.endswith("_seconds")}
    memory = json.dumps(matcher.memory_.to_dict(), sort_keys=True, default=float)
    return {
        "pair_boosters": [digest(b) for b in matcher.pair_boosters_],
        "set_booster": digest(matcher.set_booster_) if matcher.set_booster_ is not None else None,
        "auto_threshold": float(matcher.auto_threshold_).hex(),
        "empty_confidence": float(matcher.empty_confidence_).hex(),
        "feature_names": list(matcher.feature_names_),
        "training_summary": json.loads(json.dumps(summary, default=float)),
        "memory_sha256": hashlib.sha256(memory.encode()).hexdigest(),
    }


def _split(world: dict, test_month: str):
    inv, tr, ln = world["invoices"], world["transfers"], world["links"]
    train = (inv[inv["month"] < test_month], tr[tr["month"] < test_month], ln[ln["month"] < test_month])
    return train, (inv, tr[tr["month"] == test_month])


def _fit_and_match(config: dict) -> tuple[dict[str, pd.DataFrame], dict, Matcher, dict]:
    world = generate(SyntheticConfig(**config))
    test_month = sorted(world["transfers"]["month"].unique())[-1]
    (inv, tr, ln), (inv_all, tr_test) = _split(world, test_month)
    matcher = Matcher(**MATCHER).fit(inv, tr, ln)
    pairs, X = _pairs_and_features(matcher, inv_all, tr_test)
    result = matcher.match(inv_all, tr_test)
    tables = {
        "pairs": pairs.reset_index(drop=True),
        "features": X.reset_index(drop=True),
        "links": result.links,
        "decisions": result.decisions,
        "candidates": result.candidates,
    }
    return tables, _fit_fingerprint(matcher), matcher, world


def _requests(matcher, world: dict) -> dict[str, pd.DataFrame]:
    test_month = sorted(world["transfers"]["month"].unique())[-1]
    tables = {k: v[v["month"] == test_month] for k, v in world.items() if k in ("transfers", "links")}
    tables["invoices"] = world["invoices"]
    chosen = pd.concat(
        [pick_transfers(tables, "multi", 15), pick_transfers(tables, "single", 15), pick_transfers(tables, "none", 10)]
    ).drop_duplicates("transfer_id")
    problems = []
    for k, (_, t) in enumerate(chosen.head(N_REQUESTS).iterrows()):
        cands = candidate_invoices(t, tables["invoices"], tables["links"], N_CANDIDATES, seed=k)
        problems.append(request_frames(match_request(t, cands)))  # (invoices, transfers)
    if len(problems) != N_REQUESTS:
        raise SystemExit(f"golden world gave {len(problems)} requests, expected {N_REQUESTS}")
    alone = [matcher.match(i, t) for i, t in problems]
    batched = []
    for lo in range(0, len(problems), BATCH):
        batched += matcher.match_many(problems[lo : lo + BATCH])
    out = {}
    for name, results in (("alone", alone), ("batched", batched)):
        for part in ("links", "decisions", "candidates"):
            frames = [getattr(r, part).assign(request=k) for k, r in enumerate(results)]
            out[f"{name}_{part}"] = pd.concat(frames, ignore_index=True)
    return out


def compute(sections: list[str]) -> dict[str, tuple[dict[str, pd.DataFrame], dict]]:
    out = {}
    month_matcher = month_world = None
    if "month" in sections or "requests" in sections:
        start = time.perf_counter()
        tables, fp, month_matcher, month_world = _fit_and_match(MONTH_WORLD)
        if "month" in sections:
            out["month"] = (tables, fp)
        took = time.perf_counter() - start
        print(f"month: {len(tables['pairs'])} pairs, {len(tables['links'])} links ({took:.1f} s)")
    if "description_only" in sections:
        start = time.perf_counter()
        tables, fp, _, _ = _fit_and_match(DESC_WORLD)
        out["description_only"] = (tables, fp)
        print(f"description_only: {len(tables['pairs'])} pairs ({time.perf_counter() - start:.1f} s)")
    if "requests" in sections:
        start = time.perf_counter()
        tables = _requests(month_matcher, month_world)
        for part in ("links", "decisions", "candidates"):
            diff = frame_differences(tables[f"alone_{part}"], tables[f"batched_{part}"])
            if diff:
                raise SystemExit(f"requests: match_many differs from match in {part}: {diff[:3]}")
        out["requests"] = (tables, {"n_requests": N_REQUESTS, "batch": BATCH})
        print(f"requests: {N_REQUESTS} answered alone and in batches of {BATCH} ({time.perf_counter() - start:.1f} s)")
    return out


# ----------------------------------------------------------------------------------------------------------------
# exact comparison


def _canonical(values: np.ndarray) -> np.ndarray:
    """Float bits with every NaN the same NaN (a NaN made by np.where or by 0/0 is still "missing")."""
    v = np.array(values, copy=True)
    v[np.isnan(v)] = np.nan
    return v.view(np.uint32 if v.dtype == np.float32 else np.uint64)


def frame_differences(a: pd.DataFrame, b: pd.DataFrame, limit: int = 5) -> list[str]:
    """Every way ``b`` differs from ``a``: columns, dtypes, length, and the first differing rows per column."""
    if list(a.columns) != list(b.columns):
        return [f"columns {list(a.columns)} != {list(b.columns)}"]
    if len(a) != len(b):
        return [f"{len(a)} rows != {len(b)} rows"]
    out = []
    for c in a.columns:
        x, y = a[c].to_numpy(), b[c].to_numpy()
        if x.dtype != y.dtype:
            out.append(f"{c}: dtype {x.dtype} != {y.dtype}")
            continue
        same = _canonical(x) == _canonical(y) if x.dtype.kind == "f" else np.asarray(x == y, bool)
        bad = np.flatnonzero(~same)
        if len(bad):
            rows = ", ".join(f"row {r}: {x[r]!r} != {y[r]!r}" for r in bad[:limit])
            out.append(f"{c}: {len(bad)} of {len(x)} differ ({rows})")
    return out


def save(root: Path, computed) -> None:
    for section, (tables, meta) in computed.items():
        d = root / section
        d.mkdir(parents=True, exist_ok=True)
        for name, df in tables.items():
            df.to_parquet(d / f"{name}.parquet", index=False)
        (d / "meta.json").write_text(json.dumps(meta, indent=1, sort_keys=True))


def compare(root: Path, computed) -> list[str]:
    problems = []
    for section, (tables, meta) in computed.items():
        d = root / section
        if not d.is_dir():
            problems.append(f"{section}: no baseline in {d}")
            continue
        saved_meta = json.loads((d / "meta.json").read_text())
        now_meta = json.loads(json.dumps(meta, sort_keys=True))
        for key in sorted(set(saved_meta) | set(now_meta)):
            if saved_meta.get(key) != now_meta.get(key):
                problems.append(f"{section}/meta.{key}: {saved_meta.get(key)!r} != {now_meta.get(key)!r}")
        for name in sorted(set(tables) | {p.stem for p in d.glob("*.parquet")}):
            path = d / f"{name}.parquet"
            if name not in tables or not path.exists():
                problems.append(f"{section}/{name}: present on one side only")
                continue
            problems += [f"{section}/{name}: {m}" for m in frame_differences(pd.read_parquet(path), tables[name])]
    return problems


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    mode = ap.add_mutually_exclusive_group(required=True)
    mode.add_argument("--save", type=Path, metavar="DIR", help="write the current outputs to DIR")
    mode.add_argument("--compare", type=Path, metavar="DIR", help="recompute and compare with DIR")
    ap.add_argument(
        "--sections", default="month,description_only,requests", help="comma-separated subset (default: all)"
    )
    args = ap.parse_args(argv)
    sections = [s for s in args.sections.split(",") if s]
    unknown = set(sections) - {"month", "description_only", "requests"}
    if unknown:
        ap.error(f"unknown section(s) {sorted(unknown)}")
    start = time.perf_counter()
    computed = compute(sections)
    if args.save:
        save(args.save, computed)
        print(f"saved {sorted(computed)} to {args.save} in {time.perf_counter() - start:.1f} s")
        return 0
    problems = compare(args.compare, computed)
    if problems:
        print(f"GOLDEN CHECK FAILED: {len(problems)} difference(s) from {args.compare}", file=sys.stderr)
        for p in problems:
            print("  " + p, file=sys.stderr)
        return 1
    n = sum(len(t) for t, _ in computed.values())
    print(f"golden check passed: {n} tables identical to {args.compare} ({time.perf_counter() - start:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
