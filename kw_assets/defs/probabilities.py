"""Probability layer (group ``probabilities``): the weather PMF and hazard, the fused PMF, and the
walk-forward calibrated PMF, per city x climate day (computed by ``derivations``)."""

from kw_assets import derivations as d
from kw_assets.defs.config import build, run_config_from
from kw_assets.defs.materialize import partition_days
from kw_assets.defs.tables import derived_table
from kw_assets.model import emos
from kw_assets.model.calibration import CalibrationConfig
from kw_assets.model.fusion import FusionConfig
from kw_assets.model.weather import WeatherModelConfig

EmosRunConfig = run_config_from("EmosRunConfig", emos.EmosConfig)


@derived_table("weather_model_params", group="probabilities", time_column=None, config=EmosRunConfig,
               inputs=d.WEATHER_MODEL_PARAMS.inputs, required=d.WEATHER_MODEL_PARAMS.required,
               deps=d.WEATHER_MODEL_PARAMS.deps,
               description="Daily-high EMOS per city x climate day: mean and log-SD coefficients learned walk-forward "
                           "from (forecast run, settled high) pairs of days <= D-3 (settled before D's market opened), "
                           "recency-weighted, per city shrunk to the pooled fit; the error shape (standardized "
                           "residual quantiles, averaged with a prior shape); each city's long-run bias per lead bucket "
                           "(plain mean error over its settled days) toward which the mean moves a fifth of the way; "
                           "with the fit window and sample counts.")
def weather_model_params(context, wh, config):
    return d.WEATHER_MODEL_PARAMS.prepare(wh, partition_days(context), build(emos.EmosConfig, config))

WeatherPmfConfig = run_config_from("WeatherPmfConfig", WeatherModelConfig, seed=(int, d.WEATHER_PMF_SEED))


@derived_table("weather_pmf", group="probabilities", time_column="decision_ts", config=WeatherPmfConfig,
               inputs=d.WEATHER_PMF.inputs, required=d.WEATHER_PMF.required,
               description="Monte Carlo of the rest of the day at every decision time (5 min): bracket PMF of the "
                           "official high, new-high hazard, expected high and spread, its whole-day moments set by the "
                           "day's learned EMOS (weather_model_params) and, unless its use_lag_error is off, from 18:00 "
                           "LST the day before by yesterday's forecast error (the previous day's obs max through 18:00 "
                           "LST; weather_obs and weather_forecasts of D-1). Uses only obs and forecasts stamped at or "
                           "before the decision. No rows when the partition has no weather data (downstream: market only).")
def weather_pmf(context, wh, config):
    return d.WEATHER_PMF.prepare(wh, partition_days(context), build(WeatherModelConfig, config), config.seed)

FusionRunConfig = run_config_from("FusionRunConfig", FusionConfig)


@derived_table("fused_pmf", group="probabilities", time_column="minute_ts", config=FusionRunConfig,
               inputs=d.FUSED_PMF.inputs,
               description="Per minute x bracket: logarithmic pool of the market PMF (renormalized mids) and the latest "
                           "weather PMF at or before the minute, with the market weight used (adaptive by default).")
def fused_pmf(context, wh, config):
    return d.FUSED_PMF.prepare(wh, partition_days(context), build(FusionConfig, config))


CalibrationRunConfig = run_config_from("CalibrationRunConfig", CalibrationConfig)


@derived_table("calibrated_pmf", group="probabilities", time_column="minute_ts", config=CalibrationRunConfig,
               inputs=d.CALIBRATED_PMF.inputs, deps=d.CALIBRATED_PMF.deps,  # the calibration history, read once per run
               description="The fused PMF after walk-forward calibration (platt | isotonic | temperature | none): the "
                           "calibrator for day D is fit only on settled days before D, pooled across cities; every "
                           "row names its method, fit window and sample size.")
def calibrated_pmf(context, wh, config):
    return d.CALIBRATED_PMF.prepare(wh, partition_days(context), build(CalibrationConfig, config))

probability_assets = [weather_model_params, weather_pmf, fused_pmf, calibrated_pmf]
