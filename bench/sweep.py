"""The strategy sweep over a stored warehouse (the backtest layer alone: no Dagster, no upstream steps).

    .venv/bin/python bench/backfill.py --days 365 --start 2025-01-01      # prints the warehouse it leaves
    .venv/bin/python bench/sweep.py --warehouse /tmp/kw_bench_.../w.duckdb                # one grid point
    .venv/bin/python bench/sweep.py --warehouse ... --grid                                # the asset's default grid

Reports city-days, points, seconds reading and trading, peak RSS (this process and its largest worker),
and the walk-forward result: out-of-sample net P&L with its bootstrap interval, the path, and the
hindsight-best point. On the simulated source this is a demonstration, not evidence of edge.
"""

import argparse
import os
import platform
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from kw_assets.defs.backtest import SweepConfig  # noqa: E402
from kw_assets.model.sweep import SWEPT, grid_points, summary, walk_forward  # noqa: E402
from kw_assets.parallel import return_large_frees_to_os  # noqa: E402
from kw_assets.reporting import markdown_table  # noqa: E402
from kw_assets.strategy_sweep import settled_days, sweep_results  # noqa: E402
from kw_assets.warehouse import Warehouse  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--warehouse", required=True)
    ap.add_argument("--grid", action="store_true", help="the strategy_sweep asset's default grid (else one point)")
    ap.add_argument("--window-months", type=int, default=None)
    ap.add_argument("--memory-limit", default="256MB", help="DuckDB buffer per connection (the warehouse resource's default)")
    a = ap.parse_args()
    return_large_frees_to_os()  # as in the code location's processes (definitions.py)
    defaults = SweepConfig()
    grid = ({k: getattr(defaults, f"grid_{k}") for k in SWEPT} if a.grid else
            {"slippage_cushion": [0.02], "taker_extra_edge": [0.03], "allow_maker": [True], "contracts": [10.0]})
    points = grid_points(grid)
    wh = Warehouse(a.warehouse, memory_limit=a.memory_limit)
    t0 = time.perf_counter()
    days = settled_days(wh)
    results, sources, spent = sweep_results(wh, days, points)
    wall = time.perf_counter() - t0
    monthly = walk_forward(results, points, a.window_months)
    s = summary(monthly, results)
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores; source: {', '.join(sorted(sources))}")
    print(f"{len(days)} settled city-days x {len(points)} point(s): {wall:.1f} s (the workers' read "
          f"{spent['read']:.1f} s and trade {spent['trade']:.1f} s, summed); peak RSS "
          f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:,.0f} MiB (largest worker "
          f"{resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024:,.0f} MiB)")
    print(f"out of sample ({s['out_of_sample_months']} months): {s['out_of_sample_net_pnl']:.2f} "
          f"[{s['out_of_sample_ci_low']:.2f}, {s['out_of_sample_ci_high']:.2f}] over "
          f"{s['out_of_sample_city_days_traded']} city-days traded; hindsight best point "
          f"{s['hindsight_best_point']}: {s['hindsight_best_net_pnl']:.2f} (in sample, same months)")
    path = monthly.loc[monthly["chosen"], ["month", "point", *SWEPT, "net_pnl", "fees"]]
    print(markdown_table(path.round(2)))
    if "simulated" in sources:
        print("simulated source: a demonstration of the machinery, not evidence of edge")


if __name__ == "__main__":
    main()
