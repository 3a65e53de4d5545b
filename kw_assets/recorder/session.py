"""The L2 recorder: one WebSocket connection for one or more cities, subscribed to ``orderbook_delta``, ``trade`` and
``ticker`` for every market of the city's current and next event, every message written with its receive
time to rotated Parquet segments (``segments.py``).

What it promises: a book it knows is wrong is never written. A skipped ``seq`` or a lost connection (or the
exchange's buffer-overflow error) writes a ``gap`` marker, closes the connection and reconnects with
exponential backoff; the new subscription starts with fresh snapshots. A duplicated ``seq`` is dropped and
counted. New events are picked up through the REST events API every ``refresh_s`` and added to the
subscriptions (``update_subscription`` / ``add_markets``, which sends their snapshots). Every ``heartbeat_s``
of the recorder's clock it pings the exchange and writes a ``heartbeat`` row when the pong arrives: proof
that everything sent before it was received, so a reader can tell a quiet book from a silent stream. SIGTERM closes every open segment cleanly; ``kill -9`` loses at most the open segments.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import time
from dataclasses import dataclass
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus

from kw_assets.cities import City, parse_event_ticker
from kw_assets.recorder.segments import NULL_INT, Key, SegmentWriter
from kw_assets.sources.clock import Clock
from kw_assets.sources.http import ApiError
from kw_assets.sources.kalshi.client import KalshiClient
from kw_assets.sources.kalshi.signing import KalshiSigner

PRODUCTION_WS_URL = "wss://external-api-ws.kalshi.com/trade-api/ws/v2"
WS_PATH = "/trade-api/ws/v2"
CHANNELS = ("orderbook_delta", "trade", "ticker")
SEQUENCED = ("orderbook_snapshot", "orderbook_delta", "trade")
TERMINAL_ERRORS = (10, 25)  # the spec's terminal channel errors: resubscribe
log = logging.getLogger("kw_assets.recorder")


class Resubscribe(Exception):
    """The stream can no longer be trusted (skipped seq, terminal error, closed by the exchange): reconnect.
    ``marked``: the gap marker is written already."""

    def __init__(self, why: str, marked: bool = False):
        super().__init__(why)
        self.marked = marked


@dataclass
class RecorderStats:
    messages: int = 0
    duplicates: int = 0
    gaps: int = 0
    reconnects: int = 0
    errors: int = 0
    markets: int = 0
    after_drop: int = 0  # messages for a market already dropped (in flight when the unsubscription was sent)

    def line(self, window_messages: int, window_s: float) -> str:
        rate = window_messages / window_s if window_s > 0 else 0.0
        return (f"recorder: {rate:.1f} msg/s, {self.messages} messages, {self.markets} markets, {self.gaps} gaps, "
                f"{self.reconnects} reconnects, {self.duplicates} duplicates dropped, {self.after_drop} after a market's drop, "
                f"{self.errors} errors")


@dataclass
class RecorderConfig:
    ws_url: str = PRODUCTION_WS_URL
    refresh_s: float = 300.0  # recorder-clock seconds between event listings
    heartbeat_s: float = 10.0  # recorder-clock seconds between heartbeats (a ping answered by the exchange)
    pong_timeout_s: float = 10.0  # wall seconds a pong may take before the connection counts as lost
    status_every_s: float = 60.0  # wall seconds between status lines
    backoff_s: float = 1.0
    backoff_max_s: float = 60.0
    segment_minutes: float = 15.0
    segment_messages: int = 50_000


class Recorder:
    def __init__(self, cities: list[City], rest: KalshiClient, writer: SegmentWriter, config: RecorderConfig = RecorderConfig(),
                 signer: KalshiSigner | None = None, clock: Clock = Clock()):
        self.cities, self.rest, self.writer, self.cfg = list(cities), rest, writer, config
        self._city_of = {c.series_ticker: c.key for c in self.cities}
        self.signer, self.clock = signer, clock
        self.stats = RecorderStats()
        self.connection = 0
        self.tickers: dict[str, Key] = {}  # subscribed market -> (city, climate day)
        self.dropped: set[str] = set()  # markets whose event a listing saw closed: never written again
        self._sids: dict[str, int] = {}
        self._seq: dict[int, int] = {}
        self._cmd = 0

    # --- what to record -----------------------------------------------------------------------------
    def open_markets(self) -> dict[str, Key]:
        """Every market of each city's current and next event (by close time), from the REST API."""
        now = int(self.clock.now_ts())
        out: dict[str, Key] = {}
        for city in self.cities:
            events = sorted(self.rest.iter_events(city.series_ticker, min_close_ts=now),
                            key=lambda e: parse_event_ticker(e["event_ticker"])[1])[:2]
            for ev in events:
                day = parse_event_ticker(ev["event_ticker"])[1]
                for m in self.rest.get_markets(ev["event_ticker"]):
                    if m.get("status") in ("initialized", "active", "open", "unopened"):
                        out[m["ticker"]] = (city.key, day)
        return out

    def _key_of(self, ticker: str) -> Key | None:
        if ticker in self.tickers:
            return self.tickers[ticker]
        try:
            series, day = parse_event_ticker(ticker.rsplit("-", 1)[0])
        except ValueError:
            return None
        return (self._city_of[series], day) if series in self._city_of else None

    # --- rows ---------------------------------------------------------------------------------------
    def _row(self, kind: str, raw: str, **fields) -> dict:
        return {"recv_ns": time.time_ns(), "clock_ms": int(self.clock.now_ts() * 1000), "connection": self.connection,
                "kind": kind, "sid": fields.get("sid", NULL_INT), "seq": fields.get("seq", NULL_INT),
                "market_ticker": fields.get("market_ticker"), "side": fields.get("side"),
                "price_cents": fields.get("price_cents", NULL_INT), "quantity": fields.get("quantity"),
                "ts_ms": fields.get("ts_ms", NULL_INT), "raw": raw}

    def _keys(self) -> set[Key]:
        return set(self.tickers.values()) | set(self.writer.open_keys)

    def mark(self, kind: str, reason: str) -> None:
        """A gap or heartbeat row in every city-day being recorded."""
        row = self._row(kind, reason)
        for key in self._keys():
            self.writer.add(key, row)
        if kind == "gap":
            self.stats.gaps += 1

    def record(self, text: str) -> None:
        """Check, parse and write one message. One that cannot be parsed means the book may have missed a
        change: a gap, and a fresh subscription."""
        try:
            self._record(text)
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            log.error("recorder: a message it cannot parse (%s: %s): %.200s", type(exc).__name__, exc, text)
            self.stats.errors += 1
            self.mark("gap", f"unparseable message: {type(exc).__name__}: {exc}")
            raise Resubscribe("unparseable message", marked=True) from exc

    def _record(self, text: str) -> None:
        msg = json.loads(text)
        if not isinstance(msg, dict):
            raise TypeError("a message must be a JSON object")
        kind = msg.get("type", "?")
        sid, seq = msg.get("sid"), msg.get("seq")
        if kind in SEQUENCED and sid is not None and seq is not None:
            last = self._seq.get(sid)
            if last is not None and seq <= last:
                self.stats.duplicates += 1
                return
            if last is not None and seq != last + 1:
                self.mark("gap", f"seq gap on sid {sid}: {last} -> {seq}")
                raise Resubscribe(f"sid {sid} skipped from seq {last} to {seq}", marked=True)
            self._seq[sid] = seq
        body = msg.get("msg") if isinstance(msg.get("msg"), dict) else {}
        ticker = body.get("market_ticker")
        fields = {"sid": sid if sid is not None else NULL_INT, "seq": seq if seq is not None else NULL_INT, "market_ticker": ticker}
        if kind == "orderbook_delta":
            fields.update(side=body["side"], price_cents=round(float(body["price_dollars"]) * 100),
                          quantity=float(body["delta_fp"]), ts_ms=int(body.get("ts_ms", NULL_INT)))
        elif kind == "trade":
            fields.update(side=body.get("taker_outcome_side"), price_cents=round(float(body["yes_price_dollars"]) * 100),
                          quantity=float(body["count_fp"]), ts_ms=int(body["ts_ms"]))
        elif kind == "ticker":
            fields.update(ts_ms=int(body.get("ts_ms", NULL_INT)))
        elif kind == "subscribed":
            self._sids[body["channel"]] = body["sid"]
        elif kind == "error":
            self.stats.errors += 1
            code = body.get("code")
            log.warning("recorder: the exchange replied with error %s: %s", code, body.get("msg"))
            if code in TERMINAL_ERRORS:
                self.mark("gap", f"terminal error {code}: {body.get('msg')}")
                raise Resubscribe(f"terminal error {code}", marked=True)
        if ticker in self.dropped:
            # sent before the exchange took the unsubscription: writing it would reopen a finished city-day
            self.stats.after_drop += 1
            return
        self.stats.messages += 1
        key = self._key_of(ticker) if ticker else None
        row = self._row(kind, text, **fields)
        for k in ([key] if key else sorted(self._keys())):
            self.writer.add(k, row)

    # --- the connection -----------------------------------------------------------------------------
    def _headers(self) -> dict[str, str]:
        return self.signer.headers("GET", WS_PATH) if self.signer is not None else {}

    async def _send(self, ws, cmd: str, params: dict) -> None:
        self._cmd += 1
        await ws.send(json.dumps({"id": self._cmd, "cmd": cmd, "params": params}))

    async def session(self, stop: asyncio.Event) -> None:
        """One connection: subscribe, record until stopped or the stream breaks."""
        self.tickers = await asyncio.to_thread(self.open_markets)
        self.stats.markets = len(self.tickers)
        self._sids, self._seq = {}, {}
        self.connection += 1
        self.mark("gap", f"connection {self.connection}: the book is unknown until each market's snapshot")
        async with connect(self.cfg.ws_url, additional_headers=self._headers(), max_queue=None, open_timeout=20,
                           ping_interval=20, ping_timeout=20, close_timeout=5) as ws:
            if self.tickers:
                await self._send(ws, "subscribe", {"channels": list(CHANNELS), "market_tickers": sorted(self.tickers)})
            tasks = [asyncio.ensure_future(self._read(ws)), asyncio.ensure_future(self._maintain(ws)),
                     asyncio.ensure_future(stop.wait())]
            try:
                done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for t in tasks:
                    t.cancel()
            for t in done:
                if t is not tasks[2] and t.exception() is not None:
                    raise t.exception()
            if tasks[0] in done:
                raise Resubscribe("the exchange closed the connection")

    async def _read(self, ws) -> None:
        async for text in ws:
            self.record(text)

    async def _maintain(self, ws) -> None:
        """Heartbeats, segment rotation and event listings, beside the reading (a slow listing never
        holds up the stream)."""
        wait_s = min(0.5, max(0.005, self.clock.wall_seconds(self.cfg.heartbeat_s / 2)))
        next_refresh = self.clock.now_ts() + self.cfg.refresh_s
        next_beat = self.clock.now_ts() + self.cfg.heartbeat_s
        listing: asyncio.Future | None = None
        while True:
            await asyncio.sleep(wait_s)
            now = self.clock.now_ts()
            if now >= next_beat:
                # the exchange's pong: everything it sent before it has arrived (a reader of the segments may
                # count the book complete up to here, less the delivery delay)
                pong = await ws.ping()
                try:
                    await asyncio.wait_for(pong, self.cfg.pong_timeout_s)
                except asyncio.TimeoutError:
                    raise Resubscribe(f"no pong within {self.cfg.pong_timeout_s} s") from None
                self.mark("heartbeat", "pong")
                next_beat = self.clock.now_ts() + self.cfg.heartbeat_s
            self.writer.rotate(int(now * 1000))
            if listing is None and now >= next_refresh:
                listing = asyncio.ensure_future(asyncio.to_thread(self.open_markets))
            if listing is not None and listing.done():
                if listing.exception() is not None:
                    log.warning("recorder: listing events failed (%s); trying again later", listing.exception())
                else:
                    await self._refresh(ws, listing.result())
                listing, next_refresh = None, self.clock.now_ts() + self.cfg.refresh_s

    async def _refresh(self, ws, current: dict[str, Key]) -> None:
        """Subscribe to markets that have listed since; stop recording markets whose event has closed."""
        new = sorted(set(current) - set(self.tickers))
        gone = sorted(set(self.tickers) - set(current))
        if new:
            if self._sids:
                for channel in CHANNELS:
                    await self._send(ws, "update_subscription", {"sids": [self._sids[channel]], "market_tickers": new,
                                                                 "action": "add_markets"})
            else:
                await self._send(ws, "subscribe", {"channels": list(CHANNELS), "market_tickers": new})
            log.info("recorder: added %d markets: %s", len(new), ", ".join(new))
        if gone and self._sids:
            for channel in CHANNELS:
                await self._send(ws, "update_subscription", {"sids": [self._sids[channel]], "market_tickers": gone,
                                                             "action": "delete_markets"})
        old_keys = set(self.tickers.values())
        self.dropped = (self.dropped | set(gone)) - set(current)
        self.tickers = {**{t: k for t, k in self.tickers.items() if t not in gone}, **current}
        for key in old_keys - set(self.tickers.values()):
            self.writer.close(key)
        self.stats.markets = len(self.tickers)

    async def run(self, stop: asyncio.Event) -> None:
        """Record until ``stop`` is set, reconnecting with backoff; then close every segment."""
        attempt = 0
        status = asyncio.ensure_future(self._status(stop))
        try:
            while not stop.is_set():
                try:
                    await self.session(stop)
                    attempt = 0
                except (ConnectionClosed, OSError, InvalidHandshake, Resubscribe, asyncio.TimeoutError, ApiError) as exc:
                    if not getattr(exc, "marked", False):
                        self.mark("gap", f"connection lost: {type(exc).__name__}: {exc}")
                    if isinstance(exc, InvalidStatus) and exc.response.status_code in (401, 403):
                        log.error("recorder: the exchange refused the credentials (%s)", exc.response.status_code)
                    self.stats.reconnects += 1
                    delay = min(self.cfg.backoff_max_s, self.cfg.backoff_s * 2 ** attempt) * random.uniform(0.5, 1.0)
                    attempt += 1
                    log.warning("recorder: %s; reconnecting in %.1f s", exc, delay)
                    try:
                        await asyncio.wait_for(stop.wait(), delay)
                    except asyncio.TimeoutError:
                        pass
        finally:
            self.mark("gap", "recorder stop")
            self.writer.close_all()
            status.cancel()
            log.info(self.stats.line(0, 1.0) + f"; {self.writer.closed} segments closed, {self.writer.rows_written} rows")

    async def _status(self, stop: asyncio.Event) -> None:
        last_n, last_t = self.stats.messages, time.monotonic()
        while not stop.is_set():
            await asyncio.sleep(self.cfg.status_every_s)
            now = time.monotonic()
            log.info(self.stats.line(self.stats.messages - last_n, now - last_t))
            last_n, last_t = self.stats.messages, now
