"""The order-book rebuild on hand-made recorded rows: snapshot + deltas on both sides, asks from NO bids,
gaps, the stream's horizon, a level that would go negative, OFI by hand, and no lookahead."""

import json

import numpy as np
import pandas as pd
import pytest

from kw_assets.model.order_book import book_at_minute_ends, market_states, rebuild_minutes, state_at, stream_horizon
from kw_assets.recorder.segments import COLUMNS

T0 = pd.Timestamp("2025-07-01 15:00", tz="UTC")
MS0 = T0.value // 1_000_000
TICKER = "KXHIGHNY-25JUL01-B84.5"


def _row(kind, at_s, **f):
    raw = f.pop("raw", "")
    base = {"recv_ns": (MS0 + int(at_s * 1000)) * 1_000_000, "clock_ms": MS0 + int(at_s * 1000), "connection": 1,
            "kind": kind, "sid": 1, "seq": -1, "market_ticker": None, "side": None, "price_cents": -1,
            "quantity": np.nan, "ts_ms": -1, "raw": raw}
    base.update(f)
    return base


def snapshot(at_s, yes=(), no=(), ticker=TICKER):
    msg = {"market_ticker": ticker, "market_id": "x"}
    if yes:
        msg["yes_dollars_fp"] = [[f"{p / 100:.4f}", f"{q:.2f}"] for p, q in yes]
    if no:
        msg["no_dollars_fp"] = [[f"{p / 100:.4f}", f"{q:.2f}"] for p, q in no]
    return _row("orderbook_snapshot", at_s, market_ticker=ticker, raw=json.dumps({"type": "orderbook_snapshot", "msg": msg}))


def delta(at_s, side, price, qty, ticker=TICKER):
    return _row("orderbook_delta", at_s, market_ticker=ticker, side=side, price_cents=price, quantity=float(qty),
                ts_ms=MS0 + int(at_s * 1000))


def beat(at_s):
    return _row("heartbeat", at_s)


def gap(at_s, why="connection lost"):
    return _row("gap", at_s, raw=why)


def frame(rows):
    return pd.DataFrame(rows)[COLUMNS]


def minutes(n):
    return pd.date_range(T0 + pd.Timedelta(minutes=1), periods=n, freq="min")


def heartbeats(until_s, every=10):
    return [beat(t) for t in range(every, until_s + 1, every)]


def test_snapshot_then_deltas_give_the_book_and_the_yes_ask_is_100_minus_the_best_no_bid():
    rows = sorted([snapshot(1, yes=[(30, 10), (29, 5), (27, 40)], no=[(62, 7), (60, 100)]),
                   delta(20, "yes", 31, 4),  # a new best bid
                   delta(75, "no", 62, -7),  # the best NO bid leaves: the ask goes 38 -> 40
                   *heartbeats(180)], key=lambda r: r["clock_ms"])
    out = rebuild_minutes(frame(rows), [TICKER], minutes(2))
    first, second = out.iloc[0], out.iloc[1]
    assert (first.yes_bid, first.yes_bid_size, first.yes_ask, first.yes_ask_size) == (0.31, 4.0, 0.38, 7.0)
    assert first.spread == pytest.approx(0.07)
    assert first.bid_depth3 == 4 + 10 + 5 and first.ask_depth3 == 7 + 100
    assert first.queue_imbalance == pytest.approx((4 - 7) / (4 + 7))
    assert (second.yes_bid, second.yes_ask, second.yes_ask_size) == (0.31, 0.40, 100.0)
    assert out["book_ok_share"].tolist() == [pytest.approx(59 / 60), 1.0]


def test_a_book_first_known_in_the_last_half_second_of_a_minute_has_a_row_with_a_share_above_zero():
    """Its end is known, so it gets a row, and the share counts the end: 1 of the minute's 60 marks."""
    rows = sorted([snapshot(59.8, yes=[(30, 10)], no=[(60, 20)]), *heartbeats(120)], key=lambda r: r["clock_ms"])
    out = rebuild_minutes(frame(rows), [TICKER], minutes(2))
    assert out["book_ok_share"].tolist() == [pytest.approx(1 / 60), 1.0]


def test_ofi_is_cont_kukanov_stoikov_at_the_best_level():
    rows = sorted([snapshot(1, yes=[(30, 10)], no=[(60, 20)]),
                   delta(10, "yes", 30, 5),    # bid queue grows: +5
                   delta(20, "yes", 31, 8),    # new better bid: +8
                   delta(30, "no", 60, -20),   # ask queue (NO 60 = ask 40) leaves: the ask goes to 100 (none): +20
                   delta(40, "no", 61, 3),     # a better ask (39) appears: -3
                   *heartbeats(120)], key=lambda r: r["clock_ms"])
    out = rebuild_minutes(frame(rows), [TICKER], minutes(2))
    assert out["ofi"].tolist() == [5 + 8 + 20 - 3, 0.0]


def test_a_gap_hides_the_book_until_the_next_snapshot_and_no_row_comes_from_inside_it():
    rows = sorted([snapshot(1, yes=[(30, 10)], no=[(60, 20)]), *heartbeats(300),
                   gap(70), delta(90, "yes", 30, 99),  # after a gap a delta alone proves nothing
                   snapshot(150, yes=[(33, 1)], no=[(55, 2)])], key=lambda r: r["clock_ms"])
    out = rebuild_minutes(frame(rows), [TICKER], minutes(4))
    assert out["minute_ts"].tolist() == [minutes(4)[0], minutes(4)[2], minutes(4)[3]]
    assert out.iloc[1].yes_bid == 0.33 and out.iloc[1].book_ok_share == pytest.approx(30 / 60)
    # the minute the gap starts in: known from 61 s to the row before the gap (the gap itself is not)
    books, ok = book_at_minute_ends(frame(rows), TICKER, minutes(4))
    assert ok.tolist() == [True, False, True, True]


def test_a_quiet_stretch_a_later_pong_vouches_for_is_known_and_nothing_is_after_the_last_row():
    rows = [snapshot(1, yes=[(30, 10)], no=[(60, 20)]), *heartbeats(70), beat(150), beat(160)]
    out = rebuild_minutes(frame(rows), [TICKER], minutes(3))
    # no delta from 70 to 150 s, but the pong at 150 s proves nothing was missed: minute 2 is known, quiet;
    # after 160 s (the last row) nothing is
    assert out["minute_ts"].tolist() == list(minutes(2))
    # deltas vouch for the stream up to their stamps only once delivered: a 10 s delivery delay seen on a
    # delta holds each pong's vouching back by 10 s
    late = [*rows, delta(120, "yes", 30, 1)]
    late[-1]["clock_ms"] += 10_000
    assert stream_horizon(frame(sorted(late, key=lambda r: r["clock_ms"])))[-1] == MS0 + 160_000 - 10_000


def test_a_level_that_would_go_negative_marks_the_book_wrong_until_a_snapshot():
    rows = sorted([snapshot(1, yes=[(30, 10)], no=[(60, 20)]), delta(30, "yes", 30, -11),
                   snapshot(100, yes=[(30, 10)], no=[(60, 20)]), *heartbeats(180)], key=lambda r: r["clock_ms"])
    out = rebuild_minutes(frame(rows), [TICKER], minutes(2))
    assert out["minute_ts"].tolist() == [minutes(2)[1]]


def test_no_lookahead_rows_stamped_at_or_after_a_minute_end_do_not_change_it():
    base = [snapshot(1, yes=[(30, 10)], no=[(60, 20)]), *heartbeats(200)]
    later = delta(60, "yes", 35, 50)  # stamped exactly at the first minute's end: belongs to the next minute
    a = rebuild_minutes(frame(sorted(base, key=lambda r: r["clock_ms"])), [TICKER], minutes(2))
    b = rebuild_minutes(frame(sorted([*base, later], key=lambda r: r["clock_ms"])), [TICKER], minutes(2))
    assert a.iloc[0].equals(b.iloc[0])
    assert b.iloc[1].yes_bid == 0.35 and a.iloc[1].yes_bid == 0.30


def test_a_change_received_after_a_snapshot_never_counts_before_it():
    # a snapshot received at 65 s, then a delta the exchange stamped at 59 s: before 65 s nothing is known,
    # from 65 s the delta is in the book
    rows = [beat(50), snapshot(65, yes=[(30, 10)], no=[(60, 20)]), delta(59, "yes", 30, 1)]
    rows[-1]["clock_ms"] = MS0 + 66_000
    rows += heartbeats(200)[7:]
    m = market_states(frame(rows), TICKER)
    pos, known = state_at(m, np.array([MS0 + 62_000, MS0 + 66_000]))
    assert known.tolist() == [False, True] and m["states"][pos[1], 0, 30] == 11


def test_an_unrecorded_day_gives_an_empty_table():
    empty = pd.DataFrame({c: pd.Series(dtype=object) for c in COLUMNS})
    assert rebuild_minutes(empty, [TICKER], minutes(3)).empty
