"""Everything the simulated sources say about one city-day, through the real clients (for benchmarks and tests)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import pandas as pd

from kw_assets.cities import City
from kw_assets.sources.kalshi.client import KalshiClient
from kw_assets.sources.kalshi.fetch import fetch_candles, fetch_markets, fetch_trades
from kw_assets.sources.simulator.exchange import SimulatedExchange
from kw_assets.sources.simulator.weather_feed import SimulatedWeatherFeed
from kw_assets.sources.visual_crossing import VisualCrossingClient, fetch_weather_forecasts, fetch_weather_obs


@dataclass
class CityDay:
    markets: pd.DataFrame
    candles: pd.DataFrame
    trades: pd.DataFrame
    obs: pd.DataFrame
    forecasts: pd.DataFrame
    day_start: pd.Timestamp


def simulated_city_day(city: City, day: dt.date, now: dt.datetime, seed: int = 7) -> CityDay:
    kalshi = KalshiClient(transport=SimulatedExchange(seed=seed, now=lambda: now).transport(), requests_per_second=None)
    vc = VisualCrossingClient("simulated-key", transport=SimulatedWeatherFeed(seed=seed, now=lambda: now).transport(),
                              requests_per_second=None)
    markets = fetch_markets(kalshi, city, day)
    return CityDay(markets, fetch_candles(kalshi, markets), fetch_trades(kalshi, markets),
                   fetch_weather_obs(vc, city, day), fetch_weather_forecasts(vc, city, day),
                   pd.Timestamp(city.climate_day_window(day)[0]))
