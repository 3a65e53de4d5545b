"""Feature layer: the causal minute panel per city x climate day (group ``features``)."""

from kw_assets.defs.config import build, run_config_from
from kw_assets.defs.tables import derived_table
from kw_assets.model.panel import PanelConfig, build_panel


PanelRunConfig = run_config_from("PanelRunConfig", PanelConfig)


@derived_table("minute_panel", group="features", time_column="minute_ts", config=PanelRunConfig,
               inputs=("kalshi_markets", "kalshi_candles", "kalshi_trades"), required=("kalshi_markets",),
               description="One row per minute x bracket over the trading window: forward-filled quotes and last "
                           "price, mid, spread, volume, EWM velocity/acceleration (causal), close-location value, "
                           "renormalized probability, relative acceleration vs strike neighbours, VWAP, signed volume, "
                           "print count.")
def minute_panel(context, wh, config):
    settings = build(PanelConfig, config)
    return lambda city, day, data: build_panel(data["kalshi_markets"], data["kalshi_candles"], data["kalshi_trades"], settings)


feature_assets = [minute_panel]
