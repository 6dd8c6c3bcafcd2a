"""Test isolation: ZenML, BentoML and ledgerlink state live in temp dirs; analytics off."""

import os
import tempfile

_ISOLATED = tempfile.mkdtemp(prefix="ledgerlink-tests-")
os.environ["ZENML_CONFIG_PATH"] = os.path.join(_ISOLATED, "zenml")
os.environ["ZENML_ANALYTICS_OPT_IN"] = "false"
os.environ["ZENML_LOGGING_VERBOSITY"] = "WARN"
os.environ["AUTO_OPEN_DASHBOARD"] = "false"
os.environ["BENTOML_HOME"] = os.path.join(_ISOLATED, "bentoml")
os.environ["BENTOML_DO_NOT_TRACK"] = "True"
os.environ["LEDGERLINK_HOME"] = os.path.join(_ISOLATED, "ledgerlink")
os.environ.setdefault("GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT", "false")

import pytest  # noqa: E402

from tests.helpers import tiny_month  # noqa: E402


def pytest_sessionfinish(session, exitstatus):
    """The isolated state goes with the session (a full run left ~260 MB of ZenML and BentoML homes in /tmp before)."""
    import shutil

    shutil.rmtree(_ISOLATED, ignore_errors=True)


@pytest.fixture
def month_tables():
    return tiny_month()


GCS_BUCKET, GCS_PROJECT = "finanse-ml-dev", "finanse-ml"


@pytest.fixture
def gcs_emulator():
    """gcp-storage-emulator in this process on a free loopback port, with bucket ``GCS_BUCKET``: (endpoint, a real
    gcsfs filesystem pointed at it). Stopped after the test."""
    import gcsfs
    from gcp_storage_emulator import server as emulator

    from ledgerlink.deploy.local import free_port

    port = free_port()
    server = emulator.create_server("127.0.0.1", port, in_memory=True, default_bucket=GCS_BUCKET)
    server.start()
    try:
        endpoint = f"http://127.0.0.1:{port}"
        yield endpoint, gcsfs.GCSFileSystem(endpoint_url=endpoint, token="anon", project=GCS_PROJECT)
    finally:
        server.stop()


# One small world and one small trained matcher for the tests that serve or deploy a model and do not care
# which: trained once per session instead of once per module.
SMALL_WORLD = {"months": 2, "contractors": 40, "transfers_per_month": 200}


@pytest.fixture(scope="session")
def small_world() -> dict:
    from ledgerlink.data.synthetic import generate

    return generate(**SMALL_WORLD)


@pytest.fixture(scope="session")
def small_matcher(small_world):
    """A fitted Matcher (30 trees, one thread). Tests read it, never refit or change it."""
    from ledgerlink.matching import Matcher

    return Matcher(n_estimators=30, n_jobs=1).fit(
        small_world["invoices"], small_world["transfers"], small_world["links"]
    )
