"""The whole graph on a PostgreSQL warehouse equals the embedded (DuckDB) run, table for table."""

import datetime as dt

import pandas as pd
import pytest

from kw_assets.definitions import defs
from kw_assets.defs.resources import MarketDataResource, WarehouseResource
from kw_assets.partitions import partition_key
from kw_assets.schemas import TABLES
from kw_assets.warehouse import open_warehouse
from kw_assets_tests.conftest import SIM_NOW

pytestmark = pytest.mark.postgres


def test_the_whole_graph_on_postgres_equals_the_embedded_run(postgres_url, tmp_path, instance):
    job = defs.resolve_job_def("all_assets_job")
    tags = {"dagster/asset_partition_range_start": str(partition_key("ny", dt.date(2025, 6, 1))),
            "dagster/asset_partition_range_end": str(partition_key("chi", dt.date(2025, 6, 3)))}
    targets = {"duckdb": str(tmp_path / "w.duckdb"), "postgres": postgres_url}
    for name, target in targets.items():
        run_config = {"ops": {"weather_pmf": {"config": {"n_paths": 400}},
                              "backtest_report": {"config": {"folder": str(tmp_path / name)}}}}
        res = {"market_data": MarketDataResource(simulated_now=SIM_NOW, retry_sleep=False),
               "warehouse": WarehouseResource(path=target)}
        assert job.execute_in_process(instance=instance, resources=res, tags=tags, run_config=run_config).success
    embedded, pg = open_warehouse(targets["duckdb"]), open_warehouse(targets["postgres"])
    compared = 0
    for table in TABLES:
        want, got = embedded.read(table), pg.read(table)
        assert len(want) == len(got), table
        if want.empty:
            continue
        key = list(want.columns)
        pd.testing.assert_frame_equal(got.sort_values(key, kind="stable").reset_index(drop=True),
                                      want.sort_values(key, kind="stable").reset_index(drop=True), obj=table)
        compared += 1
    assert compared >= 12
    report = lambda name: (tmp_path / name / "backtest_report.html").read_text()  # noqa: E731
    assert report("postgres") == report("duckdb")
