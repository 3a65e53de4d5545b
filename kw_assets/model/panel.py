"""The minute panel: a regular 1-minute grid over an event's trading window, one row per
minute x bracket, built causally from sparse candles and trades.

Point-in-time rules: the row stamped t describes the minute (t - 60 s, t] and uses only data
stamped <= t. Quotes and last prices are forward-filled, never backward-filled (a minute before a
bracket's first quote is NaN). Velocity and acceleration are exponentially weighted differences
(adjust=False, so each value depends only on the past). Block trades are excluded from VWAP,
signed volume and counts.

Order-flow features come from the recorded book (``orderbook_l2``) where one exists: ``ofi`` (order-flow
imbalance over the minute) and ``queue_imbalance`` (at the minute's end). They are NaN for a minute whose
book was not known at its end, and never filled from another minute.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from kw_assets.model.stamps import utc_stamps

PANEL_COLUMNS = ["minute_ts", "market_ticker", "bracket_index", "yes_bid", "yes_ask", "last_price", "mid", "spread",
                 "volume", "velocity", "acceleration", "clv", "p_norm", "mid_sum", "ras", "vwap", "signed_volume",
                 "trade_count", "ofi", "queue_imbalance"]
# what ``build_panel`` reads of the event's candles and trades (the rest, e.g. trade ids, it never looks at)
CANDLE_INPUTS = ("market_ticker", "end_period_ts", "yes_bid_close", "yes_ask_close", "price_close", "price_previous",
                 "price_high", "price_low", "volume")
TRADE_INPUTS = ("market_ticker", "created_time", "count", "yes_price", "taker_outcome_side", "is_block_trade")


@dataclass(frozen=True)
class PanelConfig:
    velocity_span: float = 5.0  # minutes, EWM span of the first difference of mid
    acceleration_span: float = 10.0  # minutes, EWM span of the first difference of velocity


def minute_grid(markets: pd.DataFrame) -> pd.DatetimeIndex:
    """End-stamped minutes covering [first open, last close]."""
    start = markets["open_time"].min().ceil("min") + pd.Timedelta(minutes=1)
    end = markets["close_time"].max().ceil("min")
    return pd.date_range(start, end, freq="min")


def _ffill(a: np.ndarray) -> np.ndarray:
    """Forward-fill NaNs down each column (axis 0); leading NaNs stay NaN."""
    valid = ~np.isnan(a)
    idx = np.where(valid, np.arange(a.shape[0])[:, None], 0)
    np.maximum.accumulate(idx, axis=0, out=idx)
    out = a[idx, np.arange(a.shape[1])[None, :]]
    seen = np.maximum.accumulate(valid, axis=0)
    return np.where(seen, out, np.nan)


def _scatter(n_min: int, n_br: int, rows: np.ndarray, cols: np.ndarray, values: np.ndarray) -> np.ndarray:
    out = np.full((n_min, n_br), np.nan)
    out[rows, cols] = values
    return out


def _ewm(a: np.ndarray, span: float) -> np.ndarray:
    return pd.DataFrame(a).ewm(span=span, adjust=False, ignore_na=True).mean().to_numpy()


def by_minute_and_bracket(frame: pd.DataFrame, time_column: str = "minute_ts") -> pd.DataFrame:
    """``frame`` sorted by time, then bracket: as is when it already is (the warehouse returns a partition's
    rows in the order they were written, which is this one), so the common case costs one pass."""
    t = pd.DatetimeIndex(frame[time_column]).asi8
    b = frame["bracket_index"].to_numpy()
    if len(t) < 2 or bool(np.all((t[1:] > t[:-1]) | ((t[1:] == t[:-1]) & (b[1:] > b[:-1])))):
        return frame
    return frame.sort_values([time_column, "bracket_index"])


def grid_minutes(frame: pd.DataFrame, time_column: str = "minute_ts") -> pd.DatetimeIndex:
    """The distinct minutes of a frame sorted by time (``by_minute_and_bracket``), in order: its
    ``drop_duplicates`` without hashing every row."""
    t = pd.DatetimeIndex(frame[time_column])
    i8 = t.asi8
    first = np.ones(len(i8), bool)
    first[1:] = i8[1:] != i8[:-1]
    return t[first]


def neighbour_mean(a: np.ndarray) -> np.ndarray:
    """Mean of each bracket's neighbours in strike order (tails have one neighbour), ignoring NaNs."""
    left = np.full_like(a, np.nan)
    right = np.full_like(a, np.nan)
    left[:, 1:] = a[:, :-1]
    right[:, :-1] = a[:, 1:]
    total = np.nan_to_num(left) + np.nan_to_num(right)
    count = (~np.isnan(left)).astype(int) + (~np.isnan(right)).astype(int)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / count, np.nan)


def build_panel(markets: pd.DataFrame, candles: pd.DataFrame, trades: pd.DataFrame,
                config: PanelConfig = PanelConfig(), book: pd.DataFrame | None = None) -> pd.DataFrame:
    """Long panel (minute x bracket) for one event; see the module docstring for the rules. ``book``: the
    event's ``orderbook_l2`` rows (None or empty: no recorded book)."""
    markets = markets.sort_values("bracket_index")
    tickers = markets["market_ticker"].to_numpy()
    col_of = {t: j for j, t in enumerate(tickers)}
    grid = minute_grid(markets)
    n_min, n_br = len(grid), len(tickers)
    t0 = grid[0].value

    c = candles[candles["market_ticker"].isin(col_of)]
    rows = ((c["end_period_ts"].astype("int64").to_numpy() - t0) // 60_000_000_000).astype(int)
    keep = (rows >= 0) & (rows < n_min)
    rows, c = rows[keep], c[keep]
    cols = c["market_ticker"].map(col_of).to_numpy()

    def field(name: str) -> np.ndarray:
        return _scatter(n_min, n_br, rows, cols, c[name].to_numpy(float))

    has_candle = _scatter(n_min, n_br, rows, cols, np.ones(len(rows))) == 1
    bid, ask = _ffill(field("yes_bid_close")), _ffill(field("yes_ask_close"))
    traded_close = field("price_close")
    last = _ffill(np.where(np.isnan(traded_close), field("price_previous"), traded_close))
    empty_book = (bid <= 0) & (ask >= 1)
    quoted = ~np.isnan(bid) & ~np.isnan(ask) & ~empty_book
    mid = np.where(quoted, (bid + ask) / 2, last)
    spread = np.where(quoted, ask - bid, np.nan)

    raw_volume = field("volume")
    if c["volume"].notna().any():
        volume = np.where(has_candle, raw_volume, 0.0)  # no candle = no activity in that minute
    else:
        volume = raw_volume  # a source without volumes (website exports): unknown, not zero

    p_hi, p_lo = field("price_high"), field("price_low")
    rng = p_hi - p_lo
    with np.errstate(invalid="ignore", divide="ignore"):
        clv = np.where(rng > 0, (traded_close - p_lo) / rng, np.where(np.isnan(rng), np.nan, 0.5))

    velocity = _ewm(np.diff(mid, axis=0, prepend=np.nan), config.velocity_span)
    acceleration = _ewm(np.diff(velocity, axis=0, prepend=np.nan), config.acceleration_span)
    ras = acceleration - neighbour_mean(acceleration)

    mid_sum = np.nansum(mid, axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        p_norm = np.where(np.isnan(mid), np.nan, mid / np.where(mid_sum > 0, mid_sum, np.nan))
    mid_sum = np.where(np.isnan(mid).all(axis=1, keepdims=True), np.nan, mid_sum)

    vwap, signed, count = _trade_features(trades, col_of, t0, n_min, n_br)
    ofi, imbalance = _book_features(book, col_of, t0, n_min, n_br)

    return pd.DataFrame({
        "minute_ts": utc_stamps(np.repeat(grid.asi8, n_br)),
        "market_ticker": np.tile(tickers, n_min),
        "bracket_index": np.tile(markets["bracket_index"].to_numpy(), n_min),
        "yes_bid": bid.ravel(), "yes_ask": ask.ravel(), "last_price": last.ravel(), "mid": mid.ravel(),
        "spread": spread.ravel(), "volume": volume.ravel(), "velocity": velocity.ravel(),
        "acceleration": acceleration.ravel(), "clv": clv.ravel(), "p_norm": p_norm.ravel(),
        "mid_sum": np.repeat(mid_sum.ravel(), n_br), "ras": ras.ravel(),
        "vwap": vwap.ravel(), "signed_volume": signed.ravel(), "trade_count": count.ravel(),
        "ofi": ofi.ravel(), "queue_imbalance": imbalance.ravel(),
    }, columns=PANEL_COLUMNS)


def _book_features(book: pd.DataFrame | None, col_of: dict, t0: int, n_min: int, n_br: int):
    """OFI and queue imbalance on the grid from ``orderbook_l2`` rows (stamped at their minute's end)."""
    if book is None or not len(book):
        return np.full((n_min, n_br), np.nan), np.full((n_min, n_br), np.nan)
    b = book[book["market_ticker"].isin(col_of)]
    rows = ((pd.DatetimeIndex(b["minute_ts"]).asi8 - t0) // 60_000_000_000).astype(int)
    keep = (rows >= 0) & (rows < n_min)
    rows, b = rows[keep], b[keep]
    cols = b["market_ticker"].map(col_of).to_numpy()
    return (_scatter(n_min, n_br, rows, cols, b["ofi"].to_numpy(float)),
            _scatter(n_min, n_br, rows, cols, b["queue_imbalance"].to_numpy(float)))


def _trade_features(trades: pd.DataFrame, col_of: dict, t0: int, n_min: int, n_br: int):
    """Per minute (t-60s, t]: VWAP, taker-yes minus taker-no contracts, print count; block trades excluded."""
    t = trades[~trades["is_block_trade"].astype(bool) & trades["market_ticker"].isin(col_of)]
    ns = t["created_time"].astype("int64").to_numpy() - t0
    rows = np.ceil(ns / 60_000_000_000).astype(int)  # a print at exactly t belongs to the minute ending t
    keep = (rows >= 0) & (rows < n_min)
    rows, t = rows[keep], t[keep]
    cols = t["market_ticker"].map(col_of).to_numpy()
    flat = rows * n_br + cols
    size = n_min * n_br
    qty = t["count"].to_numpy(float)
    px = t["yes_price"].to_numpy(float)
    sign = np.where(t["taker_outcome_side"].to_numpy() == "yes", 1.0, -1.0)
    vol = np.bincount(flat, weights=qty, minlength=size)
    notional = np.bincount(flat, weights=qty * px, minlength=size)
    with np.errstate(invalid="ignore", divide="ignore"):
        vwap = np.where(vol > 0, notional / vol, np.nan)
    signed = np.bincount(flat, weights=qty * sign, minlength=size)
    count = np.bincount(flat, minlength=size).astype(float)
    return vwap.reshape(n_min, n_br), signed.reshape(n_min, n_br), count.reshape(n_min, n_br)
