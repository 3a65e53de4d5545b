"""Feature layer: the causal minute panel per city x climate day (group ``features``)."""

from kw_assets import derivations as d
from kw_assets.defs.config import build, run_config_from
from kw_assets.defs.materialize import partition_days
from kw_assets.defs.tables import derived_table
from kw_assets.model.panel import PanelConfig


PanelRunConfig = run_config_from("PanelRunConfig", PanelConfig)


@derived_table("minute_panel", group="features", time_column="minute_ts", config=PanelRunConfig,
               inputs=d.MINUTE_PANEL.inputs, required=d.MINUTE_PANEL.required,
               description="One row per minute x bracket over the trading window: forward-filled quotes and last "
                           "price, mid, spread, volume, EWM velocity/acceleration (causal), close-location value, "
                           "renormalized probability, relative acceleration vs strike neighbours, VWAP, signed volume, "
                           "print count; order-flow imbalance and queue imbalance where the book was recorded "
                           "(orderbook_l2), NaN elsewhere.")
def minute_panel(context, wh, config):
    return d.MINUTE_PANEL.prepare(wh, partition_days(context), build(PanelConfig, config))


feature_assets = [minute_panel]
