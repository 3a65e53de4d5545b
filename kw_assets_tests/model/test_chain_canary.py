"""The whole modelling chain, perturbed after t: nothing stamped at or before t may change."""

import datetime as dt

import numpy as np
import pandas as pd
import pytest

from kw_assets.cities import get_city
from kw_assets.model.calibration import fit_calibrator
from kw_assets.model.fusion import fuse_panel
from kw_assets.model.panel import build_panel
from kw_assets.model.weather import WeatherModelConfig, weather_pmf_frame
from kw_assets.sources.simulator.city_day import simulated_city_day

NOW = dt.datetime(2026, 11, 27, tzinfo=dt.timezone.utc)
CFG = WeatherModelConfig(n_paths=300)


def chain(markets, candles, trades, obs, fc, start, calibrator):
    panel = build_panel(markets, candles, trades)
    wx = weather_pmf_frame(markets, obs, fc, start, np.random.default_rng(4), CFG)
    fused = fuse_panel(panel, wx)
    p = fused["p_fused"].to_numpy().reshape(-1, len(markets))
    fused["p_calibrated"] = calibrator.apply(p).ravel()
    return panel, wx, fused


@pytest.mark.parametrize("city,day", [("ny", dt.date(2025, 6, 3)), ("den", dt.date(2025, 11, 2))])
def test_perturbing_everything_after_t_changes_nothing_up_to_t(city, day):
    c = get_city(city)
    cd = simulated_city_day(c, day, NOW)
    markets, candles, trades, obs, fc, start = cd.markets, cd.candles, cd.trades, cd.obs, cd.forecasts, cd.day_start
    rng = np.random.default_rng(2)
    # a calibrator fit on earlier data (its inputs are stamped before the day)
    train = rng.dirichlet(np.ones(len(markets)), 800)
    calibrator = fit_calibrator("platt", train, rng.integers(0, len(markets), 800), min_samples=100)
    base = chain(markets, candles, trades, obs, fc, start, calibrator)
    for hours in (-6.0, 7.5, 15.25):
        t = start + pd.Timedelta(hours=hours)
        c2, t2, o2, f2 = candles.copy(), trades.copy(), obs.copy(), fc.copy()
        late = c2["end_period_ts"] > t
        c2.loc[late, ["yes_bid_close", "yes_ask_close", "price_close"]] = rng.uniform(0, 1, (late.sum(), 3))
        t2.loc[t2["created_time"] > t, "count"] *= 7
        o2.loc[o2["valid_time"] > t, "temp_f"] += 6
        f2.loc[f2["issued_at"] > t, "temp_f"] -= 5
        other = chain(markets, c2, t2, o2, f2, start, calibrator)
        for (name, time_col), a, b in zip([("panel", "minute_ts"), ("weather", "decision_ts"), ("fused", "minute_ts")], base, other):
            upto = a[time_col] <= t
            pd.testing.assert_frame_equal(a[upto].reset_index(drop=True), b[b[time_col] <= t].reset_index(drop=True),
                                          obj=f"{name} at or before {t}")
        assert not base[2][base[2]["minute_ts"] > t].reset_index(drop=True).equals(
            other[2][other[2]["minute_ts"] > t].reset_index(drop=True))
