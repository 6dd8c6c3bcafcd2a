"""Match quality of the rules baseline, the tree model (xgboost) and the transformer family, on the data the
pipelines see.

The data goes the pipelines' way: a temporary local warehouse seeded with the default synthetic data (the hard
generator, ``synthetic`` section of ``ledgerlink.config.DEFAULTS``), then ``collect_month`` for months 1..k into a
temporary dataset store. So the first month is split once into train + the FROZEN TEST SET (default fraction and
seed), and months 2..k are training data, exactly as the store holds them (invoices: every collected month's).
Each family is trained once on ``store.load_train()`` and evaluated with ``ledgerlink.evaluation.evaluate``:

- on the frozen test set (``store.load_test()``: the month-1 test transfers against the month-1 invoices) - the
  figures the training pipeline compares models on, but only ~240 transfers at the default size;
- on the next full month (k+1, ~800 transfers, extracted and validated like a collection) against the invoices of
  months 1..k+1, so the figures are not just the noise of a small test set. Memory from the training links
  works as in production here: every training payment is older than the month matched.

Columns: pair precision / recall / F1, exact-set accuracy, auto-match rate with its precision (the model's
own threshold, chosen at fit time for ``target_precision`` 99.5%), blocking recall, training seconds, inference
milliseconds per 1k transfers (median of ``--repeats`` runs of ``match``).

Then one row per payment shape (issue 15) for each learnt family: transfers of that shape, pair recall, exact-set
accuracy, auto-match rate and its precision. Shapes come from the generator's truth table (regenerated from the same
config; never written to the warehouse): single, multi, partial, instalment, remittance (and remittance_partial:
one invoice paid in part), description_ref (the title quotes the reference in the invoice's description),
overpayment, credit_note (netted inside the payment), duplicate (a second payment of a paid invoice: pays nothing,
so only exact-set accuracy counts), pays_nothing, foreign_currency, large_amount (a contractor billing up to 10^7),
batch_issued (invoices issued on one billing day).

    .venv/bin/python benchmarks/quality.py              # k = 6, all three families: ~4 min on 2 cores (transformer ~3)
    .venv/bin/python benchmarks/quality.py 3 --families rules,xgboost   # a younger deployment: 3 months of history
    .venv/bin/python benchmarks/quality.py --description-only
    .venv/bin/python benchmarks/quality.py 3 --families xgboost --transfers-per-month 10000 --contractors 1250
        # volume: a 10k-transfers-a-month world (the scale benchmark's 1 contractor per 8 transfers), 3 months of its
        # own history; the warehouse then holds only k+1 months

k defaults to 6: the production model is retrained every month on all collected months, and the figures
that matter are those of a deployment with some history (memory of which payer pays which contractor grows
with it). With k = 3 the tree model scored 0.006 (frozen test) to 0.026 (later month) lower pair F1 and a
0.05-0.07 lower auto-match rate (measured before the payment shapes of issue 15 changed the data).

Last line: one JSON object, the best model's (by frozen-test pair F1) frozen-test figures: pair_f1,
pair_precision, pair_recall, exact_set_accuracy, auto_match_rate, auto_match_precision, blocking_recall,
rules_pair_f1, and the same for the later month under ``later_month``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src"), str(ROOT)]


def load_data(months: int, seed: int | None, description_only: bool, home: Path, size: dict | None = None):
    """(train, frozen test, later month) as the pipelines' store and a collection would give them. ``size``:
    synthetic overrides for a volume run (then only months 1..k+1 are generated)."""
    import pandas as pd

    from ledgerlink.config import load_config
    from ledgerlink.data.collect import collect_month
    from ledgerlink.data.contract import check_month
    from ledgerlink.data.store import open_store
    from ledgerlink.data.warehouse import open_warehouse

    syn = {"description_only": description_only} | ({"seed": seed} if seed is not None else {})
    if size:
        syn |= {**size, "months": months + 1}
    warehouse = {"path": str(home / "warehouse.duckdb")}
    if description_only:  # the configuration a team without these columns writes: optional columns mapped to null
        warehouse["columns"] = {
            "columns": {
                "invoices": {"invoice_number": None, "counterparty_name": None},
                "transfers": {"counterparty_name": None, "counterparty_account": None},
            }
        }
    cfg = load_config(
        None,
        {"data_dir": str(home), "synthetic": syn, "warehouse": warehouse, "store": {"uri": str(home / "datasets")}},
    )
    wh, store = open_warehouse(cfg), open_store(cfg)
    all_months = wh.months()
    if months + 1 > len(all_months):
        raise SystemExit(f"k={months}: the warehouse has {len(all_months)} months; need k+1")
    for m in all_months[:months]:
        collect_month(wh, store, m, test_fraction=cfg["split"]["test_fraction"], seed=cfg["split"]["seed"])
    train, test = store.load_train(), store.load_test()
    later_month = all_months[months]
    later = check_month(
        wh.extract_month(later_month), later_month, known_invoice_ids=set(train["invoices"]["invoice_id"])
    )
    later["invoices"] = pd.concat([train["invoices"], later["invoices"]], ignore_index=True)
    return train, test, later, later_month, cfg


def build(family: str, params: dict):
    from ledgerlink.matching.registry import build_matcher

    return build_matcher(family, **params)


def evaluate_timed(model, data: dict, repeats: int):
    from ledgerlink.evaluation.evaluate import evaluate

    runs = [evaluate(model, data) for _ in range(max(1, repeats))]
    e = runs[0]
    e.metrics["ms_per_1k_transfers"] = statistics.median(r.metrics["ms_per_1k_transfers"] for r in runs)
    return e


def fmt_row(name: str, m: dict, train_s: float | None) -> str:
    return (
        f"{name:<22} {m['pair_precision']:>7.4f} {m['pair_recall']:>7.4f} {m['pair_f1']:>7.4f} "
        f"{m['exact_set_accuracy']:>7.4f} {m['auto_match_rate']:>7.4f} {m['auto_match_precision']:>8.4f} "
        f"{m['blocking_recall']:>8.4f} {('-' if train_s is None else f'{train_s:.1f}'):>8} "
        f"{m['ms_per_1k_transfers']:>9.0f}"
    )


HEADER = (
    f"{'model':<22} {'pair_P':>7} {'pair_R':>7} {'pair_F1':>7} {'exact':>7} {'auto':>7} {'auto_P':>8} "
    f"{'blocking':>8} {'train_s':>8} {'ms/1k_tr':>9}"
)

# payment shapes (issue 15): truth-table masks; "pays nothing" shapes are judged on exact-set accuracy only
SHAPES = {
    "single": lambda t: t["kind"].eq("single"),
    "multi": lambda t: t["kind"].eq("multi"),
    "partial": lambda t: t["kind"].eq("partial"),
    "instalment": lambda t: t["kind"].eq("instalment"),
    "remittance": lambda t: t["kind"].eq("remittance"),
    "remittance_partial": lambda t: t["remittance_partial"],
    "description_ref": lambda t: t["number_in_title"].eq("reference"),
    "overpayment": lambda t: t["overpayment"],
    "credit_note": lambda t: t["credit_note"],
    "duplicate": lambda t: t["reason"].eq("duplicate"),
    "pays_nothing": lambda t: t["kind"].eq("none"),
    "foreign_currency": lambda t: t["foreign_currency"],
    "large_amount": lambda t: t["large_amount"],
    "batch_issued": lambda t: t["batch_issued"],
}


def truth_table(cfg: dict):
    """The generator's truth per transfer for the warehouse's synthetic config (the same seed gives the same
    world)."""
    from ledgerlink.data.synthetic import SyntheticConfig, generate

    syn = cfg["synthetic"]
    syn = syn if isinstance(syn, SyntheticConfig) else SyntheticConfig(**syn)
    return generate(syn)["truth"]


def shape_rows(outcomes, truth) -> dict[str, dict]:
    """Per shape: n, pair recall, exact-set accuracy, auto-match rate and precision."""
    o = outcomes.drop(columns=[c for c in truth.columns if c in outcomes.columns and c != "transfer_id"])
    o = o.merge(truth, on="transfer_id", how="left")
    rows = {}
    for name, mask in SHAPES.items():
        sel = o[mask(o).fillna(False).astype(bool)]
        tp, fn = float(sel["tp"].sum()), float(sel["fn"].sum())
        auto = sel["auto"].astype(bool)
        rows[name] = {
            "n": int(len(sel)),
            "pair_recall": tp / (tp + fn) if tp + fn else float("nan"),
            "exact": float(sel["exact"].mean()) if len(sel) else float("nan"),
            "auto": float(auto.mean()) if len(sel) else float("nan"),
            "auto_precision": float(sel.loc[auto, "exact"].mean()) if auto.any() else float("nan"),
        }
    return rows


def print_shapes(title: str, rows: dict[str, dict]) -> None:
    print(f"\n{title}")
    print(f"{'shape':<20} {'n':>6} {'recall':>7} {'exact':>7} {'auto':>7} {'auto_P':>7}")
    for name, r in rows.items():
        print(
            f"{name:<20} {r['n']:>6} {r['pair_recall']:>7.4f} {r['exact']:>7.4f} {r['auto']:>7.4f} "
            f"{r['auto_precision']:>7.4f}"
        )


KEYS = (
    "pair_f1",
    "pair_precision",
    "pair_recall",
    "exact_set_accuracy",
    "auto_match_rate",
    "auto_match_precision",
    "blocking_recall",
)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("months", nargs="?", type=int, default=6, help="train on the first k collected months (default 6)")
    ap.add_argument("--families", default="rules,xgboost,transformer")
    ap.add_argument("--seed", type=int, default=None, help="synthetic data seed (default: the config's, 7)")
    ap.add_argument("--description-only", action="store_true", help="only invoices.description and transfers.title")
    ap.add_argument("--repeats", type=int, default=3, help="match() runs per evaluation; the median time is reported")
    ap.add_argument("--transfers-per-month", type=int, default=None, help="volume: transfers a month (default 800)")
    ap.add_argument("--contractors", type=int, default=None, help="volume: contractors (default 200)")
    ap.add_argument("--xgboost-params", default="{}", help="JSON params for the xgboost family")
    ap.add_argument(
        "--transformer-params",
        default="{}",
        help='JSON params for the transformer family (e.g. \'{"checkpoint": "/path/to/model"}\')',
    )
    args = ap.parse_args()

    home = Path(tempfile.mkdtemp(prefix="ledgerlink-quality-"))
    os.environ["LEDGERLINK_HOME"] = str(home)
    t0 = time.perf_counter()
    size = {
        k: v
        for k, v in (("transfers_per_month", args.transfers_per_month), ("contractors", args.contractors))
        if v is not None
    }
    train, test, later, later_month, cfg = load_data(args.months, args.seed, args.description_only, home, size)
    truth = truth_table(cfg)
    print(
        f"data: train {len(train['transfers'])} transfers / {len(train['invoices'])} invoices (months 1-{args.months}, "
        f"month 1 without its frozen test split); frozen test {len(test['transfers'])} transfers (month 1); "
        f"later month {later_month}: {len(later['transfers'])} transfers; prepared in {time.perf_counter() - t0:.1f}s"
        + ("; description-only" if args.description_only else ""),
        flush=True,
    )

    params = {
        "xgboost": json.loads(args.xgboost_params),
        "transformer": json.loads(args.transformer_params),
        "rules": {},
    }
    results = {}
    for family in [f.strip() for f in args.families.split(",") if f.strip()]:
        model = build(family, params.get(family, {}))
        start = time.perf_counter()
        model.fit(train["invoices"], train["transfers"], train["links"])
        train_s = None if family == "rules" else time.perf_counter() - start
        results[family] = (
            train_s,
            evaluate_timed(model, test, args.repeats),
            evaluate_timed(model, later, args.repeats),
            getattr(model, "training_summary_", {}),
        )
        print(f"  {family}: trained in {0 if train_s is None else train_s:.1f}s", flush=True)

    for title, idx in (
        ("FROZEN TEST SET (month-1 test split, as the training pipeline scores)", 1),
        (f"LATER FULL MONTH {later_month} (month k+1, invoices of months 1..k+1)", 2),
    ):
        print(f"\n{title}: {len(test['transfers']) if idx == 1 else len(later['transfers'])} transfers")
        print(HEADER)
        for family, r in results.items():
            print(fmt_row(family, r[idx].metrics, r[0]))
    for family, r in results.items():
        s = r[3]
        if s.get("validation_transfers"):
            print(
                f"{family}: auto threshold {s.get('auto_threshold'):.3f} (out-of-fold on {s['validation_transfers']} "
                f"training transfers: auto {s['validation_auto_rate']:.3f} at precision "
                f"{s['validation_auto_precision']:.4f}); blocking recall on training {s['blocking_recall_train']:.4f}"
            )

    shapes = {}
    for family, r in results.items():
        if family == "rules":
            continue
        shapes[family] = {
            "frozen_test": shape_rows(r[1].outcomes, truth),
            "later_month": shape_rows(r[2].outcomes, truth),
        }
        print_shapes(f"{family}, per payment shape, frozen test", shapes[family]["frozen_test"])
        print_shapes(f"{family}, per payment shape, later month {later_month}", shapes[family]["later_month"])

    learnt = {f: r for f, r in results.items() if f != "rules"} or results
    best = max(learnt, key=lambda f: learnt[f][1].metrics["pair_f1"])
    out = {k: round(float(results[best][1].metrics[k]), 4) for k in KEYS}
    out["rules_pair_f1"] = round(float(results["rules"][1].metrics["pair_f1"]), 4) if "rules" in results else None
    out["model"] = best
    out["later_month"] = {k: round(float(results[best][2].metrics[k]), 4) for k in KEYS}
    out["later_month"]["rules_pair_f1"] = (
        round(float(results["rules"][2].metrics["pair_f1"]), 4) if "rules" in results else None
    )
    if best in shapes:
        out["shapes"] = {
            where: {name: {k: round(v, 4) for k, v in row.items()} for name, row in rows.items()}
            for where, rows in shapes[best].items()
        }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
