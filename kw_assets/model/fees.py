"""Kalshi trading fees, exact to the cent.

Per fill: taker fee = ceil_to_cent(m x 0.07 x C x P x (1 - P)); maker fee = ceil_to_cent(m x 0.0175 x C x P x (1 - P)),
charged only on series whose ``fee_type`` includes maker fees (weather series: ``quadratic``, none).
P is the price paid in dollars (YES or NO side: P(1-P) is the same), C the contracts, m the series'
``fee_multiplier``. Computed with exact rationals, so 0.07 x 100 x 0.5 x 0.5 is 1.75, never 1.76.
"""

from __future__ import annotations

from decimal import Decimal
from fractions import Fraction
from functools import lru_cache

import numpy as np

TAKER_RATE = Fraction(7, 100)
MAKER_RATE = Fraction(175, 10000)
MAKER_FEE_TYPES = ("quadratic_with_maker_fees", "quadratic_with_combo_maker_fees")


def _exact(x: float | str | Decimal, places: int) -> Fraction:
    """A price or count as the decimal it was sent as (floats are read at ``places`` decimals)."""
    if isinstance(x, (str, Decimal)):
        return Fraction(Decimal(x))
    return Fraction(Decimal(repr(round(float(x), places))))


@lru_cache(maxsize=1 << 16)  # a backtest or a sweep prices the same few (price, contracts) pairs again and again
def fee_cents(price: float | str, contracts: float | str, maker: bool = False, fee_type: str = "quadratic",
              fee_multiplier: float | str = 1) -> int:
    """Fee for one fill, in whole cents (rounded up)."""
    if maker and fee_type not in MAKER_FEE_TYPES:
        return 0
    if fee_type == "flat":
        raise NotImplementedError("flat fee schedules are not used by weather series; add the schedule before trading one")
    p = _exact(price, 6)
    c = _exact(contracts, 2)
    if not 0 <= p <= 1 or c < 0:
        raise ValueError(f"fee needs 0 <= price <= 1 and contracts >= 0, got price={price}, contracts={contracts}")
    raw = (MAKER_RATE if maker else TAKER_RATE) * _exact(fee_multiplier, 6) * c * p * (1 - p) * 100
    return int(-((-raw.numerator) // raw.denominator))  # ceiling of a non-negative rational


def rates(fee_type: str = "quadratic", fee_multiplier: float = 1.0) -> tuple[float, float]:
    """(maker, taker) rate per contract x P(1-P) for a series: what a strategy's thresholds use."""
    maker = float(MAKER_RATE) * fee_multiplier if fee_type in MAKER_FEE_TYPES else 0.0
    return maker, float(TAKER_RATE) * fee_multiplier


def fee_per_contract(price: np.ndarray, contracts: float, rate: float) -> np.ndarray:
    """Per-contract fee of an order of ``contracts`` at ``price`` (vectorised, for thresholds; the exact
    fee of each fill is ``fee_cents``)."""
    p = np.clip(np.nan_to_num(price, nan=0.5), 0, 1)
    return np.ceil(rate * contracts * p * (1 - p) * 100 - 1e-9) / 100 / max(contracts, 1e-9)
