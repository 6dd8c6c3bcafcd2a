"""The ZenML stack definitions: both import into ZenML, and every component validates against its flavor.

Runs in the session's isolated ZenML (tests/conftest.py: temp ZENML_CONFIG_PATH, local SQLite store).
No cloud call: components are validated against the flavors' config schemas, and the service
connector is registered without verification (``--no-verify``) from a made-up key.
"""

import importlib.util
import json
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
STACKS = ROOT / "stacks"


def _load_register():
    spec = importlib.util.spec_from_file_location("register_gcp", STACKS / "register_gcp.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


register_gcp = _load_register()
ARGS = dict(project="ledgerlink-prod", region="europe-west4", bucket="ledgerlink-data")


def _zenml(*args: str):
    from click.testing import CliRunner
    from zenml.cli.cli import cli

    result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result


def test_local_stack_imports_with_zenml_stack_import():
    from zenml.client import Client

    _zenml("stack", "import", str(STACKS / "local.yaml"))
    stack = Client().get_stack("ledgerlink-local")
    assert {t.value: c[0].flavor_name for t, c in stack.components.items()} == {
        "orchestrator": "local",
        "artifact_store": "local",
    }


def test_gcp_components_validate_against_their_flavor_schemas():
    from zenml.enums import StackComponentType
    from zenml.stack.utils import validate_stack_component_config

    spec = register_gcp.render_stack(**ARGS)
    assert "${" not in yaml.safe_dump(spec)
    configs = {}
    for type_name, (entry,) in spec["components"].items():
        configs[type_name] = validate_stack_component_config(
            entry["configuration"], entry["flavor"], StackComponentType(type_name)
        )
    vertex = configs["orchestrator"]
    assert type(vertex).__name__ == "VertexOrchestratorConfig" and vertex.is_schedulable and vertex.is_remote
    assert (vertex.location, vertex.pipeline_root) == ("europe-west4", "gs://ledgerlink-data/vertex-pipeline-root")
    assert vertex.workload_service_account == "ledgerlink-runner@ledgerlink-prod.iam.gserviceaccount.com"
    assert type(configs["artifact_store"]).__name__ == "GCPArtifactStoreConfig"
    assert configs["artifact_store"].path == "gs://ledgerlink-data/zenml-artifacts"
    assert configs["container_registry"].uri == "europe-west4-docker.pkg.dev/ledgerlink-prod/ledgerlink"
    assert (
        type(configs["image_builder"]).__name__ == "GCPImageBuilderConfig"
        and configs["image_builder"].location == "europe-west4"
    )
    # the schemas are real: a Vertex orchestrator without a region, or an artifact store off GCS, is refused
    with pytest.raises(ValueError):
        validate_stack_component_config({"project": "p"}, "vertex", StackComponentType.ORCHESTRATOR)
    with pytest.raises(Exception, match="gs://"):
        validate_stack_component_config({"path": "s3://elsewhere"}, "gcp", StackComponentType.ARTIFACT_STORE)


def test_rendered_gcp_stack_imports_with_zenml_stack_import(tmp_path, capsys):
    from zenml.client import Client

    assert (
        register_gcp.main(
            [
                "--project",
                ARGS["project"],
                "--region",
                ARGS["region"],
                "--bucket",
                "gs://ledgerlink-data",
                "--render-only",
            ]
        )
        == 0
    )
    spec = yaml.safe_load(capsys.readouterr().out)
    spec["stack_name"] = "imported-gcp"
    for entries in spec["components"].values():
        entries[0]["name"] = "imported-" + entries[0]["name"]
    path = tmp_path / "gcp.rendered.yaml"
    path.write_text(yaml.safe_dump(spec))
    _zenml("stack", "import", str(path))
    stack = Client().get_stack("imported-gcp")
    flavors = {t.value: c[0].flavor_name for t, c in stack.components.items()}
    assert flavors == {
        "orchestrator": "vertex",
        "artifact_store": "gcp",
        "container_registry": "gcp",
        "image_builder": "gcp",
    }


def test_register_script_links_every_component_to_the_service_connector(tmp_path):
    # the GCP service connector needs google-cloud-artifact-registry and google-cloud-container (gcp extra)
    import google.cloud.artifactregistry_v1  # noqa: F401
    import google.cloud.container_v1  # noqa: F401
    from zenml.client import Client

    key = tmp_path / "sa.json"
    key.write_text(
        json.dumps(
            {
                "type": "service_account",
                "project_id": ARGS["project"],
                "private_key_id": "0",
                "private_key": "-----BEGIN PRIVATE KEY-----\nMIIB\n-----END PRIVATE KEY-----\n",
                "client_email": f"ledgerlink-runner@{ARGS['project']}.iam.gserviceaccount.com",
                "client_id": "0",
                "token_uri": "https://oauth2.googleapis.com/token",
            }
        )
    )
    argv = [
        "--project",
        ARGS["project"],
        "--region",
        ARGS["region"],
        "--bucket",
        ARGS["bucket"],
        "--auth-method",
        "service-account",
        "--key-file",
        str(key),
        "--no-verify",
    ]
    implicit = argv[:6] + ["--auth-method", "implicit", "--no-verify"]
    assert register_gcp.main(implicit) == 0  # e.g. registered earlier on a ZenML server that runs on GCP
    first = Client().get_stack("ledgerlink-gcp")
    assert register_gcp.main(argv) == 0  # another auth method for a connector the stack uses
    assert register_gcp.main(argv) == 0  # re-running updates in place
    stack = Client().get_stack("ledgerlink-gcp")
    assert stack.id == first.id
    connector = Client().get_service_connector("ledgerlink-gcp")
    assert (
        connector.connector_type.connector_type
        if hasattr(connector.connector_type, "connector_type")
        else connector.connector_type
    ) == "gcp"
    assert connector.auth_method == "service-account"
    linked = {t.value: (c[0].connector.name, c[0].connector_resource_id) for t, c in stack.components.items()}
    assert linked == {
        "orchestrator": ("ledgerlink-gcp", None),
        "image_builder": ("ledgerlink-gcp", None),
        "artifact_store": ("ledgerlink-gcp", "gs://ledgerlink-data"),
        "container_registry": ("ledgerlink-gcp", "europe-west4-docker.pkg.dev/ledgerlink-prod/ledgerlink"),
    }


def test_bad_names_are_refused_before_anything_is_registered(capsys):
    assert (
        register_gcp.main(["--project", "Ledgerlink", "--region", "europe", "--bucket", "ok-bucket", "--render-only"])
        == 2
    )
    err = capsys.readouterr().err
    assert "PROJECT 'Ledgerlink'" in err and "REGION 'europe'" in err


def test_register_script_with_auto_replaces_the_connector_and_keeps_the_stack_linked(tmp_path, monkeypatch):
    """AUTH=auto re-creates the connector from the local Google credentials (here a service-account key file in
    GOOGLE_APPLICATION_CREDENTIALS, whose token endpoint is a loopback server); a stack using the old connector
    is unlinked first (ZenML refuses to delete a connector in use) and linked to the new one."""
    from google_loopback import GoogleLoopback, service_account_key
    from zenml.client import Client

    with GoogleLoopback(ARGS["project"], ARGS["region"]) as google:
        key = tmp_path / "adc.json"
        email = f"ledgerlink-runner@{ARGS['project']}.iam.gserviceaccount.com"
        key.write_text(json.dumps(service_account_key(google.endpoint + "/token", ARGS["project"], email)))
        monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(key))
        base = ["--project", ARGS["project"], "--region", ARGS["region"], "--bucket", ARGS["bucket"], "--no-verify"]
        assert register_gcp.main([*base, "--auth-method", "service-account", "--key-file", str(key)]) == 0
        before = Client().get_service_connector("ledgerlink-gcp")
        assert register_gcp.main([*base, "--auth-method", "auto"]) == 0
    after = Client().get_service_connector("ledgerlink-gcp")
    assert after.id != before.id
    stack = Client().get_stack("ledgerlink-gcp")
    assert {t.value: c[0].connector.id for t, c in stack.components.items()} == {
        "orchestrator": after.id,
        "image_builder": after.id,
        "artifact_store": after.id,
        "container_registry": after.id,
    }
