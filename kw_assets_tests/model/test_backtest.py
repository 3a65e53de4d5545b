import datetime as dt

import numpy as np
import pandas as pd
import pytest

from kw_assets.cities import get_city
from kw_assets.model.backtest import MARK_COLUMNS, ExecutionConfig, Marks, equity_path, run_backtest
from kw_assets.model.fills import FillConfig, Tape, maker_fill
from kw_assets.model.panel import build_panel
from kw_assets.sources.simulator.city_day import simulated_city_day

NOW = dt.datetime(2026, 11, 27, tzinfo=dt.timezone.utc)


@pytest.fixture(scope="module")
def days():
    out = []
    for k in range(10):
        city = ["ny", "chi", "mia", "aus", "den"][k % 5]
        cd = simulated_city_day(get_city(city), dt.date(2025, 5, 1) + dt.timedelta(days=3 * k), NOW)
        panel = build_panel(cd.markets, cd.candles, cd.trades)
        winner = int(cd.markets.index[cd.markets["result"] == "yes"][0])
        out.append((Tape.build(panel, cd.trades, cd.candles), cd.trades, winner))
    return out


def random_intents(tape: Tape, rng, n=30, size=5.0) -> pd.DataFrame:
    return pd.DataFrame({"row": np.sort(rng.integers(30, tape.n_minutes - 120, n)), "bracket": rng.integers(0, len(tape.tickers), n),
                         "side": rng.choice(["yes", "no"], n), "size": size, "liquidity": "taker", "limit": np.nan,
                         "edge": 0.0})


def test_random_trading_loses_about_fees_plus_spread(days):
    rng = np.random.default_rng(0)
    cfg = ExecutionConfig(take_profit=0.03, stop_loss=0.03, max_contracts_bracket=1e9, max_contracts_event=1e9,
                          daily_loss_limit=1e9)
    net, contracts, cost = 0.0, 0.0, 0.0
    for tape, _, winner in days:
        fills = run_backtest(tape, random_intents(tape, rng), winner, None, FillConfig(), cfg)
        f = fills[fills["contracts"] > 0]
        net += f["cash_flow"].sum()
        buys = f[f["action"] == "buy"]
        contracts += buys["contracts"].sum()
        # what a round trip costs if the mid is a fair price: fees + half spreads paid + slippage, each way
        rows = ((f["fill_ts"].astype("int64") - tape.minutes[0].value) // 60_000_000_000).clip(0, tape.n_minutes - 1).to_numpy()
        mid = tape.mid[rows, f["bracket_index"].to_numpy()]
        fair = np.where(f["side"] == "yes", mid, 1 - mid)
        paid = np.where(f["action"] == "buy", f["price"] - fair, fair - f["price"])
        traded = f["action"] != "settle"
        cost += (paid[traded] * f["contracts"][traded]).sum() + f["fee"].sum()
    per_contract, expected = net / contracts, -cost / contracts
    assert per_contract < 0  # no free money from the fill model
    assert expected * 2.0 < per_contract < expected * 0.4, (per_contract, expected)


def test_foresight_makes_money_and_doing_nothing_costs_nothing(days):
    traded = 0
    for tape, _, winner in days[:5]:
        # buy the winner early, at the first minute after the open where it traded, and hold to settlement
        first = int(np.argmax(np.nan_to_num(tape.volume[60:, winner]) > 0)) + 59
        know = pd.DataFrame({"row": [first], "bracket": [winner], "side": ["yes"], "size": [10.0], "liquidity": ["taker"],
                             "limit": [np.nan], "edge": [0.5]})
        fills = run_backtest(tape, know, winner, None, FillConfig(), ExecutionConfig(exit_mode="settlement"))
        f = fills[fills["contracts"] > 0]
        assert len(f) == 2 and set(f["action"]) == {"buy", "settle"}
        assert f["cash_flow"].sum() > 0
        traded += 1
        nothing = run_backtest(tape, know.iloc[:0], winner, None)
        assert nothing.empty
        path = equity_path(nothing, tape)
        assert (path["equity"] == 0).all() and (path["fees_cum"] == 0).all()
    assert traded == 5


def test_no_fill_on_the_decision_minute_and_accounting_to_the_cent(days):
    rng = np.random.default_rng(3)
    for tape, _, winner in days:
        intents = random_intents(tape, rng, n=20)
        intents.loc[intents.index % 2 == 0, "liquidity"] = "maker"
        bid, ask = tape.yes_bid[intents["row"], intents["bracket"]], tape.yes_ask[intents["row"], intents["bracket"]]
        intents["limit"] = np.where(intents["side"] == "yes", bid, 1 - ask)
        fills = run_backtest(tape, intents, winner, None)
        traded = fills[(fills["contracts"] > 0) & (fills["action"] != "settle")]
        assert (traded["fill_ts"] > traded["decided_ts"]).all()
        f = fills[fills["contracts"] > 0]
        # every position ends flat: bought = sold + settled, per order
        sign = np.where(f["action"] == "buy", 1, -1) * f["contracts"]
        assert np.allclose(sign.groupby(f["order_id"]).sum(), 0, atol=1e-9)
        # cash + positions marked at settlement = sum of fills and fees, to the cent
        notional = np.where(f["action"] == "buy", -1, 1) * f["price"] * f["contracts"]
        assert abs(float(notional.sum() - f["fee"].sum()) - float(f["cash_flow"].sum())) < 1e-6
        path = equity_path(fills, tape)
        assert abs(path["equity"].iloc[-1] - float(f["cash_flow"].sum())) < 1e-6
        # fees are whole cents, never negative
        assert (f["fee"] >= 0).all() and np.allclose(f["fee"] * 100, np.round(f["fee"] * 100))


def test_a_maker_never_fills_more_than_what_printed_through_its_price(days):
    tape, trades, _ = days[0]
    cfg = FillConfig(maker_queue_share=1.0, maker_ttl_min=30)
    checked = 0
    for b in range(len(tape.tickers)):
        for row in range(100, tape.n_minutes - 40, 97):
            limit = tape.yes_bid[row, b]
            if not np.isfinite(limit) or limit <= 0:
                continue
            rows, qty = maker_fill(tape, row, b, "yes", limit, 1e6, cfg)
            window = (tape.print_bracket == b) & (tape.print_row > row) & (tape.print_row <= row + 30)
            through = tape.print_count[window & (tape.print_price <= limit + 1e-9)].sum()
            assert qty.sum() <= through + 1e-6
            assert (rows > row).all()
            checked += 1
    assert checked > 10


def test_report_splits_realized_and_settlement_pnl_and_they_add_up(days):
    from kw_assets.model.report import summary
    rng = np.random.default_rng(5)
    parts = []
    for k, (tape, _, winner) in enumerate(days[:6]):
        cfg = ExecutionConfig(exit_mode="settlement" if k % 2 else "rules", take_profit=0.03, stop_loss=0.03)
        fills = run_backtest(tape, random_intents(tape, rng, n=20), winner, None, FillConfig(), cfg)
        parts.append(fills.assign(city="ny", climate_day=pd.Timestamp("2025-05-01") + pd.Timedelta(days=k)))
    s = summary(pd.concat(parts, ignore_index=True))
    assert s["realized_pnl"] != 0 and s["settlement_pnl"] != 0
    assert round(s["realized_pnl"] + s["settlement_pnl"], 6) == round(s["net_pnl"], 6)
    assert round(s["gross_pnl"] - s["fees"], 6) == round(s["net_pnl"], 6)
    assert s["maker_contracts"] == 0 and s["taker_contracts"] > 0


def test_exits_wait_until_a_resting_entry_is_done():
    """A maker entry half filled at minute 3 and expiring at minute 11: a take-profit visible at minute 5 is
    acted on only once the order is done (deciding earlier would use the knowledge that no more fills come)."""
    n = 60
    minutes = pd.date_range("2025-06-01T14:00Z", periods=n, freq="min")
    bid = np.full((n, 1), 0.40)
    bid[5:] = 0.60
    ask = bid + 0.02
    tape = Tape(minutes, np.array(["T"]), bid, ask, bid + 0.01, bid + 0.01, np.full((n, 1), 100.0),
                np.full((n, 1), np.nan), np.full((n, 1), np.nan), 0.02,
                np.array([3]), np.array([0]), np.array([0.40]), np.array([10.0]))
    intents = pd.DataFrame({"row": [1], "bracket": [0], "side": ["yes"], "size": [10.0], "liquidity": ["maker"],
                            "limit": [0.40], "edge": [0.05]})
    fills = run_backtest(tape, intents, 0, None, FillConfig(maker_ttl_min=10), ExecutionConfig(take_profit=0.08))
    entry = fills[fills["action"] == "buy"]
    exit_ = fills[fills["action"] == "sell"]
    assert entry["contracts"].tolist() == [5.0] and entry["fill_ts"].tolist() == [minutes[3]]
    assert exit_["decided_ts"].tolist() == [minutes[12]] and exit_["fill_ts"].tolist() == [minutes[13]]
    assert exit_["price"].iloc[0] == pytest.approx(0.59)  # the bid less 1 cent of slippage


def test_a_working_order_counts_at_full_size_against_the_limits():
    """Exposure at minute t is what is known at t: a resting order ties up its whole size until it is done,
    whatever it later turns out to fill; afterwards only its fills count."""
    n = 60
    minutes = pd.date_range("2025-06-01T14:00Z", periods=n, freq="min")
    bid = np.full((n, 2), 0.40)
    tape = Tape(minutes, np.array(["A", "B"]), bid, bid + 0.02, bid + 0.01, bid + 0.01, np.full((n, 2), 100.0),
                np.full((n, 2), np.nan), np.full((n, 2), np.nan), 0.02,
                np.array([8]), np.array([0]), np.array([0.40]), np.array([4.0]))  # one print: A fills 2 at minute 8
    intents = pd.DataFrame({"row": [1, 3, 20], "bracket": [0, 1, 1], "side": "yes", "size": 10.0, "liquidity": "maker",
                            "limit": 0.40, "edge": 0.05})
    fills = run_backtest(tape, intents, 0, None, FillConfig(maker_ttl_min=10),
                         ExecutionConfig(max_contracts_event=10.0, exit_mode="settlement"))
    by_order = fills.groupby("order_id")
    a = by_order.get_group("o00000")
    assert a.loc[a["action"] == "buy", "contracts"].tolist() == [2.0] and a["fill_ts"].iloc[0] == minutes[8]
    assert by_order.get_group("o00001")["reason"].tolist() == ["position limit"]  # A's order still works at minute 3
    assert by_order.get_group("o00002")["reason"].tolist() == ["not filled"]  # after A's expiry: 10 - 2 = 8 allowed


def test_a_taker_exit_waits_for_minutes_that_trade_and_sells_across_them():
    """An exit decided at a minute is sold minute by minute, only where volume traded: at most that volume
    each minute, never at a minute with none, until the position is flat."""
    n = 60
    minutes = pd.date_range("2025-06-01T14:00Z", periods=n, freq="min")
    bid = np.full((n, 1), 0.40)
    bid[10:] = 0.55  # a take-profit at minute 10
    volume = np.zeros((n, 1))
    volume[2] = 100.0  # the entry's minute
    volume[[14, 20], 0] = [4.0, 100.0]  # then nothing traded until minute 14 (4 contracts), then 20
    tape = Tape(minutes, np.array(["T"]), bid, bid + 0.02, bid + 0.01, bid + 0.01, volume,
                np.full((n, 1), np.nan), np.full((n, 1), np.nan), 0.02, np.array([], int), np.array([], int),
                np.array([]), np.array([]))
    intents = pd.DataFrame({"row": [1], "bracket": [0], "side": ["yes"], "size": [10.0], "liquidity": ["taker"],
                            "limit": [np.nan], "edge": [0.05]})
    fills = run_backtest(tape, intents, 0, None, FillConfig(), ExecutionConfig(take_profit=0.08))
    sells = fills[fills["action"] == "sell"]
    assert sells["decided_ts"].tolist() == [minutes[10]] * 2
    assert sells["fill_ts"].tolist() == [minutes[14], minutes[20]] and sells["contracts"].tolist() == [4.0, 6.0]
    assert sells["price"].tolist() == pytest.approx([0.54, 0.54])  # the bid less 1 cent of slippage
    assert fills["contracts"][fills["action"] == "settle"].sum() == 0  # flat before the close


def test_the_equity_path_from_the_panels_marks_alone_is_the_tapes():
    """``backtest_pnl`` reads only ``MARK_COLUMNS`` of the panel (in any row order): the same path as from the
    whole tape."""
    cd = simulated_city_day(get_city("phil"), dt.date(2025, 7, 14), NOW)
    panel = build_panel(cd.markets, cd.candles, cd.trades)
    tape = Tape.build(panel, cd.trades, cd.candles)
    winner = int(cd.markets.index[cd.markets["result"] == "yes"][0])
    intents = random_intents(tape, np.random.default_rng(5), n=25)
    fills = run_backtest(tape, intents, winner, None)
    assert (fills["contracts"] > 0).sum() > 10
    marks = Marks.of(panel[list(MARK_COLUMNS)].sample(frac=1.0, random_state=2))
    assert marks.mid.shape == (tape.n_minutes, len(tape.tickers))
    pd.testing.assert_frame_equal(equity_path(fills, marks), equity_path(fills, tape), check_exact=True)
