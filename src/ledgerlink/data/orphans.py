"""Remove what crashed or refused runs left behind in the data area, never anything a manifest names.

A collection killed mid-write, or one that lost a commit race, leaves files that no reader ever sees:
month and test folders no manifest names, and manifests that were written but never renamed
(``DatasetStore.garbage()``). A warehouse seeding killed before its rename leaves a
``<warehouse>.<id>.seeding`` file. They cost only disk space; this command lists and deletes them::

    python -m ledgerlink.data.orphans --config configs/local.yaml --dry-run   # list
    python -m ledgerlink.data.orphans --config configs/local.yaml             # delete (make clean-orphans)
    python -m ledgerlink.data.orphans --uri gs://bucket/prefix/datasets       # another store

Leftovers younger than ``--min-age-s`` (default one hour) are kept: they may belong to a collection
that is still running.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from .store import GARBAGE_MIN_AGE_S, DatasetStore, open_store
from .warehouse import seeding_leftovers


def remove(
    store: DatasetStore,
    warehouse_path: str | Path | None = None,
    min_age_s: float = GARBAGE_MIN_AGE_S,
    dry_run: bool = False,
) -> list[str]:
    """Delete the store's garbage and the warehouse's seeding leftovers older than ``min_age_s``; return what
    went (``dry_run``: what would go)."""
    removed = [f"{store.uri}/{rel}" for rel in store.remove_garbage(min_age_s=min_age_s, dry_run=dry_run)]
    if warehouse_path is not None:
        now = time.time()
        for p in seeding_leftovers(warehouse_path):
            if now - p.stat().st_mtime >= min_age_s:
                if not dry_run:
                    p.unlink(missing_ok=True)
                removed.append(str(p))
    return removed


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m ledgerlink.data.orphans", description=__doc__.split("\n\n")[0])
    where = ap.add_mutually_exclusive_group()
    where.add_argument("--config", help="run config whose store (and DuckDB warehouse) to clean (default: defaults)")
    where.add_argument("--uri", help="a dataset store URI (a folder or gs://bucket/prefix) instead of a config")
    ap.add_argument("--min-age-s", type=float, default=GARBAGE_MIN_AGE_S, help="keep younger leftovers (seconds)")
    ap.add_argument("--dry-run", action="store_true", help="list what would be removed, remove nothing")
    args = ap.parse_args(argv)
    if args.uri:
        store, warehouse_path = (open_store({"store": {"uri": args.uri}}), None)
    else:
        from ledgerlink.config import load_config

        cfg = load_config(args.config)
        store = open_store(cfg)
        warehouse_path = cfg["warehouse"]["path"] if cfg["warehouse"]["kind"] == "duckdb" else None
    removed = remove(store, warehouse_path, min_age_s=args.min_age_s, dry_run=args.dry_run)
    verb = "would remove" if args.dry_run else "removed"
    for path in removed:
        print(f"{verb} {path}")
    print(
        f"{verb} {len(removed)} leftover(s) older than {args.min_age_s:g} s; "
        "the manifest and everything it names are untouched"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
