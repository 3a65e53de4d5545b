"""The one Definitions object: assets by layer, their checks, resources and jobs."""

from __future__ import annotations

import dagster as dg

from kw_assets.defs.backtest import backtest_assets
from kw_assets.defs.evaluation import evaluation_assets
from kw_assets.defs.features import feature_assets
from kw_assets.defs.probabilities import probability_assets
from kw_assets.defs.raw import raw_assets
from kw_assets.defs.resources import default_resources
from kw_assets.defs.automation import automation
from kw_assets.defs.jobs import all_assets_job, raw_job

defs = dg.Definitions(
    assets=[*raw_assets, *feature_assets, *probability_assets, *evaluation_assets, *backtest_assets],
    resources=default_resources(),
    jobs=[raw_job, all_assets_job],
    **automation,
)
