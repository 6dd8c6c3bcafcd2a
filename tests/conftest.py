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

import pandas as pd  # noqa: E402
import pytest  # noqa: E402


def tiny_month(month: str = "2025-01", n: int = 20, start: int = 0) -> dict[str, pd.DataFrame]:
    """A hand-made, contract-valid month: transfer i pays invoice i, every 5th pays nothing."""
    day = pd.Timestamp(month + "-01")
    inv = pd.DataFrame(
        {
            "invoice_id": [f"INV-{start + i:05d}" for i in range(n)],
            "month": month,
            "issued_at": [day + pd.Timedelta(days=i % 20) for i in range(n)],
            "due_at": [day + pd.Timedelta(days=i % 20 + 14) for i in range(n)],
            "amount": [100.0 + 10 * i for i in range(n)],
            "currency": "EUR",
            "invoice_number": [f"FV/{month[:4]}/{start + i:04d}" for i in range(n)],
            "counterparty_name": [f"Contractor {i % 7} GmbH" for i in range(n)],
            "description": ["services"] * n,
        }
    )
    tr = pd.DataFrame(
        {
            "transfer_id": [f"TRF-{start + i:05d}" for i in range(n)],
            "month": month,
            "booked_at": [day + pd.Timedelta(days=i % 20 + 5) for i in range(n)],
            "amount": [100.0 + 10 * i for i in range(n)],
            "currency": "EUR",
            "title": [f"payment FV/{month[:4]}/{start + i:04d}" for i in range(n)],
            "counterparty_name": [f"CONTRACTOR {i % 7}" for i in range(n)],
            "counterparty_account": [f"DE{i % 7:020d}" for i in range(n)],
        }
    )
    paid = [i for i in range(n) if i % 5]
    links = pd.DataFrame(
        {
            "transfer_id": [f"TRF-{start + i:05d}" for i in paid],
            "invoice_id": [f"INV-{start + i:05d}" for i in paid],
            "allocated_amount": [100.0 + 10 * i for i in paid],
            "month": month,
        }
    )
    return {"invoices": inv, "transfers": tr, "links": links}


@pytest.fixture
def month_tables():
    return tiny_month()


GCS_BUCKET, GCS_PROJECT = "finanse-ml-dev", "finanse-ml"


@pytest.fixture
def gcs_emulator():
    """gcp-storage-emulator in this process on a free loopback port, with bucket ``GCS_BUCKET``: (endpoint, a real
    gcsfs filesystem pointed at it). Stopped after the test."""
    emulator = pytest.importorskip("gcp_storage_emulator.server")
    gcsfs = pytest.importorskip("gcsfs")
    from ledgerlink.deploy.local import free_port

    port = free_port()
    server = emulator.create_server("127.0.0.1", port, in_memory=True, default_bucket=GCS_BUCKET)
    server.start()
    try:
        endpoint = f"http://127.0.0.1:{port}"
        yield endpoint, gcsfs.GCSFileSystem(endpoint_url=endpoint, token="anon", project=GCS_PROJECT)
    finally:
        server.stop()
