"""Feature layer: the causal minute panel per city x climate day (group ``features``)."""

import dagster as dg

from kw_assets.defs.config import build, run_config_from
from kw_assets.defs.materialize import derive_partitions, require_markets, schema_check
from kw_assets.defs.resources import WarehouseResource
from kw_assets.model.panel import PanelConfig, build_panel
from kw_assets.partitions import city_day_partitions


PanelRunConfig = run_config_from("PanelRunConfig", PanelConfig)


@dg.asset(partitions_def=city_day_partitions, backfill_policy=dg.BackfillPolicy.single_run(), group_name="features",
          pool="duckdb", owners=["team:kw-quant"], kinds={"python", "duckdb"},
          deps=["kalshi_markets", "kalshi_candles", "kalshi_trades"], check_specs=[schema_check("minute_panel")],
          description="One row per minute x bracket over the trading window: forward-filled quotes and last price, "
                      "mid, spread, volume, EWM velocity/acceleration (causal), close-location value, renormalized "
                      "probability, relative acceleration vs strike neighbours, VWAP, signed volume, print count.")
def minute_panel(context: dg.AssetExecutionContext, config: PanelRunConfig, warehouse: WarehouseResource):
    wh = warehouse.get()
    settings = build(PanelConfig, config)

    def produce(city, day, data):
        markets = require_markets(data["kalshi_markets"], city, day)
        panel = build_panel(markets, data["kalshi_candles"], data["kalshi_trades"], settings)
        return panel.assign(source=markets["source"].iloc[0])

    yield from derive_partitions(context, wh, "minute_panel", "minute_ts", produce,
                                 inputs=("kalshi_markets", "kalshi_candles", "kalshi_trades"), workers=warehouse.workers)

feature_assets = [minute_panel]
