"""Does the pretrained text encoder pay? The tree family against the transformer family with the packaged
all-MiniLM-L6-v2 checkpoint, on the quality benchmark's data, in one run (the machine is shared: only figures
from the same run compare).

Data and evaluation are ``quality.py``'s (``load_data``, ``evaluate``): train on months 1..k as the store gives
them, evaluate on the frozen test set and on month k+1. Both families are trained in this process, one after the
other, with the same tree parameters.

- **embedding** (measured in full): ``TransformerMatcher(checkpoint="all-minilm-l6-v2", text_mode="embedding")``:
  the frozen encoder's cosines as two more tree features. Inference is timed twice: *cold*, the encoder's string
  cache emptied first (a freshly started server; every transfer and candidate invoice text is embedded), and
  *warm*, right after (the invoices a server already saw are cached; new transfers are always new strings).
- **cross** (measured on a sample, then extrapolated): fine-tuning the checkpoint as a cross-encoder on CPU.
  ``--cross-steps`` optimiser steps of ``text_batch_size`` real candidate pairs are timed, and scoring of the
  same pairs; the figures are scaled to what ``fit`` and ``match`` would do with the family's defaults (pairs per
  fold capped by ``max_train_pairs``, ``epochs``, one encoder per fold, ``rerank_k`` candidates per transfer scored
  by every fold encoder). Labelled "extrapolated"; the full fit is not run because it takes hours here.

    nice .venv/bin/python benchmarks/encoder.py                 # k = 6, as quality.py (~10-20 min on 2 busy cores)
    nice .venv/bin/python benchmarks/encoder.py 3 --cross-steps 0

Last line: one JSON object: per family (xgboost, embedding) the frozen-test and later-month pair F1, auto-match
rate and precision, training seconds, inference ms per 1k transfers (cold and warm for the embedding), and the
cross-encoder's extrapolated training and inference seconds.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src"), str(ROOT)]
os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing may download: the checkpoint ships in a package
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def _quality():
    spec = importlib.util.spec_from_file_location("quality_benchmark", ROOT / "benchmarks" / "quality.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _timed_eval(model, data, clear=None):
    from ledgerlink.evaluation.evaluate import evaluate

    if clear is not None:
        clear()
    return evaluate(model, data).metrics


def cross_encoder_cost(model_params: dict, train, later, tree, steps: int) -> dict:
    """Seconds per fine-tuning step and per scored pair of the packaged checkpoint as a cross-encoder, on real
    candidate pairs, and what ``fit`` / ``match`` of 1k transfers would take at those rates."""
    import numpy as np

    from ledgerlink.matching.base import check_frame
    from ledgerlink.matching.normalize import Prepared
    from ledgerlink.matching.transformer import TransformerMatcher, pair_texts

    cross = TransformerMatcher(**{**model_params, "text_mode": "cross"})
    P = Prepared.of(check_frame(later["invoices"], "invoices"), check_frame(later["transfers"], "transfers"))
    pairs, X = tree._block_and_featurize(P, tree.memory_, None)
    rows = np.flatnonzero(X["heur_rank"].to_numpy() <= cross.rerank_k)
    a, b = pair_texts(pairs.iloc[rows], P.inv, P.tr)
    rows_per_transfer = len(rows) / max(len(P.tr), 1)
    n = steps * cross.text_batch_size
    rng = np.random.default_rng(0)
    pick = rng.choice(len(a), min(n, len(a)), replace=False)
    y = (rng.random(len(pick)) < 0.2).astype(np.float32)  # labels do not change the cost of a step
    saved_epochs = cross.epochs
    cross.epochs = 1
    start = time.perf_counter()
    model, tok = cross._with_threads(lambda: cross._new_encoder())
    load_s = time.perf_counter() - start
    start = time.perf_counter()
    model, tok = cross._with_threads(lambda: cross._train_encoder(a[pick], b[pick], y, "cross-encoder sample"))
    train_s = time.perf_counter() - start - load_s  # _train_encoder loads the checkpoint again
    step_s = train_s / max(1, int(np.ceil(len(pick) / cross.text_batch_size)))
    start = time.perf_counter()
    cross._with_threads(lambda: cross._score(model, tok, a[pick], b[pick]))
    pair_s = (time.perf_counter() - start) / len(pick)
    cross.epochs = saved_epochs
    folds = max(2, cross.n_folds)
    train_pairs = rows_per_transfer * len(train["transfers"])
    per_fold = min(train_pairs * (folds - 1) / folds, cross.max_train_pairs)
    fit_s = folds * (cross.epochs * np.ceil(per_fold / cross.text_batch_size) * step_s) + train_pairs * pair_s
    match_s_per_1k = 1000 * rows_per_transfer * folds * pair_s
    return {
        "sample_pairs": int(len(pick)),
        "seconds_per_step": round(step_s, 3),
        "ms_per_scored_pair": round(1000 * pair_s, 2),
        "rerank_pairs_per_transfer": round(rows_per_transfer, 2),
        "extrapolated_fit_seconds": round(float(fit_s), 0),
        "extrapolated_match_seconds_per_1k_transfers": round(float(match_s_per_1k), 1),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("months", nargs="?", type=int, default=6, help="train on the first k collected months (default 6)")
    ap.add_argument("--seed", type=int, default=None, help="synthetic data seed (default: the config's)")
    ap.add_argument("--checkpoint", default="all-minilm-l6-v2")
    ap.add_argument("--xgboost-params", default="{}", help="JSON params for both families' trees")
    ap.add_argument("--transformer-params", default="{}", help="JSON params added for the transformer family")
    ap.add_argument("--cross-steps", type=int, default=4, help="cross-encoder fine-tuning steps to time (0: skip)")
    args = ap.parse_args()

    quality = _quality()
    home = Path(tempfile.mkdtemp(prefix="ledgerlink-encoder-"))
    os.environ["LEDGERLINK_HOME"] = str(home)
    os.environ.setdefault("LEDGERLINK_CHECKPOINTS", str(home / "checkpoints"))
    t0 = time.perf_counter()
    train, test, later, later_month, _ = quality.load_data(args.months, args.seed, False, home)
    print(
        f"data: train {len(train['transfers'])} transfers / {len(train['invoices'])} invoices (months 1-{args.months});"
        f" frozen test {len(test['transfers'])}; later month {later_month}: {len(later['transfers'])} transfers "
        f"against {len(later['invoices'])} invoices; prepared in {time.perf_counter() - t0:.1f}s",
        flush=True,
    )
    from ledgerlink.matching.checkpoints import resolve_checkpoint
    from ledgerlink.matching.registry import build_matcher

    start = time.perf_counter()
    resolve_checkpoint(args.checkpoint)  # extraction is a one-off per machine: not counted as training
    print(f"checkpoint {args.checkpoint} extracted in {time.perf_counter() - start:.1f}s", flush=True)

    tree_params = json.loads(args.xgboost_params)
    emb_params = {
        **tree_params,
        "checkpoint": args.checkpoint,
        "text_mode": "embedding",
        **json.loads(args.transformer_params),
    }
    rows, out = [], {}
    for name, family, params in (("xgboost", "xgboost", tree_params), ("embedding", "transformer", emb_params)):
        model = build_matcher(family, **params)
        start = time.perf_counter()
        model.fit(train["invoices"], train["transfers"], train["links"])
        train_s = time.perf_counter() - start
        print(f"  {name}: trained in {train_s:.1f}s", flush=True)
        enc = getattr(model, "sentence_encoder_", None)
        for set_name, data in (("frozen test", test), (f"later {later_month}", later)):
            before = enc.embedded if enc else 0
            cold = _timed_eval(model, data, enc.clear_cache if enc else None)
            strings = (enc.embedded - before) if enc else 0
            warm = _timed_eval(model, data) if enc else cold
            label = f"{name} {set_name}"
            rows.append((label, cold, train_s, warm["ms_per_1k_transfers"] if enc else None, strings))
            key = "frozen_test" if set_name == "frozen test" else "later_month"
            out.setdefault(name, {})[key] = {
                k: round(float(cold[k]), 4) for k in ("pair_f1", "auto_match_rate", "auto_match_precision")
            } | {
                "ms_per_1k_transfers_cold": round(cold["ms_per_1k_transfers"]),
                "ms_per_1k_transfers_warm": round(warm["ms_per_1k_transfers"]),
                "strings_embedded_cold": strings,
            }
        out[name]["train_seconds"] = round(train_s, 1)
        if enc:
            s = model.training_summary_
            out[name]["text_fit_seconds"] = s.get("text_fit_seconds")
            out[name]["strings_embedded_in_fit"] = s.get("text_strings_embedded")
            out[name]["autocast"] = str(enc.autocast)
        if name == "xgboost":
            tree = model

    print(f"\n{quality.HEADER} {'warm_ms/1k':>10} {'strings':>8}")
    for label, m, train_s, warm_ms, strings in rows:
        print(f"{quality.fmt_row(label, m, train_s)} {('-' if warm_ms is None else f'{warm_ms:.0f}'):>10} {strings:>8}")

    if args.cross_steps > 0:
        cost = cross_encoder_cost(
            {**tree_params, "checkpoint": args.checkpoint, **json.loads(args.transformer_params)},
            train,
            later,
            tree,
            args.cross_steps,
        )
        out["cross_extrapolated"] = cost
        print(
            f"\ncross-encoder ({args.checkpoint}, fine-tuned, CPU): {cost['seconds_per_step']} s per step of "
            f"{cost['sample_pairs'] // max(args.cross_steps, 1)} pairs, {cost['ms_per_scored_pair']} ms per scored "
            f"pair; {cost['rerank_pairs_per_transfer']} scored pairs per transfer -> fit ~"
            f"{cost['extrapolated_fit_seconds']:.0f} s, match ~{cost['extrapolated_match_seconds_per_1k_transfers']} "
            "s per 1k transfers (extrapolated)"
        )
    out["months"] = args.months
    print(json.dumps(out))


if __name__ == "__main__":
    main()
