"""Package a trained Matcher as a BentoML model and Bento, and export a Docker build context.

- ``save_to_model_store``: copy a saved Matcher directory into the BentoML model store, with labels
  (ZenML model name, version, stage) and metadata (metrics, training months, auto threshold) that
  ``GET /model`` of the service reports.
- ``build_bento``: build ``bentos/bentofile.yaml``. The bento carries the ``ledgerlink`` source (so
  the image needs nothing from the repository), the exact model tag (``models:`` plus the
  ``LEDGERLINK_MODEL_TAG`` env var), the Python version and packages pinned to the versions installed
  here (the model was trained with them; xgboost boosters and pandas parsing must not drift).
- ``export_build_context``: the directory ``bentoml containerize`` would hand to Docker (bento files,
  models, generated Dockerfile), made without a Docker engine, with the Dockerfile also at the root
  so Cloud Build's ``docker build .`` finds it.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import re
import shutil
import sys
import tempfile
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any

import yaml

logger = logging.getLogger(__name__)

MODEL_NAME = "ledgerlink"
MATCHER_SUBDIR = "matcher"  # the Matcher's files inside the BentoML model directory
MODEL_TAG_ENV = "LEDGERLINK_MODEL_TAG"
IMAGE_TAG_ENV = "LEDGERLINK_IMAGE_TAG"
# Label keys on the BentoML model (values must be strings).
LABEL_MODEL_NAME, LABEL_MODEL_VERSION, LABEL_STAGE = "zenml_model_name", "zenml_model_version", "stage"
REPO_ROOT = Path(__file__).resolve().parents[3]
DEFAULT_BENTOFILE = REPO_ROOT / "bentos" / "bentofile.yaml"
# Image package -> distribution whose installed version it must match (xgboost-cpu is the same
# library as xgboost without the 200 MB CUDA NCCL dependency).
_SAME_AS = {"xgboost-cpu": "xgboost"}
_REQ = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)(\[[^\]]*\])?\s*(.*)$")


# --------------------------------------------------------------------------------------------
# Model store
# --------------------------------------------------------------------------------------------


def _clean_metadata(value: Any) -> Any:
    """BentoML metadata takes basic types only: drop None/NaN, stringify the rest it cannot hold."""
    if isinstance(value, dict):
        return {str(k): _clean_metadata(v) for k, v in value.items() if _clean_metadata(v) is not None}
    if isinstance(value, (list, tuple)):
        return [c for c in (_clean_metadata(v) for v in value) if c is not None]
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):  # numpy scalars
        return _clean_metadata(value.item())
    if isinstance(value, (str, bool, int, float)):
        return value
    return str(value)


def save_to_model_store(
    model_dir: str | os.PathLike,
    name: str = MODEL_NAME,
    labels: dict | None = None,
    metadata: dict | None = None,
    *,
    check_loads: bool = True,
):
    """Copy a saved Matcher directory into the BentoML model store and return the new ``Tag``.

    ``labels``: e.g. ``{"zenml_model_name": ..., "zenml_model_version": "7", "stage": "production"}``
    (values become strings). ``metadata``: e.g. ``{"metrics": {...}, "months": [...], "auto_threshold": 0.93,
    "currencies": ["EUR", "PLN"]}``; the service rejects other currencies when ``currencies`` is given.
    ``check_loads`` loads the directory with ``load_matcher`` (any model family) first, so a broken model never gets
    a tag.
    """
    import bentoml

    src = Path(model_dir)
    if not src.is_dir() or not any(src.iterdir()):
        raise FileNotFoundError(f"model_dir {src} is not a directory with a saved Matcher in it")
    if check_loads:
        from ledgerlink.matching.base import load_matcher

        load_matcher(src)
    str_labels = {str(k): str(v) for k, v in (labels or {}).items() if v is not None}
    with bentoml.models.create(name, labels=str_labels, metadata=_clean_metadata(metadata or {})) as model:
        shutil.copytree(src, model.path_of(MATCHER_SUBDIR))
    logger.info("saved %s to the BentoML model store", model.tag)
    return model.tag


def model_info(tag: str | None = None) -> dict[str, Any]:
    """What ``GET /model`` reports, from the model store entry's labels and metadata."""
    import bentoml

    tag = tag or os.environ.get(MODEL_TAG_ENV, f"{MODEL_NAME}:latest")
    model = bentoml.models.get(tag)
    labels, meta = dict(model.info.labels), dict(model.info.metadata)
    return {
        "name": labels.get(LABEL_MODEL_NAME, model.tag.name),
        "version": labels.get(LABEL_MODEL_VERSION),
        "stage": labels.get(LABEL_STAGE),
        "bento_model_tag": str(model.tag),
        "metrics": meta.get("metrics", {}),
        "training_months": meta.get("months", []),
        "auto_threshold": meta.get("auto_threshold", meta.get("threshold")),  # "threshold": models saved before
        "image_tag": os.environ.get(IMAGE_TAG_ENV) or labels.get("image_tag"),
        "created_at": model.info.creation_time.isoformat(),
    }


# --------------------------------------------------------------------------------------------
# Bento
# --------------------------------------------------------------------------------------------


def _installed(dist: str) -> str | None:
    try:
        return importlib_metadata.version(dist)
    except importlib_metadata.PackageNotFoundError:
        return None


def pin_packages(packages: list[str]) -> list[str]:
    """Re-pin each requirement to the version installed in this (training) environment."""
    out = []
    for req in packages:
        m = _REQ.match(req)
        if not m:
            out.append(req)
            continue
        name, extras, spec = m.group(1), m.group(2) or "", m.group(3).strip()
        version = _installed(_SAME_AS.get(name.lower(), name))
        if version is None:
            logger.warning("%s is not installed here; keeping the bentofile pin %r", name, req)
            out.append(req)
            continue
        if spec and spec != f"=={version}":
            logger.info("re-pinning %s%s to the installed ==%s", name, spec, version)
        out.append(f"{name}{extras}=={version}")
    return out


def load_bentofile(bentofile: str | os.PathLike = DEFAULT_BENTOFILE) -> dict[str, Any]:
    return yaml.safe_load(Path(bentofile).read_text())


@contextlib.contextmanager
def _env(name: str, value: str):
    old = os.environ.get(name)
    os.environ[name] = value
    try:
        yield
    finally:
        if old is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = old


def build_bento(
    model_tag,
    *,
    bentofile: str | os.PathLike | None = None,
    build_ctx: str | os.PathLike | None = None,
    version: str | None = None,
    labels: dict | None = None,
    pin_installed: bool = True,
):
    """Build the Bento for ``model_tag`` and return its ``Tag``.

    ``build_ctx`` defaults to the repository root (the bentofile's ``include`` paths are relative to it).
    The bento names the model explicitly (``models:``) and sets ``LEDGERLINK_MODEL_TAG`` to it, so the
    container serves exactly this model. Needs no network: ``lock_packages`` is off in the bentofile.
    """
    import bentoml

    bentofile = Path(bentofile or DEFAULT_BENTOFILE)
    build_ctx = Path(build_ctx or bentofile.resolve().parents[1])
    cfg = load_bentofile(bentofile)
    model = bentoml.models.get(model_tag)  # NotFound here is clearer than inside the build
    tag = str(model.tag)

    cfg.pop("models", None)
    python = dict(cfg.get("python") or {})
    if pin_installed and python.get("packages"):
        python["packages"] = pin_packages(list(python["packages"]))
    cfg["python"] = python
    cfg["envs"] = [e for e in (cfg.get("envs") or []) if e.get("name") != MODEL_TAG_ENV] + [
        {"name": MODEL_TAG_ENV, "value": tag}
    ]
    cfg["models"] = [tag]
    all_labels = {**(cfg.get("labels") or {}), **{k: str(v) for k, v in (labels or {}).items()}, "model_tag": tag}
    for k in (LABEL_MODEL_NAME, LABEL_MODEL_VERSION, LABEL_STAGE):
        if k in model.info.labels:
            all_labels.setdefault(k, model.info.labels[k])
    cfg["labels"] = all_labels

    added = str(build_ctx / "src")
    sys.path.insert(0, added)  # the service imports ledgerlink even when it is not installed
    try:
        # Through a bentofile, so the options are parsed exactly as `bentoml build` parses them.
        with tempfile.TemporaryDirectory(prefix="ledgerlink-bentofile-") as tmp, _env(MODEL_TAG_ENV, tag):
            resolved = Path(tmp, "bentofile.yaml")
            resolved.write_text(yaml.safe_dump(cfg, sort_keys=False))
            bento = bentoml.bentos.build_bentofile(str(resolved), version=version, build_ctx=str(build_ctx))
    finally:
        with contextlib.suppress(ValueError):
            sys.path.remove(added)
    logger.info("built bento %s with model %s", bento.tag, tag)
    return bento.tag


def export_build_context(bento_tag, out_dir: str | os.PathLike, *, enable_buildkit: bool = False) -> Path:
    """Write the Docker build context for ``bento_tag`` to ``out_dir`` and return it.

    Uses the same code path as ``bentoml containerize`` (``construct_containerfile``): the bento's
    files, its models copied into ``models/``, and the generated ``env/docker/Dockerfile``, which is
    also copied to ``Dockerfile`` at the root. BuildKit syntax is off by default, so the plain
    ``docker build .`` of Cloud Build's docker builder works with or without BuildKit.
    """
    import bentoml

    try:
        from bentoml._internal.container import construct_containerfile
    except ImportError as exc:  # internal API; fail loudly if a BentoML upgrade moves it
        raise RuntimeError(
            f"this BentoML version ({bentoml.__version__}) has no construct_containerfile: {exc}"
        ) from exc

    out = Path(out_dir)
    if out.exists() and any(out.iterdir()):
        raise FileExistsError(f"{out} is not empty; export into a fresh directory")
    bento = bentoml.bentos.get(bento_tag)
    with construct_containerfile(bento, enable_buildkit=enable_buildkit, add_header=True) as (ctx, dockerfile):
        shutil.copytree(ctx, out, dirs_exist_ok=True, symlinks=True)
        shutil.copyfile(dockerfile, out / "Dockerfile")
    return out
