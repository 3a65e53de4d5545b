"""The paper-trading loop (I/O shell around ``model/paper.py``): once a minute, for each city's open
climate day, read the partition's latest inputs from the warehouse, ask the backtest's strategy and
engine what is known by this minute, and append to ``paper_fills`` what the book has not recorded yet;
``paper_orders`` and ``paper_positions`` follow. It never sends a real order: the warehouse is the order
sink, and a live mode would replace only ``PaperDay.record``.

Restarts resume: the ids are the engine's own, so the same minute gives the same orders, and only rows
not stored yet are appended. Inputs older than ``stale_min`` minutes (the tail fell behind, the exchange is
down) send nothing: positions are held and the status line says why.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import uuid
from dataclasses import dataclass

import numpy as np
import pandas as pd

from kw_assets.cities import City
from kw_assets.model.backtest import ExecutionConfig
from kw_assets.model.fills import FillConfig, Tape
from kw_assets.model.paper import UNKNOWN_WINNER, not_yet_stored, on_day_grid, paper_fills
from kw_assets.model.strategy import StrategyConfig, intents_from, signal_state
from kw_assets.model.sweep import day_half_spreads
from kw_assets.queries import spread_observations
from kw_assets.schemas import conform, validate
from kw_assets.sources.clock import every
from kw_assets.strategy_sweep import BACKTEST_INPUTS
from kw_assets.warehouse import Warehouse

log = logging.getLogger("kw_assets.paper")


@dataclass
class Tick:
    minute: pd.Timestamp | None
    new_rows: int
    orders: int
    pnl: float
    stale: str | None = None


class PaperDay:
    """One city's climate day in the paper book."""

    def __init__(self, wh: Warehouse, city: City, day: dt.date, run_id: str, strategy: StrategyConfig = StrategyConfig(),
                 fills: FillConfig = FillConfig(), execution: ExecutionConfig = ExecutionConfig(), stale_min: float = 5.0):
        self.wh, self.city, self.day, self.run_id = wh, city, day, run_id
        self.strategy, self.fills, self.execution, self.stale_min = strategy, fills, execution, stale_min
        self._half_spreads: np.ndarray | None = None  # from books observed before the day opened: fixed all day

    def tick(self, now: pd.Timestamp) -> Tick:
        """Record what the book knows at ``now``."""
        with self.wh.held():  # one connection for the tick's reads and its write
            return self._tick(now)

    def _tick(self, now: pd.Timestamp) -> Tick:
        data = {t: self.wh.read(t, [(self.city.key, self.day)], cols) for t, cols in BACKTEST_INPUTS.items()}
        markets, panel, cal = data["kalshi_markets"], data["minute_panel"], data["calibrated_pmf"]
        if markets.empty or panel.empty:
            return Tick(None, 0, 0, 0.0, stale=f"no market data stored for {self.city.key} {self.day}")
        execution = dataclasses.replace(self.execution, fee_type=markets["fee_type"].iloc[0],
                                        fee_multiplier=float(markets["fee_multiplier"].iloc[0]))
        if self._half_spreads is None:
            self._half_spreads = day_half_spreads(spread_observations(self.wh), self.city.key, markets)
        fresh = pd.DatetimeIndex(cal["minute_ts"]).max() if len(cal) else None
        panel, cal = on_day_grid(panel, markets), on_day_grid(cal, markets)  # a day the live tail is still writing
        tape = Tape.build(panel, data["kalshi_trades"], data["kalshi_candles"], self._half_spreads,
                          levels=data["orderbook_levels"], known=data["orderbook_l2"])
        now_row = int(np.searchsorted(tape.minutes.asi8, pd.Timestamp(now).value, side="right")) - 1
        if now_row < 0:
            return Tick(None, 0, 0, 0.0, stale="the market has not opened")
        now_row = min(now_row, tape.n_minutes - 1)
        lag = (tape.minutes[now_row] - fresh) if fresh is not None else None
        if lag is None or lag > pd.Timedelta(minutes=self.stale_min):
            return Tick(tape.minutes[now_row], 0, 0, 0.0, stale=f"inputs stale: the latest calibrated minute is "
                        f"{fresh if fresh is not None else 'missing'}, {lag} behind; holding, sending nothing")
        # decide at the last minute whose inputs are all in: a later one's quotes and prints are not known yet
        t = min(now_row, int(np.searchsorted(tape.minutes.asi8, fresh.value, side="right")) - 1)
        settled = data["settlement"]
        winner = int(settled["winning_bracket_index"].iloc[0]) if len(settled) and t == tape.n_minutes - 1 else UNKNOWN_WINNER
        intents, opposite = intents_from(signal_state(panel, cal), self.strategy, execution.fee_type, execution.fee_multiplier)
        known = paper_fills(tape, intents, opposite, t, winner, self.fills, execution)
        stored = self.wh.read("paper_fills", [(self.city.key, self.day)])
        new = not_yet_stored(known, stored)
        self.record(new, stored, known, tape, t, settled["source"].iloc[0] if len(settled) else markets["source"].iloc[0],
                    pd.Timestamp(now))
        pnl = float(known["cash_flow"].sum()) + _marked_value(known, tape, t)
        return Tick(tape.minutes[t], len(new), known.loc[known["action"] == "buy", "order_id"].nunique(), pnl)

    def record(self, new: pd.DataFrame, stored: pd.DataFrame, known: pd.DataFrame, tape: Tape, t: int, source: str,
               now: pd.Timestamp) -> None:
        """The order sink: append the new fills to the ``stored`` ones (stamped with the clock's ``now``: a fill
        recorded long after its minute was caught up after an outage), rewrite the orders' state, add this
        minute's positions; the three tables in one transaction."""
        part = [(self.city.key, self.day)]
        keys = {"city": self.city.key, "climate_day": pd.Timestamp(self.day), "source": source, "run_id": self.run_id}
        frames = {}
        if len(new):
            rows = conform("paper_fills", new.assign(**keys, recorded_at=now))
            both = pd.concat([stored, rows], ignore_index=True) if len(stored) else rows
            frames["paper_fills"] = validate("paper_fills", both)
        buys = known[known["action"] == "buy"]
        if len(buys):
            orders = buys.groupby("order_id", sort=True).agg(
                decided_ts=("decided_ts", "first"), market_ticker=("market_ticker", "first"),
                bracket_index=("bracket_index", "first"), side=("side", "first"), liquidity=("liquidity", "first"),
                edge=("edge", "first"), status=("reason", "last"), contracts_filled=("contracts", "sum")).reset_index()
            frames["paper_orders"] = validate("paper_orders", conform("paper_orders", orders.assign(**keys)))
        positions = _positions(known, tape, t).assign(**keys)
        if len(positions):
            held = self.wh.read("paper_positions", part)
            held = held[held["minute_ts"] != tape.minutes[t]] if len(held) else held
            both = pd.concat([held, conform("paper_positions", positions)], ignore_index=True) if len(held) else positions
            frames["paper_positions"] = validate("paper_positions", conform("paper_positions", both))
        if frames:
            self.wh.replace_partitions_of(frames, part)


def _mark(tape: Tape, t: int, b: np.ndarray, side: np.ndarray) -> np.ndarray:
    """What a taker would get now: the YES bid (NO: 1 - YES ask), else the last price less the half spread."""
    bid, ask, last = tape.yes_bid[t, b], tape.yes_ask[t, b], tape.last[t, b]
    half = np.array([tape.half_spreads(np.array([t]), int(j))[0] for j in b]) if len(b) else np.array([])
    yes = np.where(np.isfinite(bid) & (bid > 0), bid, last - half)
    no = np.where(np.isfinite(ask) & (ask < 1), 1 - ask, 1 - last - half)
    return np.clip(np.where(side == "yes", yes, no), 0.0, 1.0)


def _positions(known: pd.DataFrame, tape: Tape, t: int) -> pd.DataFrame:
    traded = known[known["contracts"] > 0]
    if traded.empty:
        return pd.DataFrame()
    signed = np.where(traded["action"] == "buy", 1.0, -1.0) * traded["contracts"]
    g = traded.assign(signed=signed).groupby(["market_ticker", "bracket_index", "side"], as_index=False).agg(
        contracts=("signed", "sum"), cash_flow=("cash_flow", "sum"))
    g.loc[g["contracts"].abs() < 1e-9, "contracts"] = 0.0
    g["mark"] = _mark(tape, t, g["bracket_index"].to_numpy(int), g["side"].to_numpy())
    g["pnl"] = g["cash_flow"] + g["contracts"] * g["mark"]
    return g.drop(columns="bracket_index").assign(minute_ts=tape.minutes[t])


def _marked_value(known: pd.DataFrame, tape: Tape, t: int) -> float:
    p = _positions(known, tape, t)
    return float((p["contracts"] * p["mark"]).fillna(0).sum()) if len(p) else 0.0


def new_run_id() -> str:
    return f"paper-{dt.datetime.now(dt.timezone.utc):%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:6]}"


def tick_all(days: list[PaperDay], now, due: bool) -> None:
    """One tick of every day, logged; ``due``: write the status line even when nothing happened."""
    for d in days:
        at = pd.Timestamp(now())
        try:
            tick = d.tick(at)
        except Exception as exc:  # noqa: BLE001 - one failed tick (an outage) must not end the loop
            log.error("paper %s %s: the tick failed (%s: %s); the next one catches up", d.city.key, d.day,
                      type(exc).__name__, exc)
            continue
        if tick.stale:
            log.warning("paper %s %s at %s: %s", d.city.key, d.day, f"{at:%Y-%m-%d %H:%M:%S}", tick.stale)
        elif due or tick.new_rows:
            log.info("paper %s %s at %s: decided through %s (%s behind), %d orders, %d new rows, P&L %.2f (marked) "
                     "[run %s]", d.city.key, d.day, f"{at:%Y-%m-%d %H:%M:%S}", tick.minute,
                     at.floor("min") - tick.minute if tick.minute is not None else "-", tick.orders, tick.new_rows,
                     tick.pnl, d.run_id)


def run(days: list[PaperDay], now, stop, every_s: float = 60.0, status_every_s: float = 60.0) -> None:
    """Tick every ``every_s`` wall seconds until ``stop()``; a status line per city-day every ``status_every_s``
    (and whenever the book records something); a held book says why at every tick."""
    every(lambda due: tick_all(days, now, due), stop, every_s, status_every_s)
