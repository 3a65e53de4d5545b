"""A conservative fill model on the minute clock (no order book history exists, so fills are inferred).

- Latency: an order decided at minute t (the row covering (t-60 s, t]) can fill from minute t+1 on.
- Taker: at the fill minute's ask (yes_ask close; NO side: 1 - yes_bid) when known, else the last price
  plus a half spread: the recorded book's at that minute where the L2 recorder ran, else the median of the
  price regime from order books observed before the day (``model/spreads.py``), else 2 cents; plus
  ``taker_slippage``; at most that minute's traded volume; what does not fill is cancelled.
- Maker, where the recorded book (``orderbook_levels``) covers the minute the order joins, the queue
  model: the order joins the back of the queue at its price (the level's recorded size is ahead of it).
  Each minute, prints that hit its side at its price consume the queue ahead first and then the order;
  prints through its price fill it outright (up to their volume). Cancellations are pro-rata: the fewest
  cancels that explain the level's change (its drop beyond the prints, additions joining behind) leave from
  ahead of the order in proportion to the share of the level ahead of it. Partial fills are allowed; once
  the book is unknown again (a gap) the queue position is lost and nothing more fills.
- Maker otherwise: a resting bid fills only when later prints trade at or through its price, pro-rated by
  ``maker_queue_share`` of the volume printed at or through it (never more than that volume), minute by
  minute until it expires after ``maker_ttl_min``. Without trade prints (website exports), the candle: a
  Brownian bridge from the bar's open to its close, with the variance its high-low range implies
  (Parkinson), gives the chance the price went at least half a cent through the limit inside the bar, and
  that share of the bar's volume (times ``maker_queue_share``) is what can fill; a bar that only touched
  the limit fills less than one that went through it, and one that never reached it fills nothing.
- Block trades never fill anyone's resting order.
Prices are YES-equivalent internally; a NO order at price q is a YES order at 1 - q on the other side.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import pandas as pd

from kw_assets.model.panel import by_minute_and_bracket, grid_minutes
from kw_assets.model.spreads import DEFAULT_HALF_SPREAD, regime


@dataclass(frozen=True)
class FillConfig:
    latency_min: int = 1
    taker_slippage: float = 0.01
    maker_queue_share: float = 0.5
    maker_ttl_min: int = 10
    queue_model: bool = True  # the queue-aware maker fills where the recorded book covers the order


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
    half_spread: float | np.ndarray  # one for every price, or one per price regime (model/spreads.py)
    print_row: np.ndarray  # non-block prints: minute row, bracket, yes price, contracts
    print_bracket: np.ndarray
    print_price: np.ndarray
    print_count: np.ndarray
    print_yes_taker: np.ndarray | None = None  # the print's taker bought YES (it hit NO bids)
    price_open: np.ndarray | None = None
    price_close: np.ndarray | None = None
    book: np.ndarray | None = None  # minutes x brackets x (YES, NO) x cents: resting contracts at the minute's end, NaN unknown
    l2_half_spread: np.ndarray | None = None  # minutes x brackets: half the recorded book's spread, NaN unknown

    def half_spreads(self, rows: np.ndarray, b: int) -> np.ndarray:
        """The half spread a taker pays over the last price at ``rows`` of bracket ``b`` (see the docstring)."""
        last = self.last[rows, b]
        if np.ndim(self.half_spread) == 0:
            half = np.full(np.shape(last), float(self.half_spread))
        else:
            k = regime(last)
            half = np.where(k >= 0, np.asarray(self.half_spread)[np.maximum(k, 0)], DEFAULT_HALF_SPREAD)
        if self.l2_half_spread is not None:
            recorded = self.l2_half_spread[rows, b]
            half = np.where(np.isfinite(recorded), recorded, half)
        return half

    @property
    def n_minutes(self) -> int:
        return len(self.minutes)

    @classmethod
    def build(cls, panel: pd.DataFrame, trades: pd.DataFrame, candles: pd.DataFrame | None = None,
              half_spread: float | np.ndarray = DEFAULT_HALF_SPREAD, levels: pd.DataFrame | None = None,
              known: pd.DataFrame | None = None) -> "Tape":
        """``half_spread``: one, or one per price regime; ``levels`` / ``known``: the partition's
        ``orderbook_levels`` and ``orderbook_l2`` rows (the recorded book, the minutes it is known at and its
        spread), if any."""
        panel = by_minute_and_bracket(panel)
        tickers = panel["market_ticker"].drop_duplicates().to_numpy()
        minutes = grid_minutes(panel)
        shape = (len(minutes), len(tickers))
        grab = lambda c: panel[c].to_numpy(float).reshape(shape)  # noqa: E731
        half = half_spread  # never from this day's own future: a constant, or regimes observed before the day
        col = {t: j for j, t in enumerate(tickers)}
        t0 = minutes[0].value if len(minutes) else 0
        prints = {"row": np.array([], int), "bracket": np.array([], int), "price": np.array([]), "count": np.array([]),
                  "yes_taker": None}
        if len(trades):  # non-block prints of the event's markets, within the tape's minutes
            j = pd.Index(tickers).get_indexer(trades["market_ticker"])
            sel = np.flatnonzero(~trades["is_block_trade"].astype(bool).to_numpy() & (j >= 0))
            rows = np.ceil((pd.DatetimeIndex(trades["created_time"]).asi8[sel] - t0) / 60e9).astype(int)
            sel, rows = sel[(rows >= 0) & (rows < len(minutes))], rows[(rows >= 0) & (rows < len(minutes))]
            prints = {"row": rows, "bracket": j[sel], "price": trades["yes_price"].to_numpy(float)[sel],
                      "count": trades["count"].to_numpy(float)[sel],
                      "yes_taker": (trades["taker_outcome_side"].to_numpy()[sel] == "yes")
                      if "taker_outcome_side" in trades.columns else None}
        bars = {k: np.full(shape, np.nan) for k in ("price_low", "price_high", "price_open", "price_close")}
        if candles is not None and len(candles):
            j = pd.Index(tickers).get_indexer(candles["market_ticker"])
            r = (pd.DatetimeIndex(candles["end_period_ts"]).asi8 - t0) // 60_000_000_000
            ok = np.flatnonzero((j >= 0) & (r >= 0) & (r < len(minutes)))
            for k, a in bars.items():
                if k in candles.columns:
                    a[r[ok], j[ok]] = candles[k].to_numpy(float)[ok]
        return cls(minutes, tickers, grab("yes_bid"), grab("yes_ask"), grab("last_price"), grab("mid"), grab("volume"),
                   bars["price_low"], bars["price_high"], half, prints["row"], prints["bracket"], prints["price"],
                   prints["count"], prints["yes_taker"], bars["price_open"], bars["price_close"],
                   _book(levels, known, minutes, col), _recorded_half_spread(known, minutes, col))

    def taker_price(self, row: int, b: int, side: str, action: str) -> float:
        """Price paid (buy) or received (sell) per contract on ``side`` at ``row``, before slippage."""
        bid, ask, last = self.yes_bid[row, b], self.yes_ask[row, b], self.last[row, b]
        has_bid, has_ask = np.isfinite(bid) and bid > 0, np.isfinite(ask) and ask < 1
        # the quote when the book has that side; else the last price and the half spread (looked up only then)
        if action == "buy":
            if side == "yes":
                return ask if has_ask else last + self._half_spread(row, b)  # lift the YES ask
            return (1 - bid) if has_bid else (1 - last) + self._half_spread(row, b)  # lift the NO ask
        if side == "yes":
            return bid if has_bid else last - self._half_spread(row, b)  # hit the YES bid
        return (1 - ask) if has_ask else (1 - last) - self._half_spread(row, b)

    def _half_spread(self, row: int, b: int) -> float:
        return float(self._half_spread_grid[row, b])

    @functools.cached_property
    def _half_spread_grid(self) -> np.ndarray:
        """``half_spreads`` at every minute and bracket, for the fills' scalar look-ups (a tape's arrays are
        not changed once built: ``paper.known_at`` makes a new tape)."""
        rows = np.arange(self.n_minutes)
        grid = np.empty((self.n_minutes, len(self.tickers)))
        for b in range(len(self.tickers)):
            grid[:, b] = self.half_spreads(rows, b)
        return grid

    @functools.cached_property
    def exit_marks(self) -> np.ndarray:
        """minutes x brackets x (YES, NO): what a taker selling the side would get before slippage (the bid
        where the book has one, else the last price less the half spread), against which exits are judged."""
        bid, ask, half = self.yes_bid, self.yes_ask, self._half_spread_grid
        with np.errstate(invalid="ignore"):
            yes = np.where(np.isfinite(bid) & (bid > 0), bid, self.last - half)
            no = np.where(np.isfinite(ask) & (ask < 1), 1 - ask, 1 - self.last - half)
        return np.stack([yes, no], axis=2)

    def prints_between(self, b: int, first: int, last: int) -> np.ndarray:
        """Indices of bracket ``b``'s prints at rows ``first``..``last``, by row and, within a row, in the
        tape's order (so sums over them add in the same order as over a mask of the tape)."""
        order, bracket, row = self._prints_by_bracket
        lo, hi = np.searchsorted(bracket, b, "left"), np.searchsorted(bracket, b, "right")
        mine = row[lo:hi]
        return order[lo + np.searchsorted(mine, first, "left"): lo + np.searchsorted(mine, last, "right")]

    @functools.cached_property
    def _prints_by_bracket(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The prints' order by (bracket, row), stable, with their brackets and rows in that order."""
        bracket, row = np.asarray(self.print_bracket, np.int64), np.asarray(self.print_row, np.int64)
        span = int(row.max() - row.min()) + 1 if len(row) else 1
        order = np.argsort(bracket * span + (row - (row.min() if len(row) else 0)), kind="stable")
        return order, bracket[order], row[order]

    @functools.cached_property
    def traded(self) -> np.ndarray:
        """minutes x brackets: volume traded, so a taker order can fill there."""
        with np.errstate(invalid="ignore"):
            return np.isfinite(self.volume) & (self.volume > 0)


def _recorded_half_spread(known: pd.DataFrame | None, minutes: pd.DatetimeIndex, col: dict) -> np.ndarray | None:
    if known is None or not len(known) or "spread" not in known.columns or not len(minutes):
        return None
    out = np.full((len(minutes), len(col)), np.nan)
    k = known[known["market_ticker"].isin(col)]
    r = ((pd.DatetimeIndex(k["minute_ts"]).asi8 - minutes[0].value) // 60_000_000_000).astype(int)
    ok = (r >= 0) & (r < len(minutes))
    out[r[ok], k["market_ticker"].map(col).to_numpy()[ok]] = k["spread"].to_numpy(float)[ok] / 2
    return out


def _book(levels: pd.DataFrame | None, known: pd.DataFrame | None, minutes: pd.DatetimeIndex, col: dict) -> np.ndarray | None:
    """The recorded book on the tape's grid (NaN where it is not known), or None without one."""
    if known is None or not len(known) or not len(minutes):
        return None
    book = np.full((len(minutes), len(col), 2, 100), np.nan, dtype=np.float32)
    k = known[known["market_ticker"].isin(col)]
    r = ((pd.DatetimeIndex(k["minute_ts"]).asi8 - minutes[0].value) // 60_000_000_000).astype(int)
    ok = (r >= 0) & (r < len(minutes))
    book[r[ok], k["market_ticker"].map(col).to_numpy()[ok]] = 0.0
    if levels is not None and len(levels):
        lv = levels[levels["market_ticker"].isin(col)]
        r = ((pd.DatetimeIndex(lv["minute_ts"]).asi8 - minutes[0].value) // 60_000_000_000).astype(int)
        j = lv["market_ticker"].map(col).to_numpy()
        side = (lv["side"].to_numpy() == "no").astype(int)
        cents = np.rint(lv["price"].to_numpy(float) * 100).astype(int)
        ok = (r >= 0) & (r < len(minutes)) & ~np.isnan(book[np.clip(r, 0, len(minutes) - 1), j, 0, 0])
        book[r[ok], j[ok], side[ok], cents[ok]] = lv["size"].to_numpy(float)[ok]
    return book


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
    if cfg.queue_model and queue_covers(tape, first, b):
        return queue_fill(tape, first, last, b, side, limit, size)
    if len(tape.print_row):
        sel = tape.prints_between(b, first, last)
        through = tape.print_price[sel] <= yes_limit + 1e-9 if side == "yes" else tape.print_price[sel] >= yes_limit - 1e-9
        vol = np.bincount(tape.print_row[sel][through] - first, weights=tape.print_count[sel][through], minlength=n)
    else:  # no prints: the chance the bar went through the limit, times its volume
        rng = slice(first, last + 1)
        through = bridge_through(tape, rng, b, yes_limit, side)
        vol = through * np.nan_to_num(tape.volume[rng, b])
    available = cfg.maker_queue_share * vol
    cum = np.round(np.minimum(np.cumsum(available), size), 2)  # cents of a contract, without losing any to rounding
    got = np.round(np.diff(np.concatenate([[0.0], cum])), 2)
    rows = np.nonzero(got > 1e-12)[0]
    return rows + first, got[rows]


def queue_covers(tape: Tape, first: int, b: int) -> bool:
    """Whether the recorded book is known when an order joins at row ``first`` (the end of the minute before)."""
    return tape.book is not None and first >= 1 and not np.isnan(tape.book[first - 1, b, 0, 0])


def queue_fill(tape: Tape, first: int, last: int, b: int, side: str, limit: float, size: float) -> tuple[np.ndarray, np.ndarray]:
    """The queue model (module docstring): rows and contracts filled for a buy resting on ``side`` at ``limit``."""
    s = 0 if side == "yes" else 1
    cents = int(round(limit * 100))
    level = tape.book[first - 1: last + 1, b, s, cents].astype(float)  # [0]: when it joins
    n = last - first + 1
    hits, through = np.zeros(n), np.zeros(n)
    if len(tape.print_row) and tape.print_yes_taker is not None:
        sel = tape.prints_between(b, first, last)
        yes_c = np.rint(tape.print_price[sel] * 100)
        # a YES bid is hit by a taker selling YES (buying NO), a NO bid by a taker buying YES
        mine = ~tape.print_yes_taker[sel] if side == "yes" else tape.print_yes_taker[sel]
        own = yes_c if side == "yes" else 100 - yes_c  # the print's price on the order's side
        at, past = mine & (own == cents), mine & (own < cents)
        r = tape.print_row[sel] - first
        hits = np.bincount(r[at], weights=tape.print_count[sel][at], minlength=n)
        through = np.bincount(r[past], weights=tape.print_count[sel][past], minlength=n)
    ahead, left = level[0], float(size)
    rows, got = [], []
    for k in range(n):  # at most maker_ttl_min steps: the queue is a recursion over the order's minutes
        prev, cur = level[k], level[k + 1]
        if np.isnan(cur) or left <= 0:
            break  # the book is unknown: the queue position is lost
        cancels = max(0.0, prev - cur - hits[k])
        if prev > 0:
            ahead -= cancels * ahead / prev
        fill = min(left, max(0.0, hits[k] - max(ahead, 0.0)) + through[k])
        ahead = max(0.0, ahead - hits[k])
        if fill > 1e-12:
            rows.append(first + k)
            got.append(round(fill, 2))
            left -= fill
    return np.array(rows, int), np.array(got, float)


def bridge_through(tape: Tape, rows: slice, b: int, yes_limit: float, side: str) -> np.ndarray:
    """Per bar: the chance a Brownian bridge from its open to its close (variance from its high-low range,
    Parkinson) went half a cent through ``yes_limit`` (down for a YES bid, up for a NO bid); 0 for a bar that
    never reached the limit or has no prices."""
    if tape.price_open is None or tape.price_close is None:
        return np.zeros(tape.price_low[rows, b].shape)
    sign = 1.0 if side == "yes" else -1.0  # a NO bid is a YES bid on the mirrored price
    o, c = sign * tape.price_open[rows, b], sign * tape.price_close[rows, b]
    lo, hi = tape.price_low[rows, b], tape.price_high[rows, b]
    extreme = lo if side == "yes" else -hi
    barrier = sign * yes_limit - 0.005
    var = (hi - lo) ** 2 / (4 * np.log(2))
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        p = np.where(np.minimum(o, c) <= barrier, 1.0, np.exp(-2 * (o - barrier) * (c - barrier) / var))
    reached = extreme <= sign * yes_limit + 1e-9
    return np.where(reached & np.isfinite(p), np.clip(p, 0.0, 1.0), 0.0)
