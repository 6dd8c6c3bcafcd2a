"""The frozen test split: chosen by transfer, by a seeded hash of the transfer id.

Hashing instead of sampling makes the choice independent of row order and of how many rows arrive
with a month, so re-running the first collection reproduces exactly the same split.
"""

from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd


def is_test_transfer(transfer_ids: pd.Series, fraction: float, seed: int) -> np.ndarray:
    """True for transfers that belong to the test split."""
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"split.test_fraction must be in (0, 1), got {fraction}")
    salt = str(seed).encode()
    u = np.array(
        [
            int.from_bytes(hashlib.blake2b(salt + t.encode(), digest_size=8).digest(), "big") / 2**64
            for t in transfer_ids.astype(str)
        ]
    )
    return u < fraction


def split_month(tables: dict[str, pd.DataFrame], fraction: float, seed: int) -> tuple[dict, dict]:
    """(train, test) parts of one month's transfers and links. Invoices are not split: they are candidates."""
    transfers, links = tables["transfers"], tables["links"]
    is_test = is_test_transfer(transfers["transfer_id"], fraction, seed)
    test_ids = set(transfers.loc[is_test, "transfer_id"])
    link_test = links["transfer_id"].isin(test_ids).to_numpy()
    train = {"transfers": transfers[~is_test].reset_index(drop=True), "links": links[~link_test].reset_index(drop=True)}
    test = {"transfers": transfers[is_test].reset_index(drop=True), "links": links[link_test].reset_index(drop=True)}
    return train, test
