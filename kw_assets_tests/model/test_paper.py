"""Parity: the paper book, run minute by minute on what is known at each minute, sends exactly the
backtest's orders and gets exactly its fills; a restart appends only what it had not stored."""

import datetime as dt

import numpy as np
import pandas as pd
import pytest

from kw_assets.cities import get_city
from kw_assets.model.backtest import ExecutionConfig, run_backtest
from kw_assets.model.fills import FillConfig, Tape
from kw_assets.model.panel import build_panel
from kw_assets.model.paper import UNKNOWN_WINNER, not_yet_stored, paper_fills
from kw_assets.model.strategy import StrategyConfig, signal_intents
from kw_assets.sources.simulator.city_day import simulated_city_day

NOW = dt.datetime(2026, 11, 27, tzinfo=dt.timezone.utc)
FILLS, EXECUTION = FillConfig(), ExecutionConfig()


@pytest.fixture(scope="module", params=[("ny", dt.date(2025, 6, 3)), ("den", dt.date(2025, 8, 14))])
def day(request):
    city, d = request.param
    cd = simulated_city_day(get_city(city), d, NOW)
    panel = build_panel(cd.markets, cd.candles, cd.trades)
    winner = int(cd.markets.index[cd.markets["result"] == "yes"][0])
    # a model that knows a little of the outcome, so the strategy trades (maker and taker, exits, limits)
    n_br = len(cd.markets)
    mid = np.nan_to_num(panel["mid"].to_numpy().reshape(-1, n_br), nan=1 / n_br)
    truth = np.zeros_like(mid)
    truth[:, winner] = 1.0
    p = 0.8 * mid / mid.sum(axis=1, keepdims=True) + 0.2 * truth
    cal = pd.DataFrame({"minute_ts": panel["minute_ts"], "bracket_index": panel["bracket_index"],
                        "p_calibrated": p.ravel(), "hazard": 0.0})
    intents, opposite = signal_intents(panel, cal, StrategyConfig())
    tape = Tape.build(panel, cd.trades, cd.candles)
    return tape, intents, opposite, winner


def _expected(backtest: pd.DataFrame, tape: Tape, t: int) -> pd.DataFrame:
    row = pd.Series(np.arange(tape.n_minutes), index=tape.minutes)
    decided, filled = row.reindex(backtest["decided_ts"]).to_numpy(), row.reindex(backtest["fill_ts"]).to_numpy()
    over = np.minimum(decided + np.where(backtest["liquidity"] == "taker", FILLS.latency_min, FILLS.maker_ttl_min),
                      tape.n_minutes - 1)
    keep = (decided <= t) & (filled <= t) & (backtest["action"] != "settle").to_numpy()
    keep &= (backtest["reason"] != "not filled").to_numpy() | (over <= t)
    return backtest[keep].reset_index(drop=True)


def test_minute_by_minute_the_paper_book_sends_the_backtests_orders_and_gets_its_fills(day):
    tape, intents, opposite, winner = day
    backtest = run_backtest(tape, intents, winner, opposite, FILLS, EXECUTION)
    assert (backtest["liquidity"] == "maker").any() and (backtest["liquidity"] == "taker").any()
    assert (backtest["action"] == "sell").any() and (backtest["contracts"] > 0).sum() > 10
    n, checked = tape.n_minutes, 0
    row = pd.Series(np.arange(n), index=tape.minutes)
    events = np.concatenate([row.reindex(backtest["decided_ts"]).to_numpy(), row.reindex(backtest["fill_ts"]).to_numpy()])
    # every minute something happens and the one before it (where a peek at the future would show), and a grid
    ticks = sorted({int(r) + d for r in events for d in (-1, 0)} | set(range(0, n - 1, 41)) | {n - 2})
    for t in [t for t in ticks if 0 <= t < n - 1]:
        got, want = paper_fills(tape, intents, opposite, t, UNKNOWN_WINNER, FILLS, EXECUTION), _expected(backtest, tape, t)
        checked += len(want)
        if want.empty:
            assert got.empty, f"minute {t}"
        else:
            pd.testing.assert_frame_equal(got, want, obj=f"paper book at minute {t}")
    assert checked > 100
    final = paper_fills(tape, intents, opposite, n - 1, winner, FILLS, EXECUTION)
    pd.testing.assert_frame_equal(final, backtest)  # settled: the backtest, order for order, to the cent


def test_a_restart_recomputes_the_same_orders_and_stores_only_the_new_ones(day):
    tape, intents, opposite, _ = day
    # restart halfway through the day's decisions, so orders are stored before it and new ones come after
    whole = paper_fills(tape, intents, opposite, tape.n_minutes - 2, UNKNOWN_WINNER, FILLS, EXECUTION)
    row = pd.Series(np.arange(tape.n_minutes), index=tape.minutes)
    restart = int(np.median(row.reindex(whole["decided_ts"]).to_numpy()))
    first = paper_fills(tape, intents, opposite, restart, UNKNOWN_WINNER, FILLS, EXECUTION)
    later = paper_fills(tape, intents, opposite, tape.n_minutes - 2, UNKNOWN_WINNER, FILLS, EXECUTION)
    new = not_yet_stored(later, first)
    assert len(first) and len(new) and not new["order_id"].isin(first.loc[first["action"] == "buy", "order_id"]).all()
    stored = pd.concat([first, new], ignore_index=True)
    assert not stored.duplicated(["order_id", "action", "fill_ts"]).any()
    assert len(stored) == len(later) and not_yet_stored(later, stored).empty


def test_the_comparison_lists_every_order_the_paper_book_did_differently(day):
    from kw_assets.model.paper import compare_with_backtest
    tape, intents, opposite, winner = day
    backtest = run_backtest(tape, intents, winner, opposite, FILLS, EXECUTION)
    table, differences = compare_with_backtest(backtest.copy(), backtest)
    assert differences == [] and table["net_pnl"].nunique() == 1
    paper = backtest.drop(index=3).copy()
    filled = paper.index[paper["contracts"] > 0][0]
    paper.loc[filled, "price"] += 0.01
    table, differences = compare_with_backtest(paper, backtest)
    assert len(differences) == 2
    assert any("only in the backtest" in d and backtest.loc[3, "order_id"] in d for d in differences)
    assert any(f"{paper.loc[filled, 'order_id']}" in d and "price" in d for d in differences)
