"""Where a run's steps execute, chosen by the deployment: ``KW_EXECUTOR``.

- unset or ``multiprocess``: Dagster's default executor, every step a process on the run's own machine (the
  laptop), started from a fork server that has imported the code location once (``forkserver``; Dagster
  spawns a fresh interpreter per step by default, which imports Dagster and the project again: ~3-4 s a step),
  one at a time on a DuckDB warehouse (its one writer);
- ``celery``: every step a task on a Redis (or any Celery) broker, executed by `dagster-celery` workers that
  share nothing with the run but the instance's and the warehouse's PostgreSQL. The broker and result
  backend come from ``KW_CELERY_BROKER`` and ``KW_CELERY_BACKEND``; a worker must load the code with the same
  ``KW_EXECUTOR`` (a run's config is checked against the executor in every process that reads it).
"""

from __future__ import annotations

import os
from collections.abc import Mapping

import dagster as dg

from kw_assets.defs.resources import warehouse_kind

EXECUTORS = ("multiprocess", "celery")
CODE_LOCATION = "kw_assets.definitions"
# What the fork server of a launched run imports once, so that each step's process does not: the code location,
# and the modules Dagster builds a step's instance from (the local instance of dagster.local.yaml: SQLite storages,
# the batched event log, compute logs, alembic's schema checks), ~0.5 s of every step's start otherwise. The
# server skips a module it cannot import; a test imports them all.
STEP_SERVER_PRELOAD = [
    CODE_LOCATION, "kw_assets.batched_event_log", "dagster._core.instance.factory", "dagster._core.secrets.env_file",
    "dagster._core.storage.legacy_storage", "dagster._core.storage.root", "dagster._core.storage.runs",
    "dagster._core.storage.event_log", "dagster._core.storage.schedules", "dagster._core.storage.migration.utils",
    "dagster._core.storage.local_compute_log_manager", "dagster._core.run_coordinator", "dagster._core.scheduler",
    "dagster._core.launcher", "fsspec.implementations.local", "upath",
]

# A step of a year's backfill runs for many minutes: a worker reserves one task at a time, and a task is
# acknowledged when a worker takes it (not late), so a slow step is never handed to a second worker.
# deploy/celery.yaml states the same settings for the workers (a test holds them equal).
CELERY_SETTINGS = {"worker_prefetch_multiplier": 1, "task_acks_late": False,
                   "broker_connection_retry_on_startup": True}


def default_executor(env: Mapping[str, str] = os.environ) -> dg.ExecutorDefinition:
    """Dagster's default executor, whose run config (``multiprocess``: ``max_concurrent``, ``start_method``, ...,
    or ``in_process``) decides, with two defaults of its own: steps forked from a server that imported the code
    location once, and, on a DuckDB warehouse, one step at a time. The warehouse's pool admits one writer there
    anyway, and a step it blocks is re-checked after a wait that grows from 1 s to 15 s: in a run of short steps
    (a day) those waits were ~5 s of 28."""
    one_writer = warehouse_kind(env) == "duckdb"

    def launched_steps(config: dict) -> dict:
        if "in_process" in config:
            return config
        told = config.get("multiprocess") or {}
        defaults = {"start_method": {"forkserver": {"preload_modules": list(STEP_SERVER_PRELOAD)}}}
        if one_writer:
            defaults["max_concurrent"] = 1
        return {"multiprocess": {**defaults, **told}}

    return dg.multi_or_in_process_executor.configured(
        launched_steps, name="multi_or_in_process_executor", config_schema=dg.Permissive(),
        description="Every step in its own process, forked from a server that imported the code location once "
                    "(or every step in the run's process: in_process)" + ("; one at a time (DuckDB)" if one_writer else ""))


def executor_from_env(env: Mapping[str, str] = os.environ) -> dg.ExecutorDefinition:
    """The executor named by ``KW_EXECUTOR`` (unset: ``multiprocess``, Dagster's default executor)."""
    kind = env.get("KW_EXECUTOR", "").strip() or "multiprocess"
    if kind not in EXECUTORS:
        raise ValueError(f"KW_EXECUTOR={kind!r}: expected one of {', '.join(EXECUTORS)}")
    if kind == "multiprocess":
        return default_executor(env)
    if warehouse_kind(env) != "postgres":
        raise ValueError("KW_EXECUTOR=celery needs the PostgreSQL warehouse (KW_WAREHOUSE=postgresql://...): "
                         "workers on other machines cannot open this machine's DuckDB file")
    missing = [name for name in ("KW_CELERY_BROKER", "KW_CELERY_BACKEND") if not env.get(name)]
    if missing:
        raise ValueError(f"KW_EXECUTOR=celery needs {' and '.join(missing)} (e.g. redis://host:6379/0 and "
                         "redis://host:6379/1)")
    try:
        from dagster_celery import celery_executor
    except ImportError as exc:
        raise ImportError("KW_EXECUTOR=celery needs dagster-celery: pip install 'kw_assets[distributed]'") from exc
    return celery_executor.configured(
        {"broker": {"env": "KW_CELERY_BROKER"}, "backend": {"env": "KW_CELERY_BACKEND"},
         "config_source": CELERY_SETTINGS},
        name="celery",
    )
