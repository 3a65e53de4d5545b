"""The graph past one machine: Dagster's instance on PostgreSQL (deploy/dagster.yaml), every step a Celery task
over Redis executed by two worker processes started with deploy/compose.yaml's worker command, the warehouse
on PostgreSQL. Its tables and report equal the embedded run's (DuckDB, Dagster's default executor)."""

import datetime as dt
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest
import yaml

from kw_assets.definitions import defs
from kw_assets.defs.resources import MarketDataResource, WarehouseResource
from kw_assets.partitions import partition_key
from kw_assets.schemas import TABLES
from kw_assets.warehouse import open_warehouse
from kw_assets_tests.conftest import SIM_NOW

pytestmark = pytest.mark.postgres

ROOT = Path(__file__).resolve().parents[2]
CONTAINER_ROOT = "/opt/kw_assets/"
TAGS = {"dagster/asset_partition_range_start": str(partition_key("ny", dt.date(2025, 6, 1))),
        "dagster/asset_partition_range_end": str(partition_key("chi", dt.date(2025, 6, 3)))}


def run_config(folder: Path) -> dict:
    return {"ops": {"weather_pmf": {"config": {"n_paths": 400}},
                    "backtest_report": {"config": {"folder": str(folder)}}}}


def compose_command(service: str) -> list[str]:
    """A service's command in deploy/compose.yaml, its paths in the image mapped to this checkout."""
    compose = yaml.safe_load((ROOT / "deploy" / "compose.yaml").read_text())
    return [str(ROOT / a[len(CONTAINER_ROOT):]) if a.startswith(CONTAINER_ROOT) else a
            for a in compose["services"][service]["command"]]


def tail(path: Path, n: int = 40) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-n:]) if path.exists() else ""


def start_worker(name: str, env: dict, logs: Path) -> tuple[subprocess.Popen, Path]:
    command = compose_command("worker")
    cut = command.index("--")
    command = command[:cut] + ["-n", name] + command[cut:]
    log = logs / f"{name}.log"
    proc = subprocess.Popen(command, env=env, cwd=logs, stdout=log.open("w"), stderr=subprocess.STDOUT,
                            start_new_session=True)
    return proc, log


def wait_ready(workers: list[tuple[subprocess.Popen, Path]], timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    for proc, log in workers:
        while " ready." not in log.read_text(errors="replace"):
            assert proc.poll() is None, f"the Celery worker exited:\n{tail(log)}"
            assert time.monotonic() < deadline, f"the Celery worker is not ready after {timeout_s} s:\n{tail(log)}"
            time.sleep(0.5)


def stop(proc: subprocess.Popen) -> None:
    """A worker's warm shutdown (SIGTERM to its process group), then a kill."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


@pytest.mark.slow
def test_the_graph_on_celery_workers_and_postgres_equals_the_embedded_run(
        postgres_url, postgres_database, redis_url, tmp_path, instance, monkeypatch):
    # the embedded run: DuckDB, Dagster's default executor, in this process
    job = defs.resolve_job_def("all_assets_job")
    embedded_path = str(tmp_path / "w.duckdb")
    res = {"market_data": MarketDataResource(simulated_now=SIM_NOW, retry_sleep=False),
           "warehouse": WarehouseResource(path=embedded_path)}
    embedded_run = job.execute_in_process(instance=instance, resources=res, tags=TAGS,
                                          run_config=run_config(tmp_path / "embedded"))
    assert embedded_run.success
    embedded_assets = {e.asset_key for e in embedded_run.get_asset_materialization_events()}

    # the deployment: deploy/dagster.yaml as the instance, the executor chosen by KW_EXECUTOR
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(ROOT / "deploy" / "dagster.yaml", home / "dagster.yaml")
    env = {**os.environ, "DAGSTER_HOME": str(home), "DAGSTER_PG_URL": postgres_database,
           "KW_EXECUTOR": "celery", "KW_CELERY_BROKER": f"{redis_url}/0", "KW_CELERY_BACKEND": f"{redis_url}/1",
           "KW_WAREHOUSE": postgres_url, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    migrate = subprocess.run(compose_command("init"), env=env, capture_output=True, text=True, timeout=300)
    assert migrate.returncode == 0, migrate.stderr[-3000:]

    workers = [start_worker(name, env, tmp_path) for name in ("w1", "w2")]
    try:
        wait_ready(workers)
        config = run_config(tmp_path / "celery")
        config["resources"] = {"market_data": {"config": {"simulated_now": SIM_NOW, "retry_sleep": False}}}
        (tmp_path / "run.yaml").write_text(yaml.safe_dump(config))
        run = subprocess.run(
            ["dagster", "job", "execute", "-m", "kw_assets.definitions", "-j", "all_assets_job",
             "-c", str(tmp_path / "run.yaml"), "--tags", json.dumps(TAGS)],
            env=env, cwd=tmp_path, capture_output=True, text=True, timeout=900)
        logs = "\n".join(f"--- {log.name}\n{tail(log)}" for _, log in workers)
        assert run.returncode == 0, f"{run.stdout[-3000:]}\n{run.stderr[-3000:]}\n{logs}"
    finally:
        for proc, _ in workers:
            stop(proc)

    # the run as the PostgreSQL instance recorded it: succeeded, its steps executed by both workers
    monkeypatch.setenv("DAGSTER_PG_URL", postgres_database)
    with dg.DagsterInstance.from_config(str(home)) as pg_instance:
        (record,) = pg_instance.get_run_records()
        assert record.dagster_run.status == dg.DagsterRunStatus.SUCCESS
        events = [r.event_log_entry.dagster_event for r in pg_instance.get_records_for_run(record.dagster_run.run_id,
                                                                                           limit=100_000).records
                  if r.event_log_entry.dagster_event is not None]
        by_worker = {}
        for event in events:
            worker = event.event_specific_data.metadata.get("Celery worker") if event.is_engine_event else None
            if worker is not None:
                by_worker.setdefault(worker.value, []).append(event.step_key)
        assert {name.split("@")[0] for name in by_worker} == {"w1", "w2"}, by_worker
        steps = {e.step_key for e in events if e.event_type == dg.DagsterEventType.STEP_SUCCESS}
        assert steps == {s for keys in by_worker.values() for s in keys}
        assert {e.asset_key for e in events if e.is_step_materialization} == embedded_assets

    # the same tables and the same report
    embedded, pg = open_warehouse(embedded_path), open_warehouse(postgres_url)
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
    assert report("celery") == report("embedded")
