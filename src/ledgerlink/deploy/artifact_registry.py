"""Give an image that is already in Artifact Registry a new tag, through the Artifact Registry API (no Docker).

Why: Flux's ImagePolicy rolls out the newest timestamp tag (``stacks/gke/imagepolicy.yaml``, ``tags.py``), never an
older one. Rolling back to model version 3 therefore means pointing a NEW, newer tag (``20261201120000-v3``) at the
digest version 3's Cloud Build pushed. Nothing is rebuilt: the digest is the image that passed its smoke test and
its build, byte for byte.

The request is ``CreateTag`` (``POST /v1/{package}/tags?tagId=TAG``, body ``{"name": ..., "version": ...}``) with
the real ``ArtifactRegistryClient``. A tag that already exists (a retry within the same second) is checked with
``GetTag`` and moved with ``UpdateTag`` (``updateMask=version``) only when it points elsewhere.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import quote

WRITER_ROLE = "roles/artifactregistry.writer"  # named in the 403 message: what creating a tag needs
_HOST = re.compile(r"^(?P<location>[a-z0-9-]+)-docker\.pkg\.dev$")
_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")


class RetagError(RuntimeError):
    """A tag could not be created; the message says why and what to do."""


@dataclass(frozen=True)
class DockerPackage:
    """A Docker image in Artifact Registry: ``LOCATION-docker.pkg.dev/PROJECT/REPOSITORY/IMAGE`` (IMAGE may hold
    slashes; the API escapes them as ``%2F`` in resource names)."""

    location: str
    project: str
    repository: str
    image: str

    @classmethod
    def parse(cls, registry_path: str) -> "DockerPackage":
        parts = registry_path.strip().rstrip("/").split("/")
        m = _HOST.match(parts[0]) if parts else None
        if not m or len(parts) < 4 or not all(parts[1:]):
            raise RetagError(
                f"deploy.gcp.registry must look like LOCATION-docker.pkg.dev/PROJECT/REPOSITORY/IMAGE to retag an "
                f"image in Artifact Registry, got {registry_path!r}"
            )
        return cls(m.group("location"), parts[1], parts[2], "/".join(parts[3:]))

    @property
    def name(self) -> str:
        return (
            f"projects/{self.project}/locations/{self.location}/repositories/{self.repository}"
            f"/packages/{quote(self.image, safe='')}"
        )

    def version(self, digest: str) -> str:
        if not _DIGEST.match(digest or ""):
            raise RetagError(f"an image digest looks like sha256:<64 hex digits>, got {digest!r}")
        return f"{self.name}/versions/{digest}"

    def tag(self, tag: str) -> str:
        return f"{self.name}/tags/{tag}"


def client_for(api_endpoint: str | None = None):
    """The real ``ArtifactRegistryClient``: Application Default Credentials, or REST + anonymous credentials at
    ``api_endpoint`` (a loopback stand-in in tests)."""
    from google.cloud import artifactregistry_v1

    if api_endpoint:
        from google.api_core.client_options import ClientOptions
        from google.auth.credentials import AnonymousCredentials

        return artifactregistry_v1.ArtifactRegistryClient(
            transport="rest",
            credentials=AnonymousCredentials(),
            client_options=ClientOptions(api_endpoint=api_endpoint),
        )
    from google.auth import exceptions as auth_exc

    try:
        return artifactregistry_v1.ArtifactRegistryClient()
    except auth_exc.DefaultCredentialsError as exc:
        raise RetagError(
            "No Google Cloud credentials found for Artifact Registry: run `gcloud auth application-default login` "
            f"or set GOOGLE_APPLICATION_CREDENTIALS to a service-account key ({exc})"
        ) from None


def _explain(exc, package: DockerPackage, digest: str, tag: str) -> RetagError:
    from google.api_core import exceptions as gexc

    detail = getattr(exc, "message", None) or str(exc)
    where = f"{package.location}-docker.pkg.dev/{package.project}/{package.repository}/{package.image}"
    if isinstance(exc, gexc.Forbidden):
        return RetagError(
            f"Artifact Registry refused to tag {where}@{digest} as {tag} (HTTP 403): the account lacks "
            f"{WRITER_ROLE} on repository {package.repository!r} in project {package.project!r}. Server said: {detail}"
        )
    if isinstance(exc, gexc.NotFound):
        return RetagError(
            f"the image {where}@{digest} is not in Artifact Registry (HTTP 404: {detail}); a cleanup policy may have "
            "deleted it. Roll back to another version, or retrain."
        )
    return RetagError(
        f"Artifact Registry could not tag {where}@{digest} as {tag} (HTTP {getattr(exc, 'code', '?')}): {detail}"
    )


def retag_image(registry_path: str, digest: str, tag: str, *, client=None, timeout_s: float = 60.0) -> str:
    """Point ``tag`` at the image ``digest`` in the repository of ``registry_path``; returns the tagged image URI
    (``registry_path:tag``). Raises ``RetagError`` with what to do."""
    from google.api_core import exceptions as gexc
    from google.cloud import artifactregistry_v1

    package = DockerPackage.parse(registry_path)
    version = package.version(digest)
    client = client if client is not None else client_for()
    wanted = artifactregistry_v1.Tag(name=package.tag(tag), version=version)
    try:
        try:
            client.create_tag(parent=package.name, tag_id=tag, tag=wanted, timeout=timeout_s)
        except gexc.Conflict:  # HTTP 409 ALREADY_EXISTS (the REST transport raises the HTTP class, Conflict)
            existing = client.get_tag(name=wanted.name, timeout=timeout_s)
            if existing.version != version:
                client.update_tag(tag=wanted, update_mask={"paths": ["version"]}, timeout=timeout_s)
    except gexc.GoogleAPICallError as exc:
        raise _explain(exc, package, digest, tag) from None
    return f"{registry_path.strip().rstrip('/')}:{tag}"
