"""Raw layer: what Kalshi and Visual Crossing say about each city x climate day, as received
(sparse candles stay sparse), validated, in DuckDB. Every row carries its ``source``."""

import pandas as pd

from kw_assets import derivations as d
from kw_assets.defs.materialize import partition_days
from kw_assets.defs.resources import MarketDataResource
from kw_assets.defs.tables import Fetch, derived_table, fetched_table
from kw_assets.sources.http import ClientPerProcess
from kw_assets.sources.kalshi.fetch import fetch_candles, fetch_markets, fetch_trades, inside_trading_window
from kw_assets.sources.price_history import read_partition
from kw_assets.sources.visual_crossing import fetch_weather_forecasts, fetch_weather_obs

def _kalshi(market_data: MarketDataResource, from_api, from_file) -> Fetch:
    """A Kalshi table from the API client, or from website exports."""
    if market_data.settings().label() == "file":
        return Fetch("file", lambda city, day, data: from_file(city, day))
    client = ClientPerProcess(market_data.kalshi_client)
    return Fetch(market_data.settings().label(), lambda city, day, data: from_api(client.get(), city, day, data), client)


def _weather(market_data: MarketDataResource, fetch) -> Fetch:
    """A weather table; with no weather source every partition is written empty (market-only)."""
    kind = market_data.settings().weather_label()
    if kind == "none":
        return Fetch("none", lambda city, day, data: pd.DataFrame())
    client = ClientPerProcess(market_data.weather_client)
    return Fetch(kind, lambda city, day, data: fetch(client.get(), city, day), client)


def _per_event(fetch, column: str, table: str):
    """A fetch of the stored event's markets' data, kept to their trading window."""
    return lambda client, city, day, data: inside_trading_window(fetch(client, data["kalshi_markets"]),
                                                                 data["kalshi_markets"], column, table)


@fetched_table("kalshi_markets", time_column="open_time",
               description="One row per bracket market of the day's event: strikes, whole-degree bracket bounds, "
                           "times, status, result, settled value and the series' fee settings.")
def kalshi_markets(market_data):
    return _kalshi(market_data, lambda client, city, day, data: fetch_markets(client, city, day),
                   lambda city, day: read_partition(market_data.price_history_dir, city, day)[0])


@fetched_table("kalshi_candles", time_column="end_period_ts", inputs=("kalshi_markets",), required=("kalshi_markets",),
               description="Sparse 1-minute candles per bracket (yes bid/ask OHLC, trade price OHLC/mean/previous, "
                           "volume, open interest) as served: minutes without activity are absent.")
def kalshi_candles(market_data):
    return _kalshi(market_data, _per_event(fetch_candles, "end_period_ts", "kalshi_candles"),
                   lambda city, day: read_partition(market_data.price_history_dir, city, day)[1])


@fetched_table("kalshi_trades", time_column="created_time", inputs=("kalshi_markets",), required=("kalshi_markets",),
               description="Every print of the day's brackets (live and historical tiers), with taker side and the "
                           "block-trade flag (block trades are kept here and excluded from fill simulation later). "
                           "Website exports carry no trades: empty for the file source.")
def kalshi_trades(market_data):
    return _kalshi(market_data, _per_event(fetch_trades, "created_time", "kalshi_trades"),
                   lambda city, day: pd.DataFrame())


@fetched_table("weather_obs", time_column="valid_time",
               description="5-minute observations at the settlement station (whole-C readings in F) inside the "
                           "climate day (LST midnight to midnight). Empty when no weather source is configured.")
def weather_obs(market_data):
    return _weather(market_data, fetch_weather_obs)


@fetched_table("weather_forecasts", time_column="issued_at",
               description="Point-in-time hourly forecasts for the climate day from every run up to two days before, "
                           "each row stamped with the run's issued_at (only hours at or after issue are kept).")
def weather_forecasts(market_data):
    return _weather(market_data, fetch_weather_forecasts)


@derived_table("settlement", group="raw", time_column=None, inputs=d.SETTLEMENT.inputs, required=d.SETTLEMENT.required,
               owners=("team:kw-data",),
               description="Ground truth per partition: the settled whole-degree high (market expiration_value), the "
                           "winning bracket (result == yes), the settlement source, and the 5-minute obs max beside it.")
def settlement(context, wh, config):
    return d.SETTLEMENT.prepare(wh, partition_days(context))

raw_assets = [kalshi_markets, kalshi_candles, kalshi_trades, weather_obs, weather_forecasts, settlement]
