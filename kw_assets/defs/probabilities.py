"""Probability layer (group ``probabilities``): the weather PMF and hazard, the fused PMF, and the
walk-forward calibrated PMF, per city x climate day."""

import datetime as dt
import zlib

import numpy as np
import pandas as pd

from kw_assets import parallel
from kw_assets.defs.config import build, run_config_from
from kw_assets.defs.materialize import partition_pairs
from kw_assets.defs.tables import derived_table
from kw_assets.queries import calibration_history, day_runs, emos_samples
from kw_assets.model import emos
from kw_assets.model.calibration import CalibrationConfig, History, walk_forward_fit
from kw_assets.model.fusion import FusionConfig, fuse_panel
from kw_assets.model.weather import WeatherModelConfig, weather_pmf_frame

EmosRunConfig = run_config_from("EmosRunConfig", emos.EmosConfig)


@derived_table("weather_model_params", group="probabilities", time_column=None, config=EmosRunConfig,
               inputs={"kalshi_markets": ("market_ticker",)}, required=("kalshi_markets",),
               deps=("weather_forecasts", "weather_obs", "settlement"),  # the training samples, read once per run
               description="Daily-high EMOS per city x climate day: mean and log-SD coefficients learned walk-forward "
                           "from (forecast run, settled high) pairs of days <= D-3 (settled before D's market opened), "
                           "recency-weighted, per city shrunk to the pooled fit; with the fit window and sample counts.")
def weather_model_params(context, wh, config):
    days = sorted({day for _, day, _ in partition_pairs(context)})
    walk = emos.WalkForward(emos_samples(wh, days[-1]), build(emos.EmosConfig, config))
    fits = {day: walk.fit(day) for day in days}  # in date order: each fit starts from the one before

    return lambda city, day, data: pd.DataFrame([fits[day].describe(city.key)])

WeatherPmfConfig = run_config_from("WeatherPmfConfig", WeatherModelConfig, seed=(int, 11))


@derived_table("weather_pmf", group="probabilities", time_column="decision_ts", config=WeatherPmfConfig,
               inputs=("kalshi_markets", "weather_obs", "weather_forecasts", "weather_model_params"),
               required=("kalshi_markets", "weather_model_params"),
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
        rng = np.random.default_rng([config.seed, zlib.crc32(city.key.encode()), day.toordinal()])
        start = pd.Timestamp(city.climate_day_window(day)[0])
        theta = data["weather_model_params"][list(emos.PARAM_COLUMNS)].to_numpy(float)[0]
        yesterday = previous_by_day.get((city.key, day - dt.timedelta(days=1)))
        return weather_pmf_frame(data["kalshi_markets"], data["weather_obs"], data["weather_forecasts"], start, rng, cfg,
                                 theta, yesterday)
    return produce

FusionRunConfig = run_config_from("FusionRunConfig", FusionConfig)


@derived_table("fused_pmf", group="probabilities", time_column="minute_ts", config=FusionRunConfig,
               inputs={"minute_panel": ("minute_ts", "market_ticker", "bracket_index", "p_norm", "volume",
                                        "acceleration"),
                       "weather_pmf": ("decision_ts", "bracket_index", "p_weather", "hazard")},
               description="Per minute x bracket: logarithmic pool of the market PMF (renormalized mids) and the latest "
                           "weather PMF at or before the minute, with the market weight used (adaptive by default).")
def fused_pmf(context, wh, config):
    cfg = build(FusionConfig, config)

    def produce(city, day, data):
        panel = data["minute_panel"]
        return panel if panel.empty else fuse_panel(panel, data["weather_pmf"], cfg)
    return produce


CalibrationRunConfig = run_config_from("CalibrationRunConfig", CalibrationConfig)


@derived_table("calibrated_pmf", group="probabilities", time_column="minute_ts", config=CalibrationRunConfig,
               inputs=("fused_pmf",), deps=("settlement",),  # the calibration history, read once per run
               description="The fused PMF after walk-forward calibration (platt | isotonic | temperature | none): the "
                           "calibrator for day D is fit only on settled days before D, pooled across cities; every "
                           "row names its method, fit window and sample size.")
def calibrated_pmf(context, wh, config):
    cfg = build(CalibrationConfig, config)
    days = sorted({day for _, day, _ in partition_pairs(context)})
    history = History.from_frame(calibration_history(wh, days[-1], cfg.sample_every_min))  # once per run
    fits = dict(zip(days, parallel.map_items(lambda day: walk_forward_fit(history, day, cfg), days)))  # cities share one

    def produce(city, day, data):
        fused = data["fused_pmf"]
        if fused.empty:
            return fused
        fused = fused.sort_values(["minute_ts", "bracket_index"]).reset_index(drop=True)
        n_br = fused["bracket_index"].nunique()
        p = fused["p_fused"].to_numpy(float).reshape(-1, n_br)
        return fused.assign(p_calibrated=fits[day].apply(p).ravel(), **fits[day].describe())
    return produce

probability_assets = [weather_model_params, weather_pmf, fused_pmf, calibrated_pmf]
