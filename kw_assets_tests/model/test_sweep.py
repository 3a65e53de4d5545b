import dataclasses
import datetime as dt

import numpy as np
import pandas as pd
import pytest

from kw_assets.cities import get_city
from kw_assets.model.backtest import ExecutionConfig, run_backtest
from kw_assets.model.fills import Tape
from kw_assets.model.panel import build_panel
from kw_assets.model.strategy import StrategyConfig, signal_intents
from kw_assets.model.sweep import grid_points, prepare_day, summary, trade_points, walk_forward
from kw_assets.sources.simulator.city_day import simulated_city_day

NOW = dt.datetime(2026, 11, 27, tzinfo=dt.timezone.utc)


def test_grid_is_every_combination_and_refuses_what_it_cannot_sweep():
    points = grid_points({"slippage_cushion": [0.01, 0.02, 0.04], "allow_maker": [True, False]})
    assert len(points) == 6 and points["point"].tolist() == list(range(6))
    assert points.iloc[1].to_dict() == {"point": 1, "slippage_cushion": 0.01, "allow_maker": False}
    with pytest.raises(ValueError, match="clv_buy"):
        grid_points({"clv_buy": [0.5]})
    with pytest.raises(ValueError, match="no values"):
        grid_points({"contracts": []})


@pytest.fixture(scope="module")
def settled_days():
    """Two simulated city-days with a calibrated PMF that knows the winner a little (so the strategy trades)."""
    out = []
    for city, day in (("ny", dt.date(2025, 5, 4)), ("mia", dt.date(2025, 5, 9))):
        cd = simulated_city_day(get_city(city), day, NOW)
        panel = build_panel(cd.markets, cd.candles, cd.trades).assign(city=city, climate_day=pd.Timestamp(day))
        winner = int(cd.markets.index[cd.markets["result"] == "yes"][0])
        p = np.nan_to_num(panel["p_norm"].to_numpy(float), nan=1 / 6) * 0.7 + 0.3 * (panel["bracket_index"] == winner)
        calibrated = panel[["minute_ts", "bracket_index"]].assign(p_calibrated=p, hazard=0.1)
        settlement = pd.DataFrame({"winning_bracket_index": [winner]})
        out.append((city, day, {"settlement": settlement, "kalshi_markets": cd.markets, "minute_panel": panel,
                                "calibrated_pmf": calibrated, "kalshi_trades": cd.trades, "kalshi_candles": cd.candles}))
    return out


def test_a_point_books_what_the_backtest_books_with_those_parameters(settled_days):
    points = grid_points({"slippage_cushion": [0.0, 0.05], "allow_maker": [True, False], "contracts": [5.0, 20.0]})
    traded = 0
    for city, day, data in settled_days:
        prepared = prepare_day(city, day, data)
        got = trade_points(prepared, points)
        for values, row in zip(points.drop(columns="point").to_dict("records"), got.itertuples()):
            cfg = dataclasses.replace(StrategyConfig(), **values)
            intents, opposite = signal_intents(data["minute_panel"], data["calibrated_pmf"], cfg)
            fills = run_backtest(Tape.build(data["minute_panel"], data["kalshi_trades"], data["kalshi_candles"]), intents,
                                 int(data["settlement"]["winning_bracket_index"].iloc[0]), opposite,
                                 cfg=ExecutionConfig())
            assert row.net_pnl == pytest.approx(fills["cash_flow"].sum(), abs=1e-9)
            assert row.fees == pytest.approx(fills["fee"].sum(), abs=1e-9)
            assert row.orders_sent == fills["order_id"].nunique()
            traded += row.orders_filled
    assert traded > 0


def test_unsettled_days_are_not_traded(settled_days):
    city, day, data = settled_days[0]
    assert prepare_day(city, day, {**data, "settlement": pd.DataFrame({"winning_bracket_index": [-1]})}) is None


def _results(pnl: dict[tuple[str, int], float]) -> pd.DataFrame:
    """One city-day per (month, point) with the given net P&L."""
    rows = [{"city": "ny", "climate_day": pd.Timestamp(f"{m}-15"), "point": p, "orders_sent": 1, "orders_filled": 1,
             "net_pnl": v, "fees": 0.1, "maker_contracts": 0.0, "taker_contracts": 5.0} for (m, p), v in pnl.items()]
    return pd.DataFrame(rows)


PNL = {("2025-01", 0): 10.0, ("2025-01", 1): -5.0, ("2025-02", 0): -3.0, ("2025-02", 1): 8.0,
       ("2025-03", 0): 1.0, ("2025-03", 1): 2.0}


def test_walk_forward_chooses_on_earlier_months_only():
    points = pd.DataFrame({"point": [0, 1], "contracts": [5.0, 10.0]})
    monthly = walk_forward(_results(PNL), points)
    path = monthly[monthly["chosen"]]
    assert path[["month", "point"]].values.tolist() == [["2025-02", 0], ["2025-03", 0]]  # Jan: no history
    s = summary(monthly, _results(PNL))
    assert s["out_of_sample_months"] == 2 and s["out_of_sample_net_pnl"] == pytest.approx(-2.0)
    assert s["hindsight_best_point"] == 1 and s["hindsight_best_net_pnl"] == pytest.approx(10.0)
    # the last month's outcome cannot change any choice
    later = walk_forward(_results({**PNL, ("2025-03", 1): 1000.0}), points)
    assert later["chosen"].tolist() == monthly["chosen"].tolist()
    # a one-month window forgets January: March follows February's winner
    windowed = walk_forward(_results(PNL), points, window_months=1)
    assert windowed.loc[windowed["chosen"], ["month", "point"]].values.tolist() == [["2025-02", 0], ["2025-03", 1]]
    assert summary(windowed, _results(PNL))["out_of_sample_net_pnl"] == pytest.approx(-1.0)


def test_the_last_days_of_a_month_are_not_known_when_the_next_one_starts():
    """March 1st's market opens on Feb 28th at 14:00 UTC: Feb 27th and 28th have not settled, so a fortune
    made on them cannot choose March's point; Feb 26th's can."""
    points = pd.DataFrame({"point": [0, 1], "contracts": [5.0, 10.0]})
    base = _results(PNL)
    for day, changes in (("2025-02-27", False), ("2025-02-28", False), ("2025-02-26", True)):
        late = pd.DataFrame([{**base.iloc[0].to_dict(), "climate_day": pd.Timestamp(day), "point": p,
                              "net_pnl": 100.0 * p} for p in (0, 1)])
        monthly = walk_forward(pd.concat([base, late], ignore_index=True), points)
        march = monthly[(monthly["month"] == "2025-03") & monthly["chosen"]]["point"].tolist()
        assert march == ([1] if changes else [0]), day


def test_shuffled_inputs_prepare_the_same_day(settled_days):
    """The tape and signal inputs read a partition as the warehouse returns it (sorted: no sort, no pivot)
    or in any other order (sorted first): the same arrays either way."""
    city, day, data = settled_days[0]
    rng = np.random.default_rng(1)
    shuffled = {**data, "minute_panel": data["minute_panel"].sample(frac=1, random_state=rng),
                "calibrated_pmf": data["calibrated_pmf"].sample(frac=1, random_state=rng)}
    partial = {**data, "calibrated_pmf": data["calibrated_pmf"].iloc[6:]}  # first minute missing: pivot path
    a, b, c = (prepare_day(city, day, d) for d in (data, shuffled, partial))
    for x, y in zip(a.state, b.state):
        np.testing.assert_array_equal(x, y)
    np.testing.assert_array_equal(a.tape.yes_bid, b.tape.yes_bid)
    np.testing.assert_array_equal(a.tape.print_row, b.tape.print_row)
    assert np.isnan(c.state.p[0]).all() and np.isnan(c.state.hazard[0])
    np.testing.assert_array_equal(a.state.p[1:], c.state.p[1:])
    np.testing.assert_array_equal(a.state.hazard[1:], c.state.hazard[1:])
