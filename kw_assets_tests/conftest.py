import os
import uuid
import warnings
from contextlib import contextmanager
from pathlib import Path

import dagster as dg
import pytest
import yaml

from kw_assets.defs.resources import MarketDataResource, WarehouseResource
from kw_assets.warehouse import Warehouse, open_warehouse

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


LOCAL_INSTANCE = yaml.safe_load((Path(__file__).resolve().parents[1] / "dagster.local.yaml").read_text())


@contextmanager
def local_test_instance(runs_dir, **overrides):
    """A throwaway instance with the local instance's event log (``dagster.local.yaml``), its files in
    ``runs_dir``: what users run, which writes a ranged run's partition events in one transaction a batch
    (``test_batched_event_log`` holds it to the stock log's rows)."""
    storage = {**LOCAL_INSTANCE["event_log_storage"], "config": {"base_dir": str(runs_dir)}}
    with dg.instance_for_test(overrides={"event_log_storage": storage, **overrides}) as inst:
        yield inst


@pytest.fixture
def instance(tmp_path_factory):
    with local_test_instance(tmp_path_factory.mktemp("dagster_runs")) as inst:
        yield inst


def service_url(variable: str, what: str, starter: str) -> str:
    """The test server's URL from ``variable``. Without one the test is skipped, saying so; where
    ``KW_REQUIRE_POSTGRES=1`` (CI, which starts both servers) it fails instead."""
    url = os.environ.get(variable)
    if not url:
        if os.environ.get("KW_REQUIRE_POSTGRES") == "1":
            pytest.fail(f"KW_REQUIRE_POSTGRES=1 but {variable} is not set: the postgres tests must run here")
        pytest.skip(f"no {what} server: set {variable} ({starter} starts one)")
    return url


@pytest.fixture(params=["duckdb", pytest.param("postgres", marks=pytest.mark.postgres)])
def any_warehouse(request, tmp_path):
    """An empty warehouse of each kind."""
    if request.param == "duckdb":
        return Warehouse(tmp_path / "w.duckdb")
    return open_warehouse(request.getfixturevalue("postgres_url"))


@pytest.fixture
def postgres_url():
    """A fresh schema on the test PostgreSQL server (``KW_TEST_POSTGRES_URL``), dropped afterwards."""
    url = service_url("KW_TEST_POSTGRES_URL", "PostgreSQL", ".ci/postgres.sh")
    import psycopg
    name = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(url, autocommit=True) as con:
        con.execute(f"CREATE SCHEMA {name}")
    sep = "&" if "?" in url else "?"
    yield f"{url}{sep}options=-csearch_path%3D{name}"
    with psycopg.connect(url, autocommit=True) as con:
        con.execute(f"DROP SCHEMA {name} CASCADE")


@pytest.fixture
def postgres_database():
    """A fresh database on the test PostgreSQL server (a Dagster instance's storage), dropped afterwards:
    its URL for SQLAlchemy with psycopg2, as dagster-postgres takes it."""
    url = service_url("KW_TEST_POSTGRES_URL", "PostgreSQL", ".ci/postgres.sh")
    import psycopg
    name = f"d_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(url, autocommit=True) as con:
        con.execute(f"CREATE DATABASE {name}")
    server = url.split("://", 1)[1].rsplit("/", 1)[0]
    yield f"postgresql+psycopg2://{server}/{name}"
    with psycopg.connect(url, autocommit=True) as con:
        con.execute(f"DROP DATABASE {name} WITH (FORCE)")


@pytest.fixture
def redis_url():
    """The test Redis server (``KW_TEST_REDIS_URL``), flushed before and after (a Celery broker's queues)."""
    url = service_url("KW_TEST_REDIS_URL", "Redis", ".ci/redis.sh")
    import redis
    client = redis.Redis.from_url(url)
    client.flushall()
    yield url
    client.flushall()


def pytest_terminal_summary(terminalreporter):
    """How many ``postgres`` tests (the PostgreSQL warehouse and instance, the Celery workers) ran and passed
    (CI shows it; none must be skipped there)."""
    stats = terminalreporter.stats
    count = lambda key: sum(1 for r in stats.get(key, []) if "postgres" in getattr(r, "keywords", {}))  # noqa: E731
    terminalreporter.write_line(f"postgres tests (warehouse, instance, Celery workers): {count('passed')} passed, "
                                f"{count('skipped')} skipped, {count('failed')} failed")


MAX_TEST_WORKERS = 4  # ``-n auto``: each heavy test forks its own pools and wants ~1.5 GB


def pytest_xdist_auto_num_workers(config):
    """``./run test`` runs the suite on one test process per core this process may use, at most
    ``MAX_TEST_WORKERS`` (many tests keep two cores busy themselves)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(1, min(cores, MAX_TEST_WORKERS))
