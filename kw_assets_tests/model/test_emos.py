import datetime as dt

import numpy as np
import pandas as pd
from scipy.stats import norm

from kw_assets.model import emos

D0 = dt.date(2025, 1, 1)


def samples(n_days=150, seed=0, cities=(("A", 2.0, 1.0), ("B", -1.0, 3.0))) -> pd.DataFrame:
    """Two runs a day per city: high = forecast + bias + N(0, sd^2), rounded like an official high."""
    rng = np.random.default_rng(seed)
    rows = []
    for city, bias, sd in cities:
        f = rng.uniform(40, 90, n_days)
        err = rng.normal(bias, sd, n_days)
        for lead in (20.0, 8.0):
            rows.append(pd.DataFrame({"city": city, "climate_day": [D0 + dt.timedelta(days=k) for k in range(n_days)],
                                      "lead_h": lead, "forecast_high_f": f, "previous_high_f": f,
                                      "before_previous_high_f": f, "forecast_low_f": f - 18, "lag_error_f": np.nan,
                                      "observed_high_f": np.round(f + err)}))
    return pd.concat(rows, ignore_index=True)


def mean_sd(fit: emos.EmosFit, city: str, f: float = 70.0):
    xm, xs = emos.design(np.array([f]), np.array([f]), np.array([f]), np.array([f - 18]), np.array([14.0]))
    mu, sd = emos.predict(fit.coefficients(city), xm, xs)
    return mu[0] - f, sd[0]


def test_learns_each_citys_bias_and_spread_walk_forward():
    fit = emos.WalkForward(samples(), emos.EmosConfig(half_life_days=1e6, city_shrinkage=1.0)).fit(D0 + dt.timedelta(days=150))
    bias_a, sd_a = mean_sd(fit, "A")
    bias_b, sd_b = mean_sd(fit, "B")
    assert abs(bias_a - 2.0) < 0.3 and abs(bias_b + 1.0) < 0.5
    # sd of the integer high: sqrt(sd^2 + 1/12); CRPS-fitted Gaussians recover it within a few tenths
    assert abs(sd_a - np.sqrt(1 + 1 / 12)) < 0.25 and abs(sd_b - np.sqrt(9 + 1 / 12)) < 0.4


def test_fit_for_day_d_uses_only_days_settled_before_its_market_opened():
    s = samples(40)
    day = D0 + dt.timedelta(days=30)
    fit = emos.WalkForward(s, emos.EmosConfig()).fit(day)
    assert fit.fit_end == day - dt.timedelta(days=3) and fit.fit_start == D0 and fit.fit_days == 28
    assert fit.samples == {"A": 56, "B": 56}
    # canary: rewriting the outcome of D-2 and later changes nothing
    later = pd.to_datetime(s["climate_day"]).dt.date >= day - dt.timedelta(days=2)
    changed = s.assign(observed_high_f=np.where(later, s["observed_high_f"] + 30, s["observed_high_f"]))
    again = emos.WalkForward(changed, emos.EmosConfig()).fit(day)
    np.testing.assert_allclose(again.coefficients("A"), fit.coefficients("A"))
    np.testing.assert_array_equal(again.shape_of("A"), fit.shape_of("A"))


def test_a_city_with_few_days_is_shrunk_toward_the_pooled_fit():
    s = samples(120, cities=(("A", 2.0, 1.0), ("B", 2.0, 1.0), ("C", -4.0, 1.0)))
    few = s[(s["city"] != "C") | (pd.to_datetime(s["climate_day"]).dt.date >= D0 + dt.timedelta(days=115))]
    fit = emos.WalkForward(few, emos.EmosConfig(half_life_days=1e6, city_shrinkage=50.0)).fit(D0 + dt.timedelta(days=120))
    bias_c, _ = mean_sd(fit, "C")
    assert fit.samples["C"] == 6  # days 115-117 (<= D-3), two runs each
    assert 0.0 < bias_c < 2.0  # between its own -4 and the pooled +2, much nearer the pool


def test_no_history_gives_the_prior_and_an_empty_lineage():
    fit = emos.WalkForward(emos.empty_samples()).fit(D0)
    np.testing.assert_array_equal(fit.pooled, emos.PRIOR)
    off = emos.WalkForward(emos.empty_samples(), emos.EmosConfig(use_lag_error=False)).fit(D0)
    lag = emos.PARAM_COLUMNS.index("mean_lag_error")
    np.testing.assert_array_equal(off.pooled, np.where(np.arange(len(emos.PRIOR)) == lag, 0.0, emos.PRIOR))
    no_jump = emos.WalkForward(emos.empty_samples(), emos.EmosConfig(use_jump=False)).fit(D0)
    jump = [emos.PARAM_COLUMNS.index(c) for c in ("mean_jump", "log_sd_abs_jump")]
    np.testing.assert_array_equal(no_jump.pooled, np.where(np.isin(np.arange(len(emos.PRIOR)), jump), 0.0, emos.PRIOR))
    row = fit.describe("ny")
    assert row["fit_end"] is None and row["fit_samples"] == 0 and row["mean_bias"] == emos.PRIOR[1]


def test_a_days_fit_is_the_same_whichever_days_were_fitted_before_it():
    """A partition re-materialized alone gets the coefficients the backfill gave it, to the bit: no fit starts
    from another day's optimum (a later one would carry its samples in; an earlier one moved the result by up
    to the optimizer's tolerance)."""
    s = samples(n_days=120, seed=3)
    early, mid, late = (D0 + dt.timedelta(days=k) for k in (40, 80, 120))
    alone = {day: emos.WalkForward(s).fit(day) for day in (early, mid, late)}
    walk = emos.WalkForward(s)
    in_a_run = {day: walk.fit(day) for day in [late, early, mid, late]}
    for day in (early, mid, late):
        np.testing.assert_array_equal(in_a_run[day].pooled, alone[day].pooled)
        np.testing.assert_array_equal(in_a_run[day].coefficients("ny"), alone[day].coefficients("ny"))


def test_yesterdays_error_is_taken_from_its_run_24_hours_earlier_and_known_only_if_it_exists():
    t = pd.Timestamp("2025-06-02T12:00Z")
    runs = pd.DataFrame({"city": ["ny", "ny", "ny", "chi"], "climate_day": [dt.date(2025, 6, 2)] * 3 + [dt.date(2025, 6, 2)],
                         "issued_at": [t, t - pd.Timedelta(hours=13), t + pd.Timedelta(hours=6), t]})
    yesterday = pd.DataFrame({"city": ["ny", "ny", "ny", "chi"], "climate_day": [dt.date(2025, 6, 1)] * 4,
                              "issued_at": [t - pd.Timedelta(hours=h) for h in (36, 24, 20)] + [t - pd.Timedelta(hours=20)],
                              "forecast_high_f": [80.0, 82.0, 90.0, 70.0], "obs_max_f": [85.0, 85.0, 85.0, 71.0]})
    lag, high = emos.lag_errors(runs, yesterday)
    # t: the run issued exactly 24 h before (82); t - 13 h: none issued by t - 37 h; t + 6 h: the one at t - 20 h
    # (90); chi: its own run of 20 h before is too late for a run issued at t
    np.testing.assert_array_equal(lag, [3.0, np.nan, -5.0, np.nan])
    np.testing.assert_array_equal(high, [85.0, np.nan, 85.0, np.nan])  # yesterday's high, known on the same rule
    ny_lag, ny_high = emos.day_lag_errors(runs["issued_at"][:3], yesterday[yesterday["city"] == "ny"].iloc[::-1])
    np.testing.assert_array_equal(ny_lag, lag[:3])  # the one-day form agrees, whatever the row order
    np.testing.assert_array_equal(ny_high, high[:3])


def test_learns_how_much_of_yesterdays_error_carries_into_today():
    rng = np.random.default_rng(4)
    n = 400
    err = np.zeros(n)
    for k in range(1, n):  # AR(1) across days: half of yesterday's error persists
        err[k] = 0.5 * err[k - 1] + rng.normal(0, 2.0)
    f = rng.uniform(50, 90, n)
    days = [D0 + dt.timedelta(days=k) for k in range(n)]
    s = pd.DataFrame({"city": "A", "climate_day": days, "lead_h": 20.0, "forecast_high_f": f, "previous_high_f": f,
                      "before_previous_high_f": f, "forecast_low_f": f - 18,
                      "lag_error_f": np.concatenate([[np.nan], err[:-1]]), "observed_high_f": np.round(f + err)})
    # what the data say: the default's pull toward the prior (0.25 F per F, from the NWS cities) is left out
    fit = emos.WalkForward(s, emos.EmosConfig(half_life_days=1e6, prior_weight=0.1, use_lag_error=True)).fit(D0 + dt.timedelta(days=n))
    xm, xs = emos.design(np.full(2, 70.0), np.full(2, 70.0), np.full(2, 70.0), np.full(2, 52.0), np.full(2, 20.0),
                         np.array([0.0, 6.0]))
    mu, _ = emos.predict(fit.coefficients("A"), xm, xs)
    assert abs((mu[1] - mu[0]) - 3.0) < 0.6
    off = emos.WalkForward(s, emos.EmosConfig(half_life_days=1e6, use_lag_error=False)).fit(D0 + dt.timedelta(days=n))
    assert off.coefficients("A")[emos.PARAM_COLUMNS.index("mean_lag_error")] == 0.0


def test_learns_that_a_forecast_far_from_yesterdays_high_is_less_certain_and_understates_the_change():
    rng = np.random.default_rng(5)
    n = 500
    f = rng.uniform(50, 90, n)
    jump = rng.normal(0, 7, n)  # forecast minus yesterday's high
    # a front: the error is wider the larger the jump, and the high goes a tenth further than the forecast says
    err = 0.1 * jump + rng.normal(0, 1.0 + 0.25 * np.abs(jump))
    days = [D0 + dt.timedelta(days=k) for k in range(n)]
    s = pd.DataFrame({"city": "A", "climate_day": days, "lead_h": 20.0, "forecast_high_f": f, "previous_high_f": f,
                      "before_previous_high_f": f, "forecast_low_f": f - 18, "lag_error_f": np.nan,
                      "yesterday_high_f": f - jump, "observed_high_f": np.round(f + err)})
    cfg = emos.EmosConfig(half_life_days=1e6, prior_weight=0.1)
    fit = emos.WalkForward(s, cfg).fit(D0 + dt.timedelta(days=n))
    xm, xs = emos.design(np.full(3, 70.0), np.full(3, 70.0), np.full(3, 70.0), np.full(3, 52.0), np.full(3, 20.0),
                         np.nan, np.array([70.0, 60.0, np.nan]))
    mu, sd = emos.predict(fit.coefficients("A"), xm, xs)
    assert 0.4 < mu[1] - mu[0] < 1.6  # a 10 F jump: ~1 F further
    assert sd[1] > 1.8 * sd[0]  # and a much wider spread than on a day like yesterday
    assert sd[0] < sd[2] < sd[1]  # yesterday unknown: the typical jump's spread
    off = emos.WalkForward(s, emos.EmosConfig(half_life_days=1e6, use_jump=False)).fit(D0 + dt.timedelta(days=n))
    assert off.coefficients("A")[emos.PARAM_COLUMNS.index("mean_jump")] == 0.0
    assert off.coefficients("A")[emos.PARAM_COLUMNS.index("log_sd_abs_jump")] == 0.0


def test_one_citys_arrays_fit_as_its_frame_does():
    """``WalkForward.of_one_city`` (the simulated traders' daily fit) gives the frame constructor's coefficients to the
    bit: rows without a forecast or an observed high dropped, the yesterday terms on or held at 0."""
    rng = np.random.default_rng(4)
    frame = samples(cities=(("A", 1.5, 2.0),)).assign(lag_error_f=lambda d: rng.normal(0, 2, len(d)),
                                                      yesterday_high_f=lambda d: d["forecast_high_f"] + rng.normal(0, 5, len(d)))
    frame.loc[rng.choice(len(frame), 20, replace=False), "forecast_high_f"] = np.nan
    frame.loc[rng.choice(len(frame), 20, replace=False), "observed_high_f"] = np.nan
    day = pd.to_datetime(frame["climate_day"]).to_numpy("datetime64[D]")
    columns = {c: frame[c].to_numpy(float) for c in emos.SAMPLE_COLUMNS[2:]}
    for cfg in (emos.EmosConfig(), emos.EmosConfig(use_jump=False, use_lag_error=False)):
        for on in (D0 + dt.timedelta(days=40), D0 + dt.timedelta(days=151)):
            want = emos.WalkForward(frame, cfg).fit(on)
            got = emos.WalkForward.of_one_city("A", day, columns, cfg).fit(on)
            assert np.array_equal(got.coefficients("A"), want.coefficients("A"))
            assert (got.fit_start, got.fit_end, got.fit_days, got.samples) == (want.fit_start, want.fit_end, want.fit_days,
                                                                              want.samples)


def test_the_error_shape_is_learned_from_the_fits_residuals_and_shrunk_to_the_prior_shape():
    """Gaussian errors give back the identity (the Gaussian); a city with cold busts gets a shape whose 90% interval
    sits lower, and the others do not; at the defaults the pooled quantiles are averaged with the prior shape, and each
    city's with the pooled shape, in proportion of effective city-days; with no settled days the shape is the prior's,
    and ``use_shape=False`` is the Gaussian."""
    day = D0 + dt.timedelta(days=403)
    plain = samples(400, cities=(("A", 1.0, 2.0), ("B", -1.0, 2.5), ("C", 0.0, 3.0)))
    unweighted = dict(half_life_days=np.inf)  # every sample's weight 1: 400 city-days a city (two runs each)
    own = emos.WalkForward(plain, emos.EmosConfig(**unweighted, shape_prior_days=0.0, city_shape_days=0.0)).fit(day)
    inner = np.abs(emos.SHAPE_Z) <= 1.5
    assert np.abs(own.shape - emos.SHAPE_Z)[inner].max() < 0.1
    assert max(np.abs(own.shape_of(c) - emos.SHAPE_Z)[inner].max() for c in "ABC") < 0.25  # 400 errors a city
    assert own.shape_days == {"A": 400.0, "B": 400.0, "C": 400.0}
    cfg = emos.EmosConfig(**unweighted)
    default = emos.WalkForward(plain, cfg).fit(day)
    pooled = (1200 * own.shape + cfg.shape_prior_days * emos.PRIOR_SHAPE) / (1200 + cfg.shape_prior_days)
    np.testing.assert_allclose(default.shape, pooled, atol=1e-12)
    for c in "ABC":
        want = (400 * own.shape_of(c) + cfg.city_shape_days * pooled) / (400 + cfg.city_shape_days)
        np.testing.assert_allclose(default.shape_of(c), want, atol=1e-12)
        assert default.describe(c)["shape_days"] == 400.0

    rng = np.random.default_rng(3)
    bust = plain.drop_duplicates(["city", "climate_day"])[["city", "climate_day"]]
    bust = bust.assign(b=np.where((bust["city"] == "C") & (rng.random(len(bust)) < 0.1),
                                  -np.round(rng.exponential(8.0, len(bust))), 0.0))
    cold = plain.merge(bust, on=["city", "climate_day"])
    cold = cold.assign(observed_high_f=cold["observed_high_f"] + cold.pop("b"))
    skewed = emos.WalkForward(cold, emos.EmosConfig(**unweighted, shape_prior_days=0.0, city_shape_days=0.0)).fit(day)
    low = {c: emos.shape_cdf(skewed.shape_of(c), -1.645) for c in "ABC"}
    high_c = 1 - emos.shape_cdf(skewed.shape_of("C"), 1.645)
    assert low["C"] > 0.07 and high_c < 0.045 and low["C"] > max(low["A"], low["B"])  # the Gaussian's: 0.05 each
    shrunk = emos.WalkForward(cold, cfg).fit(day)
    assert low["C"] > emos.shape_cdf(shrunk.shape_of("C"), -1.645) > emos.shape_cdf(shrunk.shape_of("A"), -1.645)

    cold_start = emos.WalkForward(emos.empty_samples()).fit(D0)
    np.testing.assert_array_equal(cold_start.shape_of("A"), emos.PRIOR_SHAPE)
    row = cold_start.describe("A")
    assert [row[c] for c in emos.SHAPE_COLUMNS] == emos.PRIOR_SHAPE.tolist() and row["shape_days"] == 0.0
    off = emos.WalkForward(plain, emos.EmosConfig(use_shape=False)).fit(day)
    assert emos.is_gaussian(off.shape_of("A")) and off.describe("A")["shape_days"] == 0.0


def test_the_shapes_cdf_inverts_its_quantile_function_beyond_the_knots_too():
    z = np.linspace(-4.0, 4.0, 81)
    for shape in (emos.PRIOR_SHAPE, emos.SHAPE_Z):
        np.testing.assert_allclose(emos.shape_cdf(shape, emos.shape_quantile(shape, z)), norm.cdf(z), atol=1e-12)
    np.testing.assert_allclose(emos.shape_quantile(emos.SHAPE_Z, z), z, atol=1e-12)  # the identity: the Gaussian
    assert emos.shape_quantile(emos.PRIOR_SHAPE, np.array([-3.0]))[0] < -4.0  # the cold tail continues beyond -2.5


def test_a_params_row_stored_before_the_shape_was_learned_is_gaussian():
    row = emos.WalkForward(emos.empty_samples()).fit(D0).describe("A")
    stored = pd.DataFrame([row])
    np.testing.assert_array_equal(emos.stored_shape(stored), emos.PRIOR_SHAPE)
    assert emos.stored_shape(stored.drop(columns=list(emos.SHAPE_COLUMNS))) is None  # an older table, read
    assert emos.stored_shape(stored.assign(shape_p0_0=np.nan)) is None  # an older table, written to since


def test_a_days_runs_count_as_one_city_day_however_many_there_are():
    """Four runs of one city-day share its error: the shape's sample count is of city-days, so a source with many
    runs a day does not outweigh the prior by its run count; unequal days count less than equal ones."""
    w = np.ones(8)
    assert emos.effective_days(w, np.array([1, 1, 1, 1, 2, 2, 2, 2])) == 2.0
    assert emos.effective_days(w, np.arange(8)) == 8.0
    assert emos.effective_days(np.array([1.0, 1.0, 0.5, 0.5]), np.array([1, 2, 3, 4])) == 9 / 2.5


def test_the_long_run_bias_is_each_citys_plain_mean_error_per_lead_from_settled_days_only():
    """Per city and lead bucket, the unweighted mean of (observed - forecast high) over the days <= D-3, once the
    city has 10 such days at that lead; the runs at 8 h and 20 h before the peak fall in the 0-12 h and 12-24 h
    buckets, and the buckets with no runs stay unknown."""
    s = samples(40)
    day = D0 + dt.timedelta(days=30)
    fit = emos.WalkForward(s, emos.EmosConfig()).fit(day)
    known = pd.to_datetime(s["climate_day"]).dt.date <= day - dt.timedelta(days=3)
    for city in ("A", "B"):
        for lead, bucket in ((8.0, 0), (20.0, 1)):
            rows = s[known & (s["city"] == city) & (s["lead_h"] == lead)]
            assert abs(fit.long_bias_of(city)[bucket] - (rows["observed_high_f"] - rows["forecast_high_f"]).mean()) < 1e-12
        assert np.isnan(fit.long_bias_of(city)[2:]).all()
    assert fit.long_bias_weight == 0.2 and np.isnan(fit.long_bias_of("C")).all()
    # canary: the outcomes of D-2 and later move nothing
    later = ~known
    again = emos.WalkForward(s.assign(observed_high_f=np.where(later, s["observed_high_f"] + 30, s["observed_high_f"])),
                             emos.EmosConfig()).fit(day)
    np.testing.assert_array_equal(again.long_bias_of("A"), fit.long_bias_of("A"))
    # ten settled days (D0..D0+9 for D0+12) count; nine do not
    assert np.isfinite(emos.WalkForward(s).fit(D0 + dt.timedelta(days=12)).long_bias_of("A")[:2]).all()
    assert np.isnan(emos.WalkForward(s).fit(D0 + dt.timedelta(days=11)).long_bias_of("A")).all()
    assert emos.WalkForward(s, emos.EmosConfig(long_bias_weight=0.0)).fit(day).long_bias == {}


def test_the_mean_moves_a_share_of_the_way_to_the_forecast_plus_the_long_run_bias():
    mu, f, lead = np.array([70.0, 70.0, 70.0]), np.array([68.0, 68.0, 68.0]), np.array([8.0, 20.0, 30.0])
    bias = np.array([1.0, 2.0, np.nan, np.nan])
    # 0-12 h: 70 + 0.2 (68 + 1 - 70); 12-24 h: the forecast plus its bias is the mean; 24-36 h: unknown, unchanged
    np.testing.assert_allclose(emos.blend_long_bias(mu, f, lead, bias, 0.2), [69.8, 70.0, 70.0])
    np.testing.assert_array_equal(emos.blend_long_bias(mu, f, lead, bias, 0.0), mu)
    np.testing.assert_array_equal(emos.blend_long_bias(mu, f, lead, None, 0.2), mu)
    row = pd.DataFrame([emos.WalkForward(samples(40)).fit(D0 + dt.timedelta(days=30)).describe("A")])
    stored, weight = emos.stored_long_bias(row)
    assert weight == 0.2 and np.isfinite(stored[:2]).all() and np.isnan(stored[2:]).all()
    assert emos.stored_long_bias(row.drop(columns=[*emos.LONG_BIAS_COLUMNS, "long_bias_weight"])) == (None, 0.0)  # older table
