"""Screenshots of the local ZenML dashboard for the README (a documentation tool, not a test).

Needs a running local dashboard with at least one training run, and Chromium (Debian: ``apt-get install
chromium``). For example, with an isolated ZenML config and state:

    export ZENML_CONFIG_PATH=/tmp/demo/zenml LEDGERLINK_HOME=/tmp/demo/ledgerlink ZENML_ANALYTICS_OPT_IN=false
    .venv/bin/zenml login --local --port 8237                       # or: make dashboard
    .venv/bin/python run.py --pipeline all --months 2               # two cycles: collect, monitor, train
    .venv/bin/python scripts/dashboard_screenshots.py --url http://127.0.0.1:8237 --out docs
    .venv/bin/zenml logout --local

It logs in as the default user (the local server's ``default`` user has an empty password; a local daemon
server runs with ``NO_AUTH`` and the login only sets the session cookie), marks that user's first-run
survey as done (what clicking "Continue" on it does, otherwise every page redirects to /survey), then drives
headless Chromium over the DevTools protocol (the ``websockets`` package, which zenml[server] installs)
and writes 1400x900 PNGs to ``--out``:

- ``dashboard_run.png``: the latest training run's DAG;
- ``dashboard_evaluation.png``, ``dashboard_comparison.png``: its ``evaluation_report`` and
  ``comparison_report`` artifacts, Visualization tab, preview loaded;
- with ``--drift``: ``dashboard_drift.png``, the latest monitoring run's ``drift_report``. The dashboard shows
  HTML visualizations in an iframe with an empty ``sandbox`` attribute (no JavaScript, 384 px tall), so of
  an Evidently report only its static HTML shows; the Download button gives the full report;
- with ``--models``: ``dashboard_models.png``, the Models page (in the open-source dashboard an upgrade
  notice: model pages are ZenML Pro only).

``--raw DIR`` also renders each report's HTML straight from the artifact store (no dashboard) to
``DIR/report_<name>.png``, to check that the HTML renders on its own.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path

WIDTH, HEIGHT = 1400, 900
MAX_BYTES = 300_000
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    f"--window-size={WIDTH},{HEIGHT}",
    "--hide-scrollbars",
    "--remote-debugging-port=0",
    "--remote-allow-origins=*",
]


# --- the server's REST API -------------------------------------------------------------------------------


class Api:
    def __init__(self, url: str, username: str, password: str):
        self.url = url.rstrip("/")
        body = urllib.parse.urlencode({"username": username, "password": password}).encode()
        with urllib.request.urlopen(urllib.request.Request(f"{self.url}/api/v1/login", data=body), timeout=30) as r:
            self.token = json.load(r)["access_token"]

    def call(self, method: str, path: str, body: dict | None = None, **query) -> dict:
        url = f"{self.url}/api/v1{path}" + ("?" + urllib.parse.urlencode(query) if query else "")
        headers = {"Authorization": f"Bearer {self.token}"}
        data = None
        if body is not None:
            data, headers["Content-Type"] = json.dumps(body).encode(), "application/json"
        req = urllib.request.Request(url, data=data, headers=headers, method=method)
        with urllib.request.urlopen(req, timeout=60) as r:
            return json.load(r)

    def get(self, path: str, **query) -> dict:
        return self.call("GET", path, **query)

    def latest_run(self, pipeline: str, run: str | None = None) -> dict | None:
        if run:
            if len(run) == 36 and run.count("-") == 4:
                return self.get(f"/runs/{run}")
            items = self.get("/runs", name=run)["items"]
            return items[0] if items else None
        pipelines = self.get("/pipelines", name=pipeline)["items"]
        if not pipelines:
            return None
        items = self.get("/runs", pipeline_id=pipelines[0]["id"], status="completed", sort_by="desc:created", size=1)[
            "items"
        ]
        return items[0] if items else None

    def output(self, run_id: str, name: str) -> dict | None:
        """The artifact version called ``name`` that a step of the run produced."""
        for step in self.get("/steps", pipeline_run_id=run_id, hydrate="true", size=100)["items"]:
            outputs = (step.get("resources") or {}).get("outputs") or {}
            if outputs.get(name):
                return outputs[name][0]
        return None

    def skip_survey(self) -> None:
        me = self.get("/current-user")
        meta = dict((me.get("metadata") or {}).get("user_metadata") or {})
        if me["body"].get("email_opted_in") is not None and meta.get("finished_onboarding_survey"):
            return
        meta["finished_onboarding_survey"] = True
        self.call("PUT", "/current-user", {"email_opted_in": False, "user_metadata": meta})


# --- headless Chromium over the DevTools protocol --------------------------------------------------------


class Browser:
    def __init__(self, chromium: str):
        self.chromium = chromium

    async def __aenter__(self):
        import websockets  # installed with zenml[server] (uvicorn[standard])

        self.profile = tempfile.mkdtemp(prefix="ledgerlink-chromium-")
        self.proc = subprocess.Popen(
            [self.chromium, *CHROMIUM_FLAGS, f"--user-data-dir={self.profile}", "about:blank"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        port_file = Path(self.profile) / "DevToolsActivePort"
        deadline = time.monotonic() + 60
        while not (port_file.exists() and port_file.read_text().strip()):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{self.chromium} did not start (exit code {self.proc.poll()})")
            await asyncio.sleep(0.2)
        port = port_file.read_text().split()[0]
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10) as r:
            target = next(t for t in json.load(r) if t["type"] == "page")
        self.ws = await websockets.connect(target["webSocketDebuggerUrl"], max_size=64 * 2**20)
        self.n = 0
        await self.send("Page.enable")
        await self.send("Runtime.enable")
        await self.send(
            "Emulation.setDeviceMetricsOverride", width=WIDTH, height=HEIGHT, deviceScaleFactor=1, mobile=False
        )
        return self

    async def __aexit__(self, *exc):
        try:
            await self.ws.close()
        finally:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
            shutil.rmtree(self.profile, ignore_errors=True)

    async def send(self, method: str, **params) -> dict:
        self.n += 1
        await self.ws.send(json.dumps({"id": self.n, "method": method, "params": params}))
        while True:
            msg = json.loads(await asyncio.wait_for(self.ws.recv(), timeout=60))
            if msg.get("id") == self.n:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg.get("result", {})

    async def js(self, expression: str):
        r = await self.send("Runtime.evaluate", expression=expression, awaitPromise=True, returnByValue=True)
        if "exceptionDetails" in r:
            raise RuntimeError(f"{expression[:80]}...: {r['exceptionDetails'].get('text')}")
        return r["result"].get("value")

    async def goto(self, url: str) -> None:
        await self.send("Page.navigate", url=url)
        await self.wait("document.readyState === 'complete'", what=url)

    async def wait(self, predicate: str, timeout: float = 45, what: str = "") -> None:
        deadline = time.monotonic() + timeout
        while not await self.js(f"!!({predicate})"):
            if time.monotonic() > deadline:
                text = (await self.js("document.body ? document.body.innerText : ''") or "")[:500]
                raise TimeoutError(
                    f"waited {timeout:.0f}s for {what or predicate} at "
                    f"{await self.js('location.href')}; the page says: {text!r}"
                )
            await asyncio.sleep(0.3)

    async def wait_text(self, text: str, timeout: float = 45) -> None:
        await self.wait(f"document.body && document.body.innerText.includes({json.dumps(text)})", timeout, repr(text))

    async def click_text(self, text: str, last: bool = True) -> None:
        """A real mouse click on the visible element whose whole text is ``text`` (innermost, last one)."""
        find = f"""(() => {{
          const els = [...document.querySelectorAll('body *')].filter(e => e.offsetParent !== null
              && e.textContent.trim() === {json.dumps(text)}
              && ![...e.children].some(c => c.textContent.trim() === {json.dumps(text)}));
          if (!els.length) return null;
          const e = els[{"els.length - 1" if last else "0"}];
          e.scrollIntoView({{block: 'center', inline: 'center'}});
          const r = e.getBoundingClientRect();
          return [r.x + r.width / 2, r.y + r.height / 2];
        }})()"""
        xy = await self.js(find)
        if xy is None:
            raise LookupError(f"nothing to click with text {text!r} at {await self.js('location.href')}")
        for kind in ("mousePressed", "mouseReleased"):
            await self.send("Input.dispatchMouseEvent", type=kind, x=xy[0], y=xy[1], button="left", clickCount=1)

    async def screenshot(self, path: Path, settle: float = 1.5) -> Path:
        await asyncio.sleep(settle)  # let animations (sheet slide-in, DAG layout) finish
        data = base64.b64decode((await self.send("Page.captureScreenshot", format="png"))["data"])
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(_small_png(data))
        print(f"wrote {path} ({path.stat().st_size // 1024} KB)")
        return path


def _small_png(data: bytes) -> bytes:
    """The PNG as is if it is small enough, else quantized to 256 colours (dashboard pages stay sharp)."""
    if len(data) <= MAX_BYTES:
        return data
    from PIL import Image  # installed with matplotlib

    out = io.BytesIO()
    Image.open(io.BytesIO(data)).convert("RGB").quantize(256).save(out, format="PNG", optimize=True)
    return out.getvalue()


# --- the pages ------------------------------------------------------------------------------------------


async def _open_dashboard(b: Browser, base: str, username: str, password: str) -> None:
    """Same-origin login in the page: the server sets its session cookie (harmless under NO_AUTH)."""
    await b.goto(f"{base}/health")
    body = json.dumps(urllib.parse.urlencode({"username": username, "password": password}))
    status = await b.js(f"""fetch('/api/v1/login', {{method: 'POST', credentials: 'include',
        headers: {{'Content-Type': 'application/x-www-form-urlencoded'}}, body: {body}}}).then(r => r.status)""")
    if status != 200:
        raise RuntimeError(f"dashboard login as {username!r} answered HTTP {status}")


async def _close_banner(b: Browser) -> None:
    """Dismiss the 'You are running a local version of ZenML' banner, if shown."""
    await b.js("""(() => { const t = [...document.querySelectorAll('body *')].find(e =>
        e.children.length === 0 && e.textContent.includes('You are running a local version of ZenML'));
      if (!t) return false;
      for (let p = t.parentElement; p; p = p.parentElement) {
        const btns = [...p.querySelectorAll('button')].filter(x => !x.textContent.trim());
        if (btns.length) { btns[btns.length - 1].click(); return true; } }
      return false; })()""")


async def _run_page(b: Browser, base: str, run: dict, last_step: str) -> None:
    await b.goto(f"{base}/projects/default/runs/{run['id']}")
    await b.wait_text(last_step)
    await b.wait("document.querySelector('.react-flow__node')", what="the DAG")
    await _close_banner(b)


async def _artifact_visualization(
    b: Browser, base: str, run: dict, last_step: str, artifact: str, out: Path, expect: str | None
) -> Path:
    await _run_page(b, base, run, last_step)
    await b.click_text(artifact)
    await b.wait_text("Visualization")
    await asyncio.sleep(0.8)
    await b.click_text("Visualization")
    await b.wait_text("Load Preview")
    await b.click_text("Load Preview")
    await b.wait("document.querySelector('iframe')", what="the visualization frame")
    if expect:  # the frame is sandboxed: read what the dashboard fetched for it instead
        await b.wait(
            f"""[...document.querySelectorAll('iframe')].some(f =>
            (f.srcdoc || '').includes({json.dumps(expect)}) || (f.src || '').startsWith('blob:')
            || (f.contentDocument && f.contentDocument.body
                && f.contentDocument.body.innerText.includes({json.dumps(expect)})))""",
            what=f"{expect!r} in the visualization",
        )
    return await b.screenshot(out, settle=3.0)


async def _raw_report(b: Browser, api: Api, artifact_id: str, out: Path) -> Path:
    """Render the report's HTML on its own: the artifact store file if local, else what the server serves."""
    version = api.get(f"/artifact_versions/{artifact_id}", hydrate="true")
    uris = [v["body"]["uri"] for v in version["metadata"]["visualizations"]]
    if uris and Path(uris[0]).is_file():
        url = Path(uris[0]).resolve().as_uri()
    else:
        html = api.get(f"/artifact_versions/{artifact_id}/visualize", index=0)["value"]
        tmp = Path(tempfile.mkdtemp(prefix="ledgerlink-report-")) / "report.html"
        tmp.write_text(html)
        url = tmp.as_uri()
    await b.goto(url)
    return await b.screenshot(out, settle=2.0)


async def main_async(args) -> int:
    api = Api(args.url, args.username, args.password)
    api.skip_survey()
    training = api.latest_run("training", args.run)
    if training is None:
        print(
            f"no completed training run on {args.url}: run `python run.py --pipeline training` first", file=sys.stderr
        )
        return 1
    monitoring = api.latest_run("monitoring", args.monitoring_run)
    out = Path(args.out)
    reports = [
        ("evaluation_report", training, "deploy_model", "dashboard_evaluation.png", "Evaluation on the frozen"),
        ("comparison_report", training, "deploy_model", "dashboard_comparison.png", "Promotion decision"),
    ]
    if args.drift and monitoring is not None:
        reports.append(("drift_report", monitoring, "decide_retraining", "dashboard_drift.png", "Data drift"))
    written = []
    async with Browser(args.chromium) as b:
        await _open_dashboard(b, api.url, args.username, args.password)
        await _run_page(b, api.url, training, "deploy_model")
        written.append(await b.screenshot(out / "dashboard_run.png", settle=2.5))
        for name, run, last_step, filename, expect in reports:
            artifact = api.output(run["id"], name)
            if artifact is None:
                print(f"run {run['name']} has no {name}; skipped", file=sys.stderr)
                continue
            written.append(await _artifact_visualization(b, api.url, run, last_step, name, out / filename, expect))
            if args.raw:
                written.append(await _raw_report(b, api, artifact["id"], Path(args.raw) / f"report_{name}.png"))
        if args.models:
            await b.goto(f"{api.url}/projects/default/models")
            await b.wait("document.querySelector('main, #root')", what="the models page")
            await _close_banner(b)
            written.append(await b.screenshot(out / "dashboard_models.png", settle=3.0))
    print(
        json.dumps(
            {
                "training_run": training["name"],
                "monitoring_run": monitoring and monitoring["name"],
                "screenshots": [str(p) for p in written],
            }
        )
    )
    return 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--url", default=os.environ.get("ZENML_DASHBOARD_URL", "http://127.0.0.1:8237"))
    p.add_argument("--out", default=str(Path(__file__).resolve().parents[1] / "docs"), help="folder for the PNGs")
    p.add_argument("--run", help="training run name or id (default: the latest completed one)")
    p.add_argument("--monitoring-run", help="monitoring run name or id (default: the latest completed one)")
    p.add_argument("--username", default="default")
    p.add_argument("--password", default="")
    p.add_argument(
        "--chromium",
        default=shutil.which("chromium")
        or shutil.which("chromium-browser")
        or shutil.which("google-chrome")
        or "chromium",
    )
    p.add_argument(
        "--drift",
        action="store_true",
        help="also the latest monitoring run's drift_report (Evidently needs JavaScript, which the "
        "dashboard's sandboxed frame blocks: only the report's static HTML shows)",
    )
    p.add_argument("--models", action="store_true", help="also the Models page (ZenML Pro only in OSS)")
    p.add_argument("--raw", metavar="DIR", help="also render each report's HTML directly to DIR/report_<name>.png")
    args = p.parse_args(argv)
    return asyncio.run(main_async(args))


if __name__ == "__main__":
    sys.exit(main())
