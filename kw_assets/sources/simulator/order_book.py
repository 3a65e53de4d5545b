"""The simulated exchange's order book, as Kalshi shows it: resting bids on both sides of each market
(YES bids and NO bids; a YES ask is 100 minus the best NO bid), whole-cent levels, counts in contracts.

It is built on the world's quotes so the book, the candles and the ticker agree: the best YES bid is the
world's bid and the best NO bid is 1 - its ask, at every 15 s substep. Below each best price the book
shows ``LEVELS`` cent levels. Each level (market, side, price) redraws its size on its own clock (a period
of 2-12 substeps and a phase, both hashed from the level), so the book churns without any stored state:
the book at any substep is a pure function of (seed, event, substep), and the exchange can answer "what
was the book at t" exactly, which is what the recorder's rebuild is checked against.

Changes between substeps are published as deltas stamped at the substep's start plus one millisecond per
change, removals first, so no intermediate book is ever crossed.
"""

from __future__ import annotations

import zlib

import numpy as np

from kw_assets.sources.simulator.world import SUBSTEP_S, World

LEVELS = 5
SIDES = ("yes", "no")
PRICES = 100  # index = price in cents; 0 is never a level
_BASE_SIZE = np.array([30.0, 60.0, 90.0, 120.0, 150.0])  # mean size by distance from the best price
_M1, _M2 = np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB)


def _mix(x: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser: a well-spread 64-bit hash of each element (wrapping arithmetic)."""
    x = np.asarray(x, dtype=np.uint64)
    with np.errstate(over="ignore"):
        x = (x ^ (x >> np.uint64(30))) * _M1
        x = (x ^ (x >> np.uint64(27))) * _M2
    return x ^ (x >> np.uint64(31))


def book_key(seed: int, event_ticker: str) -> int:
    return zlib.crc32(f"{seed}:{event_ticker}:book".encode())


def best_cents(w: World) -> np.ndarray:
    """Best bid in cents per substep, bracket and side (YES, NO); 0 where the side is empty."""
    yes = np.rint(w.bid * 100).astype(np.int64)
    no = np.rint((1.0 - w.ask) * 100).astype(np.int64)
    return np.stack([yes, no], axis=-1).clip(0, PRICES - 1)


class SimulatedBook:
    """One event's book through its trading day (``w.open_time`` onwards, one state per substep)."""

    def __init__(self, w: World, seed: int):
        self.w = w
        self.key = np.uint64(book_key(seed, w.event_ticker))
        self.best = best_cents(w)  # substeps x brackets x 2
        n_br = len(w.brackets)
        level = (np.arange(n_br)[:, None, None] * 2 + np.arange(2)[None, :, None]) * PRICES + np.arange(PRICES)[None, None, :]
        self._level = _mix(level.astype(np.uint64) + self.key)  # brackets x 2 x prices
        self.period = (2 + self._level % np.uint64(11)).astype(np.int64)
        self.phase = ((self._level >> np.uint64(8)) % np.uint64(1 << 20)).astype(np.int64)

    @property
    def n_substeps(self) -> int:
        return self.best.shape[0]

    def substep_at(self, ts: float) -> int:
        """The substep in force at unix time ``ts``: -1 before the open (an empty book)."""
        s = int(np.floor((ts - self.w.open_time) / SUBSTEP_S))
        return min(s, self.n_substeps - 1)

    def substep_time(self, s: np.ndarray | int) -> np.ndarray:
        return self.w.open_time + SUBSTEP_S * np.asarray(s, dtype=np.int64)

    def sizes(self, s_lo: int, s_hi: int) -> np.ndarray:
        """Resting contracts for substeps [s_lo, s_hi): substeps x brackets x 2 x PRICES (float; 0 = no level).
        Substeps before the open are empty books."""
        s = np.arange(s_lo, s_hi, dtype=np.int64)
        valid = s >= 0
        sc = np.clip(s, 0, self.n_substeps - 1)
        best = self.best[sc]  # S x br x 2
        price = np.arange(PRICES)[None, None, None, :]
        dist = best[..., None] - price  # S x br x 2 x P
        shown = (dist >= 0) & (dist < LEVELS) & (price >= 1) & (best[..., None] > 0) & valid[:, None, None, None]
        refresh = sc[:, None, None, None] - (sc[:, None, None, None] + self.phase[None]) % self.period[None]
        u = _mix(self._level[None] ^ (refresh.astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15)))
        u01 = (u >> np.uint64(11)).astype(np.float64) / float(1 << 53)
        base = _BASE_SIZE[np.clip(dist, 0, LEVELS - 1)]
        size = np.floor(1 + 2 * base * u01 * u01 * 1.5)
        return np.where(shown, size, 0.0)

    def at(self, ts: float) -> np.ndarray:
        """The book in force at ``ts``: brackets x 2 x PRICES."""
        s = self.substep_at(ts)
        return self.sizes(s, s + 1)[0]

    def deltas(self, t_lo: float, t_hi: float) -> dict[str, np.ndarray]:
        """Level changes of substeps starting in (t_lo, t_hi]: ts_ms, bracket, side (0 YES, 1 NO), price
        (cents), delta (contracts), in publication order."""
        first = max(int(np.floor((t_lo - self.w.open_time) / SUBSTEP_S)) + 1, 0)
        last = min(int(np.floor((t_hi - self.w.open_time) / SUBSTEP_S)), self.n_substeps - 1)
        if last < first:
            return {k: np.empty(0, np.int64 if k != "delta" else float) for k in ("ts_ms", "bracket", "side", "price", "delta")}
        book = self.sizes(first - 1, last + 1)
        change = np.diff(book, axis=0)  # substeps first..last
        s, br, side, price = np.nonzero(change)
        delta = change[s, br, side, price]
        order = np.lexsort((price, side, br, delta > 0, s))  # per substep: removals, then additions
        s, br, side, price, delta = s[order], br[order], side[order], price[order], delta[order]
        rank = np.arange(s.size) - np.searchsorted(s, s, side="left")
        ts_ms = self.substep_time(s + first) * 1000 + rank
        return {"ts_ms": ts_ms, "bracket": br, "side": side, "price": price, "delta": delta}

    def quote_changes(self, t_lo: float, t_hi: float) -> np.ndarray:
        """Substeps starting in (t_lo, t_hi] whose best YES bid or ask differs from the substep before."""
        first = max(int(np.floor((t_lo - self.w.open_time) / SUBSTEP_S)) + 1, 0)
        last = min(int(np.floor((t_hi - self.w.open_time) / SUBSTEP_S)), self.n_substeps - 1)
        if last < first:
            return np.empty((0, 2), np.int64)
        best = self.best[max(first - 1, 0): last + 1]
        moved = np.any(best[1:] != best[:-1], axis=-1) if first > 0 else np.vstack([np.ones((1, best.shape[1]), bool), np.any(best[1:] != best[:-1], axis=-1)])
        s, br = np.nonzero(moved)
        return np.column_stack([s + first, br])
