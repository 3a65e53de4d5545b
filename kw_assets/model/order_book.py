"""Rebuild each market's order book from recorded WebSocket messages and sample it once a minute.

Input: one city-day's recorded rows in the order they were received (``recorder.segments`` columns). A
market's book is its last ``orderbook_snapshot`` plus the ``orderbook_delta`` rows after it, both YES and NO
bids by cent; the YES ask is 100 minus the best NO bid.

Time: a delta, trade or ticker carries the exchange's stamp (``ts_ms``); a snapshot or a marker only the
recorder's clock. Each row's time is the running maximum of those, in receive order, so a row never counts
as earlier than one received before it.

What is known: a market's book is known from its snapshot until the next ``gap`` marker (or a level that
would go negative: a book known to be wrong). Between two rows the book is known only if they are at most
``silence_ms`` apart and the later one is not a gap (a gap means something may have been missed since the
row before it); after the last row nothing is known. A minute gets a row only if its book is known at its
end, and ``book_ok_share`` says how much of the minute it was known.

Sampled per minute (the state in force at the minute's end, ``minute_ts``, as the candles are): best bid
and ask and their sizes, depth over the best 3 levels of each side, spread, queue imbalance at the best
level, and order-flow imbalance (Cont, Kukanov and Stoikov's OFI at the best level, summed over the
book's changes within the minute).
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

PRICES = 100
SIDES = ("yes", "no")
TIMED = ("orderbook_delta", "trade", "ticker")
BOOK_COLUMNS = ["minute_ts", "market_ticker", "yes_bid", "yes_ask", "yes_bid_size", "yes_ask_size", "bid_depth3",
                "ask_depth3", "spread", "queue_imbalance", "ofi", "book_ok_share"]
SILENCE_MS = 30_000


def effective_ms(records: pd.DataFrame) -> np.ndarray:
    kind = records["kind"].to_numpy(object)
    ts = records["ts_ms"].to_numpy("int64")
    timed = np.isin(kind, TIMED) & (ts >= 0)
    t = np.where(timed, ts, records["clock_ms"].to_numpy("int64"))
    return np.maximum.accumulate(t) if t.size else t


def snapshot_levels(raw: str) -> np.ndarray:
    """A snapshot message's levels: 2 x PRICES contracts (YES bids, NO bids by cent)."""
    msg = json.loads(raw)["msg"]
    out = np.zeros((2, PRICES))
    for k, side in enumerate(SIDES):
        for price, count in msg.get(f"{side}_dollars_fp") or []:
            out[k, int(round(float(price) * 100))] = float(count)
    return out


def _best(states: np.ndarray, side: int) -> tuple[np.ndarray, np.ndarray]:
    """Best bid price (cents, 0 if none) and its size, per state."""
    has = states[:, side, :] > 0
    top = PRICES - 1 - np.argmax(has[:, ::-1], axis=1)
    top = np.where(has.any(axis=1), top, 0)
    return top, np.where(top > 0, states[np.arange(len(states)), side, top], 0.0)


def _depth(states: np.ndarray, side: int, levels: int = 3) -> np.ndarray:
    """Contracts over the best ``levels`` non-empty price levels of a side."""
    sizes = states[:, side, ::-1]  # best (highest) price first
    rank = np.cumsum(sizes > 0, axis=1)
    return np.where((sizes > 0) & (rank <= levels), sizes, 0.0).sum(axis=1)


def good_intervals(eff: np.ndarray, kind: np.ndarray, silence_ms: int = SILENCE_MS) -> np.ndarray:
    """For each row k, whether the stream is continuous from it to row k+1 (False after the last row)."""
    ok = np.zeros(eff.size, bool)
    if eff.size > 1:
        ok[:-1] = (np.diff(eff) <= silence_ms) & (kind[1:] != "gap")
    return ok


def market_states(records: pd.DataFrame, ticker: str) -> dict[str, np.ndarray]:
    """The market's book after each of its own rows and every gap (receive order): ``idx`` (row numbers),
    ``states`` (n x 2 x PRICES) and ``valid`` (after a snapshot, before any gap, never negative)."""
    kind = records["kind"].to_numpy(object)
    mine = (records["market_ticker"].to_numpy(object) == ticker) & np.isin(kind, ("orderbook_snapshot", "orderbook_delta"))
    idx = np.nonzero(mine | (kind == "gap"))[0]
    k = kind[idx]
    n = idx.size
    is_snap, is_gap, is_delta = k == "orderbook_snapshot", k == "gap", k == "orderbook_delta"
    inc = np.zeros((n, 2, PRICES))
    d = np.nonzero(is_delta)[0]
    side = (records["side"].to_numpy(object)[idx[d]] == "no").astype(int)
    price = records["price_cents"].to_numpy("int64")[idx[d]]
    np.add.at(inc, (d, side, np.clip(price, 0, PRICES - 1)), records["quantity"].to_numpy(float)[idx[d]])
    cum = np.cumsum(inc, axis=0)
    epoch_start = np.maximum.accumulate(np.where(is_snap | is_gap, np.arange(n), -1))
    base = np.zeros((n, 2, PRICES))
    raw = records["raw"].to_numpy(object)
    snaps = np.nonzero(is_snap)[0]
    levels = {int(s): snapshot_levels(raw[idx[s]]) for s in snaps}
    started = epoch_start >= 0
    if snaps.size:
        table = np.stack([levels[int(s)] for s in snaps])
        which = np.searchsorted(snaps, epoch_start, side="left")
        from_snap = started & np.isin(epoch_start, snaps)
        base[from_snap] = table[which[from_snap]]
    else:
        from_snap = np.zeros(n, bool)
    states = base + cum - np.where(started[:, None, None], cum[np.maximum(epoch_start, 0)], 0.0)
    bad_price = np.zeros(n, bool)
    bad_price[d] = (price < 1) | (price >= PRICES)
    negative = (states < -1e-9).any(axis=(1, 2)) | bad_price
    last_bad = np.maximum.accumulate(np.where(negative, np.arange(n), -1))
    valid = from_snap & (last_bad < epoch_start)
    return {"idx": idx, "states": np.maximum(states, 0.0), "valid": valid}


def _ofi(bid: np.ndarray, bid_q: np.ndarray, ask: np.ndarray, ask_q: np.ndarray) -> np.ndarray:
    """Cont-Kukanov-Stoikov order-flow imbalance of each change (the first is 0)."""
    e = np.zeros(bid.size)
    if bid.size > 1:
        b0, b1, qb0, qb1 = bid[:-1], bid[1:], bid_q[:-1], bid_q[1:]
        a0, a1, qa0, qa1 = ask[:-1], ask[1:], ask_q[:-1], ask_q[1:]
        e[1:] = qb1 * (b1 >= b0) - qb0 * (b1 <= b0) - qa1 * (a1 <= a0) + qa0 * (a1 >= a0)
    return e


def rebuild_minutes(records: pd.DataFrame, tickers: list[str], minute_ends: pd.DatetimeIndex,
                    silence_ms: int = SILENCE_MS) -> pd.DataFrame:
    """One row per market and minute whose book is known at the minute's end (see the module docstring)."""
    if records.empty or len(minute_ends) == 0:
        return pd.DataFrame({c: pd.Series(dtype="float64") for c in BOOK_COLUMNS})
    eff = effective_ms(records)
    kind = records["kind"].to_numpy(object)
    cont = good_intervals(eff, kind, silence_ms)
    end_ms = minute_ends.asi8 // 1_000_000
    # per second of each minute: which row is in force and whether the stream is continuous there
    seconds = (end_ms[:, None] - 1000 * np.arange(60, 0, -1)[None, :] + 500).ravel()
    at_sec = np.searchsorted(eff, seconds, side="left") - 1
    at_end = np.searchsorted(eff, end_ms, side="left") - 1  # the last row stamped before the minute's end
    frames = []
    for ticker in tickers:
        m = market_states(records, ticker)
        if not m["idx"].size:
            continue
        # the market's state in force at a global row r: its last own row (or gap) at or before r
        def state_at(rows: np.ndarray) -> np.ndarray:
            return np.searchsorted(m["idx"], rows, side="right") - 1

        def known(rows: np.ndarray) -> np.ndarray:
            s = state_at(rows)
            return (rows >= 0) & (s >= 0) & m["valid"][np.maximum(s, 0)] & cont[np.maximum(rows, 0)]

        share = known(at_sec).reshape(len(end_ms), 60).mean(axis=1)
        ok_end = known(at_end)
        if not ok_end.any():
            continue
        states = m["states"]
        bid, bid_q = _best(states, 0)
        no_bid, ask_q = _best(states, 1)
        ask = np.where(no_bid > 0, PRICES - no_bid, PRICES)
        e = _ofi(bid, bid_q, ask, ask_q)
        own_valid = m["valid"].copy()
        e = np.where(own_valid & np.concatenate([[False], own_valid[:-1]]), e, 0.0)
        e_time = eff[m["idx"]]
        csum = np.concatenate([[0.0], np.cumsum(e)])
        lo = np.searchsorted(e_time, end_ms - 60_000, side="left")
        hi = np.searchsorted(e_time, end_ms, side="left")
        ofi = csum[hi] - csum[lo]
        s = state_at(at_end)[ok_end]
        b, a = bid[s], ask[s]
        qb, qa = bid_q[s], ask_q[s]
        with np.errstate(invalid="ignore", divide="ignore"):
            imbalance = np.where(qb + qa > 0, (qb - qa) / (qb + qa), np.nan)
        frames.append(pd.DataFrame({
            "minute_ts": minute_ends[ok_end],
            "market_ticker": ticker,
            "yes_bid": np.where(b > 0, b / 100, np.nan), "yes_ask": np.where(a < PRICES, a / 100, np.nan),
            "yes_bid_size": qb, "yes_ask_size": qa,
            "bid_depth3": _depth(states[s], 0), "ask_depth3": _depth(states[s], 1),
            "spread": np.where((b > 0) & (a < PRICES), (a - b) / 100, np.nan),
            "queue_imbalance": imbalance, "ofi": ofi[ok_end], "book_ok_share": share[ok_end],
        }))
    if not frames:
        return pd.DataFrame({c: pd.Series(dtype="float64") for c in BOOK_COLUMNS})
    return pd.concat(frames, ignore_index=True)[BOOK_COLUMNS]


def book_at_minute_ends(records: pd.DataFrame, ticker: str, minute_ends: pd.DatetimeIndex,
                        silence_ms: int = SILENCE_MS) -> tuple[np.ndarray, np.ndarray]:
    """The whole rebuilt book (minutes x 2 x PRICES) and whether it is known, at each minute's end: what a
    check against the exchange's own book compares."""
    eff = effective_ms(records)
    cont = good_intervals(eff, records["kind"].to_numpy(object), silence_ms)
    m = market_states(records, ticker)
    at_end = np.searchsorted(eff, minute_ends.asi8 // 1_000_000, side="left") - 1
    s = np.searchsorted(m["idx"], at_end, side="right") - 1
    ok = (at_end >= 0) & (s >= 0) & m["valid"][np.maximum(s, 0)] & cont[np.maximum(at_end, 0)] if m["idx"].size else np.zeros(len(at_end), bool)
    books = m["states"][np.maximum(s, 0)] if m["idx"].size else np.zeros((len(at_end), 2, PRICES))
    return books, ok


LEVEL_COLUMNS = ["minute_ts", "market_ticker", "side", "price", "size"]


def level_rows(records: pd.DataFrame, tickers: list[str], minute_ends: pd.DatetimeIndex,
               silence_ms: int = SILENCE_MS) -> pd.DataFrame:
    """Every resting level (side, price in dollars, contracts) of each market at each minute's end where the
    book is known there: the depth the queue-aware fill model reads. Known minutes with an empty side have no
    row for it; which minutes are known is ``rebuild_minutes``' rows."""
    frames = []
    for ticker in tickers:
        books, ok = book_at_minute_ends(records, ticker, minute_ends, silence_ms) if len(records) else (None, None)
        if ok is None or not ok.any():
            continue
        m, side, price = np.nonzero(np.where(ok[:, None, None], books, 0.0) > 0)
        frames.append(pd.DataFrame({"minute_ts": minute_ends[m], "market_ticker": ticker,
                                    "side": np.array(SIDES)[side], "price": price / 100, "size": books[m, side, price]}))
    if not frames:
        return pd.DataFrame({c: pd.Series(dtype="float64") for c in LEVEL_COLUMNS})
    return pd.concat(frames, ignore_index=True)[LEVEL_COLUMNS]
