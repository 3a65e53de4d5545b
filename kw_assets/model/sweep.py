"""A walk-forward parameter sweep of the strategy over stored probabilities.

Each settled city-day is prepared once (its fill tape and the strategy's threshold-free signal inputs)
and then traded by every point of the grid with the backtest's own code (``strategy.intents_from`` and
``backtest.run_backtest``), so a point's P&L for a day is exactly what ``backtest_fills`` would book with
those parameters. The choice is walk-forward: for month m, the point with the best net P&L over the days
settled before m's first market opened (all of them, or those of the last ``window_months``) is traded in
m; only those out-of-sample months count toward the path's P&L. The best point in hindsight is reported beside it, in-sample, to
show how much a choice made after the fact flatters.
"""

from __future__ import annotations

import dataclasses
import itertools
from typing import NamedTuple

import numpy as np
import pandas as pd

from kw_assets.model.backtest import FILL_COLUMNS, ExecutionConfig, backtest_records, run_backtest
from kw_assets.model.embargo import last_known_day
from kw_assets.model.fills import FillConfig, Tape
from kw_assets.model.report import bootstrap_daily_ci, month_of
from kw_assets.model.spreads import regime_half_spreads
from kw_assets.model.strategy import SignalState, StrategyConfig, intents_from, signal_state

SWEPT = ("slippage_cushion", "taker_extra_edge", "allow_maker", "contracts")
RESULT_COLUMNS = ["city", "climate_day", "point", "orders_sent", "orders_filled", "net_pnl", "fees",
                  "maker_contracts", "taker_contracts"]


def grid_points(grid: dict[str, list]) -> pd.DataFrame:
    """Every combination of the grid's values, one row per point (``point`` numbers them)."""
    unknown = set(grid) - set(SWEPT)
    if unknown:
        raise ValueError(f"the sweep varies only {SWEPT}; not {sorted(unknown)}")
    empty = [k for k, v in grid.items() if not len(v)]
    if empty:
        raise ValueError(f"grid axis {empty[0]!r} has no values")
    names = list(grid)
    rows = [dict(zip(names, combo)) for combo in itertools.product(*(grid[k] for k in names))]
    return pd.DataFrame(rows, columns=names).rename_axis("point").reset_index()


class PreparedDay(NamedTuple):
    city: str
    climate_day: pd.Timestamp
    tape: Tape
    state: SignalState
    winner: int
    execution: ExecutionConfig


def prepare_day(city: str, day, data: dict[str, pd.DataFrame], execution: ExecutionConfig = ExecutionConfig(),
                spreads: pd.DataFrame | None = None) -> PreparedDay | None:
    """A settled day's tape and signal inputs (``data``: the inputs of ``backtest_fills``); None when the
    day has no settlement or no market data. ``spreads``: observed books (``queries.spread_observations``),
    of which the city's before the day's market opened price the taker's half spread by regime."""
    s, markets, panel = data["settlement"], data["kalshi_markets"], data["minute_panel"]
    if s.empty or int(s["winning_bracket_index"].iloc[0]) < 0 or panel.empty:
        return None
    execution = dataclasses.replace(execution, fee_type=markets["fee_type"].iloc[0],
                                    fee_multiplier=float(markets["fee_multiplier"].iloc[0]))
    tape = Tape.build(panel, data["kalshi_trades"], data["kalshi_candles"], day_half_spreads(spreads, city, markets),
                      levels=data.get("orderbook_levels"), known=data.get("orderbook_l2"))
    return PreparedDay(city, pd.Timestamp(day), tape,
                       signal_state(panel, data["calibrated_pmf"]), int(s["winning_bracket_index"].iloc[0]), execution)


def day_half_spreads(spreads: pd.DataFrame | None, city: str, markets: pd.DataFrame) -> np.ndarray:
    """The half spread per price regime for a city-day: observed books of the city before its market opened."""
    mine = spreads[spreads["city"] == city] if spreads is not None and len(spreads) else None
    return regime_half_spreads(mine, pd.Timestamp(markets["open_time"].min()))


def trade_points(day: PreparedDay, points: pd.DataFrame, base: StrategyConfig = StrategyConfig(),
                 fills: FillConfig = FillConfig()) -> pd.DataFrame:
    """One row per grid point: the day's orders, net P&L after fees, fees and contracts by liquidity."""
    swept = [c for c in points.columns if c in SWEPT]
    rows = []
    for point, values in zip(points["point"], points[swept].to_dict("records")):
        cfg = dataclasses.replace(base, **values)
        intents, opposite = intents_from(day.state, cfg, day.execution.fee_type, day.execution.fee_multiplier)
        records = backtest_records(day.tape, intents, day.winner, opposite, fills, day.execution)
        columns = dict(zip(FILL_COLUMNS, zip(*records))) if records else dict.fromkeys(FILL_COLUMNS, ())
        order, action, liquidity = (np.array(columns[c], dtype=object) for c in ("order_id", "action", "liquidity"))
        contracts, fee, cash = (np.array(columns[c], dtype=float) for c in ("contracts", "fee", "cash_flow"))
        buy = action == "buy"
        traded = (contracts > 0) & (action != "settle")
        rows.append((day.city, day.climate_day, int(point), len(set(order[buy].tolist())),
                     len(set(order[buy & traded].tolist())), float(cash.sum()), float(fee.sum()),
                     float(contracts[traded & (liquidity == "maker")].sum()),
                     float(contracts[traded & (liquidity == "taker")].sum())))
    return pd.DataFrame(rows, columns=RESULT_COLUMNS)


def walk_forward(results: pd.DataFrame, points: pd.DataFrame, window_months: int | None = None) -> pd.DataFrame:
    """Per point and month: city-days, orders, net P&L, fees and contracts, with ``chosen`` marking the
    point traded out of sample that month: the best net P&L over the days settled before the month's first
    market opened (``embargo.last_known_day`` of its first day: the last days of the month before are not
    known yet), all of them or those of the last ``window_months``; ties go to the lower point. A month
    with no such day has no choice."""
    day = pd.to_datetime(results["climate_day"])
    monthly = (results.assign(month=month_of(day))
               .groupby(["point", "month"], as_index=False)
               .agg(city_days=("climate_day", "size"), orders_sent=("orders_sent", "sum"),
                    orders_filled=("orders_filled", "sum"), net_pnl=("net_pnl", "sum"), fees=("fees", "sum"),
                    maker_contracts=("maker_contracts", "sum"), taker_contracts=("taker_contracts", "sum")))
    daily = results.assign(day=day).pivot_table(index="day", columns="point", values="net_pnl", aggfunc="sum")
    daily = daily.sort_index().fillna(0.0)
    chosen = {}
    for month in sorted(monthly["month"].unique()):
        first = pd.Timestamp(f"{month}-01")
        start = first - pd.DateOffset(months=window_months) if window_months else daily.index.min()
        history = daily.loc[start:last_known_day(first)]
        if len(history):
            totals = history.sum(axis=0)
            chosen[month] = int(totals.index[np.argmax(totals.to_numpy())])  # argmax: the first of equals
    monthly["chosen"] = [chosen.get(m) == p for p, m in zip(monthly["point"], monthly["month"])]
    return points.merge(monthly, on="point").sort_values(["month", "point"], kind="stable").reset_index(drop=True)


def summary(monthly: pd.DataFrame, results: pd.DataFrame) -> dict:
    """The walk-forward path's out-of-sample net P&L with a bootstrap interval over its city-days (those
    that sent orders), beside the hindsight-best point's in-sample total over the same months."""
    path = monthly[monthly["chosen"]]
    oos_months = set(path["month"])
    r = results.assign(month=month_of(results["climate_day"]))
    picked = r.merge(path[["point", "month"]], on=["point", "month"])
    ci = bootstrap_daily_ci(picked[picked["orders_sent"] > 0].rename(columns={"net_pnl": "cash_flow"}))
    same = monthly[monthly["month"].isin(oos_months)].groupby("point")["net_pnl"].sum()
    best = int(same.index[np.argmax(same.to_numpy())]) if len(same) else -1
    return {"out_of_sample_months": len(oos_months), "out_of_sample_net_pnl": float(path["net_pnl"].sum()),
            "out_of_sample_ci_low": ci["ci_low"], "out_of_sample_ci_high": ci["ci_high"],
            "out_of_sample_city_days_traded": ci["city_days"], "hindsight_best_point": best,
            "hindsight_best_net_pnl": float(same.get(best, np.nan)) if len(same) else np.nan}


FILL_MODEL_COLUMNS = ["city", "climate_day", "fill_model", "maker_orders", "maker_orders_filled", "maker_fill_rate",
                      "maker_contracts", "taker_contracts", "net_pnl", "fees"]


def fill_model_comparison(day: PreparedDay, strategy: StrategyConfig = StrategyConfig(),
                          fills: FillConfig = FillConfig()) -> pd.DataFrame:
    """The same day traded twice, its maker orders filled by the candle model (prints, or the bar's bridge)
    and by the queue model (the recorded book where it covers the order): how optimistic the candle model is."""
    intents, opposite = intents_from(day.state, strategy, day.execution.fee_type, day.execution.fee_multiplier)
    rows = []
    for name, queue in (("candle", False), ("queue", True)):
        f = run_backtest(day.tape, intents, day.winner, opposite, dataclasses.replace(fills, queue_model=queue), day.execution)
        buy_maker = (f["action"] == "buy") & (f["liquidity"] == "maker")
        orders = f.loc[buy_maker, "order_id"].nunique()
        filled = f.loc[buy_maker & (f["contracts"] > 0), "order_id"].nunique()
        traded = (f["contracts"] > 0) & (f["action"] != "settle")
        rows.append((day.city, day.climate_day, name, orders, filled, filled / orders if orders else np.nan,
                     float(f.loc[traded & (f["liquidity"] == "maker"), "contracts"].sum()),
                     float(f.loc[traded & (f["liquidity"] == "taker"), "contracts"].sum()),
                     float(f["cash_flow"].sum()), float(f["fee"].sum())))
    return pd.DataFrame(rows, columns=FILL_MODEL_COLUMNS)
