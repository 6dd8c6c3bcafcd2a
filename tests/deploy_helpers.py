"""Shared by the deploy, rollback and repair tests: the gcp deploy config against loopback stand-ins, a small
pipeline that hands a saved matcher to the real ``deploy_model`` step (staged as ``promote_model`` stages it),
a dataset store with a frozen test split, and a Slack webhook stand-in that keeps what it receives."""

from __future__ import annotations

import http.server
import json
import re
import tempfile
import threading
from typing import Annotated

from cloudbuild_server import PROJECT
from zenml import get_step_context, pipeline, step

from ledgerlink.data.store import DatasetRef, store_at
from ledgerlink.deploy.cloud_build import build_request
from ledgerlink.deploy.tags import TAG_PATTERN
from ledgerlink.matching.base import BaseMatcher, load_matcher
from steps.deployment.deploy_model import deploy_model
from steps.materializers import DatasetRefMaterializer, MatcherMaterializer
from utils.model_stages import STAGING, change_stage
from utils.model_versions import ModelVersionMetadata, StageChange, log_model_version_metadata

BUCKET = "finanse-ml-dev"
REGISTRY = "europe-west4-docker.pkg.dev/finanse-project/models/ledgerlink"
IMAGE_RE = re.compile(re.escape(REGISTRY) + ":" + TAG_PATTERN.strip("^$"))


def gcp_cfg(bucket: str, endpoint: str, **extra) -> dict:
    return {
        "deployer": "gcp",
        "smoke_test": False,
        "model_dir": "unused",
        "gcp": {
            "project": PROJECT,
            "bucket": bucket,
            "registry": REGISTRY,
            "timeout_s": 600,
            "poll_s": 0.01,
            "wait_timeout_s": 30,
            "api_endpoint": endpoint,
            **extra,
        },
    }


def valid_body(body: dict) -> bool:
    """The article's payload with our image and context: what the fake accepts when the tag is not known ahead."""
    image = (body.get("images") or [""])[0]
    obj = body.get("source", {}).get("storageSource", {}).get("object", "")
    return (
        bool(IMAGE_RE.fullmatch(image))
        and re.fullmatch(r"models/[0-9a-f-]{36}/context\.tar\.gz", obj) is not None
        and body == build_request(BUCKET, obj, image, timeout_s=600)
    )


@step(output_materializers=MatcherMaterializer, enable_cache=False)
def saved_matcher(path: str) -> Annotated[BaseMatcher, "matcher"]:
    return load_matcher(path)


@step(enable_cache=False)
def decided(promote: bool) -> tuple[Annotated[dict, "decision"], Annotated[dict, "promotion"]]:
    """What compare_with_production + promote_model hand to deploy_model (a promoted version is staged)."""
    model = get_step_context().model
    change = StageChange("deploy") if promote else None
    log_model_version_metadata(
        ModelVersionMetadata(metrics={"pair_f1": 0.93}, data_months=["2025-01"], stage_change=change)
    )
    if promote:
        change_stage(model.name, int(model.number), STAGING)
    return (
        {"promote": promote, "reasons": ["beats production" if promote else "gain below min_delta"]},
        {"promoted": promote, "model_name": model.name, "version": str(model.version), "number": int(model.number)},
    )


@step(enable_cache=False, output_materializers=DatasetRefMaterializer)
def dataset_at(uri: str) -> Annotated[DatasetRef, "dataset_ref"]:
    """The store at ``uri``: without a frozen test set (an empty folder) the smoke test has nothing to build a
    request from."""
    return store_at(uri).ref()


@pipeline(enable_cache=False)
def deploy_only(path: str, promote: bool, deploy: dict, store_uri: str) -> None:
    """What the training pipeline does from the decision on, with a matcher saved at ``path``."""
    decision, promotion = decided(promote=promote)
    deploy_model(
        matcher=saved_matcher(path=path),
        decision=decision,
        promotion=promotion,
        deploy=deploy,
        dataset_ref=dataset_at(uri=store_uri),
    )


def make_smoke_store(data: dict, uri: str) -> str:
    """A dataset store at ``uri`` whose first month (2025-01 of ``data``) has a frozen test split."""
    from ledgerlink.data.split import split_month

    month = {k: v[v["month"] == "2025-01"] if "month" in v else v for k, v in data.items()}
    train, test = split_month(month, 0.3, 13)
    train["invoices"] = test["invoices"] = month["invoices"]
    store_at(uri).add_month("2025-01", train, test)
    return uri


class Webhook:
    """A Slack webhook stand-in on loopback: keeps every payload the real slack_sdk client posts."""

    def __init__(self):

        received = self.received = []

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
                self.send_response(200)
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args):
                pass

        self.server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.url = f"http://127.0.0.1:{self.server.server_port}/services/T000/B000/XXXX"

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


def run_deploy(name: str, **kwargs):
    """Run ``deploy_only`` for model ``name``; returns (the newest model version, the deploy step's error or None)."""
    from zenml import Model
    from zenml.client import Client

    error = None
    with tempfile.TemporaryDirectory(prefix="empty-store-") as empty_store:  # removed after the run
        kwargs.setdefault("store_uri", empty_store)
        try:
            deploy_only.with_options(model=Model(name=name))(**kwargs)
        except Exception:  # noqa: BLE001 - the failure case is asserted by the caller, from the step run
            run = Client().list_pipeline_runs(sort_by="desc:created", size=1).items[0]
            info = Client().get_pipeline_run(run.id).steps["deploy_model"].exception_info
            error = f"{info.message}\n{info.traceback}" if info else "failed without exception info"
    mv = Client().list_model_versions(name, sort_by="desc:number").items[0]
    return Client().get_model_version(name, mv.number), error
