"""The live tail (I/O shell): the partition of a climate day whose market is open, filled as the day goes.

Each tick, for one city x climate day:
1. lists the event's markets (status, result) and fetches only what arrived since the last tick: candles
   ending after the last complete minute stored, prints from that minute on, obs and forecast runs stamped
   after the latest stored (``start_ts`` / ``min_ts`` / dates from the cursor: never the whole day again);
2. recomputes the minute chain (``derivations.MINUTE_CHAIN``: panel, weather PMF, fused, calibrated) on the
   stored rows and the new ones (merged by key) with the same code the assets run, up to the last complete
   minute (the one whose candle has closed by ``now``);
3. validates the new rows and writes them, raw and derived, in one transaction (replacing only rows after
   the cursor, so a re-fetched row replaces its stored copy and a rerun of a tick adds nothing): a tick lands
   whole or not at all, and a failed tick (an outage) leaves the cursor where it was, so the next one
   catches up.

Once the event has settled, the day is fetched and computed once more as the batch backfill does (every
row, ``settlement`` included) and replaces the live rows in one swap; the tail then leaves the day alone.
Everything the tail computes for minute t uses data stamped at or before t, so its rows equal the batch's.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass, field

import pandas as pd

from kw_assets import derivations
from kw_assets.cities import City
from kw_assets.errors import DataError
from kw_assets.model.calibration import CalibrationConfig
from kw_assets.model.fusion import FusionConfig
from kw_assets.model.panel import PanelConfig
from kw_assets.model.weather import WeatherModelConfig
from kw_assets.partition_batch import BAD_INPUT, check_partitions
from kw_assets.partitions import partition_key
from kw_assets.schemas import conform
from kw_assets.sources.clock import every
from kw_assets.sources.kalshi.client import KalshiClient
from kw_assets.sources.kalshi.fetch import (EventNotFound, fetch_candles, fetch_markets, fetch_trades, inside_trading_window,
                                           trading_window)
from kw_assets.sources.visual_crossing import VisualCrossingClient, fetch_weather_forecasts, fetch_weather_obs
from kw_assets.warehouse import Warehouse

log = logging.getLogger("kw_assets.tail")

# the raw tables the tail appends to, and the key a row is known by (a re-fetched row replaces its stored copy)
RAW_KEYS = {"kalshi_candles": ("market_ticker", "end_period_ts"), "kalshi_trades": ("trade_id",),
            "weather_obs": ("valid_time",), "weather_forecasts": ("issued_at", "valid_time")}
RAW_ORDER = {"kalshi_candles": ("market_ticker", "end_period_ts"), "kalshi_trades": ("created_time", "trade_id"),
             "weather_obs": ("valid_time",), "weather_forecasts": ("issued_at", "valid_time")}
SETTLED_STATUSES = {"finalized", "settled"}


class TickFailed(RuntimeError):
    """A tick that wrote nothing (the exchange or the weather feed failed, or its data was bad)."""


@dataclass
class TailTick:
    """What one tick did: the last complete minute now stored, rows written per table, new raw rows."""

    through: pd.Timestamp | None
    written: dict[str, int] = field(default_factory=dict)
    new_rows: dict[str, int] = field(default_factory=dict)
    settled: bool = False
    note: str | None = None


@dataclass
class TailSettings:
    """The minute chain's settings (the assets' run config defaults unless set) and the weather PMF's seed."""

    panel: PanelConfig = field(default_factory=PanelConfig)
    weather: WeatherModelConfig = field(default_factory=WeatherModelConfig)
    weather_seed: int = derivations.WEATHER_PMF_SEED
    fusion: FusionConfig = field(default_factory=FusionConfig)
    calibration: CalibrationConfig = field(default_factory=CalibrationConfig)

    def for_table(self, table: str) -> tuple:
        return {"minute_panel": (self.panel,), "weather_pmf": (self.weather, self.weather_seed),
                "fused_pmf": (self.fusion,), "calibrated_pmf": (self.calibration,)}[table]


def live_days(city: City, now: dt.datetime) -> list[dt.date]:
    """The climate days a tail keeps current at ``now``: yesterday's until it settles (the next morning),
    today's, and tomorrow's once its market is listed."""
    today = city.climate_day_of(now)
    return [today - dt.timedelta(days=1), today, today + dt.timedelta(days=1)]


class TailDay:
    """One city's climate day, tailed into the warehouse."""

    def __init__(self, wh: Warehouse, city: City, day: dt.date, kalshi: KalshiClient,
                 weather: VisualCrossingClient | None, source: str, settings: TailSettings = TailSettings()):
        self.wh, self.city, self.day, self.kalshi, self.weather = wh, city, day, kalshi, weather
        self.source, self.settings = source, settings
        self.part = [(city.key, day)]
        self.key = str(partition_key(city.key, day))
        self.settled = False
        self._calibrated = None  # the calibrator is fit on days settled before the market opened: fixed all day

    # --- one tick ---------------------------------------------------------------------------------
    def tick(self, now: dt.datetime) -> TailTick:
        """Bring the partition up to ``now``; raises ``TickFailed`` (nothing written) when it cannot."""
        with self.wh.held():  # one connection for the tick's reads and its write
            return self._tick(now)

    def _tick(self, now: dt.datetime) -> TailTick:
        if not self.settled and len(self.wh.read("settlement", self.part, ["winning_bracket_index"])):
            self.settled = True  # swapped in by an earlier tail, or written by the batch backfill
        if self.settled:
            return TailTick(None, settled=True, note="settled: the batch rows are in place")
        now = pd.Timestamp(now).tz_convert("UTC") if pd.Timestamp(now).tzinfo else pd.Timestamp(now, tz="UTC")
        try:
            try:
                markets = fetch_markets(self.kalshi, self.city, self.day)
            except EventNotFound:
                return TailTick(None, note="no event listed yet")
            if set(markets["status"]) <= SETTLED_STATUSES and markets["result"].isin(["yes", "no"]).all():
                return self._swap_settled(markets, now)
            opened = markets["open_time"].min()
            through = min(now.floor("min"), markets["close_time"].max().ceil("min"))  # the panel's grid ends there
            if through < opened + pd.Timedelta(minutes=1):
                return TailTick(None, note=f"the market opens at {opened}")
            stored = {t: self.wh.read(t, self.part) for t in RAW_KEYS}
            cursor = self._stored_through()
            fresh, after = self._fetch(markets, now, cursor, stored)
        except DataError as exc:
            raise TickFailed(f"partition {self.key}: {exc}") from exc
        except Exception as exc:  # noqa: BLE001 - an outage: say what failed; the next tick catches up
            raise TickFailed(f"partition {self.key}: fetch failed ({type(exc).__name__}: {exc}); nothing written, "
                             f"the next tick catches up from {self._stored_through() or 'the open'}") from exc
        novel = {t: _novel(stored[t], fresh[t], t) for t in RAW_KEYS}
        if cursor is not None and through <= cursor and not any(novel.values()):
            return TailTick(cursor, {}, novel, note=f"nothing new since {cursor}")
        # written: the new rows only (the stored ones are unchanged: nothing stamped by the cursor can change)
        writes = self._checked_raw(markets, fresh)
        data = {"kalshi_markets": writes["kalshi_markets"]}
        for t in RAW_KEYS:
            data[t] = _merged(stored[t], writes[t], t) if t in after else writes[t]
        chain, new_params = self._minute_chain(data, through)
        for d in derivations.MINUTE_CHAIN:
            frame = chain[d.table]
            if cursor is not None:
                frame = frame[frame[d.time_column] > cursor]
                after[d.table] = (d.time_column, cursor)
            writes[d.table] = self._check(d.table, frame)
        if new_params is not None:
            writes["weather_model_params"] = new_params
        written = self.wh.replace_partitions_of(writes, self.part, after)
        return TailTick(through, written, novel)

    def _stored_through(self) -> pd.Timestamp | None:
        """The last minute the partition's panel holds: every candle ending by it is stored."""
        got = self.wh.query("SELECT max(minute_ts) AS m FROM minute_panel WHERE city = ? AND climate_day = CAST(? AS DATE)",
                            [self.city.key, self.day.isoformat()], needs=("minute_panel",))
        if got.empty or pd.isna(got["m"].iloc[0]):
            return None
        m = pd.Timestamp(got["m"].iloc[0])
        return m.tz_localize("UTC") if m.tzinfo is None else m.tz_convert("UTC")

    def _fetch(self, markets: pd.DataFrame, now: pd.Timestamp, cursor: pd.Timestamp | None,
               stored: dict[str, pd.DataFrame]) -> tuple[dict[str, pd.DataFrame], dict[str, tuple[str, pd.Timestamp]]]:
        """What arrived since the cursor: candles ending after it, prints from its minute on, obs and runs stamped
        after the latest stored; and, per table, the stamp after which the fetched rows replace the stored ones
        (no entry: the fetch is the whole table so far)."""
        at = now.to_pydatetime()
        after: dict[str, tuple[str, pd.Timestamp]] = {}
        out = {"kalshi_candles": fetch_candles(self.kalshi, markets, at, since=cursor)}
        if cursor is not None:
            since_print = cursor - pd.Timedelta(minutes=1)  # prints of the cursor's own minute, fetched again
            first = pd.Timestamp(trading_window(markets, at, since_print)[0], unit="s", tz="UTC")
            after |= {"kalshi_candles": ("end_period_ts", cursor),
                      "kalshi_trades": ("created_time", first - pd.Timedelta(microseconds=1))}
            out["kalshi_trades"] = fetch_trades(self.kalshi, markets, at, since=since_print)
        else:
            out["kalshi_trades"] = fetch_trades(self.kalshi, markets, at)
        if self.weather is None:
            return out | {"weather_obs": pd.DataFrame(), "weather_forecasts": pd.DataFrame()}, after
        for table, column, fetch in (("weather_obs", "valid_time", fetch_weather_obs),
                                     ("weather_forecasts", "issued_at", fetch_weather_forecasts)):
            last = stored[table][column].max() if len(stored[table]) and cursor is not None else None
            out[table] = fetch(self.weather, self.city, self.day, after=last)
            if last is not None:
                after[table] = (column, last)
        return out, after

    # --- validation and the minute chain ----------------------------------------------------------
    def _check(self, table: str, frame: pd.DataFrame) -> pd.DataFrame:
        """``frame`` as a partition of ``table``: conformed, stamped with the partition and the source, validated."""
        outcome = check_partitions(table, self.source, lambda c, d, x: frame.drop(columns="source", errors="ignore"),
                                   (), [(self.city, self.day, self.key, {})])[0]
        if outcome.error is not None:
            raise TickFailed(str(outcome.error) if self.key in str(outcome.error)
                             else f"partition {self.key}: table {table}: {outcome.error}") from outcome.error
        return outcome.frame

    def _checked_raw(self, markets: pd.DataFrame, raw: dict[str, pd.DataFrame]) -> dict[str, pd.DataFrame]:
        frames = {"kalshi_markets": self._check("kalshi_markets", markets)}
        for table, frame in raw.items():
            if table in ("kalshi_candles", "kalshi_trades") and len(frame):
                column = "end_period_ts" if table == "kalshi_candles" else "created_time"
                try:
                    inside_trading_window(frame, markets, column, table)
                except DataError as exc:
                    raise TickFailed(f"partition {self.key}: {exc}") from exc
            frames[table] = self._check(table, frame)
        return frames

    def _produce(self, d: derivations.Derivation):
        """The derivation's produce function. Yesterday's obs are still arriving while the day's market opens,
        so the weather PMF's preparation reads them again each tick; the calibrator's fit is made once."""
        if d is derivations.CALIBRATED_PMF:
            if self._calibrated is None:
                self._calibrated = d.prepare(self.wh, [self.day], *self.settings.for_table(d.table))
            return self._calibrated
        return d.prepare(self.wh, [self.day], *self.settings.for_table(d.table))

    def _derived(self, d: derivations.Derivation, produce, data: dict[str, pd.DataFrame]) -> pd.DataFrame:
        """One derivation on the partition's inputs, as the batch produces it (partition columns and source
        set, conformed); bad input raises ``TickFailed`` naming the partition and the table."""
        inputs = _inputs(d, data)
        try:
            for t in d.required:
                if inputs[t].empty:
                    raise DataError(t, "<rows>", f"no {t} for {self.city.key} {self.day}")
            frame = produce(self.city, self.day, inputs)
        except BAD_INPUT as exc:
            raise TickFailed(f"partition {self.key}: table {d.table}: {exc}") from exc
        return conform(d.table, frame.assign(city=self.city.key, climate_day=pd.Timestamp(self.day), source=self.source))

    def _model_params(self, markets: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame | None]:
        """The day's learned EMOS, and the row to write when it is new: the stored row (the daily backfill
        writes it before the market opens), else fitted now from the days settled before."""
        stored = self.wh.read("weather_model_params", self.part)
        if len(stored):
            return stored, None
        d = derivations.WEATHER_MODEL_PARAMS
        row = self._check(d.table, self._derived(d, d.prepare(self.wh, [self.day]), {"kalshi_markets": markets}))
        return row, row

    def _minute_chain(self, frames: dict[str, pd.DataFrame], through: pd.Timestamp | None
                      ) -> tuple[dict[str, pd.DataFrame], pd.DataFrame | None]:
        """Panel, weather PMF, fused and calibrated from ``frames``, each cut at ``through`` (None: whole day);
        and the day's EMOS row when it was fitted now."""
        data = dict(frames)
        data["orderbook_l2"] = self.wh.read("orderbook_l2", self.part)
        data["weather_model_params"], new_params = self._model_params(frames["kalshi_markets"])
        out = {}
        for d in derivations.MINUTE_CHAIN:
            frame = self._derived(d, self._produce(d), data)
            if through is not None and len(frame):
                frame = frame[frame[d.time_column] <= through].reset_index(drop=True)
            data[d.table] = out[d.table] = frame
        return out, new_params

    # --- the settled swap -------------------------------------------------------------------------
    def _swap_settled(self, markets: pd.DataFrame, now: pd.Timestamp) -> TailTick:
        """The event has settled: the whole day as the batch computes it replaces the live rows, in one swap."""
        try:
            raw = {"kalshi_candles": fetch_candles(self.kalshi, markets, now.to_pydatetime()),
                   "kalshi_trades": fetch_trades(self.kalshi, markets, now.to_pydatetime())}
            if self.weather is not None:
                raw["weather_obs"] = fetch_weather_obs(self.weather, self.city, self.day)
                raw["weather_forecasts"] = fetch_weather_forecasts(self.weather, self.city, self.day)
            else:
                raw |= {"weather_obs": pd.DataFrame(), "weather_forecasts": pd.DataFrame()}
        except DataError as exc:
            raise TickFailed(f"partition {self.key}: {exc}") from exc
        except Exception as exc:  # noqa: BLE001
            raise TickFailed(f"partition {self.key}: settled fetch failed ({type(exc).__name__}: {exc}); the live "
                             "rows stay until the next tick swaps them") from exc
        frames = self._checked_raw(markets, raw)
        d = derivations.SETTLEMENT
        frames["settlement"] = self._check(d.table, self._derived(d, d.prepare(self.wh, [self.day]), frames))
        chain, new_params = self._minute_chain(frames, None)
        frames |= {t: self._check(t, f) for t, f in chain.items()}
        if new_params is not None:
            frames["weather_model_params"] = new_params
        written = self.wh.replace_partitions_of(frames, self.part)
        self.settled = True
        return TailTick(frames["minute_panel"]["minute_ts"].max() if len(frames["minute_panel"]) else None, written,
                        settled=True, note=f"settled at {frames['settlement']['official_high_f'].iloc[0]:g} F: the day's "
                                           "batch rows replaced the live ones")


def _inputs(d: derivations.Derivation, data: dict[str, pd.DataFrame]) -> dict[str, pd.DataFrame]:
    """The derivation's inputs as the batch reads them from the warehouse: its columns, in the schema's types."""
    spec = d.inputs.items() if isinstance(d.inputs, dict) else ((t, None) for t in d.inputs)
    out = {}
    for table, cols in spec:
        only = None if cols is None else ["city", "climate_day", "source", *cols]
        out[table] = conform(table, data[table], only)
    return out


def _novel(stored: pd.DataFrame, fresh: pd.DataFrame, table: str) -> int:
    """How many fetched rows are not stored yet (a re-fetched print is not news)."""
    if not len(fresh) or not len(stored):
        return len(fresh)
    keys = list(RAW_KEYS[table])
    return int((~pd.MultiIndex.from_frame(fresh[keys]).isin(pd.MultiIndex.from_frame(stored[keys]))).sum())


def _merged(stored: pd.DataFrame, fresh: pd.DataFrame, table: str) -> pd.DataFrame:
    """Stored rows and checked fresh ones, one row per key (the fresh copy wins), in the order the batch
    stores them."""
    if not len(stored):
        return fresh
    both = pd.concat([stored, fresh], ignore_index=True).drop_duplicates(list(RAW_KEYS[table]), keep="last")
    return both.sort_values(list(RAW_ORDER[table]), kind="stable").reset_index(drop=True)


def tick_all(days: list[TailDay], now, due: bool) -> None:
    """One tick of every day, logged; ``due``: write the status line even when nothing happened."""
    for d in days:
        at = pd.Timestamp(now())
        try:
            tick = d.tick(at)
        except TickFailed as exc:
            log.error("tail %s %s at %s: the tick failed: %s", d.city.key, d.day, f"{at:%Y-%m-%d %H:%M:%S}", exc)
            continue
        if due or (tick.settled and tick.written):
            lag = at.floor("min") - tick.through if tick.through is not None else "-"
            log.info("tail %s %s at %s: %s", d.city.key, d.day, f"{at:%Y-%m-%d %H:%M:%S}",
                     tick.note or f"complete through {tick.through} ({lag} behind); new rows: "
                     + ", ".join(f"{t} {n}" for t, n in tick.new_rows.items()))


def run(days: list[TailDay], now, stop, every_s: float = 60.0, status_every_s: float = 60.0) -> None:
    """Tick every ``every_s`` wall seconds until ``stop()``. A failed tick is logged loudly and the next one
    catches up; a status line per city-day every ``status_every_s`` (lag behind the market, new rows)."""
    every(lambda due: tick_all(days, now, due), stop, every_s, status_every_s)
