import warnings

import dagster as dg
import pytest

from kw_assets.defs.resources import MarketDataResource, WarehouseResource

warnings.filterwarnings("ignore", category=dg.BetaWarning)
warnings.filterwarnings("ignore", category=dg.PreviewWarning)

# A fixed "now" makes every run see the same exchange state (tiers, statuses) whatever the wall clock says.
SIM_NOW = "2026-11-27T00:00:00Z"


@pytest.fixture
def warehouse_path(tmp_path):
    return str(tmp_path / "warehouse.duckdb")


@pytest.fixture
def resources(warehouse_path):
    return {"market_data": MarketDataResource(simulated_now=SIM_NOW, retry_sleep=False),
            "warehouse": WarehouseResource(path=warehouse_path)}


@pytest.fixture
def instance():
    with dg.instance_for_test() as inst:
        yield inst
