"""Export a promoted matcher to a plain directory that a service can load, with a pointer to production.

Layout: ``<root>/<model_name>/<version>/`` holds the matcher files and ``info.json``;
``<root>/<model_name>/production.json`` names the current production version. The pointer is
replaced atomically after the files are complete, so a reader never sees a half-written model; a re-export
of a version swaps whole directories.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from ..matching.base import save_matcher


def export_model(matcher, root: str | Path, model_name: str, version: str, info: dict) -> Path:
    target = Path(root) / model_name / str(version)
    tmp = target.with_name(target.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    save_matcher(matcher, tmp)
    (tmp / "info.json").write_text(json.dumps(info, indent=2, default=str))
    # a re-export of the same version swaps directories, so ``target`` is never half written; a crash between
    # the two renames leaves the previous copy as ``<version>.old``, which production_model_dir falls back to
    old = target.with_name(target.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if target.exists():
        target.rename(old)
    tmp.rename(target)
    shutil.rmtree(old, ignore_errors=True)
    pointer = target.parent / "production.json"
    pointer_tmp = pointer.with_suffix(".json.tmp")
    pointer_tmp.write_text(
        json.dumps({"version": str(version), "path": str(target.resolve()), **info}, indent=2, default=str)
    )
    os.replace(pointer_tmp, pointer)
    return target


def production_model_dir(root: str | Path, model_name: str) -> Path:
    pointer = Path(root) / model_name / "production.json"
    if not pointer.exists():
        raise FileNotFoundError(f"no production model exported under {pointer.parent}; run the training pipeline first")
    path = Path(json.loads(pointer.read_text())["path"])
    old = path.with_name(path.name + ".old")
    return old if not path.exists() and old.exists() else path
