"""Feature layer: the causal minute panel per city x climate day (group ``features``)."""

from kw_assets.defs.config import build, run_config_from
from kw_assets.defs.tables import derived_table
from kw_assets.model.panel import PanelConfig, build_panel


PanelRunConfig = run_config_from("PanelRunConfig", PanelConfig)


@derived_table("minute_panel", group="features", time_column="minute_ts", config=PanelRunConfig,
               inputs={"kalshi_markets": None, "kalshi_candles": None, "kalshi_trades": None,
                       "orderbook_l2": ("market_ticker", "minute_ts", "ofi", "queue_imbalance")},
               required=("kalshi_markets",),
               description="One row per minute x bracket over the trading window: forward-filled quotes and last "
                           "price, mid, spread, volume, EWM velocity/acceleration (causal), close-location value, "
                           "renormalized probability, relative acceleration vs strike neighbours, VWAP, signed volume, "
                           "print count; order-flow imbalance and queue imbalance where the book was recorded "
                           "(orderbook_l2), NaN elsewhere.")
def minute_panel(context, wh, config):
    settings = build(PanelConfig, config)
    return lambda city, day, data: build_panel(data["kalshi_markets"], data["kalshi_candles"], data["kalshi_trades"], settings,
                                               book=data["orderbook_l2"])


feature_assets = [minute_panel]
