"""Jobs: raw data only, and the whole graph, for any set of city x climate-day partitions."""

import dagster as dg

raw_job = dg.define_asset_job(
    "raw_job", selection=dg.AssetSelection.groups("raw"),
    description="Fetch and store every raw table for the selected city x climate-day partitions.",
)
all_assets_job = dg.define_asset_job(
    "all_assets_job", selection=dg.AssetSelection.all() - dg.AssetSelection.assets("strategy_sweep") - dg.AssetSelection.groups("orderbook", "paper"),
    description="The whole graph for the selected partitions, raw data through the report (the demo runs this). "
                "The strategy sweep is its own job: it reads every settled day, whatever the partitions. The "
                "recorded order book is its own job too: only days the L2 recorder ran for have one; so is paper trading.",
)
orderbook_job = dg.define_asset_job(
    "orderbook_job", selection=dg.AssetSelection.assets("orderbook_l2", "orderbook_levels"),
    description="The recorded order book (orderbook_l2, orderbook_levels) for the selected partitions, from the L2 recorder's segments "
                "(the l2_segments_sensor runs it as segments close).",
)
strategy_sweep_job = dg.define_asset_job(
    "strategy_sweep_job", selection=dg.AssetSelection.assets("strategy_sweep"),
    description="The walk-forward parameter sweep of the strategy over every stored settled day (run config: the grid).",
)
