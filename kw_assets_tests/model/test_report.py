import numpy as np
import pandas as pd
import pytest

from kw_assets.model.report import (bootstrap_daily_ci, bracket_migration, entry_orders, next_bar_winners,
                                    order_outcomes, orders_per_city_day, summary)


def fills_for(days: dict[tuple[str, str], list[tuple[str, str, float, float]]]) -> pd.DataFrame:
    """(city, day) -> [(order_id, action, contracts, cash_flow)]; order ids restart every city-day, as the backtest writes them."""
    rows = []
    for (city, day), orders in days.items():
        for oid, action, contracts, cash in orders:
            rows.append({"city": city, "climate_day": pd.Timestamp(day), "order_id": oid, "action": action,
                         "contracts": contracts, "cash_flow": cash, "fee": 0.01 if action == "buy" and contracts else 0.0,
                         "price": 0.5, "liquidity": "taker" if action != "settle" else "settlement", "edge": 0.05,
                         "fill_ts": pd.Timestamp(day, tz="UTC"), "market_ticker": "T", "bracket_index": 0, "side": "yes"})
    return pd.DataFrame(rows)


def test_orders_are_counted_per_city_day_sent_and_filled():
    f = fills_for({("ny", "2025-06-01"): [("o00000", "buy", 10, -5.0), ("o00000", "settle", 10, 10.0), ("o00001", "buy", 0, 0.0)],
                   ("ny", "2025-06-02"): [("o00000", "buy", 10, -5.0), ("o00000", "settle", 10, 0.0)],
                   ("chi", "2025-06-01"): [("o00000", "buy", 0, 0.0)]})
    s = summary(f)
    assert s["orders_sent"] == 4 and s["orders_filled"] == 2  # the same id on three city-days is three orders
    per_day = orders_per_city_day(f).set_index(["city", "climate_day"])
    assert per_day.loc[("ny", pd.Timestamp("2025-06-01")), "orders_sent"] == 2
    assert per_day.loc[("ny", pd.Timestamp("2025-06-01")), "orders_filled"] == 1
    assert per_day.loc[("chi", pd.Timestamp("2025-06-01")), "orders_filled"] == 0


def test_an_orders_outcome_sums_its_entry_fills_and_its_whole_cash_flow():
    """A maker order filled in two pieces (4 at 0.40, 6 at 0.45), then exited: notional 4.30 over its 10 contracts,
    net the sum of every cash flow, held to settlement only if a settle row exists."""
    f = fills_for({("ny", "2025-06-01"): [("o00000", "buy", 4, -1.61), ("o00000", "buy", 6, -2.71),
                                          ("o00000", "sell", 10, 5.49), ("o00001", "buy", 10, -5.0),
                                          ("o00001", "settle", 10, 10.0)]})
    f.loc[[0, 1, 2], "price"] = [0.40, 0.45, 0.55]
    o = order_outcomes(f).set_index("order_id")
    assert o.loc["o00000", "contracts"] == 10 and o.loc["o00000", "notional"] == pytest.approx(4 * 0.40 + 6 * 0.45)
    assert o.loc["o00000", "net"] == pytest.approx(-1.61 - 2.71 + 5.49) and not o.loc["o00000", "held_to_settlement"]
    assert o.loc["o00001", "notional"] == pytest.approx(5.0) and o.loc["o00001", "held_to_settlement"]


def test_bootstrap_interval_separates_a_steady_profit_from_noise():
    days = pd.date_range("2025-06-01", periods=28).strftime("%Y-%m-%d")
    steady = fills_for({("ny", d): [("o0", "buy", 1, 1.0 + 0.1 * (k % 3))] for k, d in enumerate(days)})
    ci = bootstrap_daily_ci(steady)
    assert ci["city_days"] == 28 and abs(ci["net_pnl"] - (28 + 0.1 * (9 * 1 + 9 * 2))) < 1e-9
    assert 0 < ci["ci_low"] < ci["net_pnl"] < ci["ci_high"]
    rng = np.random.default_rng(0)
    coin = fills_for({("ny", d): [("o0", "buy", 1, float(x))] for d, x in zip(days, rng.choice([-1.0, 1.0], 28))})
    noisy = bootstrap_daily_ci(coin)
    assert noisy["ci_low"] < 0 < noisy["ci_high"]


def test_next_bar_winners_count_a_yes_that_rose_and_a_no_that_fell():
    moves = pd.DataFrame({"side": ["yes", "yes", "no", "no"], "mid_0": [0.40, 0.40, 0.60, 0.60],
                          "mid_1": [0.40, 0.45, 0.55, np.nan], "mid_5": [0.42, 0.35, 0.50, 0.70]})
    t = next_bar_winners(moves, horizons=(1, 5)).set_index("minutes_after_fill")
    assert t.loc[1, "entries"] == 3 and t.loc[5, "entries"] == 4
    assert t.loc[1, "hit_rate"] == 2 / 3 and t.loc[1, "flat_share"] == 1 / 3
    assert t.loc[5, "hit_rate"] == 0.5  # the YES that rose 2c and the NO whose YES fell 10c
    assert abs(t.loc[5, "mean_move_cents"] - (2 - 5 + 10 - 10) / 4) < 1e-9


def test_entry_orders_take_the_first_fill_of_each_order():
    f = fills_for({("ny", "2025-06-01"): [("o00000", "buy", 4, -2.0), ("o00000", "buy", 6, -3.0), ("o00000", "settle", 10, 10.0),
                                          ("o00001", "buy", 0, 0.0)]})
    f["fill_ts"] = pd.Timestamp("2025-06-01T15:00Z") + pd.to_timedelta(np.arange(len(f)), unit="min")
    f["decided_ts"] = pd.Timestamp("2025-06-01T14:59Z")
    e = entry_orders(f)
    assert len(e) == 1 and e["fill_ts"].iloc[0] == pd.Timestamp("2025-06-01T15:00Z")


def test_bracket_migration_tracks_the_centre_of_mass_and_who_followed_it():
    ts = pd.date_range("2025-06-01T12:00Z", periods=7, freq="5min")
    x = np.array([0, 0, 0, 0.2, 0.5, 0.8, 1.0])  # mass moving from bracket 1 to bracket 2
    pmf = pd.DataFrame({"city": "ny", "climate_day": pd.Timestamp("2025-06-01"), "minute_ts": np.repeat(ts, 2),
                        "bracket_index": np.tile([1, 2], 7), "p": np.column_stack([1 - x, x]).ravel()})
    entries = pd.DataFrame({"city": "ny", "climate_day": pd.Timestamp("2025-06-01"),
                            "decided_ts": [ts[1], ts[4], ts[4], ts[5], ts[5]],
                            "bracket_index": [2, 2, 1, 1, 2], "side": ["yes", "yes", "yes", "no", "no"]})
    t = bracket_migration(pmf, entries, window_min=10).iloc[0]
    assert (t["com_first"], t["com_last"], t["com_path"]) == (1.0, 2.0, 1.0)
    # the first entry came before any move; of the four in the move, YES on 2 and NO on 1 followed it
    assert t["entries_in_move"] == 4 and t["entries_followed"] == 2 and t["followed_share"] == 0.5
