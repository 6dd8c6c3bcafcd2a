"""Conditional deploy: the gcp and local deployers end to end, and the ZenML step's metadata.

- gcp deployer (library): the Bento's build context is archived to a bucket (the gcp-storage-emulator
  through real gcsfs, or a local folder) and the real ``CloudBuildClient`` submits the build to the local
  Cloud Build server of ``tests/cloudbuild_server.py``, which checks the exact request.
- local deployer (library): builds, serves with ``bentoml serve`` on loopback, checks one real ``/match``
  against the same call in process, stops the server, exports the model.
- the ZenML step ``deploy_model`` in a small pipeline: not promoted -> nothing built; gcp success -> the
  model version's ``deployment`` metadata has the build id, image and status; gcp FAILURE -> the run fails
  with the log URL and the metadata says ``failed`` (recorded before the step re-raised).
"""

import io
import json
import socket
import tarfile
import uuid
from datetime import datetime, timezone
from pathlib import Path

import bentoml  # noqa: E402, F401
import pytest
from cloudbuild_server import BUILD_ID, LOG_URL, PROJECT, FakeCloudBuild, S, failure_op, op_json, success_op  # noqa: E402
from deploy_helpers import (  # noqa: E402
    BUCKET,
    IMAGE_RE,
    REGISTRY,
    Webhook,
    gcp_cfg,
    make_smoke_store,
    run_deploy,
    valid_body,
)

from ledgerlink.deploy.cloud_build import build_request  # noqa: E402
from ledgerlink.deploy.deployers import DeploymentFailed, ModelVersionInfo, deploy_promoted, dry_run_request  # noqa: E402
from utils.model_stages import stage_name  # noqa: E402
from utils.model_versions import ModelVersionMetadata  # noqa: E402

NOW = datetime(2026, 11, 21, 9, 30, 0, tzinfo=timezone.utc)
IMAGE = f"{REGISTRY}:20261121093000-v7"


def _info(number: int = 7, mv_id: str | None = None) -> ModelVersionInfo:
    return ModelVersionInfo(
        model_name="ledgerlink_matcher",
        version=str(number),
        number=number,
        model_version_id=mv_id or str(uuid.uuid4()),
        metrics={"pair_f1": 0.93},
        months=["2025-01", "2025-02"],
    )


# ------------------------------------------------------------------------------------------------
# gcp deployer, library level
# ------------------------------------------------------------------------------------------------


def test_gcp_deployer_uploads_the_context_and_builds_the_image(small_matcher, gcs_emulator):
    endpoint, fs = gcs_emulator
    mv_id = "8f19cd96-ca7b-40bd-980e-f2ce19908a6b"
    obj = f"models/{mv_id}/context.tar.gz"
    expected = build_request(BUCKET, obj, IMAGE, timeout_s=600)
    with FakeCloudBuild(
        (200, op_json(S.QUEUED, False, IMAGE)),
        [op_json(S.WORKING, False, IMAGE), success_op(IMAGE)],
        expected_body=expected,
    ) as fake:
        cfg = gcp_cfg(f"gs://{BUCKET}", fake.endpoint, storage_endpoint=endpoint)
        record = deploy_promoted(small_matcher, _info(7, mv_id), cfg, now=NOW, echo=lambda _: None)
    assert fake.requests[0]["body"] == expected  # the exact article payload reached Cloud Build
    assert record["deployed"] is True and record["status"] == "success" and record["deployer"] == "gcp"
    assert record["build_id"] == BUILD_ID and record["build_status"] == "SUCCESS" and record["log_url"] == LOG_URL
    assert record["image"] == IMAGE and record["image_tag"] == "20261121093000-v7"
    assert record["digest"] == "sha256:" + "a" * 64
    assert record["context_uri"] == f"gs://{BUCKET}/{obj}"
    with tarfile.open(fileobj=io.BytesIO(fs.cat(f"{BUCKET}/{obj}")), mode="r:gz") as tar:
        names = set(tar.getnames())
    assert {"Dockerfile", "bento.yaml", "src/bentos/service.py"} <= names
    assert any(n.endswith("/matcher/meta.json") and n.startswith("models/ledgerlink/") for n in names)
    # --dry-run builds the same request without uploading or submitting anything
    request, text = dry_run_request(cfg, _info(7, mv_id), now=NOW)
    assert request == expected and text.startswith(
        f"POST https://cloudbuild.googleapis.com/v1/projects/{PROJECT}/builds"
    )


def test_gcp_deployer_failed_build_raises_with_the_log_url(small_matcher, tmp_path):
    with FakeCloudBuild(
        (200, op_json(S.QUEUED, False, IMAGE)),
        [op_json(S.WORKING, False, IMAGE), failure_op(IMAGE)],
        expected_body=build_request(BUCKET, "models/mv-7/context.tar.gz", IMAGE, 600),
    ) as fake:
        cfg = gcp_cfg(f"file://{tmp_path}/{BUCKET}", fake.endpoint)  # a local folder named like the bucket
        with pytest.raises(DeploymentFailed) as info:
            deploy_promoted(small_matcher, _info(7, "mv-7"), cfg, now=NOW, echo=lambda _: None)
    err = info.value
    assert LOG_URL in str(err) and "FAILURE" in str(err)
    rec = err.record
    assert rec["status"] == "failed" and rec["deployed"] is False and rec["stage"] == "gcp"
    assert rec["build_status"] == "FAILURE" and rec["build_id"] == BUILD_ID and rec["log_url"] == LOG_URL
    assert rec["image"] == IMAGE and "step 0 exited with 1" in rec["error"]
    assert (tmp_path / BUCKET / "models" / "mv-7" / "context.tar.gz").is_file()


def test_gcp_deployer_config_errors_fail_before_building(small_matcher):
    with pytest.raises(DeploymentFailed, match="deploy.gcp.registry") as info:
        deploy_promoted(
            small_matcher,
            _info(),
            {"deployer": "gcp", "gcp": {"project": PROJECT, "bucket": "gs://b"}},
            smoke_tables={},
        )
    assert info.value.record["stage"] == "configuration" and "bento_tag" not in info.value.record
    with pytest.raises(DeploymentFailed, match="deploy.deployer must be one of") as info:
        deploy_promoted(small_matcher, _info(), {"deployer": "k8s"}, smoke_tables={})
    assert info.value.record["stage"] == "configuration" and info.value.record["deployer"] == "k8s"


def test_gcp_settings_buckets_and_regional_dry_run():
    from ledgerlink.deploy.gcp import GcpSettings, bucket_and_object

    assert bucket_and_object("gs://b/pre/", "models/x/context.tar.gz") == ("b", "pre/models/x/context.tar.gz")
    assert bucket_and_object("file:///tmp/x/b", "o.tar.gz") == ("b", "o.tar.gz")
    base = {"project": PROJECT, "bucket": f"gs://{BUCKET}", "registry": REGISTRY}
    with pytest.raises(ValueError, match="unset environment variables"):
        GcpSettings.from_config({"gcp": {**base, "project": "${GCP_PROJECT}"}})
    with pytest.raises(ValueError, match="unknown key"):
        GcpSettings.from_config({"gcp": {**base, "timeout": 5}})
    request, text = dry_run_request({"gcp": {**base, "location": "europe-west4"}}, _info(7, "mv-7"), now=NOW)
    assert text.startswith(
        f"POST https://cloudbuild.googleapis.com/v1/projects/{PROJECT}/locations/europe-west4/builds\n"
    )
    assert request == build_request(BUCKET, "models/mv-7/context.tar.gz", IMAGE)


# ------------------------------------------------------------------------------------------------
# local deployer, library level: build, serve, check, stop
# ------------------------------------------------------------------------------------------------


def test_local_deployer_smoke_tests_the_served_bento(small_matcher, small_world, tmp_path):

    from ledgerlink.deploy.export import production_model_dir

    lines: list[str] = []
    cfg = {"deployer": "local", "smoke_test": True, "model_dir": str(tmp_path / "models")}
    record = deploy_promoted(small_matcher, _info(3), cfg, smoke_tables=small_world, echo=lines.append)
    assert record["deployed"] is True and record["status"] == "success"
    smoke = record["smoke_test"]
    assert smoke["passed"] and smoke["same_as_in_process"] and smoke["url"].startswith("http://127.0.0.1:")
    bento = bentoml.bentos.get(record["bento_tag"])
    assert bento.info.labels["zenml_model_version"] == "3"
    model = bentoml.models.get(record["bento_model_tag"])
    assert model.info.metadata["metrics"] == {"pair_f1": 0.93}
    assert production_model_dir(tmp_path / "models", "ledgerlink_matcher") == Path(record["model_path"]).resolve()
    assert any("python run.py --serve" in ln for ln in lines)
    with socket.socket() as s, pytest.raises(ConnectionRefusedError):  # the server was stopped
        s.connect(("127.0.0.1", int(smoke["url"].rsplit(":", 1)[1])))


def test_local_deployer_without_smoke_data_fails_before_building(small_matcher, tmp_path):

    before = {str(b.tag) for b in bentoml.bentos.list()}
    with pytest.raises(DeploymentFailed, match="smoke test needs data") as info:
        deploy_promoted(
            small_matcher,
            _info(),
            {"deployer": "local", "smoke_test": True, "model_dir": str(tmp_path)},
            echo=lambda _: None,
        )
    assert info.value.record["stage"] == "configuration" and info.value.record["status"] == "failed"
    assert {str(b.tag) for b in bentoml.bentos.list()} == before  # nothing built for a deploy that cannot pass


# ------------------------------------------------------------------------------------------------
# The ZenML step
# ------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def matcher_dir(small_matcher, tmp_path_factory):
    from ledgerlink.matching.base import save_matcher

    d = tmp_path_factory.mktemp("step-matcher")
    save_matcher(small_matcher, d)
    return str(d)


@pytest.fixture(scope="module")
def smoke_store(small_world, tmp_path_factory):
    return make_smoke_store(small_world, str(tmp_path_factory.mktemp("smoke-store")))


def test_step_does_nothing_when_not_promoted(matcher_dir):

    before = {str(b.tag) for b in bentoml.bentos.list()}
    unreachable = gcp_cfg(f"gs://{BUCKET}", "http://127.0.0.1:9", storage_endpoint="http://127.0.0.1:9")
    mv, error = run_deploy(
        "step_skip", path=matcher_dir, promote=False, deploy=unreachable
    )  # would fail if it tried to deploy: nothing listens on port 9
    assert error is None
    assert mv.run_metadata["deployment"] == {"deployed": False, "reason": "gain below min_delta"}
    assert ModelVersionMetadata.of(mv).deployment == {"deployed": False, "reason": "gain below min_delta"}
    assert {str(b.tag) for b in bentoml.bentos.list()} == before

    from cli.serve import NoProductionModel, production_bento

    with pytest.raises(NoProductionModel, match="run.py --pipeline training"):
        production_bento({"model_name": "step_skip", "deploy": {}})


def test_step_records_a_successful_gcp_build(matcher_dir, smoke_store, tmp_path):
    with FakeCloudBuild(
        (200, op_json(S.QUEUED, False, IMAGE)), lambda body: [success_op(body["images"][0])], expected_body=valid_body
    ) as fake:
        mv, error = run_deploy(
            "step_gcp_ok",
            path=matcher_dir,
            promote=True,
            deploy=gcp_cfg(f"file://{tmp_path}/{BUCKET}", fake.endpoint),
        )
    assert error is None, error
    dep = mv.run_metadata["deployment"]
    assert dep["status"] == "success" and dep["deployed"] is True
    assert dep["build_id"] == BUILD_ID and dep["log_url"] == LOG_URL and dep["build_status"] == "SUCCESS"
    assert IMAGE_RE.fullmatch(dep["image"]) and dep["image"].endswith(f"-v{mv.number}")
    assert dep["model_version_id"] == str(mv.id)
    assert fake.requests[0]["body"]["source"]["storageSource"]["object"] == f"models/{mv.id}/context.tar.gz"
    assert (tmp_path / BUCKET / "models" / str(mv.id) / "context.tar.gz").is_file()
    # staged by the promotion, production only now that Cloud Build said SUCCESS with a digest
    assert stage_name(mv) == "production" and dep["digest"] == "sha256:" + "a" * 64
    meta = ModelVersionMetadata.of(mv)
    assert meta.stage_change.state == "done" and dep["change_id"] == meta.stage_change.id

    # python run.py --dry-run / --serve find this production version through the Model Control Plane

    from cli.serve import dry_run, production_bento

    cfg = {
        "model_name": "step_gcp_ok",
        "deploy": gcp_cfg(f"gs://{BUCKET}/ledgerlink", fake.endpoint),
        "store": {"uri": smoke_store},
    }
    request, text = dry_run(cfg, now=NOW)
    assert request == build_request(
        BUCKET, f"ledgerlink/models/{mv.id}/context.tar.gz", f"{REGISTRY}:20261121093000-v{mv.number}", timeout_s=600
    )
    assert json.loads(text.split("\n", 1)[1]) == request
    # this deploy ran without a smoke test (deploy.smoke_test: false): --serve smoke-tests that Bento before serving
    lines: list[str] = []
    assert production_bento(cfg, echo=lines.append) == dep["bento_tag"]
    assert any("never smoke-tested" in ln for ln in lines) and any("Smoke test passed" in ln for ln in lines)
    assert production_bento(cfg, echo=lines.append) == dep["bento_tag"]  # remembered as tested on this machine
    bentoml.bentos.delete(dep["bento_tag"])  # e.g. another machine: rebuilt from the matcher AND smoke-tested
    lines.clear()
    rebuilt = production_bento(cfg, echo=lines.append)
    assert rebuilt != dep["bento_tag"] and bentoml.bentos.get(rebuilt).info.labels["zenml_model_version"] == str(
        mv.number
    )
    assert any("rebuilding and smoke-testing" in ln for ln in lines) and any("Smoke test passed" in ln for ln in lines)
    # without a frozen test split to smoke-test with, a Bento that never passed one here is refused, not served
    bentoml.bentos.delete(rebuilt)
    from cli.serve import NoProductionModel

    with pytest.raises(NoProductionModel, match="not serving an untested Bento"):
        production_bento({**cfg, "store": {"uri": str(tmp_path / "no-store")}}, echo=lambda _: None)


def test_step_failed_build_fails_the_run_keeps_production_and_records_failed(matcher_dir, tmp_path, monkeypatch):
    hook = Webhook()
    monkeypatch.setenv("LEDGERLINK_SLACK_WEBHOOK", hook.url)

    def cfg(fake):
        return gcp_cfg(f"file://{tmp_path}/{BUCKET}", fake.endpoint)

    with hook:
        with FakeCloudBuild(  # version 1: deployed
            (200, op_json(S.QUEUED, False, IMAGE)),
            lambda body: [success_op(body["images"][0])],
            expected_body=valid_body,
        ) as fake:
            first, error = run_deploy("step_gcp_fail", path=matcher_dir, promote=True, deploy=cfg(fake))
        assert error is None and stage_name(first) == "production"
        with FakeCloudBuild(  # version 2: its Cloud Build fails
            (200, op_json(S.QUEUED, False, IMAGE)),
            lambda body: [failure_op(body["images"][0])],
            expected_body=valid_body,
        ) as fake:
            mv, error = run_deploy("step_gcp_fail", path=matcher_dir, promote=True, deploy=cfg(fake))
    assert error is not None and "DeploymentFailed" in error and LOG_URL in error, error
    assert "production stays version 1" in error
    dep = mv.run_metadata["deployment"]
    assert dep["status"] == "failed" and dep["deployed"] is False and dep["stage"] == "gcp"
    assert dep["build_status"] == "FAILURE" and dep["build_id"] == BUILD_ID and dep["log_url"] == LOG_URL
    assert len(fake.requests) >= 2  # it did submit and poll
    # the candidate is archived with its failure; the previous version is still production
    from zenml.client import Client

    assert stage_name(mv) == "archived" and ModelVersionMetadata.of(mv).stage_change.state == "failed"
    assert Client().get_model_version("step_gcp_fail", "production").number == first.number
    failed = [a for a in hook.received if "FAILED" in a["text"]]
    assert failed and LOG_URL in failed[0]["text"], hook.received


def test_serve_refuses_a_version_whose_deploy_failed(matcher_dir, tmp_path):
    mv, error = run_deploy(
        "step_smoke_fail",
        path=matcher_dir,
        promote=True,
        deploy={"deployer": "local", "smoke_test": True, "model_dir": str(tmp_path)},
    )
    assert error is not None and "smoke test needs data" in error, error
    assert mv.run_metadata["deployment"]["stage"] == "configuration" and stage_name(mv) == "archived"
    from cli.serve import NoProductionModel, production_bento

    with pytest.raises(NoProductionModel, match="no version of model 'step_smoke_fail' is in production"):
        production_bento({"model_name": "step_smoke_fail", "deploy": {}})


def test_re_export_swaps_directories_and_a_crash_between_the_renames_keeps_the_old_copy(
    small_matcher, tmp_path, monkeypatch
):
    from ledgerlink.deploy import export
    from ledgerlink.matching.base import load_matcher

    first = export.export_model(small_matcher, tmp_path, "m", "3", {"run": 1})
    assert json.loads((first / "info.json").read_text()) == {"run": 1}
    second = export.export_model(small_matcher, tmp_path, "m", "3", {"run": 2})
    assert second == first and json.loads((second / "info.json").read_text()) == {"run": 2}
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == ["3", "production.json"]

    real_rename = Path.rename

    def crash_on_the_second_rename(self, target):
        if self.name == "3.partial":
            raise OSError("crash")
        return real_rename(self, target)

    monkeypatch.setattr(Path, "rename", crash_on_the_second_rename)
    with pytest.raises(OSError, match="crash"):
        export.export_model(small_matcher, tmp_path, "m", "3", {"run": 3})
    monkeypatch.undo()
    kept = export.production_model_dir(tmp_path, "m")
    assert kept.name == "3.old" and json.loads((kept / "info.json").read_text()) == {"run": 2}
    assert load_matcher(kept).auto_threshold_ == small_matcher.auto_threshold_


def test_a_build_that_reports_no_digest_is_a_failed_deploy(small_matcher, tmp_path):
    """Rollback tags the digest again, so a SUCCESS without one cannot count as deployed."""
    with FakeCloudBuild(
        (200, op_json(S.QUEUED, False, IMAGE)),
        [success_op(IMAGE, digest="")],
        expected_body=build_request(BUCKET, "models/mv-7/context.tar.gz", IMAGE, 600),
    ) as fake:
        with pytest.raises(DeploymentFailed, match="reported no digest") as info:
            deploy_promoted(
                small_matcher, _info(7, "mv-7"), gcp_cfg(f"file://{tmp_path}/{BUCKET}", fake.endpoint), now=NOW
            )
    rec = info.value.record
    assert rec["status"] == "failed" and rec["build_status"] == "SUCCESS" and rec["log_url"] == LOG_URL
