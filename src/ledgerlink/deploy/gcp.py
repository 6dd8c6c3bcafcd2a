"""The gcp deployer: the Bento's Docker build context -> the bucket -> Cloud Build -> Artifact Registry.

For a promoted model version (Bento already built by ``ledgerlink.deploy.deployers``):

1. export the Bento's container build context (``bento.export_build_context``: Dockerfile at the root);
2. archive it as ``.tar.gz`` to ``<deploy.gcp.bucket>/models/<model-version-id>/context.tar.gz``;
3. submit the Cloud Build job of the article (one ``docker build -t IMAGE .`` step, ``images: [IMAGE]``) with
   ``IMAGE = <deploy.gcp.registry>:<YYYYMMDDHHMMSS-v<version>>``, and wait for it;
4. return the build id, image URI, digest, status and log URL. Flux image automation on GKE notices the new
   tag and rolls it out (``stacks/gke``).

A failed or timed-out build raises ``CloudBuildError`` (its message carries the log URL).

Config (``deploy.gcp``): ``project``, ``bucket`` (``gs://bucket[/prefix]``; a local folder or ``file://`` URI
stands in for a bucket named like its last path component in tests), ``registry``
(``REGION-docker.pkg.dev/PROJECT/REPO/IMAGE``), ``timeout_s`` (the build's own timeout), ``wait_timeout_s``
(how long we wait, default ``timeout_s + 300``), ``poll_s``, ``location`` (regional builds), and, for
emulators and tests only, ``api_endpoint`` (Cloud Build, anonymous credentials), ``storage_endpoint``
(GCS, anonymous) and ``artifact_registry_endpoint`` (Artifact Registry, anonymous: the rollback's retag).

A build counts as deployed only when Cloud Build says SUCCESS and reports the pushed image's digest: the digest
is what a later rollback tags again (``deployers.redeploy``), so a build without one is a failed deploy.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from .cloud_build import (
    _OBJECT_STORE_PROTOCOLS,
    DEFAULT_BUILD_TIMEOUT_S,
    BuildResult,
    CloudBuildError,
    build_request,
    context_object_path,
    format_request,
    submit_build,
    upload_context,
)
from .tags import image_tag, image_uri


@dataclass(frozen=True)
class GcpSettings:
    project: str
    bucket: str
    registry: str
    timeout_s: int = DEFAULT_BUILD_TIMEOUT_S
    wait_timeout_s: float | None = None
    poll_s: float = 10.0
    location: str | None = None
    api_endpoint: str | None = None
    storage_endpoint: str | None = None
    artifact_registry_endpoint: str | None = None

    @classmethod
    def from_config(cls, deploy_cfg: dict) -> "GcpSettings":
        gcp = dict(deploy_cfg.get("gcp") or {})
        missing = [k for k in ("project", "bucket", "registry") if not gcp.get(k)]
        if missing:
            raise ValueError(
                f"deploy.gcp.{missing[0]} is not set; the gcp deployer needs deploy.gcp.project, "
                f"deploy.gcp.bucket (gs://BUCKET[/PREFIX]) and deploy.gcp.registry "
                f"(REGION-docker.pkg.dev/PROJECT/REPO/IMAGE) in the run config (missing: {missing})"
            )
        unset = {k: v for k, v in gcp.items() if isinstance(v, str) and "$" in v}
        if unset:
            raise ValueError(
                f"deploy.gcp has values with unset environment variables: {unset}; export them "
                "(e.g. GCP_PROJECT, GCP_REGION, GCP_BUCKET for configs/gcp.yaml)"
            )
        known = {f for f in cls.__dataclass_fields__}
        unknown = sorted(set(gcp) - known)
        if unknown:
            raise ValueError(f"unknown key(s) under deploy.gcp: {unknown}; known: {sorted(known)}")
        return cls(**gcp)

    @property
    def wait_s(self) -> float:
        return float(self.wait_timeout_s) if self.wait_timeout_s else float(self.timeout_s) + 300.0


def storage_fs(settings: GcpSettings):
    """The fsspec filesystem for the bucket: anonymous gcsfs against ``storage_endpoint`` when one is set
    (emulator), otherwise whatever fsspec infers from the URI (gcsfs with Application Default Credentials)."""
    if settings.storage_endpoint and settings.bucket.startswith(("gs://", "gcs://")):
        import gcsfs

        return gcsfs.GCSFileSystem(endpoint_url=settings.storage_endpoint, token="anon", project=settings.project)
    return None


def cloud_build_client(settings: GcpSettings):
    """The real ``CloudBuildClient``: ADC credentials, or REST + anonymous credentials at ``api_endpoint``."""
    if not settings.api_endpoint:
        return None  # submit_build makes the default client (and explains missing credentials)
    from google.api_core.client_options import ClientOptions
    from google.auth.credentials import AnonymousCredentials
    from google.cloud.devtools import cloudbuild_v1

    return cloudbuild_v1.CloudBuildClient(
        transport="rest",
        credentials=AnonymousCredentials(),
        client_options=ClientOptions(api_endpoint=settings.api_endpoint),
    )


def bucket_and_object(bucket_uri: str, object_path: str) -> tuple[str, str]:
    """Where ``upload_context`` puts ``object_path`` under ``bucket_uri``, as Cloud Build names it:
    ``gs://b/prefix`` -> ``("b", "prefix/<object_path>")``; a local folder ``/x/b`` -> ``("b", object_path)``."""
    from fsspec.core import split_protocol

    protocol, root = split_protocol(bucket_uri)  # no filesystem is made: that would look for credentials
    root = str(root).rstrip("/")
    if protocol in _OBJECT_STORE_PROTOCOLS:
        bucket, _, prefix = root.partition("/")
        return bucket, (f"{prefix}/{object_path}" if prefix else object_path)
    return Path(root).name, object_path


@dataclass(frozen=True)
class BuildPlan:
    bucket: str
    object_path: str
    image: str
    image_tag: str
    request: dict[str, Any]

    @property
    def context_uri(self) -> str:
        return f"gs://{self.bucket}/{self.object_path}"


def plan_build(
    settings: GcpSettings, model_version_id: str, version_number: int, now: datetime | None = None
) -> BuildPlan:
    """The exact Cloud Build request for a model version (pure: nothing is uploaded or sent)."""
    tag = image_tag(version_number, now=now)
    image = image_uri(settings.registry, tag)
    bucket, obj = bucket_and_object(settings.bucket, context_object_path(model_version_id))
    return BuildPlan(bucket, obj, image, tag, build_request(bucket, obj, image, timeout_s=settings.timeout_s))


def dry_run_text(settings: GcpSettings, plan: BuildPlan) -> str:
    """Where the request goes (regional endpoint path when ``location`` is set, as ``submit_build`` sends it)
    and the exact JSON body."""
    text = format_request(plan.request, settings.project)
    if settings.location:
        text = text.replace(
            f"/v1/projects/{settings.project}/builds",
            f"/v1/projects/{settings.project}/locations/{settings.location}/builds",
            1,
        )
    return text


def deploy_gcp(
    packaged, deploy_cfg: dict, *, client=None, fs=None, echo=print, now: datetime | None = None
) -> dict[str, Any]:
    """Upload the build context and build the image; returns the build record. Raises ``CloudBuildError``."""
    from .bento import export_build_context

    settings = GcpSettings.from_config(deploy_cfg)
    info = packaged.info
    plan = plan_build(settings, info.model_version_id, info.number, now=now)
    with tempfile.TemporaryDirectory(prefix="ledgerlink-buildctx-") as tmp:
        ctx = export_build_context(packaged.bento_tag, Path(tmp) / "context")
        bucket, obj = upload_context(
            ctx,
            settings.bucket,
            context_object_path(info.model_version_id),
            fs=fs if fs is not None else storage_fs(settings),
        )
    if (Path(bucket).name, obj) != (plan.bucket, plan.object_path):  # a bug here, not bad input
        raise RuntimeError(f"uploaded to {bucket}/{obj} but the request names {plan.bucket}/{plan.object_path}")
    echo(f"Uploaded the build context to {plan.context_uri}; submitting Cloud Build for {plan.image}")
    record = {
        "image": plan.image,
        "image_tag": plan.image_tag,
        "context_uri": plan.context_uri,
        "project": settings.project,
    }
    try:
        result: BuildResult = submit_build(
            plan.request,
            settings.project,
            client=client if client is not None else cloud_build_client(settings),
            timeout_s=settings.wait_s,
            poll=settings.poll_s,
            location=settings.location,
        )
    except CloudBuildError as exc:
        # What the model version's metadata must say about the failed build (deployers.deploy_promoted).
        exc.record = {**record, "build_id": exc.build_id, "build_status": exc.status, "log_url": exc.log_url}
        raise
    if not result.digest:
        exc = CloudBuildError(
            f"Cloud Build {result.build_id} ended {result.status} but reported no digest for {result.image}, so the "
            f"pushed image cannot be pinned or rolled back to. Build log: {result.log_url or 'unknown'}",
            status="NO_DIGEST",
            build_id=result.build_id,
            log_url=result.log_url,
        )
        exc.record = {**record, "build_id": result.build_id, "build_status": result.status, "log_url": result.log_url}
        raise exc
    echo(
        f"Cloud Build {result.build_id} pushed {result.image} ({result.status}); Flux rolls it out. "
        f"Log: {result.log_url}"
    )
    return {
        **record,
        "build_id": result.build_id,
        "build_status": result.status,
        "log_url": result.log_url,
        "digest": result.digest,
    }
