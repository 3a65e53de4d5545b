"""The executor follows KW_EXECUTOR: Dagster's default on a laptop (steps forked from a server that imported the
code location once), Celery when a deployment says so."""

import multiprocessing.forkserver
import os
from pathlib import Path

import dagster as dg
import pytest

from kw_assets.defs.execution import CODE_LOCATION, STEP_SERVER_PRELOAD, executor_from_env
from kw_assets.warehouse import Warehouse
from kw_assets_tests.conftest import SIM_NOW


PG = {"KW_WAREHOUSE": "postgresql://kw@db:5432/warehouse"}
FORKSERVER = {"forkserver": {"preload_modules": STEP_SERVER_PRELOAD}}


def _resolved(env, config):
    return executor_from_env(env).config_schema.resolve_config({"config": config})


def test_unset_or_multiprocess_is_dagsters_default_executor_forking_its_steps():
    for env in ({}, {"KW_EXECUTOR": "multiprocess"}, PG):
        assert executor_from_env(env).name == dg.multi_or_in_process_executor.name  # the same run config
    duckdb = _resolved({}, {}).value["config"]["multiprocess"]
    assert duckdb["start_method"] == FORKSERVER and duckdb["max_concurrent"] == 1  # one writer, one step at a time
    postgres = _resolved(PG, {}).value["config"]["multiprocess"]
    assert postgres["start_method"] == FORKSERVER and postgres["max_concurrent"] is None  # the pool's limit decides
    told = _resolved({}, {"multiprocess": {"max_concurrent": 2, "start_method": {"spawn": {}}}}).value["config"]
    assert told["multiprocess"]["max_concurrent"] == 2 and told["multiprocess"]["start_method"] == {"spawn": {}}
    assert "multiprocess" not in _resolved({}, {"in_process": {}}).value["config"]
    assert not _resolved({}, {"multiprocess": {"max_concurent": 1}}).success  # Dagster's schema still checks it


def test_the_minutes_live_tail_ticks_in_the_runs_own_process():
    from kw_assets.definitions import defs
    assert defs.resolve_job_def("live_tail_job").executor_def.name == dg.in_process_executor.name
    assert defs.resolve_job_def("all_assets_job").executor_def.name == dg.multi_or_in_process_executor.name


PRELOADED_THEN_INSTANCE = """
import importlib, sys
for name in sys.argv[1:]:
    importlib.import_module(name)  # the fork server would skip a module it cannot import: here it fails
before = set(sys.modules)
import dagster as dg
with dg.DagsterInstance.get() as instance:
    instance.run_storage, instance.event_log_storage, instance.schedule_storage, instance.compute_log_manager
print(" ".join(sorted(set(sys.modules) - before)))
"""


def test_the_step_server_preloads_what_a_steps_instance_is_built_from(tmp_path):
    """A forked step builds the run's instance: with the server's preload, that imports no storage, alembic or
    SQLAlchemy module of its own (each was ~0.5 s of every step's start)."""
    import subprocess
    import sys
    (tmp_path / "dagster.yaml").write_text((Path(__file__).resolve().parents[2] / "dagster.local.yaml").read_text())
    env = {**os.environ, "DAGSTER_HOME": str(tmp_path)}
    out = subprocess.run([sys.executable, "-c", PRELOADED_THEN_INSTANCE, *STEP_SERVER_PRELOAD], env=env,
                         capture_output=True, text=True, check=True).stdout.split()
    heavy = [m for m in out if m.startswith(("alembic", "sqlalchemy", "dagster._core.storage", "kw_assets"))]
    assert not heavy, heavy
    bare = subprocess.run([sys.executable, "-c", PRELOADED_THEN_INSTANCE], env=env,
                          capture_output=True, text=True, check=True).stdout.split()
    assert any(m.startswith("alembic") for m in bare)  # without it, the step imported them itself


def raw_job():
    """The code location's ``raw_job``, for a run that rebuilds it in other processes."""
    from kw_assets.definitions import defs
    return defs.resolve_job_def("raw_job")


def test_a_launched_run_forks_its_steps_from_a_server_that_imported_the_code_location_once(tmp_path, instance):
    """What the daemon launches (a run whose steps are processes) writes what an in-process run writes; its steps
    came from the fork server, which had imported the project before the first step (spawn imported it per step),
    one at a time (this instance has no pools: the executor alone keeps the two independent steps apart)."""
    key, assets = "ny|2025-06-10", ("kalshi_markets", "weather_obs", "settlement")
    paths = {how: str(tmp_path / f"{how}.duckdb") for how in ("launched", "in_process")}
    resources = {"market_data": {"config": {"simulated_now": SIM_NOW, "retry_sleep": False}},
                 "warehouse": {"config": {"path": paths["launched"]}}}
    job = dg.build_reconstructable_job(__name__, "raw_job")
    with dg.execute_job(job, instance, run_config={"resources": resources}, tags={"dagster/partition": key},
                        asset_selection=[dg.AssetKey(a) for a in assets]) as result:
        assert result.success
        started = [e for e in result.all_events if e.event_type_value == "STEP_WORKER_STARTED"]
        ran = sorted((e.timestamp, e.step_key, e.dagster_event.event_type_value) for e in instance.all_logs(result.run_id)
                     if e.dagster_event and e.dagster_event.event_type_value in ("STEP_START", "STEP_SUCCESS"))
    assert len(started) == len(assets)
    assert [kind for _, _, kind in ran] == ["STEP_START", "STEP_SUCCESS"] * len(assets)  # never two at once
    server = multiprocessing.forkserver._forkserver
    assert server._forkserver_pid is not None and CODE_LOCATION in server._preload_modules

    from kw_assets.definitions import defs
    from kw_assets.defs.resources import MarketDataResource, WarehouseResource
    assert dg.materialize([defs.get_assets_def(a) for a in assets], partition_key=key, instance=instance, resources={
        "market_data": MarketDataResource(simulated_now=SIM_NOW, retry_sleep=False),
        "warehouse": WarehouseResource(path=paths["in_process"])}).success
    for table in assets:
        launched, in_process = (Warehouse(paths[how]).read(table) for how in ("launched", "in_process"))
        assert len(launched) > 0
        assert launched.equals(in_process), table


def test_celery_takes_its_broker_and_backend_from_the_environment():
    executor = executor_from_env({**PG, "KW_EXECUTOR": "celery", "KW_CELERY_BROKER": "redis://h:6379/0",
                                  "KW_CELERY_BACKEND": "redis://h:6379/1"})
    assert executor.name == "celery"


def test_celery_on_a_duckdb_warehouse_is_refused():
    """Workers on other machines cannot open one host's DuckDB file."""
    with pytest.raises(ValueError, match="needs the PostgreSQL warehouse"):
        executor_from_env({"KW_EXECUTOR": "celery", "KW_CELERY_BROKER": "redis://h:6379/0",
                           "KW_CELERY_BACKEND": "redis://h:6379/1", "KW_WAREHOUSE": "data/warehouse.duckdb"})


def test_celery_without_a_broker_or_an_unknown_executor_is_refused_by_name():
    with pytest.raises(ValueError, match="KW_CELERY_BROKER and KW_CELERY_BACKEND"):
        executor_from_env({**PG, "KW_EXECUTOR": "celery"})
    with pytest.raises(ValueError, match="KW_CELERY_BACKEND"):
        executor_from_env({**PG, "KW_EXECUTOR": "celery", "KW_CELERY_BROKER": "redis://h:6379/0"})
    with pytest.raises(ValueError, match="'dask'"):
        executor_from_env({"KW_EXECUTOR": "dask"})


def test_the_workers_settings_in_deploy_are_the_executors():
    """deploy/celery.yaml (what `dagster-celery worker start -y` reads) states the executor's broker, backend
    and Celery settings: a worker started from it takes the runs' tasks the way the runs expect."""
    from pathlib import Path

    import yaml

    from kw_assets.defs.execution import CELERY_SETTINGS
    config = yaml.safe_load((Path(__file__).resolve().parents[2] / "deploy" / "celery.yaml").read_text())
    config = config["execution"]["config"]
    assert config["broker"] == {"env": "KW_CELERY_BROKER"} and config["backend"] == {"env": "KW_CELERY_BACKEND"}
    assert config["config_source"] == CELERY_SETTINGS
