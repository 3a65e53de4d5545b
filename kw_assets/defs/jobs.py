"""Jobs: raw data only, and the whole graph, for any set of city x climate-day partitions."""

import dagster as dg

raw_job = dg.define_asset_job(
    "raw_job", selection=dg.AssetSelection.groups("raw"),
    description="Fetch and store every raw table for the selected city x climate-day partitions.",
)
all_assets_job = dg.define_asset_job(
    "all_assets_job", selection=dg.AssetSelection.all(),
    description="The whole graph for the selected partitions, raw data through the report (the demo runs this).",
)
