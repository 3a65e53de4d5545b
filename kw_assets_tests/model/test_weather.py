import numpy as np
import pandas as pd
from scipy.stats import norm

from kw_assets.model import emos
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


def test_before_any_obs_the_pmf_has_the_emos_mean_and_spread():
    """Whole-day MC (curve + AR(1) residual + level) moment-matched to the learned EMOS for the run."""
    cfg = WeatherModelConfig(n_paths=100_000)
    theta = np.array([0.0, -1.0, 0.0, 0.0, 0, 0, 0, np.log(3.0), 0, 0, 0, 0, 0])  # high ~ N(forecast - 1, 3^2)
    lows, highs = np.concatenate([[-np.inf], np.arange(60.0, 101.0)]), np.concatenate([np.arange(59.0, 100.0), [np.inf]])
    run = flat_run(80.0, DAY0 - pd.Timedelta(hours=20))
    out = simulate_weather_pmf(DAY0, pd.DatetimeIndex([DAY0 - pd.Timedelta(hours=3)]), obs_path([]), run,
                               lows, highs, np.random.default_rng(1), cfg, theta)
    assert abs(out["expected_high"][0] - 79.0) < 0.05
    assert abs(out["high_sd"][0] - 3.0) < 0.05
    cdf = np.cumsum(out["pmf"][0])
    k = np.searchsorted(highs, 79.0)  # P(high <= 79) = Phi((79.5 - 79) / sqrt(9 - 1/12))
    assert abs(cdf[k] - norm.cdf(0.5 / np.sqrt(9 - 1 / 12))) < 0.01


def test_with_an_error_shape_the_pmf_before_any_obs_is_the_shapes_closed_form():
    """The day-level error drawn through the fit's error shape: before any obs the PMF of the high is
    P(round(X) <= k) with X = mean + SD' g(Z) (SD' the EMOS SD less rounding's 1/12), the closed form the skill
    bench's validation scores; a cold-tailed shape puts more on the cold brackets than the Gaussian does."""
    cfg = WeatherModelConfig(n_paths=100_000)
    theta = np.array([0.0, -1.0, 0.0, 0.0, 0, 0, 0, np.log(3.0), 0, 0, 0, 0, 0])  # mean forecast - 1, SD 3
    lows, highs = np.concatenate([[-np.inf], np.arange(60.0, 101.0)]), np.concatenate([np.arange(59.0, 100.0), [np.inf]])
    run = flat_run(80.0, DAY0 - pd.Timedelta(hours=20))
    decision = pd.DatetimeIndex([DAY0 - pd.Timedelta(hours=3)])
    shaped = simulate_weather_pmf(DAY0, decision, obs_path([]), run, lows, highs, np.random.default_rng(1), cfg, theta,
                                  shape=emos.PRIOR_SHAPE)
    gaussian = simulate_weather_pmf(DAY0, decision, obs_path([]), run, lows, highs, np.random.default_rng(1), cfg, theta)
    k = np.arange(70, 90)
    closed = emos.shape_cdf(emos.PRIOR_SHAPE, (k + 0.5 - 79.0) / np.sqrt(9 - 1 / 12))
    mc = np.cumsum(shaped["pmf"][0])[np.searchsorted(highs, k)]
    assert np.abs(mc - closed).max() < 0.01
    below = np.searchsorted(highs, 73.0)  # P(high <= 73): two SDs below the mean
    assert np.cumsum(shaped["pmf"][0])[below] > np.cumsum(gaussian["pmf"][0])[below] + 0.01
    # the identity shape is the Gaussian, draw for draw
    same = simulate_weather_pmf(DAY0, decision, obs_path([]), run, lows, highs, np.random.default_rng(1), cfg, theta,
                                shape=emos.SHAPE_Z.copy())
    assert np.array_equal(same["pmf"], gaussian["pmf"])


def test_yesterdays_error_and_jump_move_the_pmf_only_from_18_lst_the_day_before():
    cfg = WeatherModelConfig(n_paths=50_000)
    # +0.25 F per F of yesterday's error; +0.05 F per F of jump, and log SD +0.2 per unit of log1p|jump| above 1.5
    theta = np.array([0.0, -1.0, 0.0, 0.0, 0.75, 0, 0.5, np.log(3.0), 0, 0, 0, 0, 0.2])
    lows, highs = np.concatenate([[-np.inf], np.arange(60.0, 101.0)]), np.concatenate([np.arange(59.0, 100.0), [np.inf]])
    run = flat_run(80.0, DAY0 - pd.Timedelta(hours=20))
    # yesterday: forecast 80 from the run issued 24 h before today's, observed max 84 by 18:00 LST: +4 F
    yesterday = pd.DataFrame({"issued_at": [DAY0 - pd.Timedelta(hours=44)], "forecast_high_f": [80.0], "obs_max_f": [84.0]})
    decisions = pd.DatetimeIndex([DAY0 - pd.Timedelta(hours=h) for h in (7, 6, 3)])  # 17:00, 18:00, 21:00 LST
    args = (DAY0, decisions, obs_path([]), run, lows, highs)
    without = simulate_weather_pmf(*args, np.random.default_rng(1), cfg, theta)
    with_lag = simulate_weather_pmf(*args, np.random.default_rng(1), cfg, theta, yesterday=yesterday)
    np.testing.assert_array_equal(with_lag["pmf"][0], without["pmf"][0])  # 17:00: not known yet
    np.testing.assert_allclose(without["expected_high"], 79.0, atol=0.05)
    np.testing.assert_allclose(without["high_sd"], 3.0, atol=0.05)  # unknown: the typical jump's spread
    # the run's 80 F is 4 F under yesterday's 84: 79 + 0.25 x 4 - 0.05 x 4, and SD 3 e^(0.2 (log 5 - 1.5))
    np.testing.assert_allclose(with_lag["expected_high"][1:], 79.8, atol=0.05)
    np.testing.assert_allclose(with_lag["high_sd"][1:], 3 * np.exp(0.2 * (np.log(5) - 1.5)), atol=0.05)


def test_the_long_run_bias_moves_the_pmfs_mean_a_share_of_the_way_at_the_runs_lead():
    """The run issued 20 h before the day (34 h before the 14:00 LST peak: the 24-36 h bucket) forecasts 80 F and the
    EMOS says 79; the city's long-run bias there is +3 F, so a fifth of the way to 83 is 79.8, with the same spread.
    A bias known only at other leads leaves the PMF as it was, draw for draw."""
    cfg = WeatherModelConfig(n_paths=50_000)
    theta = np.array([0.0, -1.0, 0.0, 0.0, 0, 0, 0, np.log(3.0), 0, 0, 0, 0, 0])
    lows, highs = np.concatenate([[-np.inf], np.arange(60.0, 101.0)]), np.concatenate([np.arange(59.0, 100.0), [np.inf]])
    args = (DAY0, pd.DatetimeIndex([DAY0 - pd.Timedelta(hours=3)]), obs_path([]),
            flat_run(80.0, DAY0 - pd.Timedelta(hours=20)), lows, highs)
    plain = simulate_weather_pmf(*args, np.random.default_rng(1), cfg, theta)
    moved = simulate_weather_pmf(*args, np.random.default_rng(1), cfg, theta, long_bias=np.array([np.nan, np.nan, 3.0, -5.0]),
                                 long_bias_weight=0.2)
    np.testing.assert_allclose([plain["expected_high"][0], moved["expected_high"][0]], [79.0, 79.8], atol=0.05)
    np.testing.assert_allclose(moved["high_sd"], plain["high_sd"], atol=0.02)
    elsewhere = simulate_weather_pmf(*args, np.random.default_rng(1), cfg, theta,
                                     long_bias=np.array([3.0, 3.0, np.nan, 3.0]), long_bias_weight=0.2)
    assert np.array_equal(elsewhere["pmf"], plain["pmf"])


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


def test_on_simulated_days_the_pmf_sharpens_hour_by_hour_and_settles_on_the_observed_max():
    """20 simulated city-days of the public feed (obs, runs): mean RPS per 3-hour LST block of the climate
    day never rises, and at the close the bracket of the observed max holds >= 0.9 unless that max sits
    within 1 F of the bracket's edge (where the official 2-minute high can still fall on either side)."""
    import datetime as dt

    from kw_assets.cities import get_city
    from kw_assets.sources.simulator.world import build_weather

    cfg = WeatherModelConfig(n_paths=2000)
    blocks, close_ok = [], []
    for key in ("ny", "den"):
        for k in range(10):
            w = build_weather(get_city(key), dt.date(2025, 5, 1) + dt.timedelta(days=7 * k))
            day_start = pd.Timestamp(w.day_start, unit="s", tz="UTC")
            issued, valid, temp = w.forecast_rows()
            runs = pd.DataFrame({"issued_at": pd.to_datetime(issued, unit="s", utc=True),
                                 "valid_time": pd.to_datetime(valid, unit="s", utc=True), "temp_f": temp})
            obs = pd.DataFrame({"valid_time": pd.to_datetime(w.obs_epoch, unit="s", utc=True), "temp_f": w.obs_temp_f})
            lows = np.array([b.low for b in w.brackets])
            highs = np.array([b.high for b in w.brackets])
            dec = pd.date_range(day_start + pd.Timedelta(minutes=5), day_start + pd.Timedelta(days=1), freq="5min")
            out = simulate_weather_pmf(day_start, dec, obs, runs, lows, highs, np.random.default_rng(k), cfg)
            observed_cdf = (np.arange(len(lows) - 1) >= w.winner).astype(float)
            r = ((np.cumsum(out["pmf"], axis=1)[:, :-1] - observed_cdf) ** 2).mean(axis=1)
            blocks.append(pd.Series(r).groupby(np.arange(len(dec)) // 36).mean().to_numpy())
            m = out["obs_max"][-1]
            edges_lo, edges_hi = np.ceil(lows) - 0.5, np.floor(highs) + 0.5
            b = int(np.nonzero((m >= edges_lo) & (m < edges_hi))[0][0])
            if min(m - edges_lo[b], edges_hi[b] - m) > 1.0:
                close_ok.append(out["pmf"][-1, b] >= 0.9)
    by_block = np.mean(blocks, axis=0)
    assert len(by_block) == 8 and np.all(np.diff(by_block) <= 1e-9), by_block.round(4)
    assert by_block[-1] < 0.5 * by_block[0]
    assert close_ok and all(close_ok)


def test_the_residual_paths_are_scipys_ar1_filter_to_the_bit():
    """The Monte Carlo's hourly-residual AR(1) is one vector step per 5 minutes; it must draw exactly what scipy's
    ``lfilter`` drew before it (the same weather PMFs, the same backtest)."""
    from scipy.signal import lfilter

    from kw_assets.model.weather import ar1_paths
    f32 = np.float32
    rng = np.random.default_rng(5)
    phi = np.exp(-5 / (60 * 2.0))
    innov = rng.standard_normal((288, 700), dtype=f32) * f32(1.1 * np.sqrt(1 - phi**2))
    start = phi * 1.1 * rng.standard_normal(700, dtype=f32)
    want = lfilter(np.array([1.0], f32), np.array([1.0, -phi], f32), innov, axis=0, zi=start[None, :])[0]
    got = ar1_paths(innov, float(f32(phi)), start)
    assert np.array_equal(got, want) and np.array_equal(got.astype(f32), want.astype(f32))
    assert got[0, 0] == float(innov[0, 0]) + start[0] and got[1, 0] == float(innov[1, 0]) + float(f32(phi)) * got[0, 0]


def test_the_suffix_max_is_the_reversed_running_max_to_the_bit():
    """Each decision sees the max of the path over the steps still ahead of it: computed row by row from the last
    step, it must equal the reversed ``np.maximum.accumulate`` it replaced, NaNs and the steps beyond included."""
    from kw_assets.model.weather import _suffix_max
    f32 = np.float32
    y = np.random.default_rng(3).standard_normal((40, 300)).astype(f32)
    y[7, 5], y[30, 9] = np.nan, np.nan  # a NaN carries to the rows before it, not after
    beyond = np.random.default_rng(4).standard_normal(300).astype(f32) + f32(1.5)
    want = np.fmax(np.maximum.accumulate(y[::-1], axis=0)[::-1], beyond)
    got = _suffix_max(y, beyond)
    assert got.dtype == f32 and got.shape == (41, 300)
    assert np.array_equal(got[:-1], want, equal_nan=True) and np.array_equal(got[-1], beyond)
    assert (got[:31, 9] == beyond[9]).all()  # rows up to the NaN: their running max is NaN, fmax keeps the steps beyond
    assert got[31, 9] == max(y[31:, 9].max(), beyond[9])  # rows after it never saw it
    alone = _suffix_max(y[:3, :2].copy(), None)
    assert alone[-1].tolist() == [-np.inf, -np.inf] and np.array_equal(alone[0], np.nanmax(y[:3, :2], axis=0))
    assert _suffix_max(np.zeros((0, 4), f32), beyond[:4]).tolist() == [beyond[:4].tolist()]


def test_every_day_shares_one_read_only_draw_of_the_ar1_residual_with_its_law():
    """The residual paths are drawn once per process from a fixed seed (drawing them was ~40% of a day's PMF): every
    climate day, whatever its own seed, gets the same paths, whose SD and 5-minute autocorrelation are the model's;
    no day can change them for the next; and a day's PMF is the same whichever days were computed before it."""
    from kw_assets.model.weather import shared_residuals
    cfg = WeatherModelConfig(n_paths=4000, residual_sd=0.8, residual_tau_h=1.0)
    run = flat_run(80.0, DAY0 - pd.Timedelta(hours=20))
    decisions = pd.DatetimeIndex([DAY0 + pd.Timedelta(hours=h) for h in (6, 12)])
    inputs = [simulate_weather_pmf(DAY0, decisions, obs_path([70.0, 71.0]), run, LOWS, HIGHS,
                                   np.random.default_rng(seed), cfg, _inputs_only=True) for seed in (1, 2)]
    assert inputs[0]["resid"] is inputs[1]["resid"] is shared_residuals(4000, 1.0, 0.8)
    assert not np.array_equal(inputs[0]["z"], inputs[1]["z"])  # the day's own level error stays its own
    resid = inputs[0]["resid"].astype(float)
    assert resid.shape == (288, 4000) and not inputs[0]["resid"].flags.writeable
    assert abs(resid.std() - 0.8) < 0.02
    lag1 = np.corrcoef(resid[:-1].ravel(), resid[1:].ravel())[0, 1]
    assert abs(lag1 - np.exp(-5 / 60)) < 0.01
    first = simulate_weather_pmf(DAY0, decisions, obs_path([70.0]), run, LOWS, HIGHS, np.random.default_rng(3), cfg)
    shared_residuals.cache_clear()  # as in a fresh worker, after other days and other path counts
    simulate_weather_pmf(DAY0, decisions, obs_path([75.0]), run, LOWS, HIGHS, np.random.default_rng(4),
                         WeatherModelConfig(n_paths=1000))
    again = simulate_weather_pmf(DAY0, decisions, obs_path([70.0]), run, LOWS, HIGHS, np.random.default_rng(3), cfg)
    np.testing.assert_array_equal(first["pmf"], again["pmf"])


def test_a_day_with_its_own_residuals_draws_them_from_its_generator_after_its_level_error_and_gap():
    """``shared_residuals=False`` (the simulated traders' Monte Carlo: the simulated market as it always was)."""
    from kw_assets.model.weather import residual_paths
    cfg = WeatherModelConfig(n_paths=500, shared_residuals=False)
    run = flat_run(80.0, DAY0 - pd.Timedelta(hours=20))
    got = simulate_weather_pmf(DAY0, pd.DatetimeIndex([DAY0 + pd.Timedelta(hours=6)]), obs_path([70.0]), run, LOWS,
                               HIGHS, np.random.default_rng(9), cfg, _inputs_only=True)
    rng = np.random.default_rng(9)
    z = rng.standard_normal(500, dtype=np.float32)
    rng.standard_normal(500, dtype=np.float32)  # the gap
    np.testing.assert_array_equal(got["z"], z)
    np.testing.assert_array_equal(got["resid"], residual_paths(rng, 500, cfg.residual_tau_h, cfg.residual_sd))
