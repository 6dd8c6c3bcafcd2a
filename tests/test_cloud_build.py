"""Cloud Build client against a local HTTP server.

The real ``CloudBuildClient`` (REST transport, anonymous credentials) talks to an ``http.server`` on
127.0.0.1 that plays the Cloud Build API (``tests/cloudbuild_server.py``): it checks the exact JSON body
the client sends, answers ``create`` with a long-running Operation whose metadata is a
``BuildOperationMetadata``, and answers the polls at ``GET /v1/operations/...``.
"""

from __future__ import annotations

import io
import json
import tarfile
from datetime import datetime, timezone

import pytest
from cloudbuild_server import BUILD_ID, BUILD_TYPE, LOG_URL, META_TYPE, OP_NAME, PROJECT, S, build_json, op_json  # noqa: F401
from cloudbuild_server import FakeCloudBuild as _FakeCloudBuild

from ledgerlink.deploy.cloud_build import (  # noqa: E402
    BUILD_ROLE,
    CloudBuildError,
    build_request,
    context_object_path,
    format_request,
    submit_build,
    upload_context,
)
from ledgerlink.deploy.tags import image_tag, image_uri  # noqa: E402

BUCKET = "finanse-ml-dev"
OBJECT = "models/8f19cd96-ca7b-40bd-980e-f2ce19908a6b/context.tar.gz"
TAG = image_tag(7, now=datetime(2026, 11, 21, 9, 30, 0, tzinfo=timezone.utc))
IMAGE = image_uri("europe-west4-docker.pkg.dev/finanse-project/models/ledgerlink", TAG)

EXPECTED_BODY = {
    "source": {"storageSource": {"bucket": BUCKET, "object": OBJECT}},
    "steps": [{"name": "gcr.io/cloud-builders/docker", "args": ["build", "-t", IMAGE, "."]}],
    "images": [IMAGE],
    "timeout": "1200s",
}


def _build(status: S, **extra) -> dict:
    return build_json(status, IMAGE, **extra)


def _op(status: S, done: bool, **extra) -> dict:
    return op_json(status, done, IMAGE, **extra)


def FakeCloudBuild(create, polls=None, repeat_last=False):  # noqa: N802 - the server, checking EXPECTED_BODY
    return _FakeCloudBuild(create, polls, repeat_last, expected_body=EXPECTED_BODY)


def _request() -> dict:
    return build_request(BUCKET, OBJECT, IMAGE, timeout_s=1200)


def test_build_request_is_the_article_payload():
    req = _request()
    assert req == EXPECTED_BODY
    assert build_request("gs://" + BUCKET, OBJECT, IMAGE) == req  # a gs:// prefix is tolerated
    printed = format_request(req, PROJECT)
    assert printed.startswith(f"POST https://cloudbuild.googleapis.com/v1/projects/{PROJECT}/builds\n")
    assert json.loads(printed.split("\n", 1)[1]) == req


@pytest.mark.parametrize(
    "args", [("", OBJECT, IMAGE), ("a/b", OBJECT, IMAGE), (BUCKET, "", IMAGE), (BUCKET, OBJECT, "")]
)
def test_build_request_rejects_bad_input(args):
    with pytest.raises(ValueError):
        build_request(*args)


def test_submit_success():
    done = {
        "name": OP_NAME,
        "done": True,
        "metadata": {"@type": META_TYPE, "build": _build(S.SUCCESS)},
        "response": {
            "@type": BUILD_TYPE,
            **_build(S.SUCCESS, results={"images": [{"name": IMAGE, "digest": "sha256:" + "a" * 64}]}),
        },
    }
    with FakeCloudBuild((200, _op(S.QUEUED, False)), [_op(S.WORKING, False), done]) as fake:
        result = submit_build(_request(), PROJECT, client=fake.client(), timeout_s=30, poll=0.01)
    assert result.status == "SUCCESS"
    assert result.build_id == BUILD_ID
    assert result.image == IMAGE
    assert result.log_url == LOG_URL
    assert result.digest == "sha256:" + "a" * 64
    post, *gets = fake.requests
    assert post["body"] == EXPECTED_BODY
    assert "enum-encoding%3Dint" in post["path"] or "enum-encoding=int" in post["path"]
    assert [g["path"].split("?")[0] for g in gets] == [f"/v1/{OP_NAME}"] * 2


def test_submit_failure_status_raises_with_log_url():
    failed = {
        **_op(S.FAILURE, True),
        "error": {"code": 2, "message": "Build failed; check build logs for details"},
    }
    failed["metadata"]["build"]["statusDetail"] = "step 0 exited with 1"
    with FakeCloudBuild((200, _op(S.QUEUED, False)), [_op(S.WORKING, False), failed]) as fake:
        with pytest.raises(CloudBuildError) as info:
            submit_build(_request(), PROJECT, client=fake.client(), timeout_s=30, poll=0.01)
    err = info.value
    assert err.status == "FAILURE" and err.build_id == BUILD_ID and err.log_url == LOG_URL
    assert "FAILURE" in str(err) and LOG_URL in str(err)


def test_submit_times_out_while_build_never_finishes():
    with FakeCloudBuild((200, _op(S.QUEUED, False)), [_op(S.WORKING, False)], repeat_last=True) as fake:
        with pytest.raises(CloudBuildError) as info:
            submit_build(_request(), PROJECT, client=fake.client(), timeout_s=0.3, poll=0.05)
    err = info.value
    assert err.status == "WAIT_TIMEOUT"
    assert LOG_URL in str(err) and "WORKING" in str(err) and BUILD_ID in str(err)
    assert sum(r["method"] == "GET" for r in fake.requests) >= 2  # it did poll


def test_submit_403_says_which_role_is_missing():
    denied = {"error": {"code": 403, "message": "The caller does not have permission", "status": "PERMISSION_DENIED"}}
    with FakeCloudBuild((403, denied)) as fake:
        with pytest.raises(CloudBuildError) as info:
            submit_build(_request(), PROJECT, client=fake.client(), timeout_s=5, poll=0.01)
    err = info.value
    assert err.status == "PERMISSION_DENIED"
    assert BUILD_ROLE in str(err) and "permission" in str(err).lower() and PROJECT in str(err)
    assert err.__cause__ is None and err.__suppress_context__  # no chained google traceback


def test_missing_credentials_is_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(tmp_path / "missing.json"))
    with pytest.raises(CloudBuildError, match="credentials"):
        submit_build(_request(), PROJECT, client=None, timeout_s=1, poll=0.01)


def test_upload_context_writes_a_tar_gz(tmp_path):
    ctx = tmp_path / "ctx"
    (ctx / "src" / "ledgerlink").mkdir(parents=True)
    (ctx / "Dockerfile").write_text("FROM python:3.11-slim\nCOPY . /home/bentoml/bento\n")
    (ctx / "bento.yaml").write_text("service: service:LedgerLink\n")
    (ctx / "src" / "ledgerlink" / "__init__.py").write_text("")
    bucket_dir = tmp_path / "bucket"
    obj = context_object_path("8f19cd96-ca7b-40bd-980e-f2ce19908a6b")
    assert obj == "models/8f19cd96-ca7b-40bd-980e-f2ce19908a6b/context.tar.gz"

    bucket, written = upload_context(ctx, f"file://{bucket_dir}", obj)
    archive = bucket_dir / obj
    assert (bucket, written) == (str(bucket_dir), obj)
    with tarfile.open(archive, "r:gz") as tar:
        names = sorted(tar.getnames())
        assert names == ["Dockerfile", "bento.yaml", "src/ledgerlink/__init__.py"]
        assert tar.extractfile("Dockerfile").read().startswith(b"FROM python")
    first = archive.read_bytes()
    upload_context(ctx, f"file://{bucket_dir}", obj)
    assert archive.read_bytes() == first  # reproducible archive


def test_upload_context_to_gcs_emulator(tmp_path, gcs_emulator):
    """gs:// path through the real gcsfs, against gcp-storage-emulator on loopback."""
    _, fs = gcs_emulator
    (tmp_path / "Dockerfile").write_text("FROM scratch\n")
    bucket, obj = upload_context(tmp_path, f"gs://{BUCKET}/ledgerlink", "models/v1/context.tar.gz", fs=fs)
    assert (bucket, obj) == (BUCKET, "ledgerlink/models/v1/context.tar.gz")
    with tarfile.open(fileobj=io.BytesIO(fs.cat(f"{bucket}/{obj}")), mode="r:gz") as tar:
        assert tar.getnames() == ["Dockerfile"]
    assert build_request(bucket, obj, IMAGE)["source"]["storageSource"] == {"bucket": BUCKET, "object": obj}


def test_upload_context_requires_a_dockerfile(tmp_path):
    (tmp_path / "ctx").mkdir()
    with pytest.raises(ValueError, match="Dockerfile"):
        upload_context(tmp_path / "ctx", f"file://{tmp_path}/bucket", "models/x/context.tar.gz")
