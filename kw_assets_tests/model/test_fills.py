"""The maker fill models by hand: the queue in the recorded book (FIFO, pro-rata cancels, gaps) and the
Brownian bridge inside a bar when there are no prints."""

import dataclasses

import numpy as np
import pandas as pd
import pytest

from kw_assets.model.fills import FillConfig, Tape, bridge_through, maker_fill

N = 12
MINUTES = pd.date_range("2025-06-01T14:00Z", periods=N, freq="min")


def tape(prints=(), level=None, bar=None) -> Tape:
    """One bracket quoted 0.40 / 0.42; ``prints``: (row, yes price, contracts, taker bought YES); ``level``: the
    recorded YES-bid size at 40c per minute end (NaN: book unknown), or None for no recorded book."""
    bid = np.full((N, 1), 0.40)
    rows, price, count, yes = (np.array(x) for x in zip(*prints)) if prints else (np.array([], int),) * 4
    book = None
    if level is not None:
        book = np.zeros((N, 1, 2, 100), dtype=np.float32)
        book[:, 0, 0, 40] = level
        book[np.isnan(np.asarray(level, float))] = np.nan
    o, h, lo, c = (np.full((N, 1), np.nan) for _ in range(4)) if bar is None else (np.full((N, 1), v) for v in bar)
    return Tape(MINUTES, np.array(["T"]), bid, bid + 0.02, bid + 0.01, bid + 0.01, np.full((N, 1), 100.0),
                lo, h, 0.02, rows.astype(int), np.zeros(len(rows), int), price.astype(float), count.astype(float),
                yes.astype(bool), o, c, book)


def fills(t: Tape, size=10.0, limit=0.40, side="yes", **cfg):
    rows, qty = maker_fill(t, 1, 0, side, limit, size, FillConfig(maker_ttl_min=10, **cfg))
    return dict(zip(rows.tolist(), qty.tolist()))


def test_the_queue_ahead_trades_first_then_the_order_fills_and_a_print_through_fills_outright():
    # 30 contracts ahead when it joins (end of minute 1); prints that sell YES at 40c: 20 (queue 30 -> 10),
    # then 15 (10 ahead, 5 for us), then a print through at 39c fills the rest
    level = [30, 30, 30, 10, 0, 0, 0, 0, 0, 0, 0, 0]
    t = tape([(3, 0.40, 20, False), (4, 0.40, 15, False), (6, 0.39, 8, False)], level)
    assert fills(t) == {4: 5.0, 6: 5.0}
    # the candle model on the same prints: half of everything printed at or through 40c, from the first minute
    assert fills(t, queue_model=False) == {3: 10.0}


def test_prints_on_the_other_side_never_fill_a_yes_bid():
    level = [30] * N
    t = tape([(3, 0.40, 50, True), (4, 0.41, 50, True)], level)
    assert fills(t) == {}


def test_cancels_leave_pro_rata_from_ahead_and_additions_join_behind():
    # joins behind 100; the level doubles (all behind us), then halves with no print: 100 cancelled, half of
    # them (the share ahead: 100 of 200) from ahead -> 50 ahead; then 60 sold at 40c: 10 for us
    level = [100, 100, 200, 100, 100, 100, 100, 100, 100, 100, 100, 100]
    t = tape([(5, 0.40, 60, False)], level)
    assert fills(t) == {5: 10.0}


def test_a_gap_loses_the_queue_position_and_nothing_fills_after_it():
    level = np.array([5, 5, 5, np.nan, 5, 5, 5, 5, 5, 5, 5, 5], dtype=float)
    t = tape([(5, 0.40, 50, False)], level)
    assert fills(t) == {}
    # not known when it joins: the candle model instead
    unknown_start = np.array([np.nan] * 3 + [5.0] * 9)
    assert fills(tape([(5, 0.40, 50, False)], unknown_start)) == {5: 10.0}


def test_a_no_bid_queues_at_its_own_price_and_is_hit_by_yes_buyers():
    t = tape([(3, 0.60, 12, True)], None)
    book = np.zeros((N, 1, 2, 100), dtype=np.float32)
    book[:, 0, 1, 40] = 4  # 4 contracts ahead on the NO bid at 40c (a YES ask at 60c)
    t.book = book
    assert fills(t, limit=0.40, side="no") == {3: 8.0}


def test_the_bridge_fills_a_bar_that_went_through_and_rarely_one_that_only_touched():
    # open 0.45, high 0.46, low 0.40, close 0.44: the price touched 40c; a bridge from 0.45 to 0.44 with the
    # Parkinson variance of a 6c range goes half a cent through 40c with probability exp(-2 * 0.055 * 0.045 / var)
    var = 0.06 ** 2 / (4 * np.log(2))
    touched = tape(bar=(0.45, 0.46, 0.40, 0.44))
    p = bridge_through(touched, slice(2, 3), 0, 0.40, "yes")[0]
    assert p == pytest.approx(np.exp(-2 * 0.055 * 0.045 / var)) and 0.02 < p < 0.03
    assert bridge_through(tape(bar=(0.45, 0.46, 0.41, 0.44)), slice(2, 3), 0, 0.40, "yes")[0] == 0.0  # never reached
    assert bridge_through(tape(bar=(0.45, 0.46, 0.38, 0.39)), slice(2, 3), 0, 0.40, "yes")[0] == 1.0  # closed through
    # a NO bid at 58c is a YES ask at 42c: the mirror image
    assert bridge_through(tape(bar=(0.37, 0.42, 0.36, 0.38)), slice(2, 3), 0, 0.42, "no")[0] == pytest.approx(
        np.exp(-2 * (0.425 - 0.37) * (0.425 - 0.38) / var))
    # in the fill: that share of each bar's 100 contracts, times the queue share 0.5, until the 10 are done
    # ("touched means filled" took all 10 in the first minute)
    got = fills(touched, size=10.0)
    assert list(got) == list(range(2, 12)) and got[2] == round(0.5 * 100 * p, 2) == 1.1
    assert sum(got.values()) == pytest.approx(10.0, abs=0.011)


def test_a_brackets_prints_are_found_by_minute_in_the_tapes_order_within_one():
    """The maker fills look prints up by bracket and minute range: the same prints a mask over the whole tape
    selects, ordered by minute and, within a minute, as the tape has them (so the volumes add in one order)."""
    rng = np.random.default_rng(3)
    rows, brackets = rng.integers(0, N, 300), rng.integers(0, 3, 300)
    t = dataclasses.replace(tape(), print_row=rows, print_bracket=brackets, print_price=np.full(300, 0.4),
                            print_count=np.ones(300))
    for b, first, last in ((0, 0, N - 1), (1, 3, 7), (2, 5, 5), (1, 9, 4), (5, 0, N - 1)):
        mask = np.flatnonzero((brackets == b) & (rows >= first) & (rows <= last))
        want = mask[np.argsort(rows[mask], kind="stable")]
        assert t.prints_between(b, first, last).tolist() == want.tolist()
    assert dataclasses.replace(tape(), print_row=np.array([], int), print_bracket=np.array([], int)).prints_between(0, 0, N).size == 0
