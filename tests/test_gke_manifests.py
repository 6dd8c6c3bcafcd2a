"""GKE + Flux manifests in stacks/gke, and the image tags Flux orders.

Kubernetes kinds are validated offline with kubernetes-validate (bundled schemas, strict: unknown
fields fail). Flux kinds are checked against the required fields and enums of the
image.toolkit.fluxcd.io/v1 CRDs (image-reflector-controller / image-automation-controller). The
ImagePolicy is then applied to tags from ``image_tag()`` the way Flux does it: regex filter with
named groups, ``extract`` expansion, numerical sort, highest wins.
"""

from __future__ import annotations

import json
import re
from datetime import datetime, timedelta, timezone
from pathlib import Path

import jsonschema
import kubernetes_validate
import pytest
import yaml

from ledgerlink.deploy.tags import TAG_PATTERN, image_tag, image_uri, parse_tag

GKE = Path(__file__).resolve().parents[1] / "stacks" / "gke"
K8S_VERSION = "1.34"  # a recent GKE version; kubernetes-validate falls back to the newest schema <= this
FLUX_API = "image.toolkit.fluxcd.io/v1"
DURATION = r"^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$"  # metav1.Duration pattern in the Flux CRDs


def _docs(name: str) -> list[dict]:
    return [d for d in yaml.safe_load_all((GKE / name).read_text()) if d]


def _one(name: str) -> dict:
    (doc,) = _docs(name)
    return doc


def _all() -> dict[str, dict]:
    out = {}
    for path in sorted(GKE.glob("*.yaml")):
        for doc in _docs(path.name):
            out[doc["kind"]] = doc
    return out


# ------------------------------------------------------------------------------------------------
# Kubernetes kinds
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["namespace.yaml", "deployment.yaml", "service.yaml"])
def test_kubernetes_kinds_validate(name):
    for doc in _docs(name):
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


def test_validator_does_reject_a_broken_deployment():
    dep = _one("deployment.yaml")
    dep["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"] = "3000"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(dep, K8S_VERSION, strict=True)
    dep = _one("deployment.yaml")
    dep["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {}  # typo -> unknown field
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(dep, K8S_VERSION, strict=True)


def _quantity(q) -> float:
    q = str(q)
    units = {"m": 1e-3, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "k": 1e3, "M": 1e6, "G": 1e9}
    for suffix, factor in sorted(units.items(), key=lambda kv: -len(kv[0])):
        if q.endswith(suffix):
            return float(q[: -len(suffix)]) * factor
    return float(q)


def test_deployment_serves_bentoml_on_3000_with_probes_and_resources():
    dep = _one("deployment.yaml")
    pod = dep["spec"]["template"]["spec"]
    (c,) = pod["containers"]
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    assert ports == {"http": 3000}
    # BentoML 1.4 system routes: /readyz (instance built, model loaded), /livez and /healthz.
    assert c["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert c["livenessProbe"]["httpGet"]["path"] in ("/livez", "/healthz")
    for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
        assert ports.get(c[probe]["httpGet"]["port"], c[probe]["httpGet"]["port"]) == 3000
    res = c["resources"]
    for kind in ("cpu", "memory"):
        assert _quantity(res["requests"][kind]) <= _quantity(res["limits"][kind])
    assert dep["spec"]["selector"]["matchLabels"].items() <= dep["spec"]["template"]["metadata"]["labels"].items()
    assert pod["securityContext"]["runAsNonRoot"] and pod["securityContext"]["runAsUser"] == 1034  # bentoml uid


def test_service_routes_to_the_pods():
    svc, dep = _one("service.yaml"), _one("deployment.yaml")
    assert svc["metadata"]["namespace"] == dep["metadata"]["namespace"]
    assert svc["spec"]["selector"].items() <= dep["spec"]["template"]["metadata"]["labels"].items()
    (port,) = svc["spec"]["ports"]
    assert port["targetPort"] == "http"


def test_kustomization_lists_every_manifest():
    kz = _one("kustomization.yaml")
    assert kz["apiVersion"] == "kustomize.config.k8s.io/v1beta1" and kz["kind"] == "Kustomization"
    assert "namespace" not in kz  # would move the Flux objects out of flux-system
    listed = set(kz["resources"])
    on_disk = {p.name for p in GKE.glob("*.yaml")} - {"kustomization.yaml"}
    assert listed == on_disk


# ------------------------------------------------------------------------------------------------
# Flux kinds: required fields and enums of the v1 CRDs
# ------------------------------------------------------------------------------------------------


def _crd(spec_props: dict, required: list[str]) -> dict:
    return {
        "type": "object",
        "required": ["apiVersion", "kind", "metadata", "spec"],
        "properties": {
            "apiVersion": {"const": FLUX_API},
            "metadata": {"type": "object", "required": ["name", "namespace"]},
            "spec": {"type": "object", "required": required, "properties": spec_props},
        },
    }


_REF = {"type": "object", "required": ["name"], "properties": {"name": {"type": "string", "minLength": 1}}}
FLUX_SCHEMAS = {
    "ImageRepository": _crd(
        {
            "image": {"type": "string", "minLength": 1},
            "interval": {"type": "string", "pattern": DURATION},
            "provider": {"enum": ["generic", "aws", "azure", "gcp"]},
        },
        ["image", "interval"],
    ),
    "ImagePolicy": _crd(
        {
            "imageRepositoryRef": _REF,
            "filterTags": {
                "type": "object",
                "properties": {"pattern": {"type": "string"}, "extract": {"type": "string"}},
            },
            "policy": {
                "type": "object",
                "minProperties": 1,
                "maxProperties": 1,
                "properties": {
                    "numerical": {"type": "object", "properties": {"order": {"enum": ["asc", "desc"]}}},
                    "alphabetical": {"type": "object", "properties": {"order": {"enum": ["asc", "desc"]}}},
                    "semver": {"type": "object", "required": ["range"]},
                },
                "additionalProperties": False,
            },
        },
        ["imageRepositoryRef", "policy"],
    ),
    "ImageUpdateAutomation": _crd(
        {
            "interval": {"type": "string", "pattern": DURATION},
            "sourceRef": {
                "type": "object",
                "required": ["kind", "name"],
                "properties": {"kind": {"enum": ["GitRepository"]}, "name": {"type": "string", "minLength": 1}},
            },
            "git": {
                "type": "object",
                "required": ["commit"],
                "properties": {
                    "checkout": {"type": "object", "required": ["ref"]},
                    "commit": {
                        "type": "object",
                        "required": ["author"],
                        "properties": {"author": {"type": "object", "required": ["email"]}},
                    },
                    "push": {"type": "object"},
                },
            },
            "update": {
                "type": "object",
                "required": ["strategy"],
                "properties": {"strategy": {"enum": ["Setters"]}, "path": {"type": "string"}},
            },
        },
        ["interval", "sourceRef"],
    ),
}


@pytest.mark.parametrize(
    "name,kind",
    [
        ("imagerepository.yaml", "ImageRepository"),
        ("imagepolicy.yaml", "ImagePolicy"),
        ("imageupdateautomation.yaml", "ImageUpdateAutomation"),
    ],
)
def test_flux_kinds_have_required_fields(name, kind):
    doc = _one(name)
    assert doc["kind"] == kind
    jsonschema.validate(doc, FLUX_SCHEMAS[kind])


def test_flux_objects_reference_each_other():
    objs = _all()
    repo, policy, auto = objs["ImageRepository"], objs["ImagePolicy"], objs["ImageUpdateAutomation"]
    assert repo["spec"]["provider"] == "gcp"
    assert re.fullmatch(r"[a-z0-9-]+-docker\.pkg\.dev/[a-z0-9-]+/[a-z0-9_.-]+/ledgerlink", repo["spec"]["image"])
    assert policy["spec"]["imageRepositoryRef"]["name"] == repo["metadata"]["name"]
    assert policy["metadata"]["namespace"] == repo["metadata"]["namespace"]
    # The automation only applies policies from its own namespace.
    assert auto["metadata"]["namespace"] == policy["metadata"]["namespace"]
    assert auto["spec"]["update"] == {"path": "./stacks/gke", "strategy": "Setters"}
    assert (GKE.parents[1] / auto["spec"]["update"]["path"] / "deployment.yaml").is_file()
    assert policy["spec"]["filterTags"] == {"pattern": TAG_PATTERN, "extract": "$ts"}
    assert policy["spec"]["policy"] == {"numerical": {"order": "asc"}}


# ------------------------------------------------------------------------------------------------
# Setter markers
# ------------------------------------------------------------------------------------------------

MARKER = re.compile(r"^(?P<prefix>\s*-?\s*(?P<key>[\w]+):\s*)(?P<value>\"?[^\s#\"]+\"?)\s+#\s*(?P<marker>\{.*\})\s*$")


def _markers() -> list[dict]:
    out = []
    for line in (GKE / "deployment.yaml").read_text().splitlines():
        m = MARKER.match(line)
        if m and "$imagepolicy" in m.group("marker"):
            out.append(
                {
                    "key": m.group("key"),
                    "value": m.group("value").strip('"'),
                    "ref": json.loads(m.group("marker"))["$imagepolicy"],
                }
            )
    return out


def test_setter_markers_point_at_the_policy():
    objs = _all()
    policy, repo = objs["ImagePolicy"], objs["ImageRepository"]
    policy_ref = f"{policy['metadata']['namespace']}:{policy['metadata']['name']}"
    markers = {m["ref"]: m for m in _markers()}
    assert set(markers) == {policy_ref, policy_ref + ":tag"}

    image = markers[policy_ref]
    assert image["key"] == "image"
    container_image = objs["Deployment"]["spec"]["template"]["spec"]["containers"][0]["image"]
    assert image["value"] == container_image
    name, _, tag = container_image.rpartition(":")
    assert name == repo["spec"]["image"]
    assert re.match(policy["spec"]["filterTags"]["pattern"], tag)

    tag_env = markers[policy_ref + ":tag"]
    env = {e["name"]: e["value"] for e in objs["Deployment"]["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["LEDGERLINK_IMAGE_TAG"] == tag_env["value"] == tag


# ------------------------------------------------------------------------------------------------
# Tag ordering as Flux does it
# ------------------------------------------------------------------------------------------------


def _go_expand(template: str, m: re.Match) -> str:
    """Go's regexp.Expand for `$name` / `${name}` / `$1` (what Flux uses for filterTags.extract)."""

    def repl(t: re.Match) -> str:
        key = t.group(1) or t.group(2)
        try:
            return m.group(int(key) if key.isdigit() else key) or ""
        except IndexError:  # Go expands an unknown group to ""
            return ""

    return re.sub(r"\$\{(\w+)\}|\$(\w+)", repl, template)


def flux_latest(tags: list[str], policy_spec: dict) -> str:
    """Latest tag per an ImagePolicy spec with filterTags + numerical policy."""
    rx = re.compile(policy_spec["filterTags"]["pattern"])
    extract = policy_spec["filterTags"].get("extract", "")
    candidates = []
    for tag in tags:
        m = rx.search(tag)  # Go MatchString: unanchored unless the pattern anchors itself
        if not m:
            continue
        candidates.append((float(_go_expand(extract, m) if extract else tag), tag))
    assert candidates, "no tag passed the filter"
    order = policy_spec["policy"]["numerical"].get("order", "asc")
    pick = max if order == "asc" else min
    return pick(candidates)[1]


def test_policy_picks_the_newest_build():
    spec = _one("imagepolicy.yaml")["spec"]
    t0 = datetime(2026, 11, 21, 9, 30, 5, tzinfo=timezone.utc)
    history = [
        image_tag(99, t0 - timedelta(days=60)),  # old, but "v99" beats "v10" as a string
        image_tag(9, t0),  # 09:30:05
        image_tag("v10", t0 + timedelta(seconds=36)),  # same minute, 36 s later: the newest
        image_tag(2, t0 - timedelta(days=400)),
    ]
    noise = ["latest", "sha-1f2e3d", "20261121093041-v10-debug", "2026112109304-v1", "v10"]
    newest = history[2]
    assert newest == "20261121093041-v10"
    assert flux_latest(history + noise, spec) == newest
    assert flux_latest(list(reversed(history)) + noise, spec) == newest
    # The traps the timestamp-first tag avoids:
    assert max(history, key=lambda t: t.split("-v")[1]) != newest  # version compared as text
    assert history[1][:12] == history[2][:12]  # minute precision would tie these two builds


def test_policy_regex_is_the_library_pattern():
    assert _one("imagepolicy.yaml")["spec"]["filterTags"]["pattern"] == TAG_PATTERN


# ------------------------------------------------------------------------------------------------
# Tags
# ------------------------------------------------------------------------------------------------


def test_image_tag_format_and_round_trip():
    when = datetime(2026, 11, 21, 10, 30, 0, 987654, tzinfo=timezone(timedelta(hours=1)))
    tag = image_tag(12, when)
    assert tag == "20261121093000-v12"  # converted to UTC, microseconds dropped
    assert image_tag("v12", datetime(2026, 11, 21, 9, 30)) == tag  # naive = UTC
    parsed = parse_tag(tag)
    assert parsed.version == 12 and parsed.built_at == datetime(2026, 11, 21, 9, 30, tzinfo=timezone.utc)
    assert str(parsed) == tag
    assert re.fullmatch(TAG_PATTERN, image_tag(3))


@pytest.mark.parametrize("bad", ["", "x1", "-1", -1, True, "1.5"])
def test_image_tag_rejects_bad_versions(bad):
    with pytest.raises(ValueError):
        image_tag(bad)


def test_parse_tag_and_image_uri_errors():
    with pytest.raises(ValueError, match="YYYYMMDDHHMMSS"):
        parse_tag("latest")
    assert image_uri("europe-west4-docker.pkg.dev/p/r/ledgerlink/", "20261121093000-v1") == (
        "europe-west4-docker.pkg.dev/p/r/ledgerlink:20261121093000-v1"
    )
    with pytest.raises(ValueError):
        image_uri("europe-west4-docker.pkg.dev/p/r/ledgerlink:old", "20261121093000-v1")
    with pytest.raises(ValueError):
        image_uri("europe-west4-docker.pkg.dev/p/r/ledgerlink", "latest")
