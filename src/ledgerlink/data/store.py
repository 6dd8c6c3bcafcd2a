"""The dataset store: Parquet files and one manifest, on any fsspec filesystem (a folder or gs://).

Layout under the root URI::

    manifest.json                      the only source of truth: committed months and the test set
    months/<YYYY-MM>/<fp>/{invoices,transfers,links}.parquet   training data of one month
    test/<fp>/{invoices,transfers,links}.parquet               the frozen test set (written once)

A month is written to a fresh folder named by its content fingerprint and becomes visible only when
the manifest that names it is committed, last. A crash mid-write leaves unreferenced files that
readers never see. Collecting a month again with the same content changes nothing; with different
content it is refused, because months are append-only and the test set is never rewritten.
Steps pass ``DatasetRef`` (URI, months, row counts, fingerprints), never DataFrames.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import io
import json
import os
import time
import uuid
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field

import fsspec
import pandas as pd
from fsspec.implementations.local import LocalFileSystem

from ..locks import exclusive_lock
from .contract import TABLES

MANIFEST = "manifest.json"
LOCK = ".manifest.lock"  # local stores: held (flock) around the generation check and the rename
LOCK_TIMEOUT_S = 120
TMP_SUFFIX = ".tmp"  # manifests being written; one left behind is a crash's leftover (garbage())
GARBAGE_MIN_AGE_S = 3600.0  # remove_garbage spares younger leftovers: they may be a running collection's


class StoreError(RuntimeError):
    """The store refuses an operation that would lose or rewrite data."""


class ConcurrentCommitError(StoreError):
    """Another writer committed the manifest first."""


def fingerprint(tables: dict[str, pd.DataFrame]) -> str:
    """Content hash of canonical frames, independent of row order and of Parquet's byte layout."""
    h = hashlib.sha256()
    for name in sorted(tables):
        df = tables[name]
        key = [c for c in ("transfer_id", "invoice_id") if c in df.columns]
        df = df.sort_values(key).reset_index(drop=True)[sorted(df.columns)]
        h.update(name.encode())
        h.update(",".join(df.columns).encode())
        h.update(pd.util.hash_pandas_object(df.astype(str), index=False).to_numpy().tobytes())
    return h.hexdigest()[:16]


@dataclass
class DatasetRef:
    """What steps pass instead of data: where it is and what it holds."""

    uri: str
    months: list[str]
    train_rows: dict[str, int]
    test_rows: dict[str, int]
    train_fingerprint: str
    test_fingerprint: str
    test_month: str
    new_month: str | None = None
    collected: bool = False
    message: str = ""

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, raw: dict) -> "DatasetRef":
        return cls(**raw)

    def open(self) -> "DatasetStore":
        """The store this reference points into, from the same factory as ``open_store`` (a ``gs://`` URI
        gets the GCS store with its commit preconditions)."""
        return store_at(self.uri)


@dataclass
class Manifest:
    months: dict[str, dict] = field(default_factory=dict)
    test: dict | None = None
    generation: int = 0

    @classmethod
    def from_json(cls, text: str) -> "Manifest":
        raw = json.loads(text)
        return cls(months=raw.get("months", {}), test=raw.get("test"), generation=raw.get("generation", 0))

    def to_json(self) -> str:
        return json.dumps(
            {"months": self.months, "test": self.test, "generation": self.generation}, indent=2, sort_keys=True
        )


def _named_paths(manifest: Manifest) -> list[str]:
    """The folders a manifest makes visible."""
    return [v["path"] for v in manifest.months.values()] + ([manifest.test["path"]] if manifest.test else [])


def _new_files(manifest: Manifest, current: Manifest) -> list[str]:
    """The Parquet files ``manifest`` names and ``current`` does not."""

    def files(m: Manifest) -> set[str]:
        entries = [*m.months.values(), *([m.test] if m.test else [])]
        return {f"{e['path']}/{t}.parquet" for e in entries for t in e["rows"]}

    return sorted(files(manifest) - files(current))


def _fsync_dir(path: str) -> None:
    """Make a rename in ``path`` durable (POSIX: the directory entry is data of the directory)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class DatasetStore:
    def __init__(self, uri: str, fs: fsspec.AbstractFileSystem | None = None):
        self.uri = uri.rstrip("/")
        if fs is None:
            fs, root = fsspec.core.url_to_fs(self.uri)
        else:
            root = fs._strip_protocol(self.uri)
        self.fs, self.root = fs, root.rstrip("/")

    # -- paths and io -------------------------------------------------------------------------
    def _path(self, *parts: str) -> str:
        return "/".join([self.root, *parts])

    def _write_parquet(self, df: pd.DataFrame, path: str) -> None:
        buf = io.BytesIO()
        df.to_parquet(buf, index=False)
        self.fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
        with self.fs.open(path, "wb") as f:
            f.write(buf.getvalue())

    def _read_parquet(self, path: str) -> pd.DataFrame:
        with self.fs.open(path, "rb") as f:
            return pd.read_parquet(io.BytesIO(f.read()))

    # -- manifest -----------------------------------------------------------------------------
    def read_manifest(self) -> Manifest:
        path = self._path(MANIFEST)
        if not self.fs.exists(path):
            return Manifest()
        with self.fs.open(path, "rb") as f:
            return Manifest.from_json(f.read().decode())

    @contextlib.contextmanager
    def _commit_lock(self) -> Iterator[None]:
        """Hold the store's commit lock: an exclusive ``flock`` on ``.manifest.lock`` in the root.

        The generation check and the rename must be one step: without the lock, two writers adding
        different months both passed the check and the second rename dropped the first month (20 of
        20 trials, issue 11.5). The kernel releases a ``flock`` when its holder dies, so a killed
        writer never leaves a stale lock behind. Only a local folder gets here: GCS overrides
        ``_commit`` with generation preconditions, and other filesystems have no atomic commit.
        """
        if not isinstance(self.fs, LocalFileSystem):
            protocol = self.fs.protocol if isinstance(self.fs.protocol, str) else self.fs.protocol[0]
            raise StoreError(
                f"the dataset store at {self.uri} is on '{protocol}', where a manifest commit cannot be made "
                "atomic; use a local folder (file lock) or gs:// (generation preconditions)"
            )
        path = self._path(LOCK)

        def timeout(holder: str) -> StoreError:
            return StoreError(
                f"another writer (process {holder}) has held the commit lock {path} for over {LOCK_TIMEOUT_S} s; "
                "nothing was committed. Re-run when it has finished."
            )

        with exclusive_lock(path, LOCK_TIMEOUT_S, timeout):
            yield

    def _commit(self, manifest: Manifest, expected_generation: int) -> None:
        """Write the manifest last, under the commit lock: check the generation, temp file, fsync, rename.

        Exactly one of two racing writers commits; the other gets ``ConcurrentCommitError`` and its
        data files stay unreferenced (``garbage()``). It is not retried here: the checks of
        ``add_month`` (order, test set, leaks) were made against the old manifest, so the caller
        re-runs, which is safe and picks up the next month.
        """
        with self._commit_lock():
            current = self.read_manifest()
            if current.generation != expected_generation:
                raise ConcurrentCommitError(self._refusal(manifest, current))
            missing = [p for p in _new_files(manifest, current) if not self.fs.exists(self._path(p))]
            if missing:
                raise StoreError(
                    f"the manifest would name files that are gone: {missing}; were they removed as garbage "
                    "while this run wrote them? Nothing was committed; re-run."
                )
            manifest.generation = expected_generation + 1
            path = self._path(MANIFEST)
            tmp = self._path(f".{MANIFEST}.{uuid.uuid4().hex}{TMP_SUFFIX}")
            with open(tmp, "wb") as f:
                f.write(manifest.to_json().encode())
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
            _fsync_dir(self.root)

    def _refusal(self, ours: Manifest, theirs: Manifest) -> str:
        adding = sorted(m for m in ours.months if theirs.months.get(m) != ours.months[m]) or ["(none)"]
        newest = max(theirs.months) if theirs.months else "(none)"
        first = adding[0] if adding[0] in theirs.months else newest
        return (
            f"another collection committed month {first} first (manifest {self.uri}, now at generation "
            f"{theirs.generation}, newest month {newest}); nothing was written by this run's manifest for "
            f"month {', '.join(adding)}; its data files are unreferenced (see garbage()). "
            "Re-run to pick up the next month."
        )

    # -- public API ---------------------------------------------------------------------------
    def collected_months(self) -> list[str]:
        return sorted(self.read_manifest().months)

    def add_month(
        self,
        month: str,
        train: dict[str, pd.DataFrame],
        test: dict[str, pd.DataFrame] | None = None,
        source_fingerprint: str | None = None,
    ) -> tuple[bool, str]:
        """Append one month of training data (and, on the first month only, the frozen test set).

        Returns (written, message). Same content again: (False, "...unchanged"). Different content
        for a collected month, or a second test set: StoreError. ``source_fingerprint`` identifies the
        month as extracted (before any split), so a re-collection is recognised however it is split.
        """
        for part, tables in (("train", train), ("test", test)):
            missing = [] if tables is None else [name for name in TABLES if name not in tables]
            if missing:  # written as is, the month could never be read back
                raise StoreError(f"month {month}: the {part} part has no table(s) {missing}; nothing was written")
        manifest = self.read_manifest()
        generation = manifest.generation
        fp = source_fingerprint or fingerprint(train | ({f"test_{k}": v for k, v in test.items()} if test else {}))
        if month in manifest.months:
            old = manifest.months[month]["fingerprint"]
            if old == fp:
                return False, f"month {month} was already collected (fingerprint {fp}); nothing changed"
            raise StoreError(
                f"month {month} was already collected with fingerprint {old}, but the warehouse now gives {fp}. "
                "Collected months are append-only and the frozen test set is never rewritten; "
                "load late corrections as a new month."
            )
        if manifest.months and month < max(manifest.months):
            raise StoreError(
                f"month {month} is older than the newest collected month {max(manifest.months)}; "
                "months are collected in order"
            )
        if test is not None and manifest.test is not None:
            raise StoreError(
                f"the frozen test set already exists (from {manifest.test['month']}); it is never rewritten"
            )
        if test is None and manifest.test is None:
            raise StoreError("the first collected month must create the frozen test set")

        overlap = set(test["transfers"]["transfer_id"]) & set(train["transfers"]["transfer_id"]) if test else set()
        if manifest.test is not None:
            overlap |= set(self.load_test()["transfers"]["transfer_id"]) & set(train["transfers"]["transfer_id"])
        if overlap:
            raise StoreError(
                f"{len(overlap)} transfer_id(s) would be in both train and test, e.g. {sorted(overlap)[:3]}"
            )

        token = f"{fp}-{uuid.uuid4().hex[:8]}"
        month_dir = f"months/{month}/{token}"
        for name, df in train.items():
            self._write_parquet(df, self._path(month_dir, f"{name}.parquet"))
        manifest.months[month] = {
            "path": month_dir,
            "fingerprint": fp,
            "rows": {k: int(len(v)) for k, v in train.items()},
            "committed_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        }
        if test is not None:
            test_fp = fingerprint(test)
            test_dir = f"test/{test_fp}-{uuid.uuid4().hex[:8]}"
            for name, df in test.items():
                self._write_parquet(df, self._path(test_dir, f"{name}.parquet"))
            manifest.test = {
                "month": month,
                "path": test_dir,
                "fingerprint": test_fp,
                "rows": {k: int(len(v)) for k, v in test.items()},
            }
        self._commit(manifest, generation)
        return True, f"month {month} committed (fingerprint {fp})"

    def load_test(self) -> dict[str, pd.DataFrame]:
        manifest = self.read_manifest()
        if manifest.test is None:
            raise StoreError(f"no frozen test set in {self.uri}; run the data collection first")
        return {t: self._read_parquet(self._path(manifest.test["path"], f"{t}.parquet")) for t in TABLES}

    def load_train(self, months: list[str] | None = None) -> dict[str, pd.DataFrame]:
        """Training data of the given (default: all) committed months, concatenated."""
        manifest = self.read_manifest()
        months = sorted(manifest.months) if months is None else months
        missing = [m for m in months if m not in manifest.months]
        if missing:
            raise StoreError(f"months not in the store {self.uri}: {missing}")
        parts: dict[str, list[pd.DataFrame]] = {t: [] for t in TABLES}
        for m in months:
            for t in TABLES:
                parts[t].append(self._read_parquet(self._path(manifest.months[m]["path"], f"{t}.parquet")))
        return {t: pd.concat(v, ignore_index=True) if v else pd.DataFrame() for t, v in parts.items()}

    def ref(self, new_month: str | None = None, collected: bool = False, message: str = "") -> DatasetRef:
        manifest = self.read_manifest()
        months = sorted(manifest.months)
        train_rows = {t: int(sum(manifest.months[m]["rows"][t] for m in months)) for t in TABLES}
        train_fp = hashlib.sha256("".join(manifest.months[m]["fingerprint"] for m in months).encode()).hexdigest()[:16]
        test = manifest.test or {"rows": {}, "fingerprint": "", "month": ""}
        return DatasetRef(
            uri=self.uri,
            months=months,
            train_rows=train_rows,
            test_rows=test["rows"],
            train_fingerprint=train_fp,
            test_fingerprint=test["fingerprint"],
            test_month=test["month"],
            new_month=new_month,
            collected=collected,
            message=message,
        )

    def garbage(self) -> list[str]:
        """What no manifest names, relative to the root: month and test folders of interrupted or refused
        writes, and manifests a crash left unrenamed (``.manifest.json.*.tmp``). Readers never see any of
        it; ``remove_garbage`` deletes it."""
        live = set(_named_paths(self.read_manifest()))
        found = [self._relative(p) for p in self.fs.glob(self._path(f".{MANIFEST}.*{TMP_SUFFIX}"))]
        for top, depth in (("months", 2), ("test", 1)):
            base = self._path(top)
            if self.fs.exists(base):
                found += [rel for rel in map(self._relative, self.fs.glob(base + "/*" * depth)) if rel not in live]
        return sorted(found)

    def remove_garbage(self, min_age_s: float = GARBAGE_MIN_AGE_S, dry_run: bool = False) -> list[str]:
        """Delete what ``garbage()`` lists and nothing was written to for ``min_age_s``; return what went
        (``dry_run``: what would go).

        The age spares the folder of a collection that is still writing (it is garbage until its commit).
        On a local store the commit lock is held as well, and a commit checks that its files still exist,
        so a collection whose folder was removed fails cleanly instead of naming missing files. A path
        the manifest names is never removed, whatever the listing says.
        """
        guard = self._commit_lock() if isinstance(self.fs, LocalFileSystem) else contextlib.nullcontext()
        with guard:
            live = set(_named_paths(self.read_manifest()))
            now, removed = time.time(), []
            for rel in self.garbage():
                if any(rel == p or rel.startswith(p + "/") or p.startswith(rel + "/") for p in live):
                    continue
                path = self._path(rel)
                if now - self._newest_mtime(path) < min_age_s:
                    continue
                if not dry_run:
                    self.fs.rm(path, recursive=True)
                removed.append(rel)
        return removed

    def _relative(self, path: str) -> str:
        return (path[len(self.root) + 1 :] if path.startswith(self.root) else path).lstrip("/")

    def _newest_mtime(self, path: str) -> float:
        """Seconds since the epoch of the newest write under ``path`` (a file or a folder)."""
        infos = [self.fs.info(path)]
        if infos[0]["type"] == "directory":
            infos += list(self.fs.find(path, detail=True).values())
        stamps = [_epoch(i.get("mtime", i.get("updated"))) for i in infos]
        return max((t for t in stamps if t is not None), default=time.time())


def _epoch(stamp) -> float | None:
    """fsspec reports times as epoch floats (local), datetimes (gcsfs) or ISO strings."""
    if stamp is None:
        return None
    if isinstance(stamp, (int, float)):
        return float(stamp)
    if isinstance(stamp, str):
        stamp = dt.datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    return stamp.timestamp() if isinstance(stamp, dt.datetime) else None


def open_store(cfg: dict) -> DatasetStore:
    """The dataset store named in config (a local folder by default, gs://bucket/prefix on GCP)."""
    return store_at(cfg["store"]["uri"])


def store_at(uri: str) -> DatasetStore:
    """The store at ``uri``: ``GCSDatasetStore`` for gs://, the fsspec ``DatasetStore`` otherwise."""
    if uri.startswith("gs://"):
        from .gcs import GCSDatasetStore

        return GCSDatasetStore(uri)
    return DatasetStore(uri)
