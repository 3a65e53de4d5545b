import os
import uuid
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


@pytest.fixture
def postgres_url():
    """A fresh schema on the test PostgreSQL server (``KW_TEST_POSTGRES_URL``), dropped afterwards. Without a
    server the test is skipped, saying so; where ``KW_REQUIRE_POSTGRES=1`` (CI) it fails instead."""
    url = os.environ.get("KW_TEST_POSTGRES_URL")
    if not url:
        if os.environ.get("KW_REQUIRE_POSTGRES") == "1":
            pytest.fail("KW_REQUIRE_POSTGRES=1 but KW_TEST_POSTGRES_URL is not set: the postgres tests must run here")
        pytest.skip("no PostgreSQL server: set KW_TEST_POSTGRES_URL (.ci/postgres.sh starts one)")
    import psycopg
    name = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(url, autocommit=True) as con:
        con.execute(f"CREATE SCHEMA {name}")
    sep = "&" if "?" in url else "?"
    yield f"{url}{sep}options=-csearch_path%3D{name}"
    with psycopg.connect(url, autocommit=True) as con:
        con.execute(f"DROP SCHEMA {name} CASCADE")


def pytest_terminal_summary(terminalreporter):
    """How many ``postgres`` tests ran and passed (CI shows it; none must be skipped there)."""
    stats = terminalreporter.stats
    count = lambda key: sum(1 for r in stats.get(key, []) if "postgres" in getattr(r, "keywords", {}))  # noqa: E731
    terminalreporter.write_line(f"postgres tests: {count('passed')} passed, {count('skipped')} skipped, "
                                f"{count('failed')} failed")
