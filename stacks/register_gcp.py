#!/usr/bin/env python
"""Register the ledgerlink GCP stack (stacks/gcp.yaml) and the GCP service connector it runs with.

    python stacks/register_gcp.py --project P --region R --bucket B            # what `make stack-gcp` runs
        [--auth-method auto|service-account|implicit] [--key-file sa.json]
        [--repository ledgerlink] [--service-account EMAIL] [--no-verify] [--set]
    python stacks/register_gcp.py --project P --region R --bucket B --render-only   # YAML for `zenml stack import`

The connector holds the credentials; the components only name the resources they use, so nothing
secret lands in the stack definition. ``auto`` takes the local gcloud credentials
(``gcloud auth application-default login``), ``service-account`` a key file, ``implicit`` the
environment of a ZenML server that runs on GCP. Re-running updates everything in place.
"""

from __future__ import annotations

import argparse
import re
import string
import sys
from pathlib import Path
from typing import Any

import yaml

TEMPLATE = Path(__file__).resolve().parent / "gcp.yaml"
CONNECTOR = "ledgerlink-gcp"
# ZenML resource type and resource id each component is connected to (None: the connector's project).
RESOURCES = {
    "orchestrator": ("gcp-generic", None),
    "image_builder": ("gcp-generic", None),
    "artifact_store": ("gcs-bucket", "bucket"),
    "container_registry": ("docker-registry", "uri"),
}


def _check(project: str, region: str, bucket: str) -> str:
    """Validate the three names with GCP's own rules; return the bare bucket name."""
    bucket = bucket.removeprefix("gs://").rstrip("/")
    problems = []
    if not re.fullmatch(r"[a-z][a-z0-9-]{4,28}[a-z0-9]", project or ""):
        problems.append(f"PROJECT {project!r} is not a GCP project id (6-30 lowercase letters, digits, hyphens)")
    if not re.fullmatch(r"[a-z]+-[a-z]+[0-9]+", region or ""):
        problems.append(f"REGION {region!r} is not a GCP region such as europe-west4 or us-central1")
    if not re.fullmatch(r"[a-z0-9][a-z0-9._-]{1,61}[a-z0-9]", bucket or "") or "/" in bucket:
        problems.append(f"BUCKET {bucket!r} is not a bucket name (3-63 lowercase letters, digits, '-', '_', '.')")
    if problems:
        raise ValueError("; ".join(problems))
    return bucket


def render_stack(
    project: str,
    region: str,
    bucket: str,
    repository: str = "ledgerlink",
    service_account: str | None = None,
    template: Path = TEMPLATE,
) -> dict[str, Any]:
    """stacks/gcp.yaml with the placeholders filled in, as the dict `zenml stack import` reads."""
    bucket = _check(project, region, bucket)
    values = {
        "PROJECT": project,
        "REGION": region,
        "BUCKET": bucket,
        "REPOSITORY": repository,
        "SERVICE_ACCOUNT": service_account or f"ledgerlink-runner@{project}.iam.gserviceaccount.com",
    }
    text = string.Template(template.read_text()).substitute(values)
    return yaml.safe_load(text)


def _detach_users(client, connector) -> list[tuple]:
    """Unlink every stack component that uses ``connector``; return what to re-link afterwards.

    ZenML refuses to change the auth method of a connector that components use, and to delete one
    (IllegalOperationError). Re-running with another ``--auth-method`` (or ``auto``, which re-creates the
    connector from the local gcloud credentials) therefore detaches the users first and re-links them.
    """
    users = client.list_stack_components(connector_id=connector.id, size=1000).items
    for component in users:
        client.update_stack_component(component.id, component.type, disconnect=True)
    return [(c.id, c.type, c.connector_resource_id) for c in users]


def _connector(client, name: str, project: str, auth_method: str, key_file: str | None, verify: bool):
    """Create or update the multi-type GCP service connector, keeping the components that use it linked."""
    if auth_method == "service-account":
        if not key_file:
            raise ValueError("--auth-method service-account needs --key-file with the service account's JSON key")
        configuration = {"project_id": project, "service_account_json": Path(key_file).read_text()}
    elif auth_method == "implicit":
        configuration = {"project_id": project}
    else:
        configuration = None
    try:
        existing = client.get_service_connector(name, allow_name_prefix_match=False)
    except KeyError:
        existing = None
    description = "ledgerlink: Vertex, GCS, Artifact Registry, Cloud Build"
    relink: list[tuple] = []
    if existing is not None and (auth_method == "auto" or existing.auth_method != auth_method):
        relink = _detach_users(client, existing)
    if auth_method == "auto":
        if existing is not None:
            client.delete_service_connector(existing.id)
        connector, _ = client.create_service_connector(
            name=name, connector_type="gcp", auto_configure=True, verify=verify, description=description
        )
    elif existing is not None:
        connector, _ = client.update_service_connector(
            existing.id, auth_method=auth_method, configuration=configuration, resource_type="", verify=verify
        )
    else:
        connector, _ = client.create_service_connector(
            name=name,
            connector_type="gcp",
            auth_method=auth_method,
            configuration=configuration,
            verify=verify,
            description=description,
        )
    for component_id, component_type, resource_id in relink:
        client.update_stack_component(
            component_id, component_type, connector_id=connector.id, connector_resource_id=resource_id
        )
    return connector


def register_stack(
    spec: dict,
    project: str,
    bucket: str,
    auth_method: str = "auto",
    key_file: str | None = None,
    verify: bool = True,
    connector_name: str = CONNECTOR,
    set_active: bool = False,
):
    """Register (or update) the connector, the components and the stack described by ``spec``."""
    from zenml.client import Client
    from zenml.enums import StackComponentType

    client = Client()
    connector = _connector(client, connector_name, project, auth_method, key_file, verify)
    components = {}
    for type_name, entries in spec["components"].items():
        ctype = StackComponentType(type_name)
        (entry,) = entries
        try:
            existing = client.get_stack_component(ctype, entry["name"], allow_name_prefix_match=False)
        except KeyError:
            existing = None
        if existing is None:
            component = client.create_stack_component(
                name=entry["name"], flavor=entry["flavor"], component_type=ctype, configuration=entry["configuration"]
            )
        elif existing.flavor_name != entry["flavor"]:
            raise ValueError(
                f"a {type_name} named {entry['name']!r} already exists with flavor {existing.flavor_name!r}; "
                f"delete it (zenml {type_name.replace('_', '-')} delete {entry['name']}) and re-run"
            )
        else:
            component = client.update_stack_component(entry["name"], ctype, configuration=entry["configuration"])
        resource_type, id_from = RESOURCES[type_name]
        resource_id = {"bucket": f"gs://{bucket}", "uri": entry["configuration"].get("uri"), None: None}[id_from]
        component = client.update_stack_component(
            component.id, ctype, connector_id=connector.id, connector_resource_id=resource_id
        )
        components[ctype] = component.id
    name = spec["stack_name"]
    try:
        client.get_stack(name, allow_name_prefix_match=False)
        stack = client.update_stack(name, component_updates=components)
    except KeyError:
        stack = client.create_stack(name=name, components=components)
    if set_active:
        client.activate_stack(stack.id)
    return stack


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--project", required=True, help="GCP project id")
    p.add_argument("--region", required=True, help="GCP region for Vertex AI, Artifact Registry and Cloud Build")
    p.add_argument("--bucket", required=True, help="GCS bucket (name or gs://name) for artifacts and datasets")
    p.add_argument("--repository", default="ledgerlink", help="Artifact Registry Docker repository")
    p.add_argument(
        "--service-account",
        help="service account Vertex runs the steps as (default: ledgerlink-runner@PROJECT.iam.gserviceaccount.com)",
    )
    p.add_argument("--auth-method", choices=["auto", "service-account", "implicit"], default="auto")
    p.add_argument("--key-file", help="service account JSON key (--auth-method service-account)")
    p.add_argument("--connector", default=CONNECTOR, help="service connector name")
    p.add_argument("--no-verify", action="store_true", help="register without asking GCP whether the credentials work")
    p.add_argument("--set", action="store_true", help="make the stack active")
    p.add_argument("--render-only", action="store_true", help="print the filled-in stack YAML and register nothing")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        spec = render_stack(args.project, args.region, args.bucket, args.repository, args.service_account)
        if args.render_only:
            print(yaml.safe_dump(spec, sort_keys=False), end="")
            return 0
        stack = register_stack(
            spec,
            project=args.project,
            bucket=args.bucket.removeprefix("gs://").rstrip("/"),
            auth_method=args.auth_method,
            key_file=args.key_file,
            verify=not args.no_verify,
            connector_name=args.connector,
            set_active=args.set,
        )
    except (ValueError, OSError) as exc:
        print(f"register_gcp: {exc}", file=sys.stderr)
        return 2
    print(
        f"Registered stack {stack.name!r} with service connector {args.connector!r}. "
        f"Use it with: zenml stack set {stack.name}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
