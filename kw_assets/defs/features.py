"""Feature layer: the causal minute panel per city x climate day (group ``features``)."""

import dagster as dg
import pandas as pd

from kw_assets.defs.materialize import PartitionWriter, partition_pairs, schema_check
from kw_assets.defs.resources import WarehouseResource
from kw_assets.errors import DataError
from kw_assets.model.panel import PanelConfig, build_panel
from kw_assets.partitions import city_day_partitions


class PanelRunConfig(dg.Config):
    velocity_span: float = 5.0
    acceleration_span: float = 10.0


@dg.asset(partitions_def=city_day_partitions, backfill_policy=dg.BackfillPolicy.single_run(), group_name="features",
          pool="duckdb", owners=["team:kw-quant"], kinds={"python", "duckdb"},
          deps=["kalshi_markets", "kalshi_candles", "kalshi_trades"], check_specs=[schema_check("minute_panel")],
          description="One row per minute x bracket over the trading window: forward-filled quotes and last price, "
                      "mid, spread, volume, EWM velocity/acceleration (causal), close-location value, renormalized "
                      "probability, relative acceleration vs strike neighbours, VWAP, signed volume, print count.")
def minute_panel(context: dg.AssetExecutionContext, config: PanelRunConfig, warehouse: WarehouseResource):
    wh = warehouse.get()
    pairs = partition_pairs(context)
    writer = PartitionWriter(context, wh, "minute_panel", "derived", len(pairs))
    settings = PanelConfig(velocity_span=config.velocity_span, acceleration_span=config.acceleration_span)
    for city, day, key in pairs:
        def produce():
            part = [(city.key, day)]
            markets = wh.read("kalshi_markets", part)
            if markets.empty:
                raise DataError("kalshi_markets", "market_ticker", f"no markets stored for {city.key} {day}")
            panel = build_panel(markets, wh.read("kalshi_candles", part), wh.read("kalshi_trades", part), settings)
            return panel.assign(source=markets["source"].iloc[0])
        writer.add(city, day, key, produce, "minute_ts")
    yield from writer.finish()


feature_assets = [minute_panel]
