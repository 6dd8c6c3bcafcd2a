"""Image tags that Flux can order.

Flux's ImagePolicy picks the "latest" tag by sorting, not by push time, so every tag carries a
UTC timestamp with seconds precision first (two builds in the same minute still order) and the
model version second: ``20261121093000-v12``. The policy in ``stacks/gke/imagepolicy.yaml``
extracts the 14-digit timestamp and sorts it numerically.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timezone

TIMESTAMP_FORMAT = "%Y%m%d%H%M%S"
# Kept identical to spec.filterTags.pattern in stacks/gke/imagepolicy.yaml (a test checks it).
TAG_PATTERN = r"^(?P<ts>[0-9]{14})-v(?P<version>[0-9]+)$"
_TAG_RE = re.compile(TAG_PATTERN)
_VERSION_RE = re.compile(r"^v?([0-9]+)$")


@dataclass(frozen=True)
class ImageTag:
    built_at: datetime  # timezone-aware, UTC
    version: int

    def __str__(self) -> str:
        return f"{self.built_at.strftime(TIMESTAMP_FORMAT)}-v{self.version}"


def _version_number(model_version: str | int) -> int:
    if isinstance(model_version, bool):
        raise ValueError(f"model_version must be a number like 12 or 'v12', got {model_version!r}")
    if isinstance(model_version, int):
        number = model_version
    else:
        m = _VERSION_RE.match(str(model_version).strip())
        if not m:
            raise ValueError(
                "model_version must be a number like 12 or 'v12' (the ZenML model version number), "
                f"got {model_version!r}"
            )
        number = int(m.group(1))
    if number < 0:
        raise ValueError(f"model_version must not be negative, got {model_version!r}")
    return number


def image_tag(model_version: str | int, now: datetime | None = None) -> str:
    """``YYYYMMDDHHMMSS-v<version>`` in UTC. A naive ``now`` is taken to be UTC already."""
    number = _version_number(model_version)
    now = datetime.now(timezone.utc) if now is None else now
    now = now.replace(tzinfo=timezone.utc) if now.tzinfo is None else now.astimezone(timezone.utc)
    return str(ImageTag(now.replace(microsecond=0), number))


def parse_tag(tag: str) -> ImageTag:
    """Inverse of ``image_tag``; raises ``ValueError`` naming the expected form."""
    m = _TAG_RE.match(tag)
    if not m:
        raise ValueError(f"image tag {tag!r} does not look like YYYYMMDDHHMMSS-v<version> (e.g. 20261121093000-v12)")
    built_at = datetime.strptime(m.group("ts"), TIMESTAMP_FORMAT).replace(tzinfo=timezone.utc)
    return ImageTag(built_at, int(m.group("version")))


def image_uri(registry_path: str, tag: str) -> str:
    """``REGION-docker.pkg.dev/PROJECT/REPO/ledgerlink`` + tag -> full image reference."""
    path = registry_path.strip().rstrip("/")
    if not path or "://" in path:
        raise ValueError(
            f"registry_path must look like REGION-docker.pkg.dev/PROJECT/REPO/IMAGE, got {registry_path!r}"
        )
    last = path.rsplit("/", 1)[-1]
    if ":" in last or "@" in last:
        raise ValueError(f"registry_path must not carry a tag or digest already, got {registry_path!r}")
    parse_tag(tag)
    return f"{path}:{tag}"
