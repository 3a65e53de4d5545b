"""The simulated exchange on a loopback port: Kalshi's REST API (``/trade-api/v2/...``, the same
``SimulatedExchange``) and its market-data WebSocket (``/trade-api/ws/v2``) side by side, on one clock.

The WebSocket speaks the AsyncAPI spec's commands (``subscribe``, ``unsubscribe``, ``update_subscription``
with ``add_markets`` / ``delete_markets`` / ``get_snapshot``, ``list_subscriptions``) and channels
(``orderbook_delta``: an ``orderbook_snapshot`` per market, then ``orderbook_delta`` messages; ``trade``;
``ticker``), one ``sid`` per channel subscription and a per-``sid`` ``seq`` on the sequenced channels. The
handshake needs the signed-auth headers REST uses (verified when the server has the public key). Its book
is ``order_book.SimulatedBook``: the world's quotes with depth, so the book, the candles and the ticker
agree, and ``book_at`` answers what the book was at any instant.

Faults on request (``WsFaults``, instants on the exchange's clock, each fired once): a dropped connection,
a skipped ``seq`` (a delta lost on the way), a duplicated message, a buffer overflow (error 25, then the
socket closes). A consumer that really falls behind (more than ``buffer_limit`` bytes it has not read
waiting on the server) gets the same overflow. Bad commands get
the spec's error replies.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import json
import logging
import threading
import uuid
from dataclasses import dataclass, field
from typing import Any

import httpx
import numpy as np
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import rsa
from websockets.asyncio.server import ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from kw_assets.sources.clock import Clock
from kw_assets.sources.kalshi.signing import PSS, signed_message
from kw_assets.sources.simulator.exchange import KalshiApiError, SimulatedExchange
from kw_assets.sources.simulator.order_book import SIDES, SimulatedBook
from kw_assets.sources.simulator.world import World

WS_PATH = "/trade-api/ws/v2"
REST_PREFIX = "/trade-api/v2"
CHANNELS = ("orderbook_delta", "trade", "ticker")
SEQUENCED = ("orderbook_delta", "trade")
ERRORS = {1: "Unable to process message", 2: "Params required", 3: "Channels required", 4: "Subscription IDs required",
          5: "Unknown command", 7: "Unknown subscription ID", 8: "Unknown channel name", 11: "Invalid parameter",
          12: "Exactly one subscription ID is required", 13: "Unsupported action", 14: "Market Ticker required",
          15: "Action required", 25: "Subscription buffer overflow"}
log = logging.getLogger(__name__)


class _SlowConsumer(Exception):
    """More than ``buffer_limit`` bytes wait for the client to read them."""


@dataclass
class WsFaults:
    """Instants (unix seconds on the exchange's clock) at which each fault fires, once each."""
    drop_at: tuple[float, ...] = ()
    skip_seq_at: tuple[float, ...] = ()
    duplicate_at: tuple[float, ...] = ()
    overflow_at: tuple[float, ...] = ()
    fired: list[tuple[str, float, float]] = field(default_factory=list)  # (kind, scheduled, fired at)

    def due(self, kind: str, now: float) -> bool:
        at = {"drop": self.drop_at, "skip_seq": self.skip_seq_at, "duplicate": self.duplicate_at, "overflow": self.overflow_at}[kind]
        pending = [t for t in at if t <= now and not any(f[0] == kind and f[1] == t for f in self.fired)]
        if not pending:
            return False
        self.fired.append((kind, pending[0], now))
        return True


def market_id(ticker: str) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"kalshi-sim:{ticker}"))


def _dollars(cents: np.ndarray) -> list[str]:
    return [f"{c / 100:.4f}" for c in np.asarray(cents).tolist()]


def _fp(counts: np.ndarray) -> list[str]:
    return [f"{c:.2f}" for c in np.asarray(counts, float).tolist()]


@dataclass
class _Sub:
    sid: int
    channel: str
    tickers: list[str]
    seq: int = 0
    last_ts: float = 0.0


class _Event:
    """One event's world and book, and its tickers' bracket numbers."""

    def __init__(self, w: World, seed: int):
        self.w = w
        self.book = SimulatedBook(w, seed)
        self.bracket = {b.ticker: i for i, b in enumerate(w.brackets)}


class SimulatedMarketServer:
    def __init__(self, exchange: SimulatedExchange, clock: Clock, faults: WsFaults | None = None,
                 verify_key: rsa.RSAPublicKey | None = None, tick_s: float = 0.05, buffer_limit: int = 8 << 20):
        self.exchange, self.clock = exchange, clock
        self.faults = faults or WsFaults()
        self.verify_key, self.tick_s, self.buffer_limit = verify_key, tick_s, buffer_limit
        self._events: dict[str, _Event] = {}
        self._next_sid = 0
        self.sent = 0
        self.connections = 0
        self.overflows = 0

    # --- the book the exchange itself holds ------------------------------------------------------------
    def event(self, event_ticker: str) -> _Event:
        if event_ticker not in self._events:
            self._events[event_ticker] = _Event(self.exchange._world_for_event(event_ticker), self.exchange.seed)
        return self._events[event_ticker]

    def book_at(self, event_ticker: str, ts: float) -> dict[str, np.ndarray]:
        """Each market's book in force at ``ts``: ticker -> 2 x 100 contracts (YES bids, NO bids by cent)."""
        ev = self.event(event_ticker)
        sizes = ev.book.at(ts)
        return {t: sizes[i] for t, i in ev.bracket.items()}

    # --- HTTP: REST passthrough and the handshake's auth ------------------------------------------------
    async def process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        path = request.path.split("?", 1)[0]
        if path.startswith(REST_PREFIX):
            resp = await asyncio.to_thread(self.exchange.handle, httpx.Request("GET", f"http://exchange{request.path}"))
            headers = Headers({"Content-Type": "application/json", "Content-Length": str(len(resp.content)),
                               "Connection": "close"})
            return Response(resp.status_code, resp.reason_phrase, headers, resp.content)
        if path != WS_PATH:
            return connection.respond(404, "not found\n")
        missing = [h for h in ("KALSHI-ACCESS-KEY", "KALSHI-ACCESS-TIMESTAMP", "KALSHI-ACCESS-SIGNATURE") if h not in request.headers]
        if missing:
            return connection.respond(401, f"authentication required: missing {', '.join(missing)}\n")
        if self.verify_key is not None:
            try:
                self.verify_key.verify(base64.b64decode(request.headers["KALSHI-ACCESS-SIGNATURE"]),
                                       signed_message(request.headers["KALSHI-ACCESS-TIMESTAMP"], "GET", WS_PATH),
                                       PSS, hashes.SHA256())
            except (InvalidSignature, ValueError):
                return connection.respond(401, "invalid signature\n")
        return None

    # --- the WebSocket --------------------------------------------------------------------------------
    async def handler(self, conn: ServerConnection) -> None:
        self.connections += 1
        subs: dict[int, _Sub] = {}
        commands: asyncio.Queue[str] = asyncio.Queue()

        async def read() -> None:
            async for text in conn:
                await commands.put(text)

        reader = asyncio.create_task(read())
        try:
            while not reader.done():
                while not commands.empty():
                    await self._command(conn, subs, commands.get_nowait())
                now = self.clock.now_ts()
                if await self._faults(conn, subs, now):
                    return
                for sub in list(subs.values()):
                    await self._stream(conn, sub, now)
                await asyncio.wait([reader], timeout=self.tick_s)
        except ConnectionClosed:
            pass
        except _SlowConsumer:
            await self._overflow(conn, subs, "a consumer that stopped reading")
        finally:
            reader.cancel()

    async def _send(self, conn: ServerConnection, msg: dict) -> None:
        if conn.transport.get_write_buffer_size() > self.buffer_limit:
            raise _SlowConsumer()  # checked before a send can wait on the client (the write limit is above it)
        await conn.send(json.dumps(msg, separators=(",", ":")))
        self.sent += 1

    async def _error(self, conn: ServerConnection, cmd_id: Any, code: int, detail: str = "", sid: int | None = None) -> None:
        msg: dict[str, Any] = {"type": "error", "msg": {"code": code, "msg": ERRORS[code] + (f": {detail}" if detail else "")}}
        if cmd_id is not None:
            msg["id"] = cmd_id
        if sid is not None:
            msg["sid"] = sid
        await self._send(conn, msg)

    async def _command(self, conn: ServerConnection, subs: dict[int, _Sub], text: str) -> None:
        try:
            cmd = json.loads(text)
            if not isinstance(cmd, dict):
                raise ValueError
        except ValueError:
            return await self._error(conn, None, 1, "not a JSON object")
        cid, name, params = cmd.get("id"), cmd.get("cmd"), cmd.get("params")
        if name not in ("subscribe", "unsubscribe", "update_subscription", "list_subscriptions"):
            return await self._error(conn, cid, 5, str(name))
        if name == "list_subscriptions":
            return await self._send(conn, {"id": cid, "type": "list_subscriptions",
                                           "msg": [{"sid": s.sid, "channel": s.channel} for s in subs.values()]})
        if not isinstance(params, dict):
            return await self._error(conn, cid, 2)
        if name == "subscribe":
            return await self._subscribe(conn, subs, cid, params)
        if name == "unsubscribe":
            sids = params.get("sids")
            if not sids:
                return await self._error(conn, cid, 4)
            for sid in sids:
                if sid not in subs:
                    await self._error(conn, cid, 7, str(sid))
                    continue
                sub = subs.pop(sid)
                await self._send(conn, {"id": cid, "sid": sid, "seq": sub.seq, "type": "unsubscribed"})
            return None
        return await self._update(conn, subs, cid, params)

    def _tickers(self, params: dict) -> list[str] | None:
        if "market_ticker" in params:
            return [params["market_ticker"]]
        return params.get("market_tickers")

    async def _check_tickers(self, conn, cid, tickers) -> bool:
        if not isinstance(tickers, list) or not all(isinstance(t, str) for t in tickers):
            await self._error(conn, cid, 11, "market_tickers must be a list of strings")
            return False
        for t in tickers:
            try:
                ev = self.event(t.rsplit("-", 1)[0])
            except KalshiApiError:
                ev = None
            if ev is None or t not in ev.bracket:
                await self._error(conn, cid, 11, f"unknown market ticker {t}")
                return False
        return True

    async def _subscribe(self, conn, subs, cid, params) -> None:
        channels = params.get("channels")
        if not channels or not isinstance(channels, list):
            return await self._error(conn, cid, 3)
        bad = [c for c in channels if c not in CHANNELS]
        if bad:
            return await self._error(conn, cid, 8, ", ".join(map(str, bad)))
        tickers = self._tickers(params)
        if "orderbook_delta" in channels and not tickers:
            return await self._error(conn, cid, 14)
        if tickers is not None and not await self._check_tickers(conn, cid, tickers):
            return None
        now = self.clock.now_ts()
        for channel in channels:
            self._next_sid += 1
            sub = _Sub(self._next_sid, channel, list(dict.fromkeys(tickers or [])), last_ts=now)
            subs[sub.sid] = sub
            await self._send(conn, {"id": cid, "type": "subscribed", "msg": {"channel": channel, "sid": sub.sid}})
            if channel == "orderbook_delta":
                await self._snapshots(conn, sub, sub.tickers, now)

    async def _update(self, conn, subs, cid, params) -> None:
        action = params.get("action")
        if not action:
            return await self._error(conn, cid, 15)
        sids = params.get("sids", [params["sid"]] if "sid" in params else [])
        if len(sids) != 1:
            return await self._error(conn, cid, 12)
        sub = subs.get(sids[0])
        if sub is None:
            return await self._error(conn, cid, 7, str(sids[0]))
        if action not in ("add_markets", "delete_markets", "get_snapshot"):
            return await self._error(conn, cid, 13, str(action))
        tickers = self._tickers(params)
        if not tickers:
            return await self._error(conn, cid, 14)
        if not await self._check_tickers(conn, cid, tickers):
            return None
        now = self.clock.now_ts()
        if action == "get_snapshot":
            return await self._snapshots(conn, sub, tickers, now)
        if action == "add_markets":
            new = [t for t in tickers if t not in sub.tickers]
            await self._stream(conn, sub, now)  # the markets it had are brought to now first
            sub.tickers += new
            await self._send(conn, {"id": cid, "sid": sub.sid, "seq": sub.seq, "type": "ok", "msg": {"market_tickers": sub.tickers}})
            if sub.channel == "orderbook_delta":
                await self._snapshots(conn, sub, new, now)
        else:
            sub.tickers = [t for t in sub.tickers if t not in tickers]
            await self._send(conn, {"id": cid, "sid": sub.sid, "seq": sub.seq, "type": "ok", "msg": {"market_tickers": sub.tickers}})

    def _next_seq(self, sub: _Sub) -> int:
        sub.seq += 1
        return sub.seq

    async def _emit(self, conn, sub: _Sub, msg: dict) -> None:
        if msg["type"] == "orderbook_delta" and self.faults.due("skip_seq", sub.last_ts):
            return  # lost on the way: its seq is used, the message never arrives
        await self._send(conn, msg)
        if sub.channel == "orderbook_delta" and self.faults.due("duplicate", sub.last_ts):
            await self._send(conn, msg)

    async def _snapshots(self, conn, sub: _Sub, tickers: list[str], now: float) -> None:
        for t in tickers:
            ev = self.event(t.rsplit("-", 1)[0])
            sizes = ev.book.at(now)[ev.bracket[t]]
            msg: dict[str, Any] = {"market_ticker": t, "market_id": market_id(t)}
            for side, name in enumerate(SIDES):
                prices = np.nonzero(sizes[side])[0]
                if prices.size:
                    msg[f"{name}_dollars_fp"] = [list(p) for p in zip(_dollars(prices), _fp(sizes[side][prices]))]
            await self._emit(conn, sub, {"type": "orderbook_snapshot", "sid": sub.sid, "seq": self._next_seq(sub), "msg": msg})

    async def _stream(self, conn, sub: _Sub, now: float) -> None:
        """Everything on the subscription's channel for its markets in (last sent, now]."""
        if now <= sub.last_ts:
            return
        lo, sub.last_ts = sub.last_ts, now
        by_event: dict[str, list[str]] = {}
        for t in sub.tickers:
            by_event.setdefault(t.rsplit("-", 1)[0], []).append(t)
        for event_ticker, tickers in by_event.items():
            ev = self.event(event_ticker)
            wanted = np.zeros(len(ev.bracket), bool)
            wanted[[ev.bracket[t] for t in tickers]] = True
            if sub.channel == "orderbook_delta":
                await self._deltas(conn, sub, ev, wanted, lo, now)
            elif sub.channel == "trade":
                await self._trades(conn, sub, ev, wanted, lo, now)
            else:
                await self._tickers_msgs(conn, sub, ev, wanted, lo, now)

    async def _deltas(self, conn, sub, ev: _Event, wanted, lo, now) -> None:
        d = ev.book.deltas(lo, now)
        keep = wanted[d["bracket"]]
        tickers = [b.ticker for b in ev.w.brackets]
        for ts_ms, br, side, price, delta in zip(d["ts_ms"][keep].tolist(), d["bracket"][keep].tolist(), d["side"][keep].tolist(),
                                                 d["price"][keep].tolist(), d["delta"][keep].tolist()):
            t = tickers[br]
            await self._emit(conn, sub, {"type": "orderbook_delta", "sid": sub.sid, "seq": self._next_seq(sub), "msg": {
                "market_ticker": t, "market_id": market_id(t), "price_dollars": f"{price / 100:.4f}",
                "delta_fp": f"{delta:.2f}", "side": SIDES[side], "ts_ms": ts_ms}})

    async def _trades(self, conn, sub, ev: _Event, wanted, lo, now) -> None:
        w = ev.w
        a, b = np.searchsorted(w.trade_ts, [lo * 1e6, now * 1e6], side="right")
        for k in range(a, b):
            br = int(w.trade_bracket[k])
            if not wanted[br]:
                continue
            yes = bool(w.trade_yes[k])
            px = float(w.trade_price[k])
            ts_ms = int(w.trade_ts[k] // 1000)
            await self._emit(conn, sub, {"type": "trade", "sid": sub.sid, "seq": self._next_seq(sub), "msg": {
                "trade_id": w.trade_id[k], "market_ticker": w.brackets[br].ticker, "yes_price_dollars": f"{px:.4f}",
                "no_price_dollars": f"{1 - px:.4f}", "count_fp": f"{float(w.trade_count[k]):.2f}",
                "taker_side": "yes" if yes else "no", "taker_outcome_side": "yes" if yes else "no",
                "taker_book_side": "bid" if yes else "ask", "is_block_trade": bool(w.trade_block[k]),
                "ts": ts_ms // 1000, "ts_ms": ts_ms}})

    async def _tickers_msgs(self, conn, sub, ev: _Event, wanted, lo, now) -> None:
        w, book = ev.w, ev.book
        for s, br in book.quote_changes(lo, now).tolist():
            if not wanted[br]:
                continue
            ts = int(book.substep_time(s))
            bid, ask = float(w.bid[s, br]), float(w.ask[s, br])
            sizes = book.sizes(s, s + 1)[0, br]
            yes_best, no_best = int(round(bid * 100)), int(round((1 - ask) * 100))
            traded = (w.trade_bracket == br) & (w.trade_ts <= ts * 1e6)
            volume = float(w.trade_count[traded].sum())
            last = float(w.trade_price[traded][-1]) if traded.any() else 0.0
            await self._emit(conn, sub, {"type": "ticker", "sid": sub.sid, "msg": {
                "market_ticker": w.brackets[br].ticker, "market_id": market_id(w.brackets[br].ticker),
                "price_dollars": f"{last:.4f}", "yes_bid_dollars": f"{bid:.4f}", "yes_ask_dollars": f"{ask:.4f}",
                "volume_fp": f"{volume:.2f}", "open_interest_fp": f"{volume * 0.55:.2f}",
                "dollar_volume": int(volume * last), "dollar_open_interest": int(volume * 0.55 * last),
                "yes_bid_size_fp": f"{sizes[0, yes_best] if yes_best > 0 else 0.0:.2f}",
                "yes_ask_size_fp": f"{sizes[1, no_best] if no_best > 0 else 0.0:.2f}",
                "last_trade_size_fp": f"{float(w.trade_count[traded][-1]) if traded.any() else 0.0:.2f}",
                "ts": ts, "ts_ms": ts * 1000,
                "time": dt.datetime.fromtimestamp(ts, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")}})

    async def _faults(self, conn: ServerConnection, subs: dict[int, _Sub], now: float) -> bool:
        """Fire due connection faults; True when the connection is gone."""
        if self.faults.due("drop", now):
            log.info("fault: dropping the connection at %s", now)
            conn.transport.abort()
            return True
        backlog = conn.transport.get_write_buffer_size()
        if self.faults.due("overflow", now) or backlog > self.buffer_limit:
            await self._overflow(conn, subs, f"{backlog} bytes unsent")
            return True
        return False

    async def _overflow(self, conn: ServerConnection, subs: dict[int, _Sub], why: str) -> None:
        """Error 25 on the first subscription, then the socket closes (after what is buffered is sent)."""
        log.info("buffer overflow (%s)", why)
        self.overflows += 1
        msg = {"type": "error", "sid": next(iter(subs), None), "msg": {"code": 25, "msg": ERRORS[25]}}
        try:  # below the write limit: queued at once, after everything the client has not read yet
            await asyncio.wait_for(conn.send(json.dumps(msg)), 1.0)
            deadline = asyncio.get_running_loop().time() + 30
            while conn.transport.get_write_buffer_size() and asyncio.get_running_loop().time() < deadline:
                await asyncio.sleep(0.05)  # the error is delivered before the socket closes
            await conn.close(1008, "subscription buffer overflow")
        except (ConnectionClosed, asyncio.TimeoutError):
            pass


class ExchangeServer:
    """``SimulatedMarketServer`` on 127.0.0.1 in a thread of its own (tests, benches, the CLI)."""

    def __init__(self, server: SimulatedMarketServer, host: str = "127.0.0.1", port: int = 0):
        self.server, self.host, self.port = server, host, port
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="simulated-exchange", daemon=True)

    @property
    def rest_url(self) -> str:
        return f"http://{self.host}:{self.port}{REST_PREFIX}"

    @property
    def ws_url(self) -> str:
        return f"ws://{self.host}:{self.port}{WS_PATH}"

    def _run(self) -> None:
        asyncio.run(self._main())

    async def _main(self) -> None:
        self._loop, self._stop = asyncio.get_running_loop(), asyncio.Event()
        async with serve(self.server.handler, self.host, self.port, process_request=self.server.process_request,
                         ping_interval=10, write_limit=self.server.buffer_limit * 4, max_size=1 << 20,
                         close_timeout=2) as srv:
            self.port = srv.sockets[0].getsockname()[1]
            self._ready.set()
            await self._stop.wait()

    def __enter__(self) -> "ExchangeServer":
        self._thread.start()
        if not self._ready.wait(30):
            raise RuntimeError("the simulated exchange did not start within 30 s")
        return self

    def __exit__(self, *exc: object) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)
