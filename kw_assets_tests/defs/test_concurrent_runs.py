"""Several partition runs at once, in separate processes (as the daemon launches them), against one
DuckDB file: no lock errors, no lost rows."""

import subprocess
import sys
import textwrap

import pytest

from kw_assets.warehouse import Warehouse
from kw_assets_tests.conftest import SIM_NOW

RUN_ONE = textwrap.dedent("""
    import sys, warnings
    warnings.filterwarnings("ignore")
    import dagster as dg
    from kw_assets.defs.raw import raw_assets
    from kw_assets.defs.features import minute_panel
    from kw_assets.defs.resources import MarketDataResource, WarehouseResource
    key, path, now = sys.argv[1], sys.argv[2], sys.argv[3]
    res = {"market_data": MarketDataResource(simulated_now=now), "warehouse": WarehouseResource(path=path)}
    ok = dg.materialize([*raw_assets, minute_panel], partition_key=key, resources=res, raise_on_error=False).success
    sys.exit(0 if ok else 1)
""")


@pytest.mark.slow
def test_parallel_partition_runs_share_the_warehouse_without_lock_errors(tmp_path):
    path = str(tmp_path / "w.duckdb")
    keys = ["ny|2025-06-01", "chi|2025-06-01", "mia|2025-06-01", "ny|2025-06-02"]
    procs = [subprocess.Popen([sys.executable, "-c", RUN_ONE, k, path, SIM_NOW], stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True) for k in keys]
    outputs = [p.communicate(timeout=240)[0] for p in procs]
    for key, p, out in zip(keys, procs, outputs):
        assert p.returncode == 0, f"{key} failed:\n{out[-3000:]}"
        assert "Could not set lock" not in out
    wh = Warehouse(path)
    expected = {(k.split("|")[0], __import__("datetime").date.fromisoformat(k.split("|")[1])) for k in keys}
    for table in ("kalshi_markets", "kalshi_candles", "kalshi_trades", "weather_obs", "settlement", "minute_panel"):
        assert wh.partitions(table) == expected, table
    assert len(wh.read("kalshi_markets")) == 6 * len(keys)
