"""The executor follows KW_EXECUTOR: Dagster's default on a laptop, Celery when a deployment says so."""

import pytest

from kw_assets.defs.execution import executor_from_env


def test_unset_or_multiprocess_keeps_dagsters_default():
    assert executor_from_env({}) is None
    assert executor_from_env({"KW_EXECUTOR": "multiprocess"}) is None


PG = {"KW_WAREHOUSE": "postgresql://kw@db:5432/warehouse"}


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
