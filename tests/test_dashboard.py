"""The local ZenML server behind the dashboard: start it, run the training pipeline through it, read it back.

`zenml login --local` starts the server (a daemon on a free 127.0.0.1 port) in its own ZenML config dir,
a subprocess runs data collection + training on tiny synthetic data with the client connected to that
server, and everything the dashboard shows is read back over the server's REST API with a session
token: the run and its DAG, the `evaluation_report` and `comparison_report` visualizations, and the
model version with its stage and metadata. `zenml logout --local` stops the server, also on failure.
No browser is needed (screenshots are a documentation tool: scripts/dashboard_screenshots.py).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from ledgerlink.deploy.local import free_port

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
ZENML = Path(sys.executable).with_name("zenml")
if not ZENML.exists():
    ZENML = Path(shutil.which("zenml") or ZENML)
MODEL = "dashboard_matcher"

# Runs in a subprocess whose ZENML_CONFIG_PATH is the one `zenml login --local` connected.
PIPELINE = """
import json, sys
from zenml.client import Client
from zenml.config.global_config import GlobalConfiguration
from ledgerlink.config import Config
from cli.runner import collect, train

home, model = sys.argv[1], sys.argv[2]
store = GlobalConfiguration().store_configuration
cfg = Config.load(sys.argv[3], {
    "data_dir": home, "model_name": model,
    "synthetic": {"months": 1, "contractors": 40, "transfers_per_month": 150},
    "warehouse": {"path": home + "/warehouse.duckdb"},
    "store": {"uri": home + "/datasets"},
    "deploy": {"model_dir": home + "/models", "smoke_test": False},
    "model": {"params": {"n_estimators": 30}},
    "promotion": {"bootstrap_samples": 100},
})
collect(cfg)
result = train(cfg)
print("RESULT " + json.dumps({"store_type": str(store.type), "store_url": store.url, "run": result.run,
                              "decision": result.decision, "deployment": result.deployment}, default=str))
"""


def _tail(path: Path, n: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return f"({path} not found)"


class Api:
    """The server's REST API with a bearer session token, as the dashboard uses it."""

    def __init__(self, url: str):
        self.url = url
        body = urllib.parse.urlencode({"username": "default", "password": ""}).encode()
        with urllib.request.urlopen(urllib.request.Request(f"{url}/api/v1/login", data=body), timeout=30) as r:
            self.token = json.load(r)["access_token"]

    def get(self, path: str, **query) -> dict:
        url = f"{self.url}/api/v1{path}" + ("?" + urllib.parse.urlencode(query) if query else "")
        req = urllib.request.Request(url, headers={"Authorization": f"Bearer {self.token}"})
        with urllib.request.urlopen(req, timeout=30) as r:
            return json.load(r)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    home = tmp_path_factory.mktemp("dashboard")
    config_path = home / "zenml"
    env = {k: v for k, v in os.environ.items() if not k.startswith("ZENML_STORE_")}
    env.update(
        ZENML_CONFIG_PATH=str(config_path),
        ZENML_ANALYTICS_OPT_IN="false",
        ZENML_LOGGING_VERBOSITY="WARN",
        ZENML_AUTO_OPEN_DASHBOARD="false",
        LEDGERLINK_HOME=str(home / "ledgerlink"),
        BENTOML_HOME=str(home / "bentoml"),
        BENTOML_DO_NOT_TRACK="True",
    )
    env.pop("AUTO_OPEN_DASHBOARD", None)  # deprecated name; ZenML warns about it
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    daemon = config_path / "zen_server" / "daemon"
    try:
        login = subprocess.run(
            [str(ZENML), "login", "--local", "--ip-address", "127.0.0.1", "--port", str(port)],
            env=env,
            cwd=home,
            capture_output=True,
            text=True,
            timeout=180,
        )
        if login.returncode != 0:
            pytest.fail(
                f"zenml login --local failed ({login.returncode}):\n{login.stdout}\n{login.stderr}\n"
                f"server log:\n{_tail(daemon / 'service.log')}"
            )
        yield {"url": url, "env": env, "home": home, "log": daemon / "service.log"}
    finally:
        pid = _daemon_pid(daemon, config_path)  # read first: logout removes the daemon folder
        subprocess.run([str(ZENML), "logout", "--local"], env=env, cwd=home, capture_output=True, timeout=120)
        _wait_gone(pid)


def _daemon_pid(daemon: Path, config_path: Path) -> int | None:
    """The server daemon's pid, if it is still our process (its command line names our config dir)."""
    try:
        pid = int((daemon / "service.pid").read_text().strip())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    except (OSError, ValueError):
        return None
    return pid if str(config_path) in cmdline else None


def _is_zombie(pid: int) -> bool:
    try:
        return "\nState:\tZ" in Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return True


def _wait_gone(pid: int | None, timeout: float = 15.0) -> None:
    """Give the daemon time to exit after logout; never leave it behind."""
    if pid is None:
        return
    for sig in (None, signal.SIGTERM, signal.SIGKILL):
        try:
            if sig is not None:
                os.kill(pid, sig)
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                os.kill(pid, 0)
                if _is_zombie(pid):  # exited; only its parent (init) has not reaped it yet
                    return
                time.sleep(0.2)
        except ProcessLookupError:
            return


@pytest.fixture(scope="module")
def run(server):
    # src/ and the repository root (steps/, pipelines/) importable, whether or not the package is installed
    path = os.pathsep.join(p for p in (str(ROOT / "src"), str(ROOT), os.environ.get("PYTHONPATH")) if p)
    script = server["home"] / "run_training.py"  # a file: ZenML derives its source root from the main module
    script.write_text(PIPELINE)
    proc = subprocess.run(
        [sys.executable, str(script), str(server["home"] / "ledgerlink"), MODEL, str(ROOT / "configs" / "local.yaml")],
        env={**server["env"], "PYTHONPATH": path},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        pytest.fail(f"pipeline run failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}")
    return json.loads(lines[-1][len("RESULT ") :])


@pytest.fixture(scope="module")
def api(server):
    return Api(server["url"])


def _training_run(api: Api, name: str) -> dict:
    runs = api.get("/runs", name=name, hydrate="true")["items"]
    assert len(runs) == 1, runs
    return runs[0]


def test_server_starts_and_answers_health(server):
    with urllib.request.urlopen(server["url"] + "/health", timeout=10) as r:
        assert r.status == 200 and r.read().decode().strip().strip('"') == "ok"
    info = json.load(urllib.request.urlopen(server["url"] + "/api/v1/info", timeout=10))
    assert info["deployment_type"] == "local"


def test_the_training_run_goes_through_the_server(server, run, api):
    # the pipeline's client was connected to this server, not to a local SQL store ...
    assert run["store_type"].lower().endswith("rest") and run["store_url"] == server["url"]
    # ... and the server received the run and its steps
    log = server["log"].read_text(errors="replace")
    assert '"POST /api/v1/runs' in log and '"POST /api/v1/steps' in log
    pipeline_run = _training_run(api, run["run"])
    assert pipeline_run["body"]["status"] == "completed"
    assert pipeline_run["resources"]["pipeline"]["name"] == "training"


def test_run_dag_lists_the_training_steps(run, api):
    run_id = _training_run(api, run["run"])["id"]
    dag = api.get(f"/runs/{run_id}/dag")
    steps = {n["name"]: n["metadata"]["status"] for n in dag["nodes"] if n["type"] == "step"}
    assert steps == dict.fromkeys(
        [
            "current_dataset",
            "train_matcher",
            "evaluate_matcher",
            "compare_with_production",
            "promote_model",
            "deploy_model",
        ],
        "completed",
    )


@pytest.mark.parametrize(
    "step, name, title, tables",
    [
        ("evaluate_matcher", "evaluation_report", "Evaluation on the frozen test set", 3),  # overall + slices x2
        ("compare_with_production", "comparison_report", "Promotion decision", 1),  # first model: vs rules only
    ],
)
def test_report_visualizations_render_our_html(run, api, step, name, title, tables):
    run_id = _training_run(api, run["run"])["id"]
    steps = {s["name"]: s for s in api.get("/steps", pipeline_run_id=run_id, hydrate="true", size=50)["items"]}
    (artifact,) = steps[step]["resources"]["outputs"][name]
    version = api.get(f"/artifact_versions/{artifact['id']}", hydrate="true")
    assert version["body"]["data_type"]["attribute"] == "HTMLString"
    assert [v["body"]["type"] for v in version["metadata"]["visualizations"]] == ["html"]
    viz = api.get(f"/artifact_versions/{artifact['id']}/visualize", index=0)
    assert viz["type"] == "html"
    html = viz["value"]
    assert title in html and html.count("<table>") >= tables and "pair_f1" in html and "candidate" in html
    if name == "comparison_report":
        assert ("PROMOTE" if run["decision"]["promote"] else "KEEP PRODUCTION") in html
        assert "rules baseline" in html


def test_model_version_has_stage_and_metadata(run, api):
    model_version_id = _training_run(api, run["run"])["resources"]["model_version"]["id"]
    mv = api.get(f"/model_versions/{model_version_id}", hydrate="true")
    assert mv["body"]["model"]["name"] == MODEL and mv["body"]["number"] == 1
    # first model on easy tiny data: it beats the rules baseline, is promoted and deployed
    assert run["decision"]["promote"] is True
    assert mv["body"]["stage"] == "production"
    meta = mv["metadata"]["run_metadata"]
    assert meta["data_months"] == ["2025-01"]
    assert meta["decision"]["promote"] is True and meta["decision"]["reasons"] == run["decision"]["reasons"]
    assert meta["metrics"]["pair_f1"] > meta["rules_evaluation"]["metrics"]["pair_f1"]
    assert {"single", "multi", "pays_nothing"} <= set(meta["evaluation"]["slices"])
    assert meta["deployment"]["deployed"] is True and meta["deployment"]["version"] == 1
    links = api.get("/model_version_artifacts", model_version_id=model_version_id, hydrate="true", size=50)["items"]
    linked = {link["body"]["artifact_version"]["body"]["artifact"]["name"] for link in links}
    assert {"matcher", "evaluation_report", "comparison_report"} <= linked


def test_the_dataset_reference_shows_what_the_run_trained_on(run, api):
    run_id = _training_run(api, run["run"])["id"]
    steps = {s["name"]: s for s in api.get("/steps", pipeline_run_id=run_id, hydrate="true", size=50)["items"]}
    (artifact,) = steps["current_dataset"]["resources"]["outputs"]["dataset_ref"]
    version = api.get(f"/artifact_versions/{artifact['id']}", hydrate="true")
    assert version["body"]["data_type"]["attribute"] == "DatasetRef"  # the reference itself, not a dict
    viz = api.get(f"/artifact_versions/{artifact['id']}/visualize", index=0)
    assert viz["type"] == "markdown" and "| training months | 2025-01 |" in viz["value"]
    assert "| frozen test | 2025-01: " in viz["value"]
