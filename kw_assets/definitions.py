"""The one Definitions object: assets by layer, their checks, resources and jobs."""

from __future__ import annotations

import dagster as dg

from kw_assets.defs.backtest import backtest_assets
from kw_assets.defs.evaluation import evaluation_assets
from kw_assets.defs.features import feature_assets
from kw_assets.defs.paper import paper_assets, paper_tables
from kw_assets.defs.orderbook import orderbook_assets, orderbook_sample_job, orderbook_schedules, orderbook_sensors
from kw_assets.defs.probabilities import probability_assets
from kw_assets.defs.raw import raw_assets
from kw_assets.defs.resources import default_resources
from kw_assets.defs.automation import automation
from kw_assets.defs.jobs import all_assets_job, orderbook_job, raw_job, strategy_sweep_job
from kw_assets.defs.execution import executor_from_env
from kw_assets.defs.live import live_tail_job, live_tail_schedule
from kw_assets.defs.materialize import table_metadata
from kw_assets.parallel import return_large_frees_to_os
from kw_assets.schemas import TABLES

return_large_frees_to_os()  # every process of the code location (steps, the daemon); a forked worker keeps what it frees

def _with_table_metadata(spec: dg.AssetSpec) -> dg.AssetSpec:
    table = spec.key.to_user_string()
    return spec.merge_attributes(metadata=table_metadata(table)) if table in TABLES else spec


assets = dg.map_asset_specs(_with_table_metadata, [*raw_assets, *feature_assets, *orderbook_assets,
                                                   *probability_assets, *evaluation_assets, *backtest_assets,
                                                   *paper_tables, *paper_assets])
def _with_code_reference(asset: dg.AssetsDefinition | dg.AssetSpec) -> dg.AssetsDefinition | dg.AssetSpec:
    """The asset's source in the UI; the table factories already point at the asset's own definition (an
    external table, written outside Dagster, has none)."""
    if isinstance(asset, dg.AssetSpec):
        return asset
    has = "dagster/code_references" in (asset.metadata_by_key.get(asset.key) or {})
    return asset if has else dg.with_source_code_references([asset])[0]


defs = dg.Definitions(
    assets=[_with_code_reference(a) for a in assets],
    resources=default_resources(),
    jobs=[raw_job, all_assets_job, strategy_sweep_job, orderbook_job, orderbook_sample_job, live_tail_job],
    schedules=[*automation["schedules"], *orderbook_schedules, live_tail_schedule],
    sensors=[*automation["sensors"], *orderbook_sensors],
    executor=executor_from_env(),
)
