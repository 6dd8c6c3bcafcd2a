"""Tolerances: how far an amount or a date may be off and still be a payment of an invoice.

One home for the rules that blocking, pair features, set choice, assignment and the rules baseline share, so
they cannot drift apart.
"""

from __future__ import annotations

import numpy as np

FEE_TOLERANCE = 0.02  # fees/discounts: a transfer may be up to 2% below the invoice (set) amount
CENT = 0.005  # half a cent: amounts are equal when they differ by less
PARTIAL_MIN, PARTIAL_MAX = 0.28, 0.72  # a partial payment is about 30-70% of its invoice
ISSUE_AFTER_BOOKING_DAYS = 7  # an invoice may be issued up to a week after the payment (advance, late paperwork)


def amount_fits(target, sums, sizes):
    """A transfer pays a set when it equals the set's sum, or is at most FEE_TOLERANCE below it (fees)."""
    tol = CENT * sizes + 1e-9
    same_sign = np.sign(target) == np.sign(sums)
    gap = (np.abs(sums) - np.abs(target)) * same_sign
    return same_sign & (gap >= -tol) & (gap <= FEE_TOLERANCE * np.abs(sums) + tol)


def is_settled(amount: np.ndarray, paid: np.ndarray) -> np.ndarray:
    """Payments ``paid`` cover ``amount`` (same sign, up to the fee tolerance): nothing is left to pay."""
    return (
        (paid != 0) & (np.sign(paid) == np.sign(amount)) & (np.abs(paid) >= np.abs(amount) * (1 - FEE_TOLERANCE) - 0.01)
    )
