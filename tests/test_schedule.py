"""Schedules: cron validation, the local orchestrator's refusal, the GCP run options, and (when the
Vertex SDKs are installed) the Vertex pipeline spec compiled for a cron schedule, submission replaced.
"""

import datetime as dt
import importlib.util
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from cli.schedule import (
    ScheduleError,
    build_schedule,
    check_orchestrator_can_schedule,
    next_runs,
    run_options,
    validate_cron,
)
from ledgerlink.config import Config

ROOT = Path(__file__).resolve().parents[1]


def test_monthly_cron_with_timezone():
    schedule = build_schedule("0  3 1 * *", "Europe/Warsaw", name="ledgerlink-monthly")
    assert schedule.cron_expression == "TZ=Europe/Warsaw 0 3 1 * *" and schedule.name == "ledgerlink-monthly"
    runs = next_runs(schedule, 2, after=dt.datetime(2026, 11, 21, tzinfo=dt.timezone.utc))
    assert [(r.month, r.day, r.hour) for r in runs] == [(12, 1, 3), (1, 1, 3)]
    assert runs[0].utcoffset() == dt.timedelta(hours=1)  # 03:00 Warsaw time, not UTC
    assert build_schedule("0 3 1 * *").cron_expression == "0 3 1 * *"


@pytest.mark.parametrize("cron", ["0 3 1 *", "0 3 32 * *", "every month", "0 0 3 1 * *", "", "TZ=UTC 0 3 1 * *"])
def test_bad_cron_is_refused_with_an_example(cron):
    with pytest.raises(ScheduleError, match="cron|timezone"):
        validate_cron(cron)


def test_bad_timezone_is_refused():
    with pytest.raises(ScheduleError, match="IANA"):
        build_schedule("0 3 1 * *", "Mars/Olympus")


def test_local_orchestrator_refuses_schedules_and_points_to_the_gcp_stack():
    from zenml.client import Client

    client = Client()
    client.activate_stack("default")
    with pytest.raises(ScheduleError) as err:
        check_orchestrator_can_schedule(client)
    msg = str(err.value)
    assert "'local' orchestrator" in msg and "make stack-gcp" in msg and "zenml stack set ledgerlink-gcp" in msg


def test_vertex_orchestrator_is_accepted_without_its_sdk():
    from zenml.client import Client
    from zenml.enums import StackComponentType

    client = Client()
    if not client.list_stacks(name="schedule-vertex"):
        orch = client.create_stack_component(
            "schedule-vertex",
            "vertex",
            StackComponentType.ORCHESTRATOR,
            {"location": "europe-west4", "project": "ledgerlink-prod"},
        )
        store = client.create_stack_component(
            "schedule-gcs", "gcp", StackComponentType.ARTIFACT_STORE, {"path": "gs://ledgerlink-data/zenml"}
        )
        client.create_stack(
            "schedule-vertex",
            components={StackComponentType.ORCHESTRATOR: orch.id, StackComponentType.ARTIFACT_STORE: store.id},
        )
    client.activate_stack("schedule-vertex")
    try:
        assert check_orchestrator_can_schedule(client) == "vertex"
    finally:
        client.activate_stack("default")


def test_gcp_config_and_run_options(monkeypatch):
    from zenml.config import DockerSettings
    from zenml.integrations.gcp.flavors.vertex_orchestrator_flavor import VertexOrchestratorSettings

    from ledgerlink.config import load_config
    from ledgerlink.deploy.gcp import GcpSettings

    monkeypatch.setenv("GCP_PROJECT", "ledgerlink-prod")
    monkeypatch.setenv("GCP_REGION", "europe-west4")
    monkeypatch.setenv("GCP_BUCKET", "ledgerlink-data")
    cfg = load_config(ROOT / "configs" / "gcp.yaml")
    assert cfg["warehouse"]["kind"] == "bigquery" and cfg["warehouse"]["project"] == "ledgerlink-prod"
    assert cfg["store"]["uri"] == "gs://ledgerlink-data/ledgerlink/datasets"
    gcp = GcpSettings.from_config(cfg["deploy"])
    assert gcp.registry == "europe-west4-docker.pkg.dev/ledgerlink-prod/ledgerlink/ledgerlink"
    # Flux watches the same repository the deploy step pushes to
    import yaml

    watched = yaml.safe_load((Path(__file__).resolve().parents[1] / "stacks/gke/imagerepository.yaml").read_text())[
        "spec"
    ]["image"]
    assert watched.split("/", 2)[2] == gcp.registry.split("/", 2)[2]

    schedule = build_schedule("0 3 1 * *", "Europe/Warsaw")
    zenml = Config.load(ROOT / "configs" / "gcp.yaml").zenml
    xgb = run_options(zenml, "xgboost", schedule)
    gpu = run_options(zenml, "transformer", schedule)
    assert xgb["schedule"] is schedule
    DockerSettings(**xgb["settings"]["docker"])  # the settings validate against ZenML's schemas
    VertexOrchestratorSettings(**xgb["settings"]["orchestrator.vertex"])
    cpu_job = VertexOrchestratorSettings(
        **xgb["steps"]["train_matcher"]["settings"]["orchestrator.vertex"]
    ).custom_job_parameters
    gpu_job = VertexOrchestratorSettings(
        **gpu["steps"]["train_matcher"]["settings"]["orchestrator.vertex"]
    ).custom_job_parameters
    assert (cpu_job.machine_type, cpu_job.accelerator_count) == ("n2-standard-8", 0)
    assert (gpu_job.accelerator_type, gpu_job.accelerator_count, gpu_job.boot_disk_size_gb) == (
        "NVIDIA_TESLA_T4",
        1,
        100,
    )
    assert run_options(Config.load(ROOT / "configs" / "local.yaml").zenml) == {}


# -- Vertex: compile the pipeline spec for a cron schedule, submission replaced ---------------------
VERTEX_SDKS = ("kfp", "google.cloud.aiplatform", "google_cloud_pipeline_components")


def _missing_sdks() -> list[str]:
    return [
        m
        for m in VERTEX_SDKS
        if importlib.util.find_spec(m.split(".")[0]) is None
        or (m == "google.cloud.aiplatform" and importlib.util.find_spec(m) is None)
    ]


@pytest.fixture
def gcs_emulator_process():
    """Stock gcp-storage-emulator as its own process: ZenML uploads the code archive to the GCS artifact store
    before submitting."""
    pytest.importorskip("gcp_storage_emulator")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    exe = Path(sys.executable).with_name("gcp-storage-emulator")
    proc = subprocess.Popen(
        [
            str(exe),
            "start",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--in-memory",
            "--default-bucket",
            "ledgerlink-data",
            "-q",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    for _ in range(300):
        try:
            urllib.request.urlopen(url + "/storage/v1/b", timeout=1).read()
            break
        except OSError:
            time.sleep(0.1)
    else:
        proc.kill()
        pytest.fail(f"gcp-storage-emulator did not answer on {url} within 30 s")
    yield url
    proc.terminate()
    proc.wait(timeout=10)


@pytest.mark.skipif(
    bool(_missing_sdks()),
    reason=(
        f"needs the Vertex SDKs ({', '.join(_missing_sdks())} missing): kfp==2.16.0, google-cloud-aiplatform, "
        "google-cloud-pipeline-components. They are not in the default venv: kfp pins protobuf<7 (we run 7.x)"
    ),
)
def test_pipeline_compiles_for_vertex_with_the_cron(tmp_path, gcs_emulator_process, monkeypatch):
    from zenml import pipeline, step
    from zenml.client import Client
    from zenml.config import DockerSettings
    from zenml.enums import StackComponentType
    from zenml.integrations.gcp.orchestrators.vertex_orchestrator import VertexOrchestrator
    from zenml.stack.stack import Stack

    spec = importlib.util.spec_from_file_location("register_gcp", ROOT / "stacks" / "register_gcp.py")
    register_gcp = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(register_gcp)
    stack = register_gcp.register_stack(
        register_gcp.render_stack("ledgerlink-prod", "europe-west4", "ledgerlink-data"),
        project="ledgerlink-prod",
        bucket="ledgerlink-data",
        auth_method="implicit",
        verify=False,
    )
    client = Client()
    # The code archive goes to the GCS emulator instead of GCS; everything else keeps the connector.
    client.update_stack_component("ledgerlink-gcs", StackComponentType.ARTIFACT_STORE, disconnect=True)
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", gcs_emulator_process)
    # Two replacements: the final submission (a cloud call), and the guard that wants a remote ZenML
    # server for remote orchestrators (the tests run on a local store).
    captured = {}

    def submit(self, pipeline_name, pipeline_file_path, run_name, settings, schedule=None):
        captured.update(path=pipeline_file_path, schedule=schedule, settings=settings)

    monkeypatch.setattr(VertexOrchestrator, "_upload_and_run_pipeline", submit)
    monkeypatch.setattr(Stack, "requires_remote_server", property(lambda self: False))

    @step
    def train_matcher() -> int:
        return 1

    @step
    def evaluate_matcher(x: int) -> int:
        return x

    @pipeline(
        enable_cache=False,
        settings={
            "docker": DockerSettings(
                skip_build=True, parent_image="europe-west4-docker.pkg.dev/ledgerlink-prod/ledgerlink/steps:test"
            )
        },
    )
    def monthly():
        evaluate_matcher(train_matcher())

    from zenml.utils import source_utils

    source_utils.set_custom_source_root(str(ROOT))  # under pytest the "main module" is pytest itself
    client.activate_stack(stack.id)
    try:
        assert check_orchestrator_can_schedule(client) == "vertex"
        options = run_options(
            Config.load(ROOT / "configs" / "gcp.yaml").zenml,
            "transformer",
            build_schedule("0 3 1 * *", "Europe/Warsaw"),
        )
        options.pop("settings")  # the image settings need a real build; this run uses skip_build
        monthly.with_options(**options)()
    finally:
        client.activate_stack("default")
        source_utils.set_custom_source_root(None)
    assert captured["schedule"].cron_expression == "TZ=Europe/Warsaw 0 3 1 * *"
    compiled = json.loads(Path(captured["path"]).read_text())
    train = compiled["components"]["comp-train-matcher"]["inputDefinitions"]["parameters"]
    (pool,) = train["worker_pool_specs"]["defaultValue"]  # train_matcher runs as a Vertex custom job
    assert pool["machine_spec"] == {
        "machine_type": "n1-standard-8",
        "accelerator_type": "NVIDIA_TESLA_T4",
        "accelerator_count": 1,
    }
    assert pool["container_spec"]["image_uri"].endswith("/ledgerlink/steps:test")
    assert "train_matcher" in pool["container_spec"]["args"]
    assert "NVIDIA_TESLA_T4" not in json.dumps(compiled["components"]["comp-evaluate-matcher"])
    assert os.path.basename(captured["path"]).endswith(".json")


def test_one_schedule_per_pipeline_and_a_taken_name_is_refused_before_any_is_submitted():
    from zenml.client import Client
    from zenml.enums import StackComponentType
    from zenml.models import ScheduleRequest

    from cli.schedule import check_schedule_names_free

    client = Client()
    assert check_schedule_names_free("all", client) == [
        "ledgerlink-data_collection",
        "ledgerlink-monitoring",
        "ledgerlink-training",
    ]
    assert check_schedule_names_free("training", client) == ["ledgerlink-training"]
    orchestrator = client.active_stack_model.components[StackComponentType.ORCHESTRATOR][0]
    client.zen_store.create_schedule(
        ScheduleRequest(
            project=client.active_project.id,
            name="ledgerlink-monitoring",
            active=True,
            cron_expression="0 3 1 * *",
            orchestrator_id=orchestrator.id,
            pipeline_id=None,
        )
    )
    with pytest.raises(
        ScheduleError, match=r"\['ledgerlink-monitoring'\] exist already.*zenml pipeline schedule delete"
    ):
        check_schedule_names_free("all", client)
    assert check_schedule_names_free("training", client) == ["ledgerlink-training"]
