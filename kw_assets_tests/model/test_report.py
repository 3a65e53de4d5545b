import numpy as np
import pandas as pd

from kw_assets.model.report import bootstrap_daily_ci, orders_per_city_day, summary


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
