"""Jobs: raw data only, and the whole graph, for any set of city x climate-day partitions."""

import dagster as dg

from kw_assets.partitions import city_day_partitions

raw_job = dg.define_asset_job(
    "raw_job", selection=dg.AssetSelection.groups("raw"), partitions_def=city_day_partitions,
    description="Fetch and store every raw table for the selected city x climate-day partitions.",
)
all_assets_job = dg.define_asset_job(
    "all_assets_job", selection=dg.AssetSelection.all(), partitions_def=city_day_partitions,
    description="The whole graph for the selected partitions, raw data through the report (the demo runs this).",
)
