"""The Vertex step image: the Dockerfile and requirements ZenML builds for the GCP stack, and whether they install.

ZenML's own build code (PipelineDockerImageBuilder) writes the Dockerfile from configs/gcp.yaml's Docker
settings. The image installs the project from source with the same lock as `make install`
(``pip install -c constraints.txt -e ".[gcp]"``); a pip dry run checks that this set resolves to wheels for
the image's platform: linux x86_64, CPython 3.11, glibc 2.36 (ZenML's parent image is python:3.11-slim,
Debian bookworm). It asks the public registry as the image's pip would (``--isolated``: none of this
machine's pip configuration or local wheels). Only the project itself is built from source.
"""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
import tomllib
import urllib.request
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
GCP_CONFIG = ROOT / "configs" / "gcp.yaml"
# ZenML's parent image is python:3.11-slim (Debian bookworm, glibc 2.36). pip matches --platform literally,
# so every manylinux tag the image accepts is listed (a wheel tagged manylinux_2_27 only matches that tag).
PLATFORMS = ["manylinux1_x86_64", "manylinux2010_x86_64", "manylinux2014_x86_64"] + [
    f"manylinux_2_{minor}_x86_64" for minor in range(5, 37)
]
# Pinned packages that publish no wheel at all: each must build into a pure-Python (py3-none-any) wheel, which
# then installs on any platform and needs no compiler in the slim image. Measured: only kfp-server-api (kfp's).
SDIST_ONLY = ["kfp-server-api"]


def _docker_settings():
    from zenml.config import DockerSettings

    from cli.schedule import run_options
    from ledgerlink.config import Config

    return DockerSettings(**run_options(Config.load(GCP_CONFIG).zenml, "xgboost")["settings"]["docker"])


def _gcp_stack():
    """The GCP stack as `make stack-gcp` registers it (no credentials needed to build the Dockerfile)."""
    import importlib.util

    from zenml.client import Client

    spec = importlib.util.spec_from_file_location("register_gcp", ROOT / "stacks" / "register_gcp.py")
    register_gcp = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(register_gcp)
    model = register_gcp.register_stack(
        register_gcp.render_stack("ledgerlink-prod", "europe-west4", "ledgerlink-data"),
        project="ledgerlink-prod",
        bucket="ledgerlink-data",
        auth_method="implicit",
        verify=False,
    )
    client = Client()
    client.activate_stack(model.id)
    try:
        return client.active_stack
    finally:
        client.activate_stack("default")


def zenml_step_image() -> tuple[str, list[tuple[str, str, list[str]]]]:
    """(Dockerfile, requirements files) exactly as ZenML's build code produces them for the GCP stack."""
    from zenml.utils.pipeline_docker_image_builder import DEFAULT_DOCKER_PARENT_IMAGE, PipelineDockerImageBuilder
    from zenml.utils.source_utils import get_source_root, set_custom_source_root

    settings = _docker_settings()
    builder = PipelineDockerImageBuilder()
    set_custom_source_root(str(ROOT))  # the build context root ZenML would archive
    try:
        assert Path(get_source_root()) == ROOT
        files = builder.gather_requirements_files(docker_settings=settings, stack=_gcp_stack(), log=False)
        dockerfile = builder._generate_zenml_pipeline_dockerfile(
            parent_image=settings.parent_image or DEFAULT_DOCKER_PARENT_IMAGE,
            docker_settings=settings,
            requirements_files=files,
            apt_packages=settings.apt_packages,
        )
    finally:
        set_custom_source_root(None)
    return dockerfile, files


def test_zenml_writes_a_dockerfile_that_installs_the_project_from_the_lock():
    dockerfile, files = zenml_step_image()
    lines = dockerfile.splitlines()
    assert lines[0] == "FROM zenmldocker/zenml:0.98.0-py3.11"
    # ZenML's gcp integration requirements (gcsfs<=2024.12, ...) are not installed over our pins
    assert files == [] and ".zenml_stack_integration_requirements" not in dockerfile
    install = 'RUN pip install --no-cache-dir -c constraints.txt -e ".[gcp]"'
    assert lines[-1] == install and lines.index("COPY . .") < lines.index(install)
    # every file the install uses is in the build context ZenML archives (the repository, less .dockerignore),
    # and the local environment is not
    from zenml.image_builders import BuildContext

    context = set(BuildContext(root=str(ROOT)).get_files())
    assert {"constraints.txt", "pyproject.toml", "README.md", "src/ledgerlink/__init__.py"} <= context
    assert not [name for name in context if name.startswith((".venv/", ".git/", ".ledgerlink/"))]


def _project_requirements(extras: list[str]) -> list[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return project["dependencies"] + [r for extra in extras for r in project["optional-dependencies"][extra]]


def image_install_args(dockerfile: str, files, workdir: Path) -> list[str]:
    """The pip arguments of the Dockerfile's install lines, as files on this machine: ``-c constraints.txt`` from
    the repository, ZenML's requirements files written out, and the project (``-e .[extras]``, built from source
    in the image) replaced by what it requires."""
    contents = {name: text for name, text, _ in files}
    args: list[str] = []
    for line in dockerfile.splitlines():
        if not line.startswith("RUN pip install"):
            continue
        words = iter(shlex.split(line.removeprefix("RUN pip install")))
        for word in words:
            if word in ("-c", "--constraint"):
                args += ["-c", str(ROOT / next(words))]
            elif word in ("-r", "--requirement"):
                name = next(words)
                (workdir / name).write_text(contents[name])
                args += ["-r", str(workdir / name)]
            elif word == "-e" or word.startswith(".["):
                target = next(words) if word == "-e" else word
                extras = re.fullmatch(r"\.(?:\[([\w,]+)\])?", target).group(1)
                (workdir / "project.txt").write_text("\n".join(_project_requirements((extras or "").split(","))))
                args += ["-r", str(workdir / "project.txt")]
            elif word.startswith("--no-cache-dir"):
                continue
            else:
                raise AssertionError(f"unexpected pip argument in the Dockerfile: {word!r} ({line})")
    return args


def _pypi_reachable() -> str | None:
    try:
        urllib.request.urlopen("https://pypi.org/simple/pip/", timeout=20).read(1)
        return None
    except OSError as exc:
        return str(exc)


def _pip(*args: str, timeout: int = 900) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "pip", "--isolated", "--disable-pip-version-check", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.mark.slow
def test_the_step_image_requirements_resolve_to_wheels_for_linux_x86_64_python_3_11(tmp_path):
    unreachable = _pypi_reachable()
    if unreachable:
        pytest.skip(f"the package registry (https://pypi.org/simple) is unreachable from here: {unreachable}")
    dockerfile, files = zenml_step_image()
    args = image_install_args(dockerfile, files, tmp_path)
    assert args[:2] == ["-c", str(ROOT / "constraints.txt")]

    pins = dict(line.split("==") for line in (ROOT / "constraints.txt").read_text().split() if "==" in line)
    wheels = tmp_path / "wheels"
    for name in SDIST_ONLY:
        built = _pip("wheel", "--no-deps", "-q", "-w", str(wheels), f"{name}=={pins[name]}")
        assert built.returncode == 0, built.stderr[-2000:]
    for wheel in wheels.iterdir():
        assert wheel.name.endswith("-py3-none-any.whl"), f"{wheel.name} is not pure Python: it needs a compiler"

    platform = [arg for p in PLATFORMS for arg in ("--platform", p)]
    report = tmp_path / "report.json"
    resolved = _pip(
        "install",
        "--dry-run",
        "--ignore-installed",
        "--only-binary=:all:",
        *platform,
        "--python-version",
        "3.11",
        "--implementation",
        "cp",
        "--use-feature=fast-deps",  # reads each wheel's metadata by range request instead of downloading it
        "--find-links",
        str(wheels),
        "--report",
        str(report),
        *args,
    )
    assert resolved.returncode == 0, (
        "the step image's requirements do not resolve for linux x86_64 / CPython 3.11 (a package without such "
        "a wheel? if it is pure Python, add it to SDIST_ONLY):\n" + resolved.stderr[-4000:]
    )
    import json

    report = json.loads(report.read_text())["install"]
    installed = {i["metadata"]["name"].lower(): i["metadata"]["version"] for i in report}
    # the lock decides: every package it pins comes in at the pinned version
    for name, version in pins.items():
        if name.lower() in installed:
            assert installed[name.lower()] == version, name
    for name in ("kfp", "google-cloud-aiplatform", "google-cloud-pipeline-components", "zenml", "torch", "uv"):
        assert name in installed, name
    assert installed["protobuf"] == "6.33.6" and installed["kfp"] == "2.16.1"


# -- no config names a file that does not exist ----------------------------------------------------------------
# configs/gcp.yaml installed the step images with `-c constraints-gcp.txt`, a file that was never written.
FILE_ARGUMENT = re.compile(
    r"""(?:^|[\s"'])(?:-c|-r|--constraint|--requirement|--config|--dockerfile|-f)[\s=]+["']?([^\s"'$()]+)"""
)
SCRIPT = re.compile(r"""(?:python[\d.]*|\$\(PY\))\s+([\w./-]+\.py)\b""")
SCANNED = ["Makefile", ".ci/run", "pyproject.toml", "configs/*.yaml", "stacks/*.yaml", "bentos/bentofile.yaml"]


def named_files(text: str) -> set[str]:
    """Files a config or Makefile passes to a command: ``-c``/``-r``/``--config``/``-f`` arguments and scripts
    run with python."""
    return {m.group(1) for m in FILE_ARGUMENT.finditer(text)} | {m.group(1) for m in SCRIPT.finditer(text)}


def missing_files(path: Path) -> list[str]:
    text = path.read_text()
    names = named_files(text)
    if path.name == "Makefile":  # prerequisites of the targets
        names |= {w for m in re.finditer(r"^[^\s#:=]+:(?!=)([^\n#]*)", text, re.M) for w in m.group(1).split()}
        names = {n for n in names if "." in n and "$" not in n}
    if path.name == "bentofile.yaml":
        names |= {g for g in yaml.safe_load(text).get("include", [])}
    return sorted(n for n in names if not (any(ROOT.glob(n)) or (path.parent / n).exists()))


def test_the_scanner_finds_a_missing_constraints_file(tmp_path):
    config = tmp_path / "gcp.yaml"
    config.write_text('install: pip install --no-cache-dir -c constraints-gcp.txt -e ".[gcp]"\n')
    assert missing_files(config) == ["constraints-gcp.txt"]
    assert named_files("python run.py --config configs/gcp.yaml -r requirements.txt") == {
        "run.py",
        "configs/gcp.yaml",
        "requirements.txt",
    }


def test_every_file_a_config_or_the_makefile_names_exists():
    scanned = [p for pattern in SCANNED for p in sorted(ROOT.glob(pattern))]
    assert ROOT / "Makefile" in scanned and ROOT / "configs" / "gcp.yaml" in scanned
    missing = {str(p.relative_to(ROOT)): m for p in scanned if (m := missing_files(p))}
    assert missing == {}
    # the names the step image and `make install` depend on are among those checked
    assert {"constraints.txt", "configs/gcp.yaml", "run.py"} <= set().union(
        *(named_files(p.read_text()) for p in scanned)
    )


def test_bentoml_build_finds_the_pinned_uv_and_downloads_nothing(monkeypatch):
    """`bentoml build` runs uv, and pip-installs it first when it is missing (bentoml's get_uv_command): seen
    on every `make run` before uv was pinned. The deploy step (locally and in the step image) finds it."""
    import importlib.metadata

    from bentoml._internal import configuration

    pinned = [r for r in tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"] if "uv" in r]
    assert pinned == [f"uv=={importlib.metadata.version('uv')}"]

    def no_install(cmd, *args, **kwargs):
        raise AssertionError(f"bentoml tried to install uv: {cmd}")

    monkeypatch.setattr(subprocess, "run", no_install)
    configuration.get_uv_command.cache_clear()
    try:
        command = configuration.get_uv_command()
    finally:
        configuration.get_uv_command.cache_clear()
    monkeypatch.undo()
    version = subprocess.run([*command, "--version"], capture_output=True, text=True, check=True).stdout
    assert version.startswith("uv ")
