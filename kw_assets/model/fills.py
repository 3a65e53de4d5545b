"""A conservative fill model on the minute clock (no order book history exists, so fills are inferred).

- Latency: an order decided at minute t (the row covering (t-60 s, t]) can fill from minute t+1 on.
- Taker: at the fill minute's ask (yes_ask close; NO side: 1 - yes_bid) when known, else the last price
  plus a fixed half spread (2 cents); plus ``taker_slippage``; at most that minute's traded volume;
  what does not fill is cancelled.
- Maker: a resting bid fills only when later prints trade at or through its price, pro-rated by
  ``maker_queue_share`` of the volume printed at or through it (never more than that volume), minute by
  minute until it expires after ``maker_ttl_min``. Without trade prints (website exports) the candle's
  low/high and volume stand in.
- Block trades never fill anyone's resting order.
Prices are YES-equivalent internally; a NO order at price q is a YES order at 1 - q on the other side.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from kw_assets.model.panel import by_minute_and_bracket


@dataclass(frozen=True)
class FillConfig:
    latency_min: int = 1
    taker_slippage: float = 0.01
    maker_queue_share: float = 0.5
    maker_ttl_min: int = 10


@dataclass
class Tape:
    """Per-minute market state of one event, (minutes x brackets), from ``minute_panel`` and trades."""

    minutes: pd.DatetimeIndex
    tickers: np.ndarray
    yes_bid: np.ndarray
    yes_ask: np.ndarray
    last: np.ndarray
    mid: np.ndarray
    volume: np.ndarray
    price_low: np.ndarray
    price_high: np.ndarray
    half_spread: float
    print_row: np.ndarray  # non-block prints: minute row, bracket, yes price, contracts
    print_bracket: np.ndarray
    print_price: np.ndarray
    print_count: np.ndarray

    @property
    def n_minutes(self) -> int:
        return len(self.minutes)

    @classmethod
    def build(cls, panel: pd.DataFrame, trades: pd.DataFrame, candles: pd.DataFrame | None = None,
              half_spread: float = 0.02) -> "Tape":
        panel = by_minute_and_bracket(panel)
        tickers = panel["market_ticker"].drop_duplicates().to_numpy()
        minutes = pd.DatetimeIndex(panel["minute_ts"].drop_duplicates())
        shape = (len(minutes), len(tickers))
        grab = lambda c: panel[c].to_numpy(float).reshape(shape)  # noqa: E731
        half = half_spread  # a constant: a median over the day would use spreads from the future
        col = {t: j for j, t in enumerate(tickers)}
        t = trades[~trades["is_block_trade"].astype(bool) & trades["market_ticker"].isin(col)] if len(trades) else trades
        t0 = minutes[0].value if len(minutes) else 0
        rows = np.ceil((t["created_time"].astype("int64").to_numpy() - t0) / 60e9).astype(int) if len(t) else np.array([], int)
        keep = (rows >= 0) & (rows < len(minutes))
        low = np.full(shape, np.nan)
        high = np.full(shape, np.nan)
        if candles is not None and len(candles):
            c = candles[candles["market_ticker"].isin(col)]
            r = ((c["end_period_ts"].astype("int64").to_numpy() - t0) // 60_000_000_000).astype(int)
            ok = (r >= 0) & (r < len(minutes))
            cj = c["market_ticker"].map(col).to_numpy()[ok]
            low[r[ok], cj] = c["price_low"].to_numpy(float)[ok]
            high[r[ok], cj] = c["price_high"].to_numpy(float)[ok]
        return cls(minutes, tickers, grab("yes_bid"), grab("yes_ask"), grab("last_price"), grab("mid"), grab("volume"),
                   low, high, half, rows[keep], t["market_ticker"].map(col).to_numpy()[keep] if len(t) else rows[keep],
                   t["yes_price"].to_numpy(float)[keep] if len(t) else np.array([]),
                   t["count"].to_numpy(float)[keep] if len(t) else np.array([]))

    def taker_price(self, row: int, b: int, side: str, action: str) -> float:
        """Price paid (buy) or received (sell) per contract on ``side`` at ``row``, before slippage."""
        bid, ask, last = self.yes_bid[row, b], self.yes_ask[row, b], self.last[row, b]
        if action == "buy":
            yes_cost = ask if np.isfinite(ask) and ask < 1 else last + self.half_spread  # lift the YES ask
            no_cost = (1 - bid) if np.isfinite(bid) and bid > 0 else (1 - last) + self.half_spread  # lift the NO ask
            return yes_cost if side == "yes" else no_cost
        yes_get = bid if np.isfinite(bid) and bid > 0 else last - self.half_spread  # hit the YES bid
        no_get = (1 - ask) if np.isfinite(ask) and ask < 1 else (1 - last) - self.half_spread
        return yes_get if side == "yes" else no_get


def taker_fill(tape: Tape, decided_row: int, b: int, side: str, action: str, size: float,
               cfg: FillConfig) -> tuple[int, float, float]:
    """(fill row, price, contracts) of an immediate-or-cancel order; contracts 0 when nothing fills."""
    row = decided_row + cfg.latency_min
    if row >= tape.n_minutes:
        return row, np.nan, 0.0
    price = tape.taker_price(row, b, side, action)
    price = price + cfg.taker_slippage if action == "buy" else price - cfg.taker_slippage
    volume = tape.volume[row, b]
    qty = float(min(size, volume)) if np.isfinite(volume) else 0.0
    if not np.isfinite(price) or not 0 < price < 1:
        return row, np.nan, 0.0
    return row, round(float(price), 6), qty


def maker_fill(tape: Tape, decided_row: int, b: int, side: str, limit: float, size: float,
               cfg: FillConfig) -> tuple[np.ndarray, np.ndarray]:
    """Rows and contracts filled for a resting buy on ``side`` at ``limit`` (that side's price)."""
    first, last = decided_row + cfg.latency_min, min(decided_row + cfg.maker_ttl_min, tape.n_minutes - 1)
    if first > last:
        return np.array([], int), np.array([])
    n = last - first + 1
    yes_limit = limit if side == "yes" else 1 - limit
    if len(tape.print_row):
        sel = (tape.print_bracket == b) & (tape.print_row >= first) & (tape.print_row <= last)
        through = tape.print_price[sel] <= yes_limit + 1e-9 if side == "yes" else tape.print_price[sel] >= yes_limit - 1e-9
        vol = np.bincount(tape.print_row[sel][through] - first, weights=tape.print_count[sel][through], minlength=n)
    else:  # no prints: the candle's range and volume stand in
        rng = slice(first, last + 1)
        touched = tape.price_low[rng, b] <= yes_limit if side == "yes" else tape.price_high[rng, b] >= yes_limit
        vol = np.where(touched, np.nan_to_num(tape.volume[rng, b]), 0.0)
    available = cfg.maker_queue_share * vol
    cum = np.minimum(np.cumsum(available), size)
    got = np.diff(np.concatenate([[0.0], cum]))
    rows = np.nonzero(got > 1e-12)[0]
    return rows + first, np.round(got[rows], 2)
