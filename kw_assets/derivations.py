"""How each derived table of the probability chain is computed for a set of climate days, without
Dagster: the inputs it reads, the tables that must have rows, and ``prepare(warehouse, days, settings)``,
which does the once-per-run work (fits, shared reads) and returns ``produce(city, day, inputs) -> frame``.

The assets (``defs/``) and the live tail (``live_tail.py``) both call these, so a partition is the same
whichever path built it.
"""

from __future__ import annotations

import datetime as dt
import zlib
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import pandas as pd

from kw_assets import parallel
from kw_assets.model import emos
from kw_assets.model.calibration import CalibrationConfig, History, walk_forward_fit
from kw_assets.model.fusion import FusionConfig, fuse_panel
from kw_assets.model.panel import CANDLE_INPUTS, TRADE_INPUTS, PanelConfig, build_panel, by_minute_and_bracket
from kw_assets.model.settlement import settlement_row
from kw_assets.model.weather import WeatherModelConfig, weather_pmf_frame
from kw_assets.partition_batch import Inputs, Produce
from kw_assets.queries import calibration_history, day_runs, emos_samples
from kw_assets.warehouse import Warehouse

WEATHER_PMF_SEED = 11


@dataclass(frozen=True)
class Derivation:
    table: str
    inputs: Inputs
    required: tuple[str, ...]
    prepare: Callable[..., Produce]
    time_column: str | None = None
    deps: tuple[str, ...] = field(default=())  # tables the preparation reads itself (fits, history)


def _settlement(wh: Warehouse, days: list[dt.date]) -> Produce:
    def produce(city, day, data):
        markets = data["kalshi_markets"]
        return settlement_row(markets, data["weather_obs"], markets["source"].iloc[0], day)
    return produce


def _weather_model_params(wh: Warehouse, days: list[dt.date], cfg: emos.EmosConfig = emos.EmosConfig()) -> Produce:
    walk = emos.WalkForward(emos_samples(wh, max(days)), cfg)
    days = sorted(set(days))  # fits on an expanding window: the workers take them in turn
    fits = dict(zip(days, parallel.map_items(walk.fit, days, interleaved=True)))
    return lambda city, day, data: pd.DataFrame([fits[day].describe(city.key)])


def _minute_panel(wh: Warehouse, days: list[dt.date], cfg: PanelConfig = PanelConfig()) -> Produce:
    return lambda city, day, data: build_panel(data["kalshi_markets"], data["kalshi_candles"], data["kalshi_trades"], cfg,
                                               book=data["orderbook_l2"])


def _weather_pmf(wh: Warehouse, days: list[dt.date], cfg: WeatherModelConfig = WeatherModelConfig(),
                 seed: int = WEATHER_PMF_SEED) -> Produce:
    previous = day_runs(wh, min(days) - dt.timedelta(days=1), max(days) - dt.timedelta(days=1))
    previous_by_day = dict(tuple(previous.groupby(["city", "climate_day"], sort=False)))

    def produce(city, day, data):
        rng = np.random.default_rng([seed, zlib.crc32(city.key.encode()), day.toordinal()])
        start = pd.Timestamp(city.climate_day_window(day)[0])
        params = data["weather_model_params"]
        theta = params[list(emos.PARAM_COLUMNS)].to_numpy(float)[0]
        shape = emos.stored_shape(params)
        long_bias, long_bias_weight = emos.stored_long_bias(params)
        yesterday = previous_by_day.get((city.key, day - dt.timedelta(days=1)))
        return weather_pmf_frame(data["kalshi_markets"], data["weather_obs"], data["weather_forecasts"], start, rng, cfg,
                                 theta, yesterday, shape, long_bias, long_bias_weight)
    return produce


def _fused_pmf(wh: Warehouse, days: list[dt.date], cfg: FusionConfig = FusionConfig()) -> Produce:
    def produce(city, day, data):
        panel = data["minute_panel"]
        return panel if panel.empty else fuse_panel(panel, data["weather_pmf"], cfg)
    return produce


def _calibrated_pmf(wh: Warehouse, days: list[dt.date], cfg: CalibrationConfig = CalibrationConfig()) -> Produce:
    days = sorted(set(days))
    history = History.from_frame(calibration_history(wh, days[-1], cfg.sample_every_min))  # once per run
    fits = dict(zip(days, parallel.map_items(lambda day: walk_forward_fit(history, day, cfg), days,
                                                interleaved=True)))  # cities share one

    def produce(city, day, data):
        fused = data["fused_pmf"]
        if fused.empty:
            return fused
        out = by_minute_and_bracket(fused).copy(deep=False)  # new columns only: ``assign`` copied every column
        out.index = pd.RangeIndex(len(out))
        p = out["p_fused"].to_numpy(float).reshape(-1, out["bracket_index"].nunique())
        out["p_calibrated"] = fits[day].apply(p).ravel()
        for name, value in fits[day].describe().items():  # the day's fit, on each of its rows
            out[name] = value
        return out
    return produce


SETTLEMENT = Derivation("settlement", ("kalshi_markets", "weather_obs"), ("kalshi_markets",), _settlement)
WEATHER_MODEL_PARAMS = Derivation("weather_model_params", {"kalshi_markets": ("market_ticker",)}, ("kalshi_markets",),
                                  _weather_model_params,
                                  deps=("weather_forecasts", "weather_obs", "settlement"))  # the training samples
MINUTE_PANEL = Derivation("minute_panel", {"kalshi_markets": None, "kalshi_candles": CANDLE_INPUTS,
                                           "kalshi_trades": TRADE_INPUTS,
                                           "orderbook_l2": ("market_ticker", "minute_ts", "ofi", "queue_imbalance")},
                          ("kalshi_markets",), _minute_panel, "minute_ts")
WEATHER_PMF = Derivation("weather_pmf", ("kalshi_markets", "weather_obs", "weather_forecasts", "weather_model_params"),
                         ("kalshi_markets", "weather_model_params"), _weather_pmf, "decision_ts")
FUSED_PMF = Derivation("fused_pmf", {"minute_panel": ("minute_ts", "market_ticker", "bracket_index", "p_norm", "volume",
                                                      "acceleration"),
                                     "weather_pmf": ("decision_ts", "bracket_index", "p_weather", "hazard")},
                       (), _fused_pmf, "minute_ts")
CALIBRATED_PMF = Derivation("calibrated_pmf", ("fused_pmf",), (), _calibrated_pmf, "minute_ts",
                            deps=("settlement",))  # the calibration history

MINUTE_CHAIN = (MINUTE_PANEL, WEATHER_PMF, FUSED_PMF, CALIBRATED_PMF)  # what a minute of new data changes, in order
