"""The backtest's power and honesty on the simulated source, through the whole graph (raw -> backtest).

The default simulated market is efficient with respect to this project: its traders price with the
project's own weather Monte Carlo, on forecasts that are better than the public feed the pipeline reads
(``Agents.forecast_insight``). A strategy that trades only on the calibrated probability's edge (no RAS or
CLV gates, taker only, held to settlement) must then show no significant profit; when the traders learn
each observation six hours late, the same strategy must find the edge, with a bootstrap 95% interval over
city-days above zero.

One simulated world is one draw: over 28 city-days the fair world's P&L moves by about +-50 from seed to
seed (README), so each verdict pools three worlds (seeds 1, 2, 3: 84 city-days), the same seeds for both.
"""

import datetime as dt

import dagster as dg
import pandas as pd
import pytest

from kw_assets.definitions import defs
from kw_assets.defs.resources import MarketDataResource, WarehouseResource
from kw_assets.model.report import bootstrap_daily_ci
from kw_assets.partitions import partition_key
from kw_assets.warehouse import Warehouse
from kw_assets_tests.conftest import SIM_NOW

FIRST, DAYS, SEEDS = dt.date(2025, 6, 1), 14, (1, 2, 3)
LATE_MIN = 360.0
EDGE_ONLY = {"use_ras": False, "use_clv": False, "allow_maker": False, "exit_mode": "settlement",
             "slippage_cushion": 0.05, "taker_extra_edge": 0.0}
SKIP = ("forecast_scores", "backtest_report", "backtest_pnl")


def _fills(tmp_path, instance, obs_delay_min: float, seed: int) -> pd.DataFrame:
    path = str(tmp_path / f"delay{obs_delay_min:g}-seed{seed}.duckdb")
    res = {"market_data": MarketDataResource(simulated_now=SIM_NOW, retry_sleep=False, seed=seed,
                                             sim_agents_obs_delay_min=obs_delay_min),
           "warehouse": WarehouseResource(path=path)}
    job = defs.resolve_job_def("all_assets_job")
    keys = [k for k in job.asset_layer.executable_asset_keys if k.to_user_string() not in SKIP]
    tags = {"dagster/asset_partition_range_start": str(partition_key("ny", FIRST)),
            "dagster/asset_partition_range_end": str(partition_key("chi", FIRST + dt.timedelta(days=DAYS - 1)))}
    result = dg.materialize([defs.get_assets_def(k) for k in keys], resources=res, instance=instance, tags=tags,
                            run_config={"ops": {"backtest_fills": {"config": EDGE_ONLY}}})
    assert result.success
    # a city-day of another world is another sample: the seed joins the city in the resampling unit
    return Warehouse(path).read("backtest_fills").assign(city=lambda f: f["city"] + f"#{seed}")


def _pooled(tmp_path, instance, obs_delay_min: float) -> tuple[dict, list[dict]]:
    parts = [_fills(tmp_path, instance, obs_delay_min, s) for s in SEEDS]
    return bootstrap_daily_ci(pd.concat(parts, ignore_index=True)), [bootstrap_daily_ci(p) for p in parts]


@pytest.mark.slow
def test_the_backtest_finds_a_planted_edge_and_no_edge_where_there_is_none(tmp_path, instance):
    fair, fair_by_seed = _pooled(tmp_path, instance, 0.0)
    late, late_by_seed = _pooled(tmp_path, instance, LATE_MIN)
    print("fair", fair, fair_by_seed, "late", late, late_by_seed)  # the README quotes these
    n = len(SEEDS) * 2 * DAYS
    assert fair["city_days"] >= n - 6 and late["city_days"] >= n - 6
    assert fair["ci_low"] < 0  # no significant profit when the market is fair (fees make a loss the honest outcome)
    assert late["ci_low"] > 0  # the planted edge, found
    assert late["net_pnl"] > fair["net_pnl"] + 100 * len(SEEDS)  # and it adds more than 100 per 28 city-days
