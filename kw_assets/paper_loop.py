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
import time
import uuid
from dataclasses import dataclass

import numpy as np
import pandas as pd

from kw_assets.cities import City
from kw_assets.model.backtest import ExecutionConfig
from kw_assets.model.fills import FillConfig, Tape
from kw_assets.model.paper import UNKNOWN_WINNER, not_yet_stored, paper_fills
from kw_assets.model.strategy import StrategyConfig, intents_from, signal_state
from kw_assets.model.sweep import day_half_spreads
from kw_assets.queries import spread_observations
from kw_assets.schemas import conform, validate
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

    def _inputs(self) -> dict[str, pd.DataFrame]:
        with self.wh.held(read_only=True):
            return {t: self.wh.read(t, [(self.city.key, self.day)], cols) for t, cols in BACKTEST_INPUTS.items()}

    def tick(self, now: pd.Timestamp) -> Tick:
        """Record what the book knows at ``now``."""
        data = self._inputs()
        markets, panel, cal = data["kalshi_markets"], data["minute_panel"], data["calibrated_pmf"]
        if markets.empty or panel.empty:
            return Tick(None, 0, 0, 0.0, stale=f"no market data stored for {self.city.key} {self.day}")
        execution = dataclasses.replace(self.execution, fee_type=markets["fee_type"].iloc[0],
                                        fee_multiplier=float(markets["fee_multiplier"].iloc[0]))
        if self._half_spreads is None:
            self._half_spreads = day_half_spreads(spread_observations(self.wh), self.city.key, markets)
        tape = Tape.build(panel, data["kalshi_trades"], data["kalshi_candles"], self._half_spreads,
                          levels=data["orderbook_levels"], known=data["orderbook_l2"])
        t = int(np.searchsorted(tape.minutes.asi8, pd.Timestamp(now).value, side="right")) - 1
        if t < 0:
            return Tick(None, 0, 0, 0.0, stale="the market has not opened")
        t = min(t, tape.n_minutes - 1)
        fresh = pd.DatetimeIndex(cal["minute_ts"]).max() if len(cal) else None
        lag = (tape.minutes[t] - fresh) if fresh is not None else None
        if lag is None or lag > pd.Timedelta(minutes=self.stale_min):
            return Tick(tape.minutes[t], 0, 0, 0.0, stale=f"inputs stale: the latest calibrated minute is "
                        f"{fresh if fresh is not None else 'missing'}, {lag} behind; holding, sending nothing")
        settled = data["settlement"]
        winner = int(settled["winning_bracket_index"].iloc[0]) if len(settled) and t == tape.n_minutes - 1 else UNKNOWN_WINNER
        intents, opposite = intents_from(signal_state(panel, cal), self.strategy, execution.fee_type, execution.fee_multiplier)
        known = paper_fills(tape, intents, opposite, t, winner, self.fills, execution)
        stored = self.wh.read("paper_fills", [(self.city.key, self.day)])
        new = not_yet_stored(known, stored)
        self.record(new, known, tape, t, data["settlement"]["source"].iloc[0] if len(settled) else markets["source"].iloc[0])
        pnl = float(known["cash_flow"].sum()) + _marked_value(known, tape, t)
        return Tick(tape.minutes[t], len(new), known.loc[known["action"] == "buy", "order_id"].nunique(), pnl)

    def record(self, new: pd.DataFrame, known: pd.DataFrame, tape: Tape, t: int, source: str) -> None:
        """The order sink: append the new fills; rewrite the orders' state; add this minute's positions."""
        part = [(self.city.key, self.day)]
        keys = {"city": self.city.key, "climate_day": pd.Timestamp(self.day), "source": source, "run_id": self.run_id}
        if len(new):
            rows = new.assign(**keys, recorded_at=pd.Timestamp.now(tz="UTC"))
            stored = self.wh.read("paper_fills", part)
            both = pd.concat([stored, conform("paper_fills", rows)], ignore_index=True) if len(stored) else rows
            self.wh.replace_partitions("paper_fills", validate("paper_fills", conform("paper_fills", both)), part)
        buys = known[known["action"] == "buy"]
        if len(buys):
            orders = buys.groupby("order_id", sort=True).agg(
                decided_ts=("decided_ts", "first"), market_ticker=("market_ticker", "first"),
                bracket_index=("bracket_index", "first"), side=("side", "first"), liquidity=("liquidity", "first"),
                edge=("edge", "first"), status=("reason", "last"), contracts_filled=("contracts", "sum")).reset_index()
            self.wh.replace_partitions("paper_orders", validate("paper_orders", conform("paper_orders", orders.assign(**keys))), part)
        positions = _positions(known, tape, t).assign(**keys)
        if len(positions):
            stored = self.wh.read("paper_positions", part)
            stored = stored[stored["minute_ts"] != tape.minutes[t]] if len(stored) else stored
            both = pd.concat([stored, conform("paper_positions", positions)], ignore_index=True) if len(stored) else positions
            self.wh.replace_partitions("paper_positions", validate("paper_positions", conform("paper_positions", both)), part)


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


def run(days: list[PaperDay], now, stop, every_s: float = 60.0, status_every_s: float = 60.0) -> None:
    """Tick every ``every_s`` wall seconds until ``stop()``; a status line per city-day every ``status_every_s``."""
    last_status = 0.0
    while not stop():
        started = time.monotonic()
        for d in days:
            try:
                tick = d.tick(pd.Timestamp(now()))
            except Exception as exc:  # noqa: BLE001 - one failed tick (an outage) must not end the loop
                log.error("paper %s %s: the tick failed (%s: %s); the next one catches up", d.city.key, d.day,
                          type(exc).__name__, exc)
                continue
            if tick.stale:
                log.warning("paper %s %s at %s: %s", d.city.key, d.day, tick.minute, tick.stale)
            elif time.monotonic() - last_status >= status_every_s or tick.new_rows:
                log.info("paper %s %s at %s: %d orders, %d new rows, P&L %.2f (marked) [run %s]", d.city.key, d.day,
                         tick.minute, tick.orders, tick.new_rows, tick.pnl, d.run_id)
        if time.monotonic() - last_status >= status_every_s:
            last_status = time.monotonic()
        while not stop() and time.monotonic() - started < every_s:
            time.sleep(min(0.5, max(0.0, every_s - (time.monotonic() - started))))  # a stop never waits a minute
