"""Raw layer: what Kalshi and Visual Crossing say about each city x climate day, as received
(sparse candles stay sparse), validated, in DuckDB. Every row carries its ``source``."""



import dagster as dg
import pandas as pd

from kw_assets.errors import DataError
from kw_assets.model.settlement import settlement_row
from kw_assets.partitions import city_day_partitions
from kw_assets.defs.materialize import require_markets, schema_check, write_partitions
from kw_assets.defs.resources import MarketDataResource, WarehouseResource
from kw_assets.defs.tables import derived_table
from kw_assets.schemas import rows_outside
from kw_assets.sources.http import ClientPerProcess
from kw_assets.sources.kalshi.fetch import fetch_candles, fetch_markets, fetch_trades
from kw_assets.sources.price_history import export_path, read_export
from kw_assets.sources.visual_crossing import fetch_weather_forecasts, fetch_weather_obs

RAW = dict(
    partitions_def=city_day_partitions,
    backfill_policy=dg.BackfillPolicy.single_run(),
    group_name="raw",
    pool="duckdb",
    owners=["team:kw-data"],
)


def _raw_table(context, warehouse: WarehouseResource, table: str, time_column: str, kind: str,
               client: ClientPerProcess | None, produce, inputs: tuple[str, ...] = ()):
    """The raw assets' loop: each partition fetched (in workers where the source allows) and written."""
    workers = 1 if kind == "live" else warehouse.workers  # live APIs are rate-limit bound: one token bucket
    try:
        yield from write_partitions(context, warehouse.get(), table, time_column, produce, inputs, kind, workers,
                                    counters=client.stats if client else None)
    finally:
        if client is not None:
            client.close()


def _kalshi_table(context, market_data: MarketDataResource, warehouse: WarehouseResource, table: str,
                  time_column: str, from_api, from_file, inputs: tuple[str, ...] = ()):
    """A Kalshi table from the API client, or from website exports."""
    kind = market_data.label()
    if kind == "file":
        yield from _raw_table(context, warehouse, table, time_column, kind, None,
                              lambda city, day, data: from_file(city, day))
        return
    client = ClientPerProcess(market_data.kalshi_client)
    yield from _raw_table(context, warehouse, table, time_column, kind, client,
                          lambda city, day, data: from_api(client.get(), city, day, data), inputs)


def _per_event(fetch, column: str, table: str):
    """A fetch of the stored event's markets' data, kept to their trading window."""
    def from_api(client, city, day, data):
        markets = require_markets(data["kalshi_markets"], city, day)
        return _inside_window(fetch(client, markets), markets, column, table)
    return from_api


def _inside_window(frame: pd.DataFrame, markets: pd.DataFrame, column: str, table: str) -> pd.DataFrame:
    outside = rows_outside(frame[column], markets["open_time"].min(), markets["close_time"].max())
    if outside.any():
        raise DataError(table, column, f"{int(outside.sum())} row(s) outside the trading window "
                                       f"{markets['open_time'].min()} .. {markets['close_time'].max()}")
    return frame


def _file_export(market_data: MarketDataResource, city, day):
    if not market_data.price_history_dir:
        raise DataError("kalshi_markets", "price_history_dir", "source 'file' needs price_history_dir")
    path = export_path(market_data.price_history_dir, city, day)
    if path is None:
        raise DataError("kalshi_markets", "file", f"no price-history export for {city.key} {day} in {market_data.price_history_dir}")
    return read_export(path, city, day)


@dg.asset(**RAW, kinds={"python", "duckdb"}, check_specs=[schema_check("kalshi_markets")],
          description="One row per bracket market of the day's event: strikes, whole-degree bracket bounds, "
                      "times, status, result, settled value and the series' fee settings.")
def kalshi_markets(context: dg.AssetExecutionContext, market_data: MarketDataResource, warehouse: WarehouseResource):
    yield from _kalshi_table(context, market_data, warehouse, "kalshi_markets", "open_time",
                             lambda client, city, day, data: fetch_markets(client, city, day),
                             lambda city, day: _file_export(market_data, city, day)[0])


@dg.asset(**RAW, kinds={"python", "duckdb"}, deps=["kalshi_markets"], check_specs=[schema_check("kalshi_candles")],
          description="Sparse 1-minute candles per bracket (yes bid/ask OHLC, trade price OHLC/mean/previous, "
                      "volume, open interest) as served: minutes without activity are absent.")
def kalshi_candles(context: dg.AssetExecutionContext, market_data: MarketDataResource, warehouse: WarehouseResource):
    yield from _kalshi_table(context, market_data, warehouse, "kalshi_candles", "end_period_ts",
                             _per_event(fetch_candles, "end_period_ts", "kalshi_candles"),
                             lambda city, day: _file_export(market_data, city, day)[1], inputs=("kalshi_markets",))


@dg.asset(**RAW, kinds={"python", "duckdb"}, deps=["kalshi_markets"], check_specs=[schema_check("kalshi_trades")],
          description="Every print of the day's brackets (live and historical tiers), with taker side and the "
                      "block-trade flag (block trades are kept here and excluded from fill simulation later). "
                      "Website exports carry no trades: empty for the file source.")
def kalshi_trades(context: dg.AssetExecutionContext, market_data: MarketDataResource, warehouse: WarehouseResource):
    yield from _kalshi_table(context, market_data, warehouse, "kalshi_trades", "created_time",
                             _per_event(fetch_trades, "created_time", "kalshi_trades"),
                             lambda city, day: pd.DataFrame(), inputs=("kalshi_markets",))


@dg.asset(**RAW, kinds={"python", "duckdb"}, check_specs=[schema_check("weather_obs")],
          description="5-minute observations at the settlement station (whole-C readings in F) inside the "
                      "climate day (LST midnight to midnight). Empty when no weather source is configured.")
def weather_obs(context: dg.AssetExecutionContext, market_data: MarketDataResource, warehouse: WarehouseResource):
    yield from _weather_table(context, market_data, warehouse, "weather_obs", "valid_time", fetch_weather_obs)


@dg.asset(**RAW, kinds={"python", "duckdb"}, check_specs=[schema_check("weather_forecasts")],
          description="Point-in-time hourly forecasts for the climate day from every run up to two days before, "
                      "each row stamped with the run's issued_at (only hours at or after issue are kept).")
def weather_forecasts(context: dg.AssetExecutionContext, market_data: MarketDataResource, warehouse: WarehouseResource):
    yield from _weather_table(context, market_data, warehouse, "weather_forecasts", "issued_at", fetch_weather_forecasts)


def _weather_table(context, market_data: MarketDataResource, warehouse: WarehouseResource, table: str,
                   time_column: str, fetch):
    """The weather assets' loop; with no weather source every partition is written empty (market-only)."""
    kind = market_data.weather_label()
    if kind == "none":
        yield from _raw_table(context, warehouse, table, time_column, kind, None, lambda city, day, data: pd.DataFrame())
        return
    client = ClientPerProcess(market_data.weather_client)
    yield from _raw_table(context, warehouse, table, time_column, kind, client,
                          lambda city, day, data: fetch(client.get(), city, day))


@derived_table("settlement", group="raw", time_column=None, inputs=("kalshi_markets", "weather_obs"),
               owners=("team:kw-data",),
               description="Ground truth per partition: the settled whole-degree high (market expiration_value), the "
                           "winning bracket (result == yes), the settlement source, and the 5-minute obs max beside it.")
def settlement(context, wh, config):
    def produce(city, day, data):
        markets = require_markets(data["kalshi_markets"], city, day)
        row = settlement_row(markets, data["weather_obs"], markets["source"].iloc[0], day)
        return row.assign(source=markets["source"].iloc[0]) if len(row) else row
    return produce

raw_assets = [kalshi_markets, kalshi_candles, kalshi_trades, weather_obs, weather_forecasts, settlement]
