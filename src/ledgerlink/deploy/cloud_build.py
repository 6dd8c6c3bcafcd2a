"""Build the serving image with Google Cloud Build, as in the reference article.

Three steps, each usable on its own:

1. ``upload_context``: archive a build context (a directory with a ``Dockerfile`` at its root, e.g.
   from ``ledgerlink.deploy.bento.export_build_context``) as ``.tar.gz`` and write it to the bucket
   through fsspec (``gs://`` in production, any local path in tests).
2. ``build_request``: the Cloud Build payload — ``source.storageSource``, one
   ``gcr.io/cloud-builders/docker`` step running ``docker build -t IMAGE .``, ``images`` and a
   timeout. Pure and JSON-printable, so ``--dry-run`` shows exactly what would be sent.
3. ``submit_build``: send it with the real ``CloudBuildClient`` and wait for the build. Every
   failure (build status, our own timeout, HTTP 403, missing credentials) becomes a
   ``CloudBuildError`` whose message says what happened and where the build log is.
"""

from __future__ import annotations

import gzip
import json
import os
import tarfile
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

DOCKER_BUILDER = "gcr.io/cloud-builders/docker"
DEFAULT_BUILD_TIMEOUT_S = 1200
# Role that lets a principal create and read builds; named in the 403 message.
BUILD_ROLE = "roles/cloudbuild.builds.editor"
_OBJECT_STORE_PROTOCOLS = {"gs", "gcs", "s3", "s3a", "az", "abfs", "abfss"}


class CloudBuildError(RuntimeError):
    """A Cloud Build job could not be submitted or did not succeed.

    ``status`` is the build status name (``FAILURE``, ``TIMEOUT``...) or ``PERMISSION_DENIED`` /
    ``WAIT_TIMEOUT`` / an HTTP error name; ``log_url`` points at the build log when known.
    """

    def __init__(
        self, message: str, *, status: str | None = None, build_id: str | None = None, log_url: str | None = None
    ):
        super().__init__(message)
        self.status, self.build_id, self.log_url = status, build_id, log_url


@dataclass(frozen=True)
class BuildResult:
    build_id: str
    image: str
    status: str
    log_url: str
    digest: str | None = None  # sha256 digest Cloud Build reports for the pushed image, if any


# --------------------------------------------------------------------------------------------
# Source archive
# --------------------------------------------------------------------------------------------


def context_object_path(model_version_id: str, filename: str = "context.tar.gz") -> str:
    """Object name for a model version's build context: ``models/<model-version-id>/context.tar.gz``."""
    model_version_id = str(model_version_id).strip().strip("/")
    if not model_version_id or "/" in model_version_id:
        raise ValueError(f"model_version_id must be a non-empty id without '/', got {model_version_id!r}")
    return f"models/{model_version_id}/{filename}"


def _tar_filter(info: tarfile.TarInfo) -> tarfile.TarInfo:
    # Reproducible archive: the same context gives the same bytes (and fingerprint).
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    info.mtime = 0
    return info


def write_archive(context_dir: str | os.PathLike, fileobj) -> list[str]:
    """Write ``context_dir`` as a gzipped tar to ``fileobj``; members are relative to the directory
    (so ``Dockerfile`` is at the root, where ``docker build .`` looks). Returns member names."""
    root = Path(context_dir)
    names: list[str] = []
    with (
        gzip.GzipFile(fileobj=fileobj, mode="wb", mtime=0) as gz,
        tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT) as tar,
    ):
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames.sort()
            for name in sorted(filenames) + [d for d in dirnames if os.path.islink(os.path.join(dirpath, d))]:
                full = Path(dirpath, name)
                arcname = full.relative_to(root).as_posix()
                tar.add(full, arcname=arcname, recursive=False, filter=_tar_filter)
                names.append(arcname)
    return names


def upload_context(context_dir: str | os.PathLike, bucket_uri: str, object_path: str, fs=None) -> tuple[str, str]:
    """Archive ``context_dir`` and write it to ``<bucket_uri>/<object_path>``.

    Returns ``(bucket, object)`` as ``build_request`` wants them: for ``gs://bucket/prefix`` that is
    ``("bucket", "prefix/<object_path>")``; for a local path it is ``(<root dir>, <object_path>)``.
    ``fs`` is an fsspec filesystem (default: inferred from ``bucket_uri``).
    """
    import fsspec

    context = Path(context_dir)
    if not context.is_dir():
        raise FileNotFoundError(f"build context {context} is not a directory")
    if not (context / "Dockerfile").is_file():
        raise ValueError(
            f"build context {context} has no Dockerfile at its root; Cloud Build runs `docker build .` there "
            "(use ledgerlink.deploy.bento.export_build_context to produce one)"
        )
    object_path = object_path.strip().lstrip("/")
    if not object_path.endswith((".tar.gz", ".tgz")):
        raise ValueError(f"object_path must name a .tar.gz archive, got {object_path!r}")

    if fs is None:
        fs, root = fsspec.core.url_to_fs(bucket_uri)
    else:
        root = fs._strip_protocol(bucket_uri)
    root = str(root).rstrip("/")
    protocols = {fs.protocol} if isinstance(fs.protocol, str) else set(fs.protocol)
    target = f"{root}/{object_path}"

    if protocols & _OBJECT_STORE_PROTOCOLS:
        bucket, _, prefix = root.partition("/")
        obj = f"{prefix}/{object_path}" if prefix else object_path
    else:
        bucket, obj = root, object_path
        fs.makedirs(target.rsplit("/", 1)[0], exist_ok=True)

    with tempfile.TemporaryDirectory(prefix="ledgerlink-ctx-") as tmp:
        local = os.path.join(tmp, "context.tar.gz")
        with open(local, "wb") as f:
            write_archive(context, f)
        fs.put_file(local, target)
    return bucket, obj


# --------------------------------------------------------------------------------------------
# Request
# --------------------------------------------------------------------------------------------


def build_request(
    bucket: str, object_path: str, image: str, timeout_s: int = DEFAULT_BUILD_TIMEOUT_S
) -> dict[str, Any]:
    """The Cloud Build ``Build`` resource as JSON (camelCase, as POSTed to ``projects/*/builds``)."""
    bucket = bucket.removeprefix("gs://").strip("/")
    if not bucket or "/" in bucket:
        raise ValueError(f"bucket must be a bare bucket name like 'my-bucket', got {bucket!r}")
    if not object_path or object_path.startswith("/"):
        raise ValueError(f"object_path must be a path inside the bucket, got {object_path!r}")
    if not image or any(c.isspace() for c in image):
        raise ValueError(f"image must be a full image reference, got {image!r}")
    if int(timeout_s) <= 0:
        raise ValueError(f"timeout_s must be positive, got {timeout_s!r}")
    return {
        "source": {"storageSource": {"bucket": bucket, "object": object_path}},
        "steps": [{"name": DOCKER_BUILDER, "args": ["build", "-t", image, "."]}],
        "images": [image],
        "timeout": f"{int(timeout_s)}s",
    }


def format_request(request: dict[str, Any], project_id: str) -> str:
    """Human-readable dry-run output: where it would go and the exact body."""
    return f"POST https://cloudbuild.googleapis.com/v1/projects/{project_id}/builds\n" + json.dumps(request, indent=2)


# --------------------------------------------------------------------------------------------
# Submit and wait
# --------------------------------------------------------------------------------------------


def _status_name(build) -> str:
    from google.cloud.devtools import cloudbuild_v1

    try:
        return cloudbuild_v1.Build.Status(build.status).name
    except ValueError:
        return str(build.status)


def _who(client) -> str:
    creds = getattr(getattr(client, "_transport", None), "_credentials", None)
    email = getattr(creds, "service_account_email", None)
    return f"the service account {email}" if email and email != "default" else "the service account running this step"


def _api_error(exc, project_id: str, client, *, during: str, build_id=None, log_url=None) -> CloudBuildError:
    from google.api_core import exceptions as gexc

    detail = getattr(exc, "message", None) or str(exc)
    if isinstance(exc, gexc.Forbidden):
        if "SERVICE_DISABLED" in str(exc) or "has not been used" in detail or "is disabled" in detail:
            msg = (
                f"Cloud Build API is not enabled in project {project_id!r} (HTTP 403 while {during}): {detail}. "
                "Enable it with `gcloud services enable cloudbuild.googleapis.com`."
            )
        else:
            msg = (
                f"Cloud Build refused the request (HTTP 403 PERMISSION_DENIED while {during}) "
                f"in project {project_id!r}: "
                f"{_who(client)} lacks permission to create builds. Grant it {BUILD_ROLE} "
                f"(`gcloud projects add-iam-policy-binding {project_id} --member=serviceAccount:SA_EMAIL "
                f"--role={BUILD_ROLE}`). Server said: {detail}"
            )
        status = "PERMISSION_DENIED"
    elif isinstance(exc, gexc.Unauthorized):
        msg = f"Cloud Build rejected our credentials (HTTP 401 while {during}) in project {project_id!r}: {detail}"
        status = "UNAUTHENTICATED"
    else:
        code = getattr(exc, "code", None)
        msg = f"Cloud Build request failed while {during} in project {project_id!r} (HTTP {code}): {detail}"
        status = type(exc).__name__
    if log_url:
        msg += f" Build log: {log_url}"
    return CloudBuildError(msg, status=status, build_id=build_id, log_url=log_url)


def default_client():
    """A ``CloudBuildClient`` with Application Default Credentials; a clear error when there are none."""
    from google.auth import exceptions as auth_exc
    from google.cloud.devtools import cloudbuild_v1

    try:
        return cloudbuild_v1.CloudBuildClient()
    except auth_exc.DefaultCredentialsError as exc:
        raise CloudBuildError(
            "No Google Cloud credentials found for Cloud Build: run `gcloud auth application-default login` "
            f"or set GOOGLE_APPLICATION_CREDENTIALS to a service-account key ({exc})",
            status="UNAUTHENTICATED",
        ) from None


def submit_build(
    request: dict[str, Any],
    project_id: str,
    client=None,
    timeout_s: float = DEFAULT_BUILD_TIMEOUT_S + 300,
    poll: float = 10.0,
    *,
    location: str | None = None,
    rpc_timeout_s: float = 60.0,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> BuildResult:
    """Create the build and wait until it finishes.

    ``create_build`` returns a long-running operation whose metadata carries the build (id, log
    URL); we poll ``operation.done()`` every ``poll`` seconds until ``timeout_s``. Raises
    ``CloudBuildError`` on a failed build, on our own timeout (the build may still be running: the
    message says so and where to look), and on API errors such as HTTP 403.
    """
    from google.api_core import exceptions as gexc
    from google.cloud.devtools import cloudbuild_v1

    if not project_id:
        raise ValueError("project_id is required to submit a Cloud Build job")
    image = (request.get("images") or [None])[0]
    if not image:
        raise ValueError("request has no 'images'; build it with build_request()")
    client = client if client is not None else default_client()
    build = cloudbuild_v1.Build.from_json(json.dumps(request))
    kwargs: dict[str, Any] = {"project_id": project_id, "build": build, "timeout": rpc_timeout_s}
    if location:
        kwargs["parent"] = f"projects/{project_id}/locations/{location}"

    try:
        operation = client.create_build(**kwargs)
    except gexc.GoogleAPICallError as exc:
        raise _api_error(exc, project_id, client, during="creating the build") from None

    meta_build = operation.metadata.build if operation.metadata is not None else None
    build_id = meta_build.id if meta_build is not None else ""
    log_url = meta_build.log_url if meta_build is not None else ""

    deadline = clock() + timeout_s
    while True:
        try:
            done = operation.done()
        except gexc.GoogleAPICallError as exc:
            raise _api_error(
                exc, project_id, client, during=f"waiting for build {build_id}", build_id=build_id, log_url=log_url
            ) from None
        if done:
            break
        if clock() >= deadline:
            meta_build = operation.metadata.build if operation.metadata is not None else meta_build
            last = _status_name(meta_build) if meta_build is not None else "UNKNOWN"
            raise CloudBuildError(
                f"Cloud Build {build_id or '(unknown id)'} did not finish within {timeout_s:g}s (last status {last}); "
                f"it may still be running. Build log: {log_url or 'unknown'}",
                status="WAIT_TIMEOUT",
                build_id=build_id,
                log_url=log_url,
            )
        sleep(max(0.0, min(poll, deadline - clock())))

    raw = operation.operation
    if raw.HasField("response"):
        final = operation.result()
    else:
        final = operation.metadata.build if operation.metadata is not None else None
    if final is None:
        detail = raw.error.message if raw.HasField("error") else "no build in the finished operation"
        raise CloudBuildError(
            f"Cloud Build {build_id} finished without a build record: {detail}. Build log: {log_url or 'unknown'}",
            status="UNKNOWN",
            build_id=build_id,
            log_url=log_url,
        )
    build_id = final.id or build_id
    log_url = final.log_url or log_url
    status = _status_name(final)
    if status != "SUCCESS":
        reason = final.status_detail or (raw.error.message if raw.HasField("error") else "")
        raise CloudBuildError(
            f"Cloud Build {build_id} for {image} ended with status {status}"
            + (f": {reason}" if reason else "")
            + f". Build log: {log_url or 'unknown'}",
            status=status,
            build_id=build_id,
            log_url=log_url,
        )
    digest = (
        next((i.digest for i in final.results.images if i.name == image and i.digest), None) if final.results else None
    )
    return BuildResult(build_id=build_id, image=image, status=status, log_url=log_url, digest=digest)
