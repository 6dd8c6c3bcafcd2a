"""Helpers shared by the tests (fixtures live in conftest.py; tests import these, never conftest)."""

import pandas as pd


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


class LoopbackServer:
    """A threaded HTTP server on 127.0.0.1 (a free port) for a stand-in of a Google API: ``serve(handler)`` in
    ``__init__``; a context manager that starts it and stops it; ``endpoint`` is its URL."""

    def serve(self, handler) -> None:
        import http.server
        import threading

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.server.daemon_threads = True  # a request left hanging by a test never blocks the shutdown
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.server.server_port}"

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)
