import datetime as dt

import numpy as np
import pandas as pd
import pytest

from kw_assets.cities import get_city
from kw_assets.model.panel import build_panel, by_minute_and_bracket, grid_minutes, neighbour_mean
from kw_assets.sources.kalshi.client import KalshiClient
from kw_assets.sources.kalshi.fetch import fetch_candles, fetch_markets, fetch_trades
from kw_assets.sources.simulator.exchange import SimulatedExchange

NOW = dt.datetime(2026, 11, 27, tzinfo=dt.timezone.utc)


@pytest.fixture(scope="module")
def events():
    client = KalshiClient(transport=SimulatedExchange(now=lambda: NOW).transport(), requests_per_second=None)
    out = []
    for city, day in [("ny", dt.date(2025, 6, 3)), ("chi", dt.date(2025, 1, 20)), ("den", dt.date(2025, 3, 9))]:
        m = fetch_markets(client, get_city(city), day)
        out.append((m, fetch_candles(client, m), fetch_trades(client, m)))
    return out


def _perturb_after(candles, trades, t, rng):
    c, tr = candles.copy(), trades.copy()
    late = c["end_period_ts"] > t
    for col in ["yes_bid_close", "yes_ask_close", "price_close", "price_high", "price_low", "price_previous"]:
        c.loc[late, col] = rng.uniform(0, 1, late.sum())
    c.loc[late, "volume"] = rng.uniform(0, 500, late.sum())
    late_t = tr["created_time"] > t
    tr.loc[late_t, "yes_price"] = rng.uniform(0, 1, late_t.sum())
    tr.loc[late_t, "count"] = rng.uniform(1, 100, late_t.sum())
    tr.loc[late_t, "taker_outcome_side"] = np.where(rng.random(late_t.sum()) < 0.5, "yes", "no")
    extra = tr[late_t].head(5).assign(trade_id=lambda f: f["trade_id"] + "-x")
    return c, pd.concat([tr, extra], ignore_index=True)


def test_lookahead_canary_nothing_at_or_before_t_changes_when_the_future_does(events):
    rng = np.random.default_rng(0)
    for markets, candles, trades in events:
        base = build_panel(markets, candles, trades)
        grid = base["minute_ts"].unique()
        for t in rng.choice(grid[10:-10], 4, replace=False):
            c2, t2 = _perturb_after(candles, trades, pd.Timestamp(t), rng)
            other = build_panel(markets, c2, t2)
            upto = base["minute_ts"] <= t
            pd.testing.assert_frame_equal(base[upto].reset_index(drop=True), other[upto].reset_index(drop=True))
            assert not base[~upto].equals(other[~upto])  # the perturbation did reach the later minutes


def test_forward_fill_only_no_value_before_the_first_quote():
    markets = pd.DataFrame({"market_ticker": ["A", "B"], "bracket_index": [0, 1],
                            "open_time": pd.to_datetime(["2025-06-09T14:00:00Z"] * 2),
                            "close_time": pd.to_datetime(["2025-06-09T14:10:00Z"] * 2)})
    ts = pd.to_datetime(["2025-06-09T14:04:00Z", "2025-06-09T14:07:00Z"])
    candles = pd.DataFrame({"market_ticker": ["A", "A"], "end_period_ts": ts,
                            "yes_bid_close": [0.40, 0.50], "yes_ask_close": [0.44, 0.54],
                            "price_close": [np.nan, 0.52], "price_high": [np.nan, 0.53], "price_low": [np.nan, 0.50],
                            "price_previous": [0.41, 0.41], "volume": [0.0, 12.0]})
    trades = pd.DataFrame({"market_ticker": ["A", "A"], "created_time": pd.to_datetime(["2025-06-09T14:06:30Z", "2025-06-09T14:07:00Z"]),
                           "count": [10.0, 2.0], "yes_price": [0.52, 0.50], "taker_outcome_side": ["yes", "no"],
                           "is_block_trade": [False, False]})
    p = build_panel(markets, candles, trades)
    a = p[p["market_ticker"] == "A"].set_index("minute_ts")
    assert a.loc[:"2025-06-09T14:03:00Z", "mid"].isna().all()  # no backward fill
    assert a.loc["2025-06-09T14:05:00Z", "mid"] == pytest.approx(0.42)  # carried forward from 14:04
    assert a.loc["2025-06-09T14:07:00Z", "mid"] == pytest.approx(0.52)
    assert a.loc["2025-06-09T14:05:00Z", "volume"] == 0.0
    assert a.loc["2025-06-09T14:07:00Z", "clv"] == pytest.approx((0.52 - 0.50) / 0.03)
    assert a.loc["2025-06-09T14:07:00Z", "vwap"] == pytest.approx((10 * 0.52 + 2 * 0.50) / 12)
    assert a.loc["2025-06-09T14:07:00Z", "signed_volume"] == 8.0 and a.loc["2025-06-09T14:07:00Z", "trade_count"] == 2
    assert p[p["market_ticker"] == "B"]["mid"].isna().all()


def test_relative_acceleration_uses_strike_order_neighbours():
    a = np.array([[1.0, 3.0, 5.0, 7.0]])
    assert neighbour_mean(a).tolist() == [[3.0, 3.0, 5.0, 5.0]]  # tails have one neighbour
    # a missing neighbour is skipped; a bracket with no known neighbour has no score
    np.testing.assert_array_equal(neighbour_mean(np.array([[1.0, np.nan, 5.0]])), [[np.nan, 3.0, np.nan]])


def test_block_trades_are_excluded_and_close_only_sources_stay_nan(events):
    markets, candles, trades = events[0]
    blocks = trades.assign(is_block_trade=True)
    p = build_panel(markets, candles, blocks)
    assert p["trade_count"].sum() == 0 and p["vwap"].isna().all()
    close_only = candles[["market_ticker", "end_period_ts", "price_close"]].dropna().reindex(columns=candles.columns)
    p2 = build_panel(markets, close_only, trades.iloc[:0])
    assert p2["spread"].isna().all() and p2["volume"].isna().all()
    assert p2["mid"].notna().any() and np.allclose(p2.groupby("minute_ts")["p_norm"].sum().dropna(), 1.0)


def _recorded_book(markets, day, hours):
    """The event's recorded book (``orderbook_l2`` rows) for ``hours`` from the market's open."""
    from kw_assets.model.order_book import rebuild_minutes
    from kw_assets.model.panel import minute_grid
    from kw_assets.sources.simulator.world import build_world
    from kw_assets_tests.l2_records import recorded_rows
    w = build_world(get_city("ny"), day)
    rows = recorded_rows(w, 7, w.open_time + 600, w.open_time + 600 + hours * 3600)
    return rows, rebuild_minutes(rows, markets["market_ticker"].tolist(), minute_grid(markets))


def test_order_flow_joins_the_panel_where_the_book_was_recorded_and_is_nan_elsewhere(events):
    markets, candles, trades = events[0]
    rows, book = _recorded_book(markets, dt.date(2025, 6, 3), hours=3)
    plain = build_panel(markets, candles, trades)
    with_book = build_panel(markets, candles, trades, book=book)
    pd.testing.assert_frame_equal(plain.drop(columns=["ofi", "queue_imbalance"]), with_book.drop(columns=["ofi", "queue_imbalance"]))
    assert plain["ofi"].isna().all() and plain["queue_imbalance"].isna().all()
    merged = with_book.merge(book, on=["minute_ts", "market_ticker"], suffixes=("", "_book"))
    assert len(merged) == len(book) > 6 * 170
    np.testing.assert_array_equal(merged["ofi"], merged["ofi_book"])
    np.testing.assert_array_equal(merged["queue_imbalance"], merged["queue_imbalance_book"])
    assert with_book["ofi"].notna().sum() == len(book)  # never carried into a minute without a known book


def test_lookahead_canary_covers_the_order_flow_features(events):
    from kw_assets.model.order_book import rebuild_minutes
    from kw_assets.model.panel import minute_grid
    markets, candles, trades = events[0]
    rows, book = _recorded_book(markets, dt.date(2025, 6, 3), hours=3)
    base = build_panel(markets, candles, trades, book=book)
    first = pd.Timestamp(rows["clock_ms"].min(), unit="ms", tz="UTC")
    for t in (first + pd.Timedelta(minutes=47), first + pd.Timedelta(minutes=130, seconds=15)):
        late = rows["clock_ms"] > t.value // 1_000_000
        changed = rows.copy()
        changed.loc[late & (changed["kind"] == "orderbook_delta"), "quantity"] *= 3
        changed = changed[~(late & (changed["kind"] == "heartbeat") & (changed.index % 2 == 0))]
        other = build_panel(markets, candles, trades, book=rebuild_minutes(changed, markets["market_ticker"].tolist(), minute_grid(markets)))
        upto = base["minute_ts"] <= t
        pd.testing.assert_frame_equal(base[upto].reset_index(drop=True), other[other["minute_ts"] <= t].reset_index(drop=True))
        assert not base.loc[~upto, "ofi"].equals(other.loc[other["minute_ts"] > t, "ofi"])


def test_grid_minutes_are_the_distinct_minutes_in_order(events):
    panel = by_minute_and_bracket(build_panel(*events[0]).sample(frac=1.0, random_state=1))
    minutes = grid_minutes(panel)
    assert minutes.equals(pd.DatetimeIndex(panel["minute_ts"].drop_duplicates())) and minutes.is_monotonic_increasing
    assert str(minutes.dtype) == "datetime64[ns, UTC]" and len(grid_minutes(panel.iloc[:0])) == 0
