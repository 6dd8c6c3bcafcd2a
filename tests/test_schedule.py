"""Schedules: cron validation, the local orchestrator's refusal, the GCP run options, one schedule name per
pipeline. Compiling and submitting them to Vertex AI (through the real clients, on loopback) is in
tests/test_vertex.py.
"""

import datetime as dt
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


def test_vertex_orchestrator_is_accepted_from_the_store_alone():
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
    taken = client.zen_store.create_schedule(
        ScheduleRequest(
            project=client.active_project.id,
            name="ledgerlink-monitoring",
            active=True,
            cron_expression="0 3 1 * *",
            orchestrator_id=orchestrator.id,
            pipeline_id=None,
        )
    )
    try:
        with pytest.raises(
            ScheduleError, match=r"\['ledgerlink-monitoring'\] exist already.*zenml pipeline schedule delete"
        ):
            check_schedule_names_free("all", client)
        assert check_schedule_names_free("training", client) == ["ledgerlink-training"]
    finally:
        client.delete_schedule(taken.id)  # the ZenML store is shared by the whole session
