"""``./run demo``: materialize the whole graph for a default slice on the simulated source, then say
where everything landed. Runs are recorded in DAGSTER_HOME, so ``./run dev`` shows them afterwards."""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
import time
import warnings
from pathlib import Path

import dagster as dg

from kw_assets.sources import SIMULATED_BANNER


def main(argv: list[str] | None = None) -> int:
    warnings.filterwarnings("ignore")
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--cities", default="ny,chi", help="comma-separated city keys (default ny,chi)")
    ap.add_argument("--start", default="2025-06-01")
    ap.add_argument("--days", type=int, default=14)
    args = ap.parse_args(argv)

    from kw_assets.definitions import defs
    from kw_assets.partitions import partition_key

    cities = args.cities.split(",")
    start = dt.date.fromisoformat(args.start)
    end = start + dt.timedelta(days=args.days - 1)
    job = defs.resolve_job_def("all_assets_job")
    instance = dg.DagsterInstance.get() if os.environ.get("DAGSTER_HOME") else dg.DagsterInstance.ephemeral()
    t0 = time.perf_counter()
    print(f"materializing {len(cities)} cities x {args.days} days through every layer (simulated source unless "
          f"KW_SOURCE says otherwise); warnings below, full logs and progress in the UI (./run dev)")
    result = job.execute_in_process(
        instance=instance,
        run_config={"loggers": {"console": {"config": {"log_level": "WARNING"}}}},
        tags={"dagster/asset_partition_range_start": str(partition_key(cities[0], start)),
              "dagster/asset_partition_range_end": str(partition_key(cities[-1], end))},
        raise_on_error=False,
    )
    took = time.perf_counter() - t0
    wh = defs.resources["warehouse"].get()
    print()
    print(f"kw_assets demo: {len(cities)} cities x {args.days} days ({start} .. {end}) in {took:.1f} s -> "
          f"{'OK' if result.success else 'FAILED'}")
    if defs.resources["market_data"].source == "simulated":
        print(SIMULATED_BANNER)
    from kw_assets.schemas import TABLES
    in_job = {k.to_user_string() for k in job.asset_layer.executable_asset_keys}
    for table in TABLES:
        if table in in_job:
            print(f"  {table:<22} {len(wh.read(table)):>9,} rows")
    print("  (strategy_sweep_job sweeps the strategy's parameters walk-forward over every stored settled day)")
    print(f"warehouse: {wh.path.resolve()}")
    report = Path("data/reports/backtest_report.html")
    if report.exists():
        print(f"report:    {report.resolve()}")
    print(f"runs:      {os.environ.get('DAGSTER_HOME', '(ephemeral)')}  (./run dev, then http://127.0.0.1:3000)")
    return 0 if result.success else 1


if __name__ == "__main__":
    sys.exit(main())
