"""Spreads by price regime: the regimes, the quantiles, the point-in-time medians the taker fill uses, and the
taker paying the regime's (or the recorded book's) half spread where the candle has no quote."""

import numpy as np
import pandas as pd
import pytest

from kw_assets.model.fills import FillConfig, Tape, taker_fill
from kw_assets.model.spreads import LABELS, regime, regime_half_spreads, spread_table


def test_regimes_split_at_10_30_70_and_90_cents():
    assert regime(np.array([0.01, 0.0999, 0.10, 0.29, 0.30, 0.69, 0.70, 0.899, 0.90, 0.99, np.nan])).tolist() == \
        [0, 0, 1, 1, 2, 2, 3, 3, 4, 4, -1]


def test_the_spread_table_has_quantiles_per_city_regime_and_source():
    obs = pd.DataFrame({"city": "ny", "observed_by": "samples",
                        "yes_bid": [0.40, 0.41, 0.42, 0.43, 0.04, np.nan],
                        "yes_ask": [0.42, 0.45, 0.48, 0.51, 0.05, 0.50]})  # half spreads 1, 2, 3, 4 c; 0.5 c
    t = spread_table(obs).set_index("regime")
    assert t.loc["30-70c", "n"] == 4 and t.loc["30-70c", "half_spread_median"] == pytest.approx(0.025)
    assert t.loc["30-70c", "half_spread_p90"] == pytest.approx(0.037)
    assert t.loc["1-10c", "n"] == 1 and t.loc["1-10c", "half_spread_mean"] == pytest.approx(0.005)


def test_a_day_is_priced_by_books_observed_before_it_only():
    t = pd.date_range("2025-06-01", periods=40, freq="h", tz="UTC")
    obs = pd.DataFrame({"observed_at": t, "yes_bid": 0.45, "yes_ask": np.where(np.arange(40) < 25, 0.47, 0.55)})
    half = regime_half_spreads(obs, before=t[25], min_samples=20)
    assert half[2] == pytest.approx(0.01) and (half[[0, 1, 3, 4]] == 0.02).all()  # 25 earlier books: 1 c
    assert regime_half_spreads(obs, before=t[15], min_samples=20)[2] == 0.02  # too few yet: the default
    assert len(half) == len(LABELS)


def _tape(half_spread, l2_half=None):
    n = 5
    minutes = pd.date_range("2025-06-01T14:00Z", periods=n, freq="min")
    nan = np.full((n, 1), np.nan)
    last = np.full((n, 1), 0.05)
    return Tape(minutes, np.array(["T"]), nan, nan, last, last, np.full((n, 1), 100.0), nan, nan, half_spread,
                np.array([], int), np.array([], int), np.array([]), np.array([]), l2_half_spread=l2_half)


def test_an_unquoted_taker_pays_the_regimes_half_spread_or_the_recorded_books():
    regimes = np.array([0.005, 0.01, 0.03, 0.01, 0.005])
    cfg = FillConfig(taker_slippage=0.0)
    assert taker_fill(_tape(0.02), 1, 0, "yes", "buy", 5, cfg)[1] == pytest.approx(0.07)  # the old constant
    assert taker_fill(_tape(regimes), 1, 0, "yes", "buy", 5, cfg)[1] == pytest.approx(0.055)  # last 5 c: 1-10c
    recorded = np.full((5, 1), np.nan)
    recorded[2] = 0.015
    assert taker_fill(_tape(regimes, recorded), 1, 0, "yes", "buy", 5, cfg)[1] == pytest.approx(0.065)
