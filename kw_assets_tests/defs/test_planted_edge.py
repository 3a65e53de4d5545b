"""The backtest's power and honesty on the simulated source, through the whole graph (raw -> backtest).

The default simulated market is efficient with respect to this project: its traders price with the
project's own weather Monte Carlo, on forecasts that are better than the public feed the pipeline reads
(``Agents.forecast_insight``). A strategy that trades only on the calibrated probability's edge (no RAS or
CLV gates, taker only, held to settlement) must then show no significant profit over 28 city-days; when
the traders learn each observation three hours late, the same strategy must find the edge, with a
bootstrap 95% interval over city-days above zero.
"""

import datetime as dt

import dagster as dg
import pytest

from kw_assets.definitions import defs
from kw_assets.defs.resources import MarketDataResource, WarehouseResource
from kw_assets.model.report import bootstrap_daily_ci
from kw_assets.partitions import partition_key
from kw_assets.warehouse import Warehouse
from kw_assets_tests.conftest import SIM_NOW

FIRST, DAYS = dt.date(2025, 6, 1), 14
EDGE_ONLY = {"use_ras": False, "use_clv": False, "allow_maker": False, "exit_mode": "settlement",
             "slippage_cushion": 0.05, "taker_extra_edge": 0.0}
SKIP = ("forecast_scores", "backtest_report", "backtest_pnl")


def _net_pnl_ci(tmp_path, instance, obs_delay_min: float) -> dict:
    path = str(tmp_path / f"delay{obs_delay_min:g}.duckdb")
    res = {"market_data": MarketDataResource(simulated_now=SIM_NOW, retry_sleep=False,
                                             sim_agents_obs_delay_min=obs_delay_min),
           "warehouse": WarehouseResource(path=path)}
    job = defs.resolve_job_def("all_assets_job")
    keys = [k for k in job.asset_layer.executable_asset_keys if k.to_user_string() not in SKIP]
    tags = {"dagster/asset_partition_range_start": str(partition_key("ny", FIRST)),
            "dagster/asset_partition_range_end": str(partition_key("chi", FIRST + dt.timedelta(days=DAYS - 1)))}
    result = dg.materialize([defs.get_assets_def(k) for k in keys], resources=res, instance=instance, tags=tags,
                            run_config={"ops": {"backtest_fills": {"config": EDGE_ONLY}}})
    assert result.success
    fills = Warehouse(path).read("backtest_fills")
    return bootstrap_daily_ci(fills)


@pytest.mark.slow
def test_the_backtest_finds_a_planted_edge_and_no_edge_where_there_is_none(tmp_path, instance):
    fair = _net_pnl_ci(tmp_path, instance, 0.0)
    late = _net_pnl_ci(tmp_path, instance, 180.0)
    print("fair", fair, "late", late)  # the README quotes these
    assert fair["city_days"] >= 2 * DAYS - 2 and late["city_days"] >= 2 * DAYS - 2
    assert fair["ci_low"] < 0 < fair["ci_high"]  # no significant profit (and no significant loss) when fair
    assert late["ci_low"] > 0 and late["net_pnl"] > fair["net_pnl"] + 100  # the planted edge, found
