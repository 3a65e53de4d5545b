import numpy as np
import pandas as pd
import pytest
from scipy.stats import norm

from kw_assets.model.weather import WeatherModelConfig, simulate_weather_pmf, weather_pmf_frame

DAY0 = pd.Timestamp("2025-06-03T05:00:00Z")
LOWS = np.array([-np.inf, 79, 81, 83, 85, 87.0])
HIGHS = np.array([78, 80, 82, 84, 86, np.inf])


def flat_run(temp: float, issued: pd.Timestamp) -> pd.DataFrame:
    hours = pd.date_range(issued.ceil("h"), DAY0 + pd.Timedelta(days=1), freq="h")
    return pd.DataFrame({"issued_at": issued, "valid_time": hours, "temp_f": temp})


def obs_path(values, start=DAY0) -> pd.DataFrame:
    return pd.DataFrame({"valid_time": start + pd.Timedelta(minutes=5) * np.arange(1, len(values) + 1),
                         "temp_f": np.asarray(values, float)})


def test_no_time_left_puts_all_mass_on_the_bracket_of_the_observed_max():
    cfg = WeatherModelConfig(n_paths=2000, gap_mean=0.0, gap_sd=0.0)
    obs = obs_path([75.2, 80.6, 82.4, 78.8])  # max 82.4 -> official 82
    out = simulate_weather_pmf(DAY0, pd.DatetimeIndex([DAY0 + pd.Timedelta(days=1)]), obs,
                               flat_run(70, DAY0 - pd.Timedelta(hours=6)), LOWS, HIGHS, np.random.default_rng(0), cfg)
    assert out["pmf"][0].tolist() == [0, 0, 1, 0, 0, 0]
    assert out["hazard"][0] == 0 and out["expected_high"][0] == 82


def test_single_gaussian_step_matches_the_analytic_pmf():
    cfg = WeatherModelConfig(n_paths=200_000, residual_sd=2.0, forecast_bias=0.0)
    tau = DAY0 + pd.Timedelta(minutes=1435)  # one 5-minute step left, no obs: H = round(F + L + R)
    out = simulate_weather_pmf(DAY0, pd.DatetimeIndex([tau]), obs_path([]), flat_run(82.0, DAY0),
                               LOWS, HIGHS, np.random.default_rng(1), cfg)
    remaining = 5 / 1440
    s = np.sqrt(cfg.residual_sd**2 + (cfg.level_var_intercept) * remaining)
    expected = norm.cdf((HIGHS + 0.5 - 82) / s) - norm.cdf((LOWS - 0.5 - 82) / s)
    assert np.allclose(out["pmf"][0], expected, atol=0.006)


def test_deterministic_per_seed_and_pmfs_sum_to_one():
    markets = pd.DataFrame({"market_ticker": list("ABCDEF"), "bracket_index": range(6), "bracket_low_f": LOWS,
                            "bracket_high_f": HIGHS, "open_time": DAY0 - pd.Timedelta(hours=15),
                            "close_time": DAY0 + pd.Timedelta(hours=24)})
    obs = obs_path(70 + 10 * np.sin(np.linspace(0, 3, 200)))
    fc = pd.concat([flat_run(80, DAY0 - pd.Timedelta(hours=h)) for h in (18, 12, 6, 0)] +
                   [flat_run(81, DAY0 + pd.Timedelta(hours=h)) for h in (6, 12)])
    a = weather_pmf_frame(markets, obs, fc, DAY0, np.random.default_rng(5), WeatherModelConfig(n_paths=500))
    b = weather_pmf_frame(markets, obs, fc, DAY0, np.random.default_rng(5), WeatherModelConfig(n_paths=500))
    pd.testing.assert_frame_equal(a, b)
    assert np.allclose(a.groupby("decision_ts")["p_weather"].sum(), 1.0, atol=1e-12)
    assert (a["hazard"].dropna().between(0, 1)).all()
    # the forecast used at each decision was issued at or before it
    assert (a["forecast_issued_at"] <= a["decision_ts"]).all()


def test_lookahead_canary_later_obs_and_forecasts_change_nothing_earlier():
    markets = pd.DataFrame({"market_ticker": list("ABCDEF"), "bracket_index": range(6), "bracket_low_f": LOWS,
                            "bracket_high_f": HIGHS, "open_time": DAY0 - pd.Timedelta(hours=15),
                            "close_time": DAY0 + pd.Timedelta(hours=24)})
    obs = obs_path(72 + 8 * np.sin(np.linspace(0, 3, 280)))
    fc = pd.concat([flat_run(80 + h / 10, DAY0 + pd.Timedelta(hours=h)) for h in (-18, -12, -6, 0, 6, 12, 18)])
    cfg = WeatherModelConfig(n_paths=400)
    base = weather_pmf_frame(markets, obs, fc, DAY0, np.random.default_rng(9), cfg)
    for cut_h in (3.0, 9.5, 16.25):
        t = DAY0 + pd.Timedelta(hours=cut_h)
        o2 = obs.copy()
        o2.loc[o2["valid_time"] > t, "temp_f"] += 9.0
        f2 = fc.copy()
        f2.loc[f2["issued_at"] > t, "temp_f"] -= 7.0
        other = weather_pmf_frame(markets, o2, f2, DAY0, np.random.default_rng(9), cfg)
        upto = base["decision_ts"] <= t
        pd.testing.assert_frame_equal(base[upto].reset_index(drop=True), other[upto].reset_index(drop=True))
        assert not base[~upto].reset_index(drop=True).equals(other[~upto].reset_index(drop=True))


def test_no_weather_means_no_rows():
    markets = pd.DataFrame({"market_ticker": ["A"], "bracket_index": [0], "bracket_low_f": [-np.inf],
                            "bracket_high_f": [np.inf], "open_time": DAY0, "close_time": DAY0})
    empty = pd.DataFrame({"valid_time": pd.to_datetime([], utc=True), "temp_f": []})
    assert weather_pmf_frame(markets, empty, pd.DataFrame({"issued_at": [], "valid_time": [], "temp_f": []}),
                             DAY0, np.random.default_rng(0)).empty
