"""Probability layer (group ``probabilities``): the weather PMF and hazard, the fused PMF, and the
walk-forward calibrated PMF, per city x climate day."""

import datetime as dt
import functools
import zlib

import numpy as np
import pandas as pd

from kw_assets.defs.config import build, run_config_from
from kw_assets.defs.materialize import partition_pairs, require_markets
from kw_assets.defs.tables import derived_table
from kw_assets.cities import get_city
from kw_assets.errors import DataError
from kw_assets.model import emos
from kw_assets.model.calibration import CalibrationConfig, History, walk_forward_fit
from kw_assets.model.fusion import FusionConfig, fuse_panel
from kw_assets.model.weather import WeatherModelConfig, weather_pmf_frame

EmosRunConfig = run_config_from("EmosRunConfig", emos.EmosConfig)
PEAK_HOUR_LST = WeatherModelConfig().peak_hour_lst


def day_runs(wh, first: dt.date, last: dt.date) -> pd.DataFrame:
    """Per stored forecast run of the climate days first..last: its high and low over the day, and the day's
    obs max through 18:00 LST (``emos.LAG_KNOWN_HOURS_BEFORE_DAY`` before the day ends; NaN without obs):
    what ``emos.lag_errors`` reads as "yesterday"."""
    runs = wh.query(
        "SELECT city, climate_day, issued_at, max(temp_f) AS forecast_high_f, min(temp_f) AS forecast_low_f "
        "FROM weather_forecasts WHERE climate_day BETWEEN CAST(? AS DATE) AND CAST(? AS DATE) "
        "GROUP BY city, climate_day, issued_at ORDER BY city, climate_day, issued_at",
        [first.isoformat(), last.isoformat()], needs=("weather_forecasts",))
    if runs.empty:
        return pd.DataFrame(columns=["city", "climate_day", "issued_at", "forecast_high_f", "forecast_low_f", "obs_max_f"])
    cities = runs["city"].astype(str).unique().tolist()
    offsets = ", ".join("(?, ?)" for _ in cities)
    cutoff_h = 24 - emos.LAG_KNOWN_HOURS_BEFORE_DAY
    obs = wh.query(
        f"SELECT o.city, o.climate_day, max(o.temp_f) AS obs_max_f FROM weather_obs o "
        f"JOIN (VALUES {offsets}) AS z(city, offset_h) ON o.city = z.city "
        "WHERE o.climate_day BETWEEN CAST(? AS DATE) AND CAST(? AS DATE) "
        f"AND epoch(o.valid_time) <= epoch(CAST(o.climate_day AS TIMESTAMP)) + ({cutoff_h} - z.offset_h) * 3600 "
        "GROUP BY o.city, o.climate_day",
        [v for c in cities for v in (c, get_city(c).lst_utc_offset_hours)] + [first.isoformat(), last.isoformat()],
        needs=("weather_obs",))
    runs["city"] = runs["city"].astype(str)
    runs["climate_day"] = pd.to_datetime(runs["climate_day"]).dt.date
    if obs.empty:
        return runs.assign(obs_max_f=np.nan)
    obs = obs.assign(city=obs["city"].astype(str), climate_day=pd.to_datetime(obs["climate_day"]).dt.date)
    return runs.merge(obs, on=["city", "climate_day"], how="left")


def emos_samples(wh, before: dt.date) -> pd.DataFrame:
    """One sample per stored forecast run issued before the climatological peak of a settled climate day
    before ``before``: the run's high and low over the day, the two runs before it, yesterday's error at the
    run's lead, and the official high."""
    settled = wh.query("SELECT city, climate_day, any_value(official_high_f) AS observed_high_f FROM settlement "
                       "WHERE climate_day < CAST(? AS DATE) AND official_high_f IS NOT NULL GROUP BY city, climate_day",
                       [before.isoformat()], needs=("settlement",))
    if settled.empty:
        return emos.empty_samples()
    settled = settled.assign(city=settled["city"].astype(str), climate_day=pd.to_datetime(settled["climate_day"]).dt.date)
    every = day_runs(wh, min(settled["climate_day"]) - dt.timedelta(days=1), before - dt.timedelta(days=1))
    runs = every.merge(settled, on=["city", "climate_day"])
    if runs.empty:
        return emos.empty_samples()
    runs = runs.sort_values(["city", "climate_day", "issued_at"], kind="stable").reset_index(drop=True)
    runs["lag_error_f"] = emos.lag_errors(runs, every)
    by_day = runs.groupby(["city", "climate_day"], sort=False)["forecast_high_f"]
    runs["previous_high_f"] = by_day.shift(1)
    runs["before_previous_high_f"] = by_day.shift(2)
    offset_h = runs["city"].map({c: get_city(c).lst_utc_offset_hours for c in runs["city"].unique()}).astype(float)
    day_start = pd.to_datetime(runs["climate_day"]).dt.tz_localize("UTC") - pd.to_timedelta(offset_h, unit="h")
    runs["lead_h"] = (day_start + pd.Timedelta(hours=PEAK_HOUR_LST) - runs["issued_at"]) / pd.Timedelta(hours=1)
    return runs.loc[runs["lead_h"] > 0, list(emos.SAMPLE_COLUMNS)].reset_index(drop=True)


@derived_table("weather_model_params", group="probabilities", time_column=None, config=EmosRunConfig,
               inputs={"kalshi_markets": ("source", "market_ticker")},
               deps=("weather_forecasts", "weather_obs", "settlement"),  # the training samples, read once per run
               description="Daily-high EMOS per city x climate day: mean and log-SD coefficients learned walk-forward "
                           "from (forecast run, settled high) pairs of days <= D-3 (settled before D's market opened), "
                           "recency-weighted, per city shrunk to the pooled fit; with the fit window and sample counts.")
def weather_model_params(context, wh, config):
    days = sorted({day for _, day, _ in partition_pairs(context)})
    walk = emos.WalkForward(emos_samples(wh, days[-1]), build(emos.EmosConfig, config))
    fits = {day: walk.fit(day) for day in days}  # in date order: each fit starts from the one before

    def produce(city, day, data):
        markets = require_markets(data["kalshi_markets"], city, day)
        return pd.DataFrame([fits[day].describe(city.key)]).assign(source=markets["source"].iloc[0])
    return produce

WeatherPmfConfig = run_config_from("WeatherPmfConfig", WeatherModelConfig, seed=(int, 11))


@derived_table("weather_pmf", group="probabilities", time_column="decision_ts", config=WeatherPmfConfig,
               inputs=("kalshi_markets", "weather_obs", "weather_forecasts", "weather_model_params"),
               description="Monte Carlo of the rest of the day at every decision time (5 min): bracket PMF of the "
                           "official high, new-high hazard, expected high and spread, its whole-day moments set by the "
                           "day's learned EMOS (weather_model_params) and, unless its use_lag_error is off, from 18:00 "
                           "LST the day before by yesterday's forecast error (the previous day's obs max through 18:00 "
                           "LST; weather_obs and weather_forecasts of D-1). Uses only obs and forecasts stamped at or "
                           "before the decision. No rows when the partition has no weather data (downstream: market only).")
def weather_pmf(context, wh, config):
    cfg = build(WeatherModelConfig, config)
    days = sorted({day for _, day, _ in partition_pairs(context)})
    previous = day_runs(wh, days[0] - dt.timedelta(days=1), days[-1] - dt.timedelta(days=1))
    previous_by_day = dict(tuple(previous.groupby(["city", "climate_day"], sort=False)))

    def produce(city, day, data):
        markets = require_markets(data["kalshi_markets"], city, day)
        params = data["weather_model_params"]
        if params.empty:
            raise DataError("weather_model_params", "mean_bias",
                            f"no weather model parameters stored for {city.key} {day}: materialize weather_model_params first")
        rng = np.random.default_rng([config.seed, zlib.crc32(city.key.encode()), day.toordinal()])
        start = pd.Timestamp(city.climate_day_window(day)[0])
        theta = params[list(emos.PARAM_COLUMNS)].to_numpy(float)[0]
        yesterday = previous_by_day.get((city.key, day - dt.timedelta(days=1)))
        frame = weather_pmf_frame(markets, data["weather_obs"], data["weather_forecasts"], start, rng, cfg, theta, yesterday)
        return frame.assign(source=markets["source"].iloc[0]) if len(frame) else frame
    return produce

FusionRunConfig = run_config_from("FusionRunConfig", FusionConfig)


@derived_table("fused_pmf", group="probabilities", time_column="minute_ts", config=FusionRunConfig,
               inputs={"minute_panel": ("source", "minute_ts", "market_ticker", "bracket_index", "p_norm", "volume",
                                        "acceleration"),
                       "weather_pmf": ("decision_ts", "bracket_index", "p_weather", "hazard")},
               description="Per minute x bracket: logarithmic pool of the market PMF (renormalized mids) and the latest "
                           "weather PMF at or before the minute, with the market weight used (adaptive by default).")
def fused_pmf(context, wh, config):
    cfg = build(FusionConfig, config)

    def produce(city, day, data):
        panel = data["minute_panel"]
        if panel.empty:
            return panel
        return fuse_panel(panel, data["weather_pmf"], cfg).assign(source=panel["source"].iloc[0])
    return produce


CalibrationRunConfig = run_config_from("CalibrationRunConfig", CalibrationConfig)


def calibration_history(wh, before: dt.date, every_min: int) -> pd.DataFrame:
    """Fused PMFs of settled partitions before ``before``, sampled every ``every_min`` minutes, with winners."""
    rows = wh.query(
        "SELECT f.city, f.climate_day, f.minute_ts, f.bracket_index, f.p_fused, s.winning_bracket_index AS winner "
        "FROM fused_pmf f JOIN settlement s ON f.city = s.city AND f.climate_day = s.climate_day "
        "WHERE f.climate_day < CAST(? AS DATE) AND s.winning_bracket_index >= 0 "
        "AND (epoch(f.minute_ts)::BIGINT / 60) % ? = 0 ORDER BY f.city, f.climate_day, f.minute_ts, f.bracket_index",
        [before.isoformat(), every_min], needs=("fused_pmf", "settlement"))
    if rows.empty:
        return pd.DataFrame(columns=["climate_day", "p", "winner", "n_brackets"])
    keys = ["city", "climate_day", "minute_ts"]
    grouped = rows.groupby(keys, sort=False)
    out = grouped.agg(winner=("winner", "first"), n_brackets=("p_fused", "size")).reset_index()
    sizes = out["n_brackets"].to_numpy()
    out["p"] = np.split(rows["p_fused"].to_numpy(float), np.cumsum(sizes)[:-1])
    out["climate_day"] = pd.to_datetime(out["climate_day"]).dt.date
    return out


@derived_table("calibrated_pmf", group="probabilities", time_column="minute_ts", config=CalibrationRunConfig,
               inputs=("fused_pmf",), deps=("settlement",),  # the calibration history, read once per run
               description="The fused PMF after walk-forward calibration (platt | isotonic | temperature | none): the "
                           "calibrator for day D is fit only on settled days before D, pooled across cities; every "
                           "row names its method, fit window and sample size.")
def calibrated_pmf(context, wh, config):
    cfg = build(CalibrationConfig, config)
    last_day = max(day for _, day, _ in partition_pairs(context))
    history = History.from_frame(calibration_history(wh, last_day, cfg.sample_every_min))  # once per run
    fit_for_day = functools.lru_cache(maxsize=None)(lambda day: walk_forward_fit(history, day, cfg))  # cities share a fit

    def produce(city, day, data):
        fused = data["fused_pmf"]
        if fused.empty:
            return fused
        cal = fit_for_day(day)
        fused = fused.sort_values(["minute_ts", "bracket_index"]).reset_index(drop=True)
        n_br = fused["bracket_index"].nunique()
        p = fused["p_fused"].to_numpy(float).reshape(-1, n_br)
        return fused.assign(p_calibrated=cal.apply(p).ravel(), **cal.describe())
    return produce

probability_assets = [weather_model_params, weather_pmf, fused_pmf, calibrated_pmf]
