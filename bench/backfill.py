"""Whole-graph backfill throughput on the simulated source: one run for N days x the chosen cities.

    .venv/bin/python bench/backfill.py --days 365 --cities ny,chi,mia,aus,den,phil,lax   # the year x 7 target
    .venv/bin/python bench/backfill.py --days 7                                          # a quick slice

Reports wall time, runs launched (one: every asset takes the whole partition range), city-days per
second, seconds per step split into reading inputs, waiting for the workers, writing (the step's own wait for
its writer thread) and the rest (Dagster's own events and checks), with the writer thread's own seconds, peak memory (max RSS of this process, and of the largest forked worker; and the
proportional set size of all the run's processes summed, with the step during which it peaked), and a
content hash of the backtest tables to compare with another run (e.g. day by day on a small slice).
``--through-http`` sends the simulated candles and trades through HTTP and JSON as live ones go.
The instance is the local one of ``dagster.local.yaml`` (its batched SQLite event log) in a temporary
folder; ``--stock-event-log`` uses Dagster's own SQLite event log instead, to measure the difference.
Workers: ``KW_WORKERS`` (default one per core).
"""

import argparse
import contextlib
import datetime as dt
import os
import platform
import re
import resource
import sys
import tempfile
import threading
import time
import warnings
from pathlib import Path

import yaml

# one "planned" event per asset for the run, not one per asset x partition (30,000 for a year x 7)
os.environ.setdefault("DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS", "true")

import dagster as dg  # noqa: E402

warnings.filterwarnings("ignore")


class PssSampler(threading.Thread):
    """Samples, every ``every_s``, the proportional set size of this process and all its descendants summed
    (the issue's "peak RSS, all processes of the run summed": a page shared by a forked worker counts once,
    split between the processes that map it), from ``/proc/<pid>/smaps_rollup`` (Linux only), plus the workers'
    results waiting in shared memory for the step to map them (``parallel.shared``: memory no process maps yet)."""

    def __init__(self, every_s: float = 1.0):
        super().__init__(daemon=True)
        self.every_s, self.peak, self.peak_at, self.peak_processes, self.peak_split = every_s, 0, 0.0, 0, []
        self.available = os.path.exists(f"/proc/{os.getpid()}/smaps_rollup")
        self._done = threading.Event()

    @staticmethod
    def _tree(root: int) -> list[int]:
        children: dict[int, list[int]] = {}
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                try:
                    with open(f"/proc/{entry}/stat") as f:
                        ppid = int(f.read().rsplit(")", 1)[1].split()[1])
                except (OSError, IndexError, ValueError):
                    continue
                children.setdefault(ppid, []).append(int(entry))
        out, todo = [], [root]
        while todo:
            pid = todo.pop()
            out.append(pid)
            todo.extend(children.get(pid, []))
        return out

    @staticmethod
    def _pss_kib(pid: int) -> int:
        try:
            with open(f"/proc/{pid}/smaps_rollup") as f:
                for line in f:
                    if line.startswith("Pss:"):
                        return int(line.split()[1])
        except OSError:
            pass
        return 0

    @staticmethod
    def _unmapped_shared_kib() -> int:
        from kw_assets.parallel import SHARED_DIR
        total = 0
        for entry in os.scandir(SHARED_DIR) if os.path.isdir(SHARED_DIR) else ():
            if entry.name.startswith(f"kw_rows_{os.getpid()}_"):
                with contextlib.suppress(OSError):
                    total += entry.stat().st_size // 1024
        return total

    @staticmethod
    def _rss_kib(pid: int) -> int:
        try:
            with open(f"/proc/{pid}/statm") as f:
                return int(f.read().split()[1]) * (os.sysconf("SC_PAGE_SIZE") // 1024)
        except (OSError, IndexError, ValueError):
            return 0

    def run(self):
        """Reading a process's PSS walks its page tables under its memory lock: every second, it took 2.9% of a
        60-day run's CPU samples from the run it measures. A process's PSS is at most its RSS (one number, read
        cheaply), so the PSS is read only when the RSS summed could beat the peak so far."""
        self.reads = self.skipped = 0
        while self.available and not self._done.wait(self.every_s):
            tree = self._tree(os.getpid())
            waiting = self._unmapped_shared_kib()
            if sum(self._rss_kib(p) for p in tree) + waiting <= self.peak:
                self.skipped += 1
                continue
            self.reads += 1
            pss = {p: self._pss_kib(p) for p in tree}
            total = sum(pss.values()) + waiting
            if total > self.peak:
                self.peak, self.peak_at, self.peak_processes = total, time.time(), len(pss)
                self.peak_split = sorted(pss.values(), reverse=True)

    def stop(self):
        self._done.set()
        self.join()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--days", type=int, default=7)
    ap.add_argument("--start", default="2025-03-01")
    ap.add_argument("--cities", default="ny,chi,mia,aus,den,phil,lax")
    ap.add_argument("--n-paths", type=int, default=5000)
    ap.add_argument("--through-http", action="store_true", help="simulated candles and trades via HTTP + JSON")
    ap.add_argument("--stock-event-log", action="store_true", help="Dagster's SQLite event log, not the batched one")
    ap.add_argument("--warehouse", help="postgresql://... (an empty database or schema): the warehouse on PostgreSQL; "
                                        "default: a DuckDB file in a temporary folder")
    a = ap.parse_args()

    from kw_assets.defs.resources import MarketDataResource, WarehouseResource
    from kw_assets.definitions import defs
    from kw_assets.partitions import partition_key

    cities = a.cities.split(",")
    start = dt.date.fromisoformat(a.start)
    end = start + dt.timedelta(days=a.days - 1)
    tmp = tempfile.mkdtemp(prefix="kw_bench_")
    target = a.warehouse or os.path.join(tmp, "w.duckdb")
    resources = {"market_data": MarketDataResource(simulated_now="2026-11-27T00:00:00Z",
                                                   simulated_through_http=a.through_http),
                 "warehouse": WarehouseResource(path=target)}
    run_config = {"ops": {"weather_pmf": {"config": {"n_paths": a.n_paths}},
                          "backtest_report": {"config": {"folder": os.path.join(tmp, "reports")}}}}
    tags = {"dagster/asset_partition_range_start": str(partition_key(cities[0], start)),
            "dagster/asset_partition_range_end": str(partition_key(cities[-1], end))}
    local = yaml.safe_load((Path(__file__).resolve().parents[1] / "dagster.local.yaml").read_text())
    overrides = {} if a.stock_event_log else {"event_log_storage": local["event_log_storage"]}
    sampler = PssSampler()
    with dg.instance_for_test(overrides=overrides) as instance:
        sampler.start()
        t0 = time.perf_counter()
        result = defs.resolve_job_def("all_assets_job").execute_in_process(
            instance=instance, resources=resources, run_config=run_config, tags=tags, raise_on_error=False)
        wall = time.perf_counter() - t0
        sampler.stop()
        runs = len(instance.get_runs())
        stats = instance.get_run_step_stats(result.run_id)
        steps = {s.step_key: s.end_time - s.start_time for s in stats}
        at_peak = [s.step_key for s in stats if s.start_time <= sampler.peak_at <= (s.end_time or float("inf"))]
        parts = {}
        for record in instance.all_logs(result.run_id):
            m = re.search(r"^(\w+): \d+ partitions with \d+ worker\(s\); read ([\d.]+) s, wait for workers ([\d.]+) s, "
                          r"write ([\d.]+) s, written behind ([\d.]+) s", record.user_message or "")
            if m:
                parts[m[1]] = tuple(float(x) for x in m.groups()[1:])
    n = len(cities) * a.days
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    worker_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}")
    print(f"{len(cities)} cities x {a.days} days = {n} city-days ({start} .. {end}), simulated source")
    print(f"event log: {'stock' if a.stock_event_log else 'batched'} SQLite; warehouse: "
          f"{'PostgreSQL' if a.warehouse else 'DuckDB'}")
    print(f"success: {result.success}; runs launched: {runs}; wall {wall:.1f} s; {n / wall:.2f} city-days/s; "
          f"peak RSS {peak_mb:,.0f} MiB (largest worker {worker_mb:,.0f} MiB)")
    if sampler.available:
        print(f"peak memory, all processes of the run summed (PSS, sampled every {sampler.every_s:g} s): "
              f"{sampler.peak / 1024:,.0f} MiB in {sampler.peak_processes} process(es) "
              f"({', '.join(f'{k / 1024:,.0f}' for k in sampler.peak_split)} MiB), during {', '.join(at_peak) or 'no step'}; "
              f"PSS read at {sampler.reads} of {sampler.reads + sampler.skipped} samples (at the others the RSS summed "
              f"was below the peak)")
    rest_total = 0.0
    for step, secs in sorted(steps.items(), key=lambda kv: -kv[1]):
        read, wait, write, behind = parts.get(step, (0.0, 0.0, 0.0, 0.0))
        rest = secs - read - wait - write
        rest_total += rest if step in parts else 0.0
        split = (f"read {read:5.1f}, workers {wait:5.1f}, write {write:5.1f}, rest {rest:5.1f}; the writer thread "
                 f"{behind:5.1f}") if step in parts else "one query"
        print(f"  {step:<20} {secs:7.1f} s  ({secs / n * 1000:6.0f} ms per city-day; {split})")
    print(f"the rest (Dagster's events and checks, run config, metadata) in the partitioned steps: {rest_total:.1f} s "
          f"of {wall:.1f} s")
    sys.path.insert(0, os.path.dirname(__file__))
    from table_hashes import table_hash
    from kw_assets.warehouse import open_warehouse
    wh = open_warehouse(target)
    for table in ("backtest_fills", "backtest_pnl"):
        print(f"content hash {table}: {table_hash(wh.read(table))}")
    print(f"year x 7 cities (2,555 city-days) at this rate: ~{2555 / (n / wall) / 60:.0f} min in 1 run")
    if not a.warehouse:
        print(f"warehouse kept for bench/sweep.py: {target}")


if __name__ == "__main__":
    main()
