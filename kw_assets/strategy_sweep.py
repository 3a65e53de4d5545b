"""Running the strategy sweep (``model/sweep.py``) over the warehouse's settled city-days, in month x city
groups spread over forked workers: each worker reads a group's inputs (one query per table, on its own
read-only connection), prepares each day once and trades it with every grid point. Memory holds one
group's inputs per worker, whatever the span."""

from __future__ import annotations

import datetime as dt
import functools
import time
from typing import Callable, Iterable

import pandas as pd

from kw_assets import parallel
from kw_assets.model.backtest import ExecutionConfig
from kw_assets.model.fills import FillConfig
from kw_assets.model.strategy import StrategyConfig
from kw_assets.model.sweep import RESULT_COLUMNS, prepare_day, trade_points
from kw_assets.partition_batch import split_by_partition
from kw_assets.queries import spread_observations
from kw_assets.warehouse import Warehouse

TAPE_COLUMNS = ("minute_ts", "market_ticker", "bracket_index", "yes_bid", "yes_ask", "last_price", "mid", "volume")
# what the backtest reads per city-day (None: every column): backtest_fills and the sweep alike
BACKTEST_INPUTS = {"settlement": None, "kalshi_markets": None,
                   "minute_panel": TAPE_COLUMNS + ("acceleration", "ras", "clv", "ofi"),
                   "calibrated_pmf": ("minute_ts", "bracket_index", "p_calibrated", "hazard"),
                   "kalshi_trades": ("market_ticker", "created_time", "yes_price", "count", "is_block_trade",
                                     "taker_outcome_side"),
                   "kalshi_candles": ("market_ticker", "end_period_ts", "price_open", "price_low", "price_high",
                                      "price_close"),
                   # the recorded book, where the L2 recorder ran: the queue-aware maker fills
                   "orderbook_levels": None, "orderbook_l2": ("market_ticker", "minute_ts", "spread")}


def settled_days(wh: Warehouse, first: dt.date | None = None, last: dt.date | None = None,
                 cities: Iterable[str] | None = None) -> list[tuple[str, dt.date]]:
    """Partitions with a settled winner and a calibrated PMF, in date order."""
    days = wh.query("SELECT DISTINCT s.city, s.climate_day FROM settlement s WHERE s.winning_bracket_index >= 0 "
                    "AND EXISTS (SELECT 1 FROM calibrated_pmf c WHERE c.city = s.city AND c.climate_day = s.climate_day) "
                    "ORDER BY s.climate_day, s.city", needs=("settlement", "calibrated_pmf"))
    out = [(str(c), pd.Timestamp(d).date()) for c, d in zip(days["city"], days["climate_day"])]
    keep = set(cities) if cities else None
    return [(c, d) for c, d in out if (first is None or d >= first) and (last is None or d <= last)
            and (keep is None or c in keep)]


def _sweep_group(wh: Warehouse, points, base, fills, execution, spreads, keys) -> tuple[list[pd.DataFrame], set[str], float, float]:
    """One month of one city, in a worker: its inputs read (a read-only connection), each day prepared
    once and traded by every point."""
    t0 = time.perf_counter()
    with wh.held(read_only=True):  # the worker's own, held across its groups (_sweep_groups)
        loaded = {t: wh.read(t, keys, cols) for t, cols in BACKTEST_INPUTS.items()}
    split = {t: split_by_partition(f) for t, f in loaded.items()}
    t1 = time.perf_counter()
    out = []
    for city, day in keys:
        data = {t: split[t].get((city, day), loaded[t].iloc[:0]) for t in BACKTEST_INPUTS}
        prepared = prepare_day(city, day, data, execution, spreads)
        if prepared is not None:
            out.append(trade_points(prepared, points, base, fills))
    return out, set(loaded["settlement"]["source"].dropna().astype(str)), t1 - t0, time.perf_counter() - t1


def _sweep_groups(wh: Warehouse, group: Callable, groups: list) -> list:
    """A worker's groups in order, on one read-only connection. A group shares its tables' row groups with the
    other cities of its month, which a fresh connection per group read again (the year's reads 29 -> 18 s
    summed), for the DuckDB buffer each worker then keeps (up to ``memory_limit``)."""
    with wh.held(read_only=True):
        return [group(keys) for keys in groups]


def sweep_results(wh: Warehouse, days: list[tuple[str, dt.date]], points: pd.DataFrame,
                  base: StrategyConfig = StrategyConfig(), fills: FillConfig = FillConfig(),
                  execution: ExecutionConfig = ExecutionConfig(), workers: int | None = None,
                  log: Callable[[str], None] | None = None) -> tuple[pd.DataFrame, set[str], dict[str, float]]:
    """Every (city-day, point) result, the sources of the data traded, and seconds spent reading and trading
    (summed over the workers). Each worker reads and trades month x city groups in date order, so memory
    holds one group's inputs per worker whatever the span."""
    groups: dict[tuple[str, str], list[tuple[str, dt.date]]] = {}
    for city, day in days:
        groups.setdefault((day.strftime("%Y-%m"), city), []).append((city, day))
    t0 = time.perf_counter()
    spreads = spread_observations(wh)
    workers = workers or parallel.default_workers()
    reader = wh.for_workers(workers)
    group = functools.partial(_sweep_group, reader, points, base, fills, execution, spreads)
    parts = parallel.start(functools.partial(_sweep_groups, reader, group), list(groups.values()), workers).result()
    done = [d for part in parts for d in part]
    frames = [f for part, _, _, _ in done for f in part]
    sources = set().union(*(s for _, s, _, _ in done)) if done else set()
    spent = {"read": sum(r for _, _, r, _ in done), "trade": sum(t for _, _, _, t in done),
             "wall": time.perf_counter() - t0}
    if log:
        log(f"strategy_sweep: {len(days)} city-days x {len(points)} points in {len(groups)} month x city groups: "
            f"{spent['wall']:.1f} s (workers' read {spent['read']:.1f} s, trade {spent['trade']:.1f} s)")
    results = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=RESULT_COLUMNS)
    return results, sources, spent
