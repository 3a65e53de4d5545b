"""Bid-ask spreads by price regime: what a taker pays over the mid where the candle shows no quote.

Regimes by the mid (or last) price: 1-10c, 10-30c, 30-70c, 70-90c and 90-99c, where spreads differ most
(tight in the tails, wide near 50c). Statistics come from sampled REST order books and, where the L2
recorder ran, from the recorded book's minutes. For the backtest of day D only what was stamped before D's
market opened counts (``regime_half_spreads``), so a spread from the future never prices a fill.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

EDGES = np.array([0.10, 0.30, 0.70, 0.90])
LABELS = ["1-10c", "10-30c", "30-70c", "70-90c", "90-99c"]
DEFAULT_HALF_SPREAD = 0.02  # where a regime has too few observations
MIN_SAMPLES = 20
SPREAD_COLUMNS = ["city", "regime", "observed_by", "n", "half_spread_p25", "half_spread_median", "half_spread_p75",
                  "half_spread_p90", "half_spread_mean"]


def regime(price: np.ndarray) -> np.ndarray:
    """Regime index (0-4) of each price; -1 where unknown."""
    p = np.asarray(price, float)
    return np.where(np.isfinite(p), np.searchsorted(EDGES, p, side="right"), -1)


def spread_table(observations: pd.DataFrame) -> pd.DataFrame:
    """Half-spread quantiles per city, regime and source of the observation (``samples`` or ``l2``).
    ``observations``: city, observed_by, yes_bid, yes_ask (rows with both sides quoted count)."""
    o = observations.dropna(subset=["yes_bid", "yes_ask"])
    o = o.assign(half=(o["yes_ask"] - o["yes_bid"]) / 2, regime=regime((o["yes_ask"] + o["yes_bid"]) / 2))
    o = o[o["regime"] >= 0]
    if o.empty:
        return pd.DataFrame({c: pd.Series(dtype=object) for c in SPREAD_COLUMNS})
    g = o.groupby(["city", "observed_by", "regime"])["half"]
    out = g.agg(n="size", half_spread_p25=lambda x: x.quantile(0.25), half_spread_median="median",
                half_spread_p75=lambda x: x.quantile(0.75), half_spread_p90=lambda x: x.quantile(0.90),
                half_spread_mean="mean").reset_index()
    out["regime"] = np.array(LABELS)[out["regime"].to_numpy()]
    return out[SPREAD_COLUMNS]


def regime_half_spreads(observations: pd.DataFrame, before: pd.Timestamp, min_samples: int = MIN_SAMPLES,
                        default: float = DEFAULT_HALF_SPREAD) -> np.ndarray:
    """The median half-spread of each regime over observations stamped before ``before`` (``observed_at``,
    yes_bid, yes_ask); ``default`` where a regime has fewer than ``min_samples``."""
    out = np.full(len(LABELS), default)
    if observations is None or observations.empty:
        return out
    o = observations[(observations["observed_at"] < before)].dropna(subset=["yes_bid", "yes_ask"])
    half = ((o["yes_ask"] - o["yes_bid"]) / 2).to_numpy(float)
    k = regime(((o["yes_ask"] + o["yes_bid"]) / 2).to_numpy(float))
    for r in range(len(LABELS)):
        sel = half[k == r]
        if sel.size >= min_samples:
            out[r] = float(np.median(sel))
    return out
