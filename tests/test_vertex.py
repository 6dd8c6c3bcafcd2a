"""The three pipelines compiled by ZenML's Vertex orchestrator and submitted through the real Google clients.

The GCP stack is registered by stacks/register_gcp.py exactly as `make stack-gcp` does, with a
service-account connector whose key (a freshly generated RSA key) names a loopback token endpoint.
Everything the stack talks to is on 127.0.0.1:
- GCS: gcp-storage-emulator (ZenML uploads the image build context to the artifact store);
- Cloud Build, Vertex AI Pipelines and the OAuth token endpoint: tests/google_loopback.py.
Two things are pointed there, nothing else is replaced: aiplatform through its own
``aiplatform.init(api_endpoint=..., api_transport="rest")``, and ZenML's Cloud Build client, which
takes no endpoint setting, by building the same client class with the loopback endpoint and REST
transport (the regional endpoint ZenML asked for is recorded and checked). ZenML's check that a remote
orchestrator needs a deployed ZenML server is lifted: the tests run on a local store.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from google_loopback import DIGEST, TOKEN, GoogleLoopback, gcs_emulator_process, load_register_gcp, service_account_key

ROOT = Path(__file__).resolve().parents[1]
PROJECT, REGION, BUCKET = "ledgerlink-prod", "europe-west4", "ledgerlink-data"
RUNNER = f"ledgerlink-runner@{PROJECT}.iam.gserviceaccount.com"
REGISTRY = f"{REGION}-docker.pkg.dev/{PROJECT}/ledgerlink"


@pytest.fixture(scope="module")
def gcs():
    with gcs_emulator_process(BUCKET) as url:
        yield url


@pytest.fixture
def gcp(tmp_path, gcs, monkeypatch):
    """The registered GCP stack, active, with every Google API it calls on loopback. Yields the server."""
    from google.api_core.client_options import ClientOptions
    from google.cloud.aiplatform import initializer
    from google.cloud.devtools import cloudbuild_v1
    from zenml.client import Client
    from zenml.enums import StackComponentType
    from zenml.stack.stack import Stack
    from zenml.utils import source_utils

    register_gcp = load_register_gcp()

    with GoogleLoopback(PROJECT, REGION) as google:
        key = tmp_path / "sa.json"
        key.write_text(json.dumps(service_account_key(google.endpoint + "/token", PROJECT, RUNNER)))
        spec = register_gcp.render_stack(PROJECT, REGION, BUCKET)
        stack = register_gcp.register_stack(
            spec, project=PROJECT, bucket=BUCKET, auth_method="service-account", key_file=str(key), verify=False
        )
        client = Client()
        for leftover in client.list_schedules(name="startswith:ledgerlink-", size=100).items:
            client.delete_schedule(leftover.id)  # names must be free for `--schedule`
        # gcsfs reaches the emulator through STORAGE_EMULATOR_HOST, without the connector's token
        client.update_stack_component("ledgerlink-gcs", StackComponentType.ARTIFACT_STORE, disconnect=True)
        monkeypatch.setenv("STORAGE_EMULATOR_HOST", gcs)
        monkeypatch.setattr(initializer.global_config, "_api_endpoint", google.endpoint)
        monkeypatch.setattr(initializer.global_config, "_api_transport", "rest")
        real_client = cloudbuild_v1.CloudBuildClient
        google.cloud_build_endpoints = []

        def loopback_cloud_build(credentials=None, client_options=None, **kwargs):
            google.cloud_build_endpoints.append(client_options.api_endpoint if client_options else None)
            return real_client(
                credentials=credentials, transport="rest", client_options=ClientOptions(api_endpoint=google.endpoint)
            )

        monkeypatch.setattr(cloudbuild_v1, "CloudBuildClient", loopback_cloud_build)
        monkeypatch.setattr(Stack, "requires_remote_server", property(lambda self: False))
        for name, value in (("GCP_PROJECT", PROJECT), ("GCP_REGION", REGION), ("GCP_BUCKET", BUCKET)):
            monkeypatch.setenv(name, value)
        source_utils.set_custom_source_root(str(ROOT))  # under pytest the "main module" is pytest itself
        client.activate_stack(stack.id)
        try:
            yield google
        finally:
            client.activate_stack("default")
            source_utils.set_custom_source_root(None)


# What the compiled specs must say: each step's upstream steps (the order Vertex runs them in).
DAGS = {
    "data_collection": {"collect_month": []},
    "monitoring": {
        "current_dataset": [],
        "detect_data_drift": ["current_dataset"],
        "score_production_on_fresh_month": ["current_dataset"],
        "score_suggestions": ["current_dataset"],
        "decide_retraining": ["detect_data_drift", "score_production_on_fresh_month", "score_suggestions"],
    },
    "training": {
        "current_dataset": [],
        "train_matcher": ["current_dataset"],
        "evaluate_matcher": ["current_dataset", "train_matcher"],
        "compare_with_production": ["current_dataset", "evaluate_matcher"],
        "promote_model": ["compare_with_production", "current_dataset", "evaluate_matcher"],
        "deploy_model": ["compare_with_production", "current_dataset", "promote_model", "train_matcher"],
    },
}
IMAGE = f"{REGISTRY}/zenml@{DIGEST}"  # what ZenML's Cloud Build image builder returned
CUSTOM_JOB_LAUNCHER = "gcr.io/ml-pipeline/google-cloud-pipeline-components:2.22.0"


def _config():
    from ledgerlink.config import Config

    return Config.load(ROOT / "configs" / "gcp.yaml")


def _steps(spec: dict) -> dict[str, dict]:
    """{step name: {"after": [...], "image", "env", "machine", "resources"}} from a compiled Vertex pipeline spec."""
    executors = spec["deploymentSpec"]["executors"]
    steps = {}
    for task_id, task in spec["root"]["dag"]["tasks"].items():
        name = task["taskInfo"]["name"]
        component = spec["components"][task["componentRef"]["name"]]
        container = executors[component["executorLabel"]]["container"]
        step = {"after": sorted(t.replace("-", "_") for t in task.get("dependentTasks", []))}
        if container["image"] == CUSTOM_JOB_LAUNCHER:  # runs as a Vertex custom job: its own machine
            (pool,) = component["inputDefinitions"]["parameters"]["worker_pool_specs"]["defaultValue"]
            step.update(
                image=pool["container_spec"]["image_uri"],
                env={e["name"]: e["value"] for e in pool["container_spec"]["env"]},
                args=pool["container_spec"]["args"],
                machine=pool["machine_spec"],
                disk=pool["disk_spec"],
            )
        else:
            step.update(
                image=container["image"],
                env={e["name"]: e["value"] for e in container["env"]},
                args=container["args"],
                machine=container.get("resources"),  # None: Vertex's default machine for a pipeline step
            )
        steps[name] = step
    return steps


def _check_common(spec: dict, pipeline: str, stack_id) -> dict[str, dict]:
    from zenml.client import Client

    steps = _steps(spec)
    assert {name: step["after"] for name, step in steps.items()} == DAGS[pipeline]
    store_url = Client().zen_store.config.url
    for name, step in steps.items():
        assert step["image"] == IMAGE, name
        assert step["args"][-2:] == ["--step_name", name]
        env = step["env"]
        assert env["ZENML_VERTEX_RUN_ID"] == "{{$.pipeline_job_name}}"  # Vertex fills in the job's name
        assert env["ZENML_ACTIVE_STACK_ID"] == str(stack_id) and env["ZENML_VERSION"] == "0.98.0"
        assert env["ZENML_STORE_URL"] == store_url  # the steps report back to the same ZenML store
        assert env["ZENML_ANALYTICS_OPT_IN"] == "False"
        if name != "train_matcher":
            assert step["machine"] is None, name
    return steps


def _cloud_build_requests(google) -> list[dict]:
    """The Cloud Build requests ZenML's GCP image builder sent: one image per pipeline, built from the context
    it uploaded to the artifact store's bucket."""
    assert set(google.cloud_build_endpoints) == {f"{REGION}-cloudbuild.googleapis.com"}  # the regional endpoint
    bodies = google.bodies("build.create")
    for body in bodies:
        (image,) = body["images"]
        source = body["source"]["storageSource"]
        assert source["bucket"] == BUCKET
        assert source["object"].startswith("zenml-artifacts/cloud-build-contexts/") and source["object"].endswith(
            ".tar.gz"
        )
        assert body == {
            "source": {"storageSource": source},
            "steps": [
                {"name": "gcr.io/cloud-builders/docker", "args": ["build", "--network=cloudbuild", "-t", image, "."]},
                {"name": "gcr.io/cloud-builders/docker", "args": ["push", image]},
            ],
            "images": [image],
            "timeout": "3600s",
        }
    return bodies


def _check_auth(google) -> None:
    """Every API call carried the token the service connector's key obtained from the token endpoint."""
    import base64

    token_requests = [r for r in google.requests if r["route"] == "token"]
    assert token_requests
    for r in token_requests:
        assert r["body"]["grant_type"] == ["urn:ietf:params:oauth:grant-type:jwt-bearer"]
        claims = r["body"]["assertion"][0].split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(claims + "=" * (-len(claims) % 4)))
        assert claims["iss"] == RUNNER and "cloud-platform" in claims["scope"]
    for r in google.requests:
        if r["route"] != "token":
            assert r["headers"].get("authorization") == f"Bearer {TOKEN}", r["path"]


def test_monthly_schedules_compile_and_submit_for_the_three_pipelines(gcp, tmp_path):
    """`python run.py --config configs/gcp.yaml --pipeline all --schedule "0 3 1 * *" --timezone Europe/Warsaw`,
    transformer family: one Cloud Build and one Vertex schedule per pipeline, the GPU only on train_matcher."""
    from zenml.client import Client

    import run

    config = tmp_path / "gcp-transformer.yaml"
    config.write_text((ROOT / "configs" / "gcp.yaml").read_text().replace("family: xgboost", "family: transformer"))
    argv = ["--pipeline", "all", "--config", str(config), "--schedule", "0 3 1 * *", "--timezone", "Europe/Warsaw"]
    assert run.main(argv) == 0

    stack_id = Client().active_stack_model.id
    bodies = gcp.bodies("schedule.create")
    assert [b["displayName"] for b in bodies] == [
        "ledgerlink-data_collection",
        "ledgerlink-monitoring",
        "ledgerlink-training",
    ]
    for body, pipeline in zip(bodies, ["data_collection", "monitoring", "training"]):
        job = body["createPipelineJobRequest"]["pipelineJob"]
        spec = job.pop("pipelineSpec")
        assert body == {
            "displayName": f"ledgerlink-{pipeline}",
            "cron": "TZ=Europe/Warsaw 0 3 1 * *",  # Vertex reads the time zone from the TZ= prefix
            "maxConcurrentRunCount": "1",
            "createPipelineJobRequest": {
                "parent": f"projects/{PROJECT}/locations/{REGION}",
                "pipelineJob": {
                    "labels": {"app": "ledgerlink"},
                    "runtimeConfig": {"gcsOutputDirectory": f"gs://{BUCKET}/vertex-pipeline-root"},
                    "serviceAccount": RUNNER,
                },
            },
        }
        assert spec["pipelineInfo"]["name"] == pipeline.replace("_", "-") and spec["sdkVersion"] == "kfp-2.16.1"
        steps = _check_common(spec, pipeline, stack_id)
        if pipeline == "training":
            assert steps["train_matcher"]["machine"] == {
                "machine_type": "n1-standard-8",
                "accelerator_type": "NVIDIA_TESLA_T4",
                "accelerator_count": 1,
            }
            assert steps["train_matcher"]["disk"]["boot_disk_size_gb"] == 100
    images = [b["images"][0] for b in _cloud_build_requests(gcp)]
    assert images == [f"{REGISTRY}/zenml:{p}-orchestrator" for p in ("data_collection", "monitoring", "training")]
    _check_auth(gcp)
    assert not gcp.bodies("pipelineJob.create")  # a schedule runs nothing now

    # ZenML recorded the three schedules, so the same command is refused before anything is built
    sent = len(gcp.requests)
    assert run.main(argv) == 2
    assert len(gcp.requests) == sent
    for name in ("ledgerlink-data_collection", "ledgerlink-monitoring", "ledgerlink-training"):
        Client().delete_schedule(name)


def test_step_image_build_context_is_the_project_with_its_lock(gcp, gcs):
    """The archive ZenML uploads for Cloud Build: the code, pyproject.toml and constraints.txt, a Dockerfile that
    installs the project from that lock, and none of the local environment."""
    import io
    import tarfile

    import gcsfs

    from cli.runner import schedule
    from cli.schedule import build_schedule, run_options

    options = run_options(_config().zenml, "xgboost", build_schedule("0 3 1 * *"))
    assert schedule(_config(), "data", options) == 0
    (body,) = _cloud_build_requests(gcp)
    source = body["source"]["storageSource"]
    fs = gcsfs.GCSFileSystem(endpoint_url=gcs, token="anon", project=PROJECT)
    with tarfile.open(fileobj=io.BytesIO(fs.cat(f"{source['bucket']}/{source['object']}")), mode="r:gz") as tar:
        names = set(tar.getnames())
        dockerfile = tar.extractfile("Dockerfile").read().decode()
    for needed in ("constraints.txt", "pyproject.toml", "README.md", "src/ledgerlink/__init__.py", "run.py"):
        assert needed in names, needed
    assert not [n for n in names if n.startswith((".venv", ".git/", ".ledgerlink")) or "__pycache__" in n]
    lines = dockerfile.splitlines()
    assert lines[0] == "FROM zenmldocker/zenml:0.98.0-py3.11"
    assert 'RUN pip install --no-cache-dir -c constraints.txt -e ".[gcp]"' in lines
    assert lines.index("COPY . .") < lines.index('RUN pip install --no-cache-dir -c constraints.txt -e ".[gcp]"')
    from zenml.client import Client

    Client().delete_schedule("ledgerlink-data_collection")


def test_one_off_training_run_submits_a_pipeline_job_and_waits_for_it(gcp):
    """`python run.py --config configs/gcp.yaml --pipeline training` (xgboost): PipelineJob create, then polled
    until Vertex says it succeeded (`synchronous: true`); train_matcher on the CPU machine, no GPU."""
    from zenml.client import Client

    from cli.runner import model_spec
    from cli.schedule import run_options
    from pipelines import training

    cfg = _config()
    options = run_options(_config().zenml, "xgboost")
    training.with_options(model=model_spec(cfg), **options)(config=cfg)

    (create,) = [r for r in gcp.requests if r["route"] == "pipelineJob.create"]
    job = dict(create["body"])
    spec = job.pop("pipelineSpec")
    job_id = create["query"].split("pipelineJobId=")[1].split("&")[0]
    assert job_id.startswith("training-") and job_id == job_id.lower()
    assert job == {
        "displayName": "training",
        "labels": {"app": "ledgerlink"},
        "runtimeConfig": {"gcsOutputDirectory": f"gs://{BUCKET}/vertex-pipeline-root"},
        "serviceAccount": RUNNER,
    }
    steps = _check_common(spec, "training", Client().active_stack_model.id)
    assert steps["train_matcher"]["machine"] == {"machine_type": "n2-standard-8"}
    polls = [r for r in gcp.requests if r["route"] == "pipelineJob.get"]
    assert polls and polls[-1]["path"].endswith(f"/pipelineJobs/{job_id}")
    _check_auth(gcp)


# -- failures end in an error that says what to do --------------------------------------------------------
def _wait_for_abandoned_submissions(timeout_s: float = 60) -> None:
    """A timed-out submission goes on in its daemon thread until the server answers; let it finish before the
    next test changes the ZenML store under it."""
    import threading
    import time

    deadline = time.monotonic() + timeout_s
    for thread in threading.enumerate():
        if thread.name.startswith("ledgerlink-submit"):
            thread.join(max(0.0, deadline - time.monotonic()))


SCHEDULE_FAILURES = {
    "403": (
        ("schedule.create", 403, "Permission 'aiplatform.schedules.create' denied"),
        ["Vertex AI refused", "403 permission denied", "roles/aiplatform.user", "Nothing was created"],
    ),
    "409": (
        ("schedule.create", 409, "Schedule ledgerlink-data_collection already exists"),
        ["409", "exists already", "zenml pipeline schedule delete", "vertex-ai/pipelines/schedules"],
    ),
    "503": (
        ("schedule.create", 503, "The service is currently unavailable."),
        ["Vertex AI failed on its side", "503", "submit again in a few minutes"],
    ),
    "timeout": (("schedule.create", "hang", 300), ["Vertex AI did not answer", "in time", "before submitting again"]),
    "cloud-build-failure": (
        ("build", "status", 4),
        ["Cloud Build could not build the step image", "Its log", "nothing was scheduled"],
    ),
    "cloud-build-403": (
        ("build.create", 403, "The caller does not have permission"),
        ["Cloud Build (the step image) refused", "roles/cloudbuild.builds.editor"],
    ),
}


@pytest.mark.parametrize("case", list(SCHEDULE_FAILURES))
def test_a_refused_or_unanswered_schedule_says_what_to_do_and_a_rerun_works(gcp, capsys, monkeypatch, case):
    from zenml.client import Client

    import run
    from cli import schedule as cli_schedule

    (route, status, detail), phrases = SCHEDULE_FAILURES[case]
    if status == "status":
        gcp.build_status = detail
    elif status == "hang":
        gcp.hang(route, detail)
        # the deadline covers the compile and image build too (seconds here, more on a busy machine)
        monkeypatch.setattr(cli_schedule, "SUBMIT_TIMEOUT_S", 60)
    else:
        gcp.fail(route, status, detail)
    argv = ["--pipeline", "data", "--config", str(ROOT / "configs" / "gcp.yaml"), "--schedule", "0 3 1 * *"]
    try:
        assert run.main(argv) == 2
    finally:
        gcp.release()
        _wait_for_abandoned_submissions()
    out = " ".join(capsys.readouterr().out.split())
    for phrase in phrases:
        assert phrase in out, (phrase, out)
    assert "Traceback" not in out and "Scheduled before this one: none" in out
    # nothing is left behind on ZenML's side, so the same command works once the cause is fixed
    assert not Client().list_schedules(name="ledgerlink-data_collection").total
    assert run.main(argv) == 0
    assert gcp.bodies("schedule.create")[-1]["displayName"] == "ledgerlink-data_collection"
    Client().delete_schedule("ledgerlink-data_collection")


@pytest.mark.parametrize("status", [409, 500])
def test_a_refused_one_off_run_says_what_to_do(gcp, status):
    from cli.schedule import SubmissionError, run_options, submit
    from pipelines import data_collection

    gcp.fail("pipelineJob.create", status, "refused by the loopback Vertex AI")
    run = data_collection.with_options(**run_options(_config().zenml, "xgboost"))
    with pytest.raises(SubmissionError) as err:
        submit(lambda: run(config=_config()), "the data_collection run", PROJECT, REGION)
    msg = str(err.value)
    assert ("exists already" if status == 409 else "failed on its side") in msg
    assert "refused by the loopback Vertex AI" in msg
    assert err.value.__cause__ is None and err.value.__suppress_context__  # no google traceback chained
