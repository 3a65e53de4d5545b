"""A run as the daily schedule or the UI launches it: every step its own process, on the local instance.

    .venv/bin/python bench/launched_run.py                  # the daily schedule's run: every city, one day
    .venv/bin/python bench/launched_run.py --dagster-defaults   # the same as Dagster's executor runs it
    .venv/bin/python bench/launched_run.py --days 3 --job raw_job

``bench/backfill.py`` runs the graph in one process; a launched run starts a process per step, which is what a
small run (a day, a partition) spends most of its time on. Reports the run's wall time and, per step, the
seconds from launching its process to the step's start and from its start to its end.
The instance is ``dagster.local.yaml`` (pools, batched event log) in a temporary ``DAGSTER_HOME``; the
executor is the project's (``defs/execution.py``) unless ``--dagster-defaults``.
"""

import argparse
import datetime as dt
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS", "true")

import dagster as dg  # noqa: E402

warnings.filterwarnings("ignore")


def _job(name: str) -> dg.JobDefinition:
    from kw_assets.definitions import defs
    return defs.resolve_job_def(name)


def all_assets_job() -> dg.JobDefinition:  # rebuilt in every step's process by name
    return _job("all_assets_job")


def raw_job() -> dg.JobDefinition:
    return _job("raw_job")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--job", default="all_assets_job", choices=["all_assets_job", "raw_job"])
    p.add_argument("--start", default="2025-06-10", help="first climate day")
    p.add_argument("--days", type=int, default=1)
    p.add_argument("--dagster-defaults", action="store_true",
                   help="Dagster's own executor defaults: a fresh interpreter per step, a process per core")
    a = p.parse_args()
    home = tempfile.mkdtemp(prefix="kw_launched_")
    shutil.copy(ROOT / "dagster.local.yaml", Path(home) / "dagster.yaml")
    os.environ["DAGSTER_HOME"] = home

    from kw_assets.defs.automation import day_range_tags
    first = dt.date.fromisoformat(a.start)
    run_config = {"resources": {"market_data": {"config": {"simulated_now": "2026-11-27T00:00:00Z"}},
                                "warehouse": {"config": {"path": os.path.join(home, "w.duckdb")}}}}
    if a.job == "all_assets_job":
        run_config["ops"] = {"backtest_report": {"config": {"folder": os.path.join(home, "reports")}}}
    if a.dagster_defaults:
        run_config["execution"] = {"config": {"multiprocess": {"start_method": {"spawn": {}}, "max_concurrent": None}}}
    with dg.DagsterInstance.get() as instance:
        t0 = time.perf_counter()
        with dg.execute_job(dg.build_reconstructable_job("__main__", a.job), instance, run_config=run_config,
                            tags=day_range_tags(first, first + dt.timedelta(days=a.days - 1))) as result:
            wall = time.perf_counter() - t0
            success, run_id = result.success, result.run_id
        at: dict[tuple[str, str], float] = {}
        for e in instance.all_logs(run_id):
            if e.dagster_event is not None and e.step_key:
                at.setdefault((e.step_key, e.dagster_event.event_type_value), e.timestamp)
    steps = sorted({k for k, _ in at}, key=lambda k: at.get((k, "STEP_WORKER_STARTING"), 0.0))
    starting = {s: at[(s, "STEP_START")] - at[(s, "STEP_WORKER_STARTING")] for s in steps
                if (s, "STEP_WORKER_STARTING") in at and (s, "STEP_START") in at}
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}")
    print(f"{a.job}, every city x {a.days} day(s) from {first}, simulated source, each step its own process "
          f"({'spawned, a process per core' if a.dagster_defaults else 'forked from the code location server, one at a time'})")
    print(f"success: {success}; wall {wall:.1f} s for {len(steps)} steps")
    if starting:  # the first launched: a step skipped after a failure has no process and sorts first
        first_step = min(starting, key=lambda s: at[(s, "STEP_WORKER_STARTING")])
        print(f"launching a step's process until its start: median {statistics.median(starting.values()):.2f} s, "
              f"first {starting[first_step]:.2f} s, summed {sum(starting.values()):.1f} s")
    for s in steps:
        ran = at.get((s, "STEP_SUCCESS"), at.get((s, "STEP_FAILURE"), float("nan"))) - at.get((s, "STEP_START"), float("nan"))
        print(f"  {s:24s} process start {starting.get(s, float('nan')):5.2f} s, step {ran:5.2f} s")
    shutil.rmtree(home, ignore_errors=True)
    sys.exit(0 if success else 1)


if __name__ == "__main__":
    main()
