"""Rebuild each market's order book from recorded WebSocket messages and sample it once a minute.

Input: one city-day's recorded rows in the order they were received (``recorder.segments`` columns). A
market's book is its last ``orderbook_snapshot`` plus the ``orderbook_delta`` rows after it, both YES and NO
bids by cent; the YES ask is 100 minus the best NO bid.

When the book is known at an instant T of the exchange's clock:
- from its snapshot on: a snapshot counts from the moment it was received (its send time is not in the
  message, and is no later), and the deltas after it count at their own stamps (``ts_ms``);
- while the stream was complete up to T. The stream between two ``gap`` rows is one piece; the exchange
  sends a subscription's messages in the order of their stamps, so everything stamped before the last
  delta received in a piece was received, and a piece is complete up to that stamp. A ``heartbeat`` (the
  recorder's pong from the exchange: everything the exchange sent before it has arrived) extends that to
  its receive time less the longest delay seen between a delta's stamp and its receipt. After a gap
  nothing is known until the market's next snapshot; after the last row, nothing;
- and no level of it went negative (a book known to be wrong).
A minute gets a row only if its book is known at its end (``minute_ts``, as the candles are: the state after
every change stamped before it), and ``book_ok_share`` says how much of the minute it was known: the share of
its 60 one-second marks, its end included, at which the book was known.

Sampled per minute: best bid and ask and their sizes, depth over the best 3 levels of each side, spread,
queue imbalance at the best level, and order-flow imbalance (Cont, Kukanov and Stoikov's OFI at the best
level, summed over the book's changes stamped within the minute).
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

PRICES = 100
SIDES = ("yes", "no")
BOOK_COLUMNS = ["minute_ts", "market_ticker", "yes_bid", "yes_ask", "yes_bid_size", "yes_ask_size", "bid_depth3",
                "ask_depth3", "spread", "queue_imbalance", "ofi", "book_ok_share"]


def stream_horizon(records: pd.DataFrame) -> np.ndarray:
    """Per row: the exchange time (ms) up to which the piece of stream it belongs to (between gap rows) is
    known to be complete (module docstring)."""
    kind = records["kind"].to_numpy(object)
    n = kind.size
    if not n:
        return np.zeros(0, np.int64)
    recv = records["clock_ms"].to_numpy("int64")
    ts = records["ts_ms"].to_numpy("int64")
    delta = (kind == "orderbook_delta") & (ts >= 0)
    piece = np.cumsum(kind == "gap")
    lag = int((recv[delta] - ts[delta]).max()) if delta.any() else 0
    reach = np.full(n, np.iinfo(np.int64).min)
    reach[delta] = ts[delta]
    alive = np.isin(kind, ("heartbeat", "orderbook_snapshot"))
    reach[alive] = recv[alive] - max(lag, 0)
    horizon = np.full(piece.max() + 1, np.iinfo(np.int64).min)
    np.maximum.at(horizon, piece, reach)
    return horizon[piece]


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


def market_states(records: pd.DataFrame, ticker: str) -> dict[str, np.ndarray]:
    """The market's snapshots and deltas in receive order: ``states`` (the book after each, n x 2 x PRICES),
    ``at`` (ms from which each counts: a snapshot's receipt, a delta's stamp, never before the snapshot it
    follows), ``epoch`` (the position of the snapshot each follows; -1 before any), ``ok`` (no level negative
    since that snapshot) and ``horizon`` (how far the stream of that snapshot is complete)."""
    kind = records["kind"].to_numpy(object)
    mine = (records["market_ticker"].to_numpy(object) == ticker) & np.isin(kind, ("orderbook_snapshot", "orderbook_delta"))
    idx = np.nonzero(mine)[0]
    n = idx.size
    is_snap = kind[idx] == "orderbook_snapshot"
    recv = records["clock_ms"].to_numpy("int64")[idx]
    ts = records["ts_ms"].to_numpy("int64")[idx]
    inc = np.zeros((n, 2, PRICES))
    d = np.nonzero(~is_snap)[0]
    side = (records["side"].to_numpy(object)[idx[d]] == "no").astype(int)
    price = records["price_cents"].to_numpy("int64")[idx[d]]
    np.add.at(inc, (d, side, np.clip(price, 0, PRICES - 1)), records["quantity"].to_numpy(float)[idx[d]])
    cum = np.cumsum(inc, axis=0)
    epoch = np.maximum.accumulate(np.where(is_snap, np.arange(n), -1)) if n else np.zeros(0, int)
    started = epoch >= 0
    base = np.zeros((n, 2, PRICES))
    raw = records["raw"].to_numpy(object)
    snaps = np.nonzero(is_snap)[0]
    if snaps.size:
        table = np.stack([snapshot_levels(raw[idx[k]]) for k in snaps])
        base[started] = table[np.searchsorted(snaps, epoch[started])]
    states = base + cum - np.where(started[:, None, None], cum[np.maximum(epoch, 0)], 0.0)
    bad = np.zeros(n, bool)
    bad[d] = (price < 1) | (price >= PRICES)
    bad |= (states < -1e-9).any(axis=(1, 2))
    last_bad = np.maximum.accumulate(np.where(bad, np.arange(n), -1)) if n else np.zeros(0, int)
    at = np.where(is_snap, recv, ts)
    at = np.maximum.accumulate(at) if n else at  # never before a row received earlier (its snapshot included)
    horizon = stream_horizon(records)[idx] if n else np.zeros(0, np.int64)
    horizon = np.where(started, horizon[np.maximum(epoch, 0)], np.iinfo(np.int64).min)
    return {"states": np.maximum(states, 0.0), "at": at, "epoch": epoch, "ok": started & (last_bad < epoch),
            "horizon": horizon, "is_snap": is_snap}


def state_at(m: dict[str, np.ndarray], when_ms: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each instant: the position of the market's state in force (-1: none) and whether it is known."""
    n = m["at"].size
    if not n:
        return np.full(when_ms.size, -1), np.zeros(when_ms.size, bool)
    snaps = np.nonzero(m["is_snap"])[0]
    if not snaps.size:
        return np.full(when_ms.size, -1), np.zeros(when_ms.size, bool)
    # the latest snapshot received before the instant, then its epoch's last change stamped before it
    k = np.searchsorted(m["at"][snaps], when_ms, side="left") - 1
    snap = np.where(k >= 0, snaps[np.maximum(k, 0)], -1)
    nxt = np.where(k + 1 < snaps.size, snaps[np.minimum(k + 1, snaps.size - 1)], n)
    # within an epoch the changes' times never decrease (the stream's order): the last one before the instant
    pos = np.searchsorted(m["at"], when_ms, side="left") - 1
    pos = np.clip(np.minimum(pos, nxt - 1), np.maximum(snap, 0), None)
    pos = np.where(snap >= 0, pos, -1)
    known = (snap >= 0) & (when_ms <= m["horizon"][np.maximum(pos, 0)]) & m["ok"][np.maximum(pos, 0)]
    return pos, known


def _ofi(bid: np.ndarray, bid_q: np.ndarray, ask: np.ndarray, ask_q: np.ndarray) -> np.ndarray:
    """Cont-Kukanov-Stoikov order-flow imbalance of each change (the first is 0)."""
    e = np.zeros(bid.size)
    if bid.size > 1:
        b0, b1, qb0, qb1 = bid[:-1], bid[1:], bid_q[:-1], bid_q[1:]
        a0, a1, qa0, qa1 = ask[:-1], ask[1:], ask_q[:-1], ask_q[1:]
        e[1:] = qb1 * (b1 >= b0) - qb0 * (b1 <= b0) - qa1 * (a1 <= a0) + qa0 * (a1 >= a0)
    return e


def rebuild_minutes(records: pd.DataFrame, tickers: list[str], minute_ends: pd.DatetimeIndex) -> pd.DataFrame:
    """One row per market and minute whose book is known at the minute's end (see the module docstring)."""
    if records.empty or len(minute_ends) == 0:
        return pd.DataFrame({c: pd.Series(dtype="float64") for c in BOOK_COLUMNS})
    end_ms = minute_ends.asi8 // 1_000_000
    # the minute's 60 one-second marks, its end the last: a row (known at the end) always has a share > 0
    seconds = (end_ms[:, None] - 1000 * np.arange(59, -1, -1)[None, :]).ravel()
    frames = []
    for ticker in tickers:
        m = market_states(records, ticker)
        pos, ok_end = state_at(m, end_ms)
        if not ok_end.any():
            continue
        share = state_at(m, seconds)[1].reshape(len(end_ms), 60).mean(axis=1)
        states = m["states"]
        bid, bid_q = _best(states, 0)
        no_bid, ask_q = _best(states, 1)
        ask = np.where(no_bid > 0, PRICES - no_bid, PRICES)
        e = _ofi(bid, bid_q, ask, ask_q)
        counted = ~m["is_snap"] & np.concatenate([[False], m["epoch"][1:] == m["epoch"][:-1]]) & m["ok"]
        counted &= m["at"] <= m["horizon"]
        e = np.where(counted, e, 0.0)
        order = np.argsort(m["at"], kind="stable")
        t_sorted, csum = m["at"][order], np.concatenate([[0.0], np.cumsum(e[order])])
        ofi = csum[np.searchsorted(t_sorted, end_ms, side="left")] - csum[np.searchsorted(t_sorted, end_ms - 60_000, side="left")]
        s = pos[ok_end]
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


def book_at_minute_ends(records: pd.DataFrame, ticker: str, minute_ends: pd.DatetimeIndex) -> tuple[np.ndarray, np.ndarray]:
    """The whole rebuilt book (minutes x 2 x PRICES) and whether it is known, at each minute's end: what a
    check against the exchange's own book compares."""
    m = market_states(records, ticker)
    pos, ok = state_at(m, minute_ends.asi8 // 1_000_000)
    books = m["states"][np.maximum(pos, 0)] if m["at"].size else np.zeros((len(pos), 2, PRICES))
    return books, ok


LEVEL_COLUMNS = ["minute_ts", "market_ticker", "side", "price", "size"]


def level_rows(records: pd.DataFrame, tickers: list[str], minute_ends: pd.DatetimeIndex) -> pd.DataFrame:
    """Every resting level (side, price in dollars, contracts) of each market at each minute's end where the
    book is known there: the depth the queue-aware fill model reads. Known minutes with an empty side have no
    row for it; which minutes are known is ``rebuild_minutes``' rows."""
    frames = []
    for ticker in tickers:
        books, ok = book_at_minute_ends(records, ticker, minute_ends) if len(records) else (None, None)
        if ok is None or not ok.any():
            continue
        m, side, price = np.nonzero(np.where(ok[:, None, None], books, 0.0) > 0)
        frames.append(pd.DataFrame({"minute_ts": minute_ends[m], "market_ticker": ticker,
                                    "side": np.array(SIDES)[side], "price": price / 100, "size": books[m, side, price]}))
    if not frames:
        return pd.DataFrame({c: pd.Series(dtype="float64") for c in LEVEL_COLUMNS})
    return pd.concat(frames, ignore_index=True)[LEVEL_COLUMNS]
