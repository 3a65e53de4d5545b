"""Running the strategy sweep (``model/sweep.py``) over the warehouse's settled city-days, a month at a
time: one read per input table for the month's days, each day prepared once and traded by every grid
point in forked workers. Memory holds one month of inputs, whatever the span."""

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
from kw_assets.warehouse import Warehouse

TAPE_COLUMNS = ("minute_ts", "market_ticker", "bracket_index", "yes_bid", "yes_ask", "last_price", "mid", "volume")
# what the backtest reads per city-day (None: every column): backtest_fills and the sweep alike
BACKTEST_INPUTS = {"settlement": None, "kalshi_markets": None,
                   "minute_panel": TAPE_COLUMNS + ("acceleration", "ras", "clv"),
                   "calibrated_pmf": ("minute_ts", "bracket_index", "p_calibrated", "hazard"),
                   "kalshi_trades": ("market_ticker", "created_time", "yes_price", "count", "is_block_trade"),
                   "kalshi_candles": ("market_ticker", "end_period_ts", "price_low", "price_high")}


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


def _trade_day(points, base, fills, execution, item) -> pd.DataFrame:
    city, day, data = item
    prepared = prepare_day(city, day, data, execution)
    return trade_points(prepared, points, base, fills) if prepared is not None else pd.DataFrame(columns=RESULT_COLUMNS)


def sweep_results(wh: Warehouse, days: list[tuple[str, dt.date]], points: pd.DataFrame,
                  base: StrategyConfig = StrategyConfig(), fills: FillConfig = FillConfig(),
                  execution: ExecutionConfig = ExecutionConfig(), workers: int | None = None,
                  log: Callable[[str], None] | None = None) -> tuple[pd.DataFrame, set[str], dict[str, float]]:
    """Every (city-day, point) result, the sources of the data traded, and seconds spent reading and trading."""
    by_month: dict[str, list[tuple[str, dt.date]]] = {}
    for city, day in days:
        by_month.setdefault(day.strftime("%Y-%m"), []).append((city, day))
    frames, sources, spent = [], set(), {"read": 0.0, "trade": 0.0}
    job = functools.partial(_trade_day, points, base, fills, execution)
    for month, keys in by_month.items():
        t0 = time.perf_counter()
        loaded = {t: wh.read(t, keys, cols) for t, cols in BACKTEST_INPUTS.items()}
        split = {t: split_by_partition(f) for t, f in loaded.items()}
        items = [(c, d, {t: split[t].get((c, d), loaded[t].iloc[:0]) for t in BACKTEST_INPUTS}) for c, d in keys]
        sources |= set(loaded["settlement"]["source"].dropna().astype(str))
        t1 = time.perf_counter()
        frames += parallel.map_items(job, items, workers)
        t2 = time.perf_counter()
        spent["read"] += t1 - t0
        spent["trade"] += t2 - t1
        if log:
            log(f"strategy_sweep: {month}: {len(keys)} city-days x {len(points)} points, read {t1 - t0:.1f} s, "
                f"traded {t2 - t1:.1f} s")
    results = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=RESULT_COLUMNS)
    return results, sources, spent
