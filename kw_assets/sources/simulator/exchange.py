"""A simulated Kalshi Trade API v2 behind an httpx transport: same paths, JSON shapes (dollar strings,
``_fp`` counts, sparse candles, historical suffix-less candles), cursors (newest-first trades), the
5,000-candle 400, the live/historical split at a cutoff, and 429s past its rate limit.

Time is the exchange's ``now`` (wall clock by default): events list, open, close and settle as it
passes, and nothing stamped after ``now`` is ever served.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import re
from typing import Any, Callable

import httpx
import numpy as np
import pandas as pd

from kw_assets.cities import City, all_cities, city_for_series, parse_event_ticker
from kw_assets.sources.http import ApiError
from kw_assets.sources.kalshi.parse import CANDLE_COLUMNS, TRADE_COLUMNS
from kw_assets.sources.simulator.faults import FaultConfig, FaultInjector, ServerRateLimit
from kw_assets.sources.simulator.order_book import SimulatedBook
from kw_assets.sources.simulator.world import LEGACY_SERIES_BEFORE, SUBSTEP_S, SUBSTEPS_PER_MIN, Agents, World, build_world
from kw_assets.sources.simulator.world_store import WorldStore
from kw_assets.model.stamps import utc_stamps

PREFIX = "/trade-api/v2"
TOO_MANY = json.dumps({"error": {"code": "too_many_requests", "message": "too many requests"}}).encode()
LISTED_BEFORE_OPEN_S = 10 * 3600
ARCHIVE_AFTER = dt.timedelta(days=90)
SIM_FIRST_DAY = dt.date(2024, 1, 1)


def _iso(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _d(x: float | None) -> str | None:
    return None if x is None or not np.isfinite(x) else f"{x:.4f}"


def _fp(x: float) -> str:
    return f"{x:.2f}"


_CENT_TEXT = np.array([f"{i / 100:.4f}" for i in range(101)], dtype=object)
_CENT_VALUE = np.array([float(t) for t in _CENT_TEXT])


def _prices(values: np.ndarray) -> list:
    """Dollar strings for many prices at once (cent prices from a table, others formatted)."""
    v = np.asarray(values, float)
    out = np.full(v.shape, None, dtype=object)
    finite = np.isfinite(v)
    cents = np.rint(np.where(finite, v, 0) * 100)
    on_cent = finite & (np.abs(v * 100 - cents) < 1e-7) & (cents >= 0) & (cents <= 100)
    out[on_cent] = _CENT_TEXT[cents[on_cent].astype(int)]
    other = finite & ~on_cent
    out[other] = [f"{x:.4f}" for x in v[other]]
    return out.tolist()


# ``_candle_columns``' price arrays and the candle columns they become
_CANDLE_FIELDS = dict(zip(("bo", "bl", "bh", "bc", "ao", "al", "ah", "ac", "po", "pl", "ph", "pc", "pm", "pp"),
                          [f"yes_bid_{k}" for k in ("open", "low", "high", "close")]
                          + [f"yes_ask_{k}" for k in ("open", "low", "high", "close")]
                          + [f"price_{k}" for k in ("open", "low", "high", "close", "mean", "previous")]))


def _as_parsed(values: np.ndarray, decimals: int = 4) -> np.ndarray:
    """The floats a client parses from this exchange's text for ``values``: dollar prices as ``_prices``
    writes them (``decimals`` 4), counts as ``%.2f`` (``decimals`` 2); NaN where the JSON has null."""
    v = np.asarray(values, float)
    out = np.full(v.shape, np.nan)
    finite = np.isfinite(v)
    if decimals == 4:
        cents = np.rint(np.where(finite, v, 0) * 100)
        on_cent = finite & (np.abs(v * 100 - cents) < 1e-7) & (cents >= 0) & (cents <= 100)
        out[on_cent] = _CENT_VALUE[cents[on_cent].astype(int)]
        finite &= ~on_cent
    # x rounded to ``decimals`` places is k / 10**decimals, and dividing the two exact numbers gives the double
    # nearest it, which is what parsing the text gives. The product x * 10**decimals is off by at most half its
    # ulp, under 1e-6 below 2**33: only a product that close to a half (or larger) is formatted and parsed
    scale = 10.0 ** decimals
    scaled = np.where(finite, v, 0) * scale
    k = np.rint(scaled)
    exact = finite & (np.abs(scaled - np.floor(scaled) - 0.5) > 1e-6) & (np.abs(scaled) < 2.0**33)
    out[exact] = k[exact] / scale
    rest = finite & ~exact
    out[rest] = [float(f"{x:.{decimals}f}") for x in v[rest]]
    return out


def _across(substeps: np.ndarray, pairwise: np.ufunc) -> np.ndarray:
    """Each row's min or max (``np.minimum`` / ``np.maximum``) over its few columns, a minute's substeps: one
    vector operation per column, where ``min(axis=1)`` ran numpy's reduction loop per row of 4 (13x slower)."""
    out = substeps[:, 0].copy()
    for k in range(1, substeps.shape[1]):
        pairwise(out, substeps[:, k], out=out)
    return out


class RawJson(str):
    """JSON text encoded ahead (candles, trades: thousands of small objects built from arrays), spliced
    into the response as is."""


def dumps(body: Any) -> str:
    """``json.dumps`` that splices ``RawJson`` values (and lists of them) in unchanged."""
    raws: list[str] = []

    def swap(x):
        if isinstance(x, RawJson):
            raws.append(x)
            return f"\x00{len(raws) - 1}\x00"
        if isinstance(x, list) and x and all(isinstance(v, RawJson) for v in x):
            raws.append("[" + ",".join(x) + "]")
            return f"\x00{len(raws) - 1}\x00"
        if isinstance(x, dict):
            return {k: swap(v) for k, v in x.items()}
        if isinstance(x, list):
            return [swap(v) for v in x]
        return x

    text = json.dumps(swap(body))
    for i, raw in enumerate(raws):
        text = text.replace(f'"\\u0000{i}\\u0000"', raw, 1)
    return text


def _tokens(values: list) -> list[str]:
    """JSON tokens of optional strings: '"0.4500"' or 'null'."""
    return ["null" if v is None else f'"{v}"' for v in values]


class KalshiApiError(Exception):
    def __init__(self, status: int, message: str):
        self.status, self.message = status, message


class SimulatedExchange:
    def __init__(self, seed: int = 7, now: Callable[[], dt.datetime] | None = None,
                 rate_limit: float | None = None, faults: FaultConfig | None = None,
                 cities: tuple[City, ...] | None = None, first_day: dt.date = SIM_FIRST_DAY,
                 agents: Agents = Agents(), store: WorldStore | None = None):
        self.seed = seed
        self.agents = agents
        self._now = now or (lambda: dt.datetime.now(dt.timezone.utc))
        self.limit = ServerRateLimit(rate_limit) if rate_limit else None
        self.faults = FaultInjector(faults or FaultConfig())
        self.cities = cities or all_cities()
        self.first_day = first_day
        self.store = store
        self.requests = 0
        self._books: dict[str, SimulatedBook] = {}

    # --- plumbing ----------------------------------------------------------------------------------
    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handle)

    def now_ts(self) -> float:
        return self._now().timestamp()

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.requests += 1
        injected = self.faults.before(request, TOO_MANY, self.now_ts())
        if injected is not None:
            return injected
        if self.limit is not None and not self.limit.allow():
            return httpx.Response(429, content=TOO_MANY, headers={"content-type": "application/json"})
        path = request.url.path
        if not path.startswith(PREFIX):
            return _error(404, "not found")
        q = {k: v for k, v in request.url.params.items()}
        if len(request.url.params.get_list("tickers")) > 1:  # an exploded array parameter
            q["tickers"] = ",".join(request.url.params.get_list("tickers"))
        try:
            body = self._route(path[len(PREFIX):], q)
        except KalshiApiError as exc:
            return _error(exc.status, exc.message)
        return httpx.Response(200, content=dumps(body).encode(), headers={"content-type": "application/json"})

    def _route(self, path: str, q: dict[str, str]) -> Any:
        routes: list[tuple[str, Callable[..., Any]]] = [
            (r"/historical/cutoff", self.cutoff),
            (r"/historical/markets", self.historical_markets),
            (r"/historical/markets/(?P<ticker>[^/]+)/candlesticks", self.historical_candles),
            (r"/historical/trades", lambda q: self.trades(q, historical=True)),
            (r"/series/(?P<series>[^/]+)", self.series),
            (r"/series/(?P<series>[^/]+)/events/(?P<event>[^/]+)/candlesticks", self.event_candles),
            (r"/series/(?P<series>[^/]+)/markets/(?P<ticker>[^/]+)/candlesticks", self.market_candles),
            (r"/events", self.events),
            (r"/events/(?P<event>[^/]+)", self.event),
            (r"/markets", self.markets),
            (r"/markets/trades", lambda q: self.trades(q, historical=False)),
            (r"/markets/candlesticks", self.batch_candles),
            (r"/markets/orderbooks", self.orderbooks),
            (r"/markets/(?P<ticker>[^/]+)/orderbook", self.orderbook),
        ]
        for pattern, fn in routes:
            m = re.fullmatch(pattern, path)
            if m:
                return fn(q, **m.groupdict())
        raise KalshiApiError(404, f"no route for {path}")

    # --- the simulated world as the API sees it ------------------------------------------------------
    def _cutoff_ts(self) -> float:
        now = self._now()
        day = (now - ARCHIVE_AFTER).date()
        return dt.datetime(day.year, day.month, day.day, tzinfo=dt.timezone.utc).timestamp()

    def _world_for_event(self, ticker: str) -> World:
        try:
            series, day = parse_event_ticker(ticker)
            city = city_for_series(series)
        except (ValueError, KeyError):
            raise KalshiApiError(404, f"event {ticker} not found")
        if day < self.first_day:
            raise KalshiApiError(404, f"event {ticker} not found")
        w = self._world(city, day)
        if w.event_ticker != ticker or self.now_ts() < w.open_time - LISTED_BEFORE_OPEN_S:
            raise KalshiApiError(404, f"event {ticker} not found")
        return w

    def _world(self, city: City, day: dt.date) -> World:
        if self.store is None:
            return build_world(city, day, self.seed, self.agents)
        return self.store.world(city, day, self.seed, self.agents)

    def _world_for_market(self, ticker: str) -> tuple[World, int]:
        w = self._world_for_event(ticker.rsplit("-", 1)[0])
        for i, b in enumerate(w.brackets):
            if b.ticker == ticker:
                return w, i
        raise KalshiApiError(404, f"market {ticker} not found")

    def _archived(self, w: World) -> bool:
        return w.settlement_ts < self._cutoff_ts()

    def _status(self, w: World) -> tuple[str, str]:
        """(market status value, event status filter value) at now."""
        now = self.now_ts()
        if now < w.open_time:
            return "initialized", "unopened"
        if now < w.close_time:
            return "active", "open"
        if now < w.settlement_ts:
            return "closed", "closed"
        return "finalized", "settled"

    def _substep_now(self, w: World) -> int:
        return int(np.clip((self.now_ts() - w.open_time) // SUBSTEP_S, 0, w.bid.shape[0] - 1))

    def _market_json(self, w: World, i: int, historical: bool = False) -> dict:
        b = w.brackets[i]
        status, _ = self._status(w)
        settled = status == "finalized"
        s = self._substep_now(w)
        live_trades = (w.trade_bracket == i) & (w.trade_ts <= self.now_ts() * 1e6)
        volume = float(w.trade_count[live_trades].sum())
        last = w.trade_price[live_trades][-1] if live_trades.any() else None
        strike = (lambda x: None if x is None else (f"{x:g}" if historical else x))
        m = {
            "ticker": b.ticker, "event_ticker": w.event_ticker, "market_type": "binary",
            "title": f"Will the high temp in {w.city.name} be {b.sub_title} on {w.day:%b %d, %Y}?",
            "yes_sub_title": b.sub_title, "no_sub_title": b.sub_title, "strike_type": b.strike_type,
            "open_time": _iso(w.open_time), "close_time": _iso(w.close_time),
            "expected_expiration_time": _iso(w.expected_expiration), "latest_expiration_time": _iso(w.expected_expiration + 7 * 86400),
            "status": status, "result": ("yes" if i == w.winner else "no") if settled else "",
            "expiration_value": f"{w.official_high:.2f}" if settled else "",
            "settlement_value_dollars": _d(1.0 if i == w.winner else 0.0) if settled else None,
            "yes_bid_dollars": _d(w.bid[s, i]), "yes_ask_dollars": _d(w.ask[s, i]),
            "last_price_dollars": _d(last if last is not None else 0.0),
            "volume_fp": _fp(volume), "open_interest_fp": _fp(volume * 0.55),
            "price_level_structure": "linear_cent",
            "rules_primary": f"If the highest temperature recorded at {w.city.station} for {w.day:%b %d, %Y} is {b.sub_title}, "
                             "then the market resolves to Yes. (simulated)",
        }
        if b.floor is not None:
            m["floor_strike"] = strike(b.floor)
        if b.cap is not None:
            m["cap_strike"] = strike(b.cap)
        if settled:
            m["settlement_ts"] = _iso(w.settlement_ts)
        return m

    def _event_json(self, w: World) -> dict:
        return {"event_ticker": w.event_ticker, "series_ticker": w.series_ticker,
                "title": f"Highest temperature in {w.city.name} on {w.day:%b %d, %Y}",
                "sub_title": f"On {w.day:%b %d, %Y}", "collateral_return_type": "MECNET", "mutually_exclusive": True,
                "strike_date": _iso(w.close_time), "settlement_sources": [{"name": "simulated", "url": ""}]}

    # --- endpoints ---------------------------------------------------------------------------------
    def cutoff(self, q):
        c = _iso(self._cutoff_ts())
        return {"market_settled_ts": c, "trades_created_ts": c, "orders_updated_ts": c,
                "market_positions_last_updated_ts": c}

    def series(self, q, series):
        try:
            city = city_for_series(series)
        except KeyError:
            raise KalshiApiError(404, f"series {series} not found")
        return {"series": {"ticker": series, "title": f"Highest temperature in {city.name}", "frequency": "daily",
                           "category": "Climate and Weather", "fee_type": "quadratic", "fee_multiplier": 1,
                           "settlement_sources": [{"name": "simulated", "url": ""}], "contract_terms_url": ""}}

    def _event_days(self, series: str) -> list[tuple[City, dt.date]]:
        try:
            city = city_for_series(series)
        except KeyError:
            return []
        legacy = series == city.legacy_series_ticker
        last = (self._now() + dt.timedelta(days=2)).date()
        first = self.first_day if legacy else max(self.first_day, LEGACY_SERIES_BEFORE)
        if legacy:
            last = min(last, LEGACY_SERIES_BEFORE - dt.timedelta(days=1))
        days = [first + dt.timedelta(days=k) for k in range((last - first).days + 1)]
        return [(city, d) for d in days]

    def events(self, q):
        limit = _limit(q, 200)
        status, min_close = q.get("status"), int(q.get("min_close_ts") or 0)
        now = self.now_ts()
        rows = []
        for city, day in reversed(self._event_days(q.get("series_ticker", ""))):
            start, end = city.climate_day_window(day)
            close = end.timestamp() - 60
            if close < min_close:
                continue
            open_time = start.timestamp() - start.timestamp() % 86400 - 86400 + 14 * 3600
            if now < open_time - LISTED_BEFORE_OPEN_S:
                continue
            w = self._world(city, day)
            if status and self._status(w)[1] != status:
                continue
            ev = self._event_json(w)
            if q.get("with_nested_markets") == "true" and not self._archived(w):
                ev["markets"] = [self._market_json(w, i) for i in range(len(w.brackets))]
            rows.append(ev)
        return self._page(rows, q, limit, "events")

    def event(self, q, event):
        w = self._world_for_event(event)
        markets = [] if self._archived(w) else [self._market_json(w, i) for i in range(len(w.brackets))]
        return {"event": self._event_json(w), "markets": markets}

    def markets(self, q):
        if "event_ticker" not in q:
            raise KalshiApiError(400, "the simulator serves /markets by event_ticker only")
        try:
            w = self._world_for_event(q["event_ticker"])
        except KalshiApiError:
            return {"markets": [], "cursor": ""}
        rows = [] if self._archived(w) else [self._market_json(w, i) for i in range(len(w.brackets))]
        return self._page(rows, q, _limit(q, 1000), "markets")

    def historical_markets(self, q):
        if "event_ticker" not in q:
            raise KalshiApiError(400, "the simulator serves /historical/markets by event_ticker only")
        try:
            w = self._world_for_event(q["event_ticker"])
        except KalshiApiError:
            return {"markets": [], "cursor": ""}
        rows = [self._market_json(w, i, historical=True) for i in range(len(w.brackets))] if self._archived(w) else []
        return self._page(rows, q, _limit(q, 1000), "markets")

    def _book(self, w: World) -> SimulatedBook:
        if w.event_ticker not in self._books:
            if len(self._books) >= 64:
                self._books.pop(next(iter(self._books)))
            self._books[w.event_ticker] = SimulatedBook(w, self.seed)
        return self._books[w.event_ticker]

    def _orderbook_fp(self, ticker: str, depth: int) -> dict:
        """The market's book now, as ``orderbook_fp``: YES and NO bids, best first (``depth`` levels; 0: all)."""
        w, i = self._world_for_market(ticker)
        sizes = self._book(w).at(self.now_ts())[i]
        out = {}
        for k, name in enumerate(("yes_dollars", "no_dollars")):
            prices = np.nonzero(sizes[k])[0][::-1]
            prices = prices[:depth] if depth > 0 else prices
            out[name] = [[_d(p / 100), _fp(sizes[k, p])] for p in prices]
        return out

    def orderbook(self, q, ticker):
        return {"orderbook_fp": self._orderbook_fp(ticker, _depth(q))}

    def orderbooks(self, q):
        tickers = [t for t in (q.get("tickers") or "").split(",") if t]
        if not 1 <= len(tickers) <= 100:
            raise KalshiApiError(400, "tickers: between 1 and 100 market tickers are required")
        return {"orderbooks": [{"ticker": t, "orderbook_fp": self._orderbook_fp(t, 0)} for t in tickers]}

    def _candle_window(self, q, n_markets: int, cap: int = 5000) -> tuple[int, int, int]:
        try:
            start, end, period = int(q["start_ts"]), int(q["end_ts"]), int(q["period_interval"])
        except (KeyError, ValueError):
            raise KalshiApiError(400, "start_ts, end_ts and period_interval are required integers")
        if period not in (1, 60, 1440):
            raise KalshiApiError(400, "period_interval must be 1, 60 or 1440")
        if period != 1:
            raise KalshiApiError(400, "the simulator serves 1-minute candles only")
        n = ((end - start) // (period * 60)) * n_markets
        if n > cap:
            raise KalshiApiError(400, f"requested time range with candlesticks: {n}, max candlesticks: {cap}")
        return start, min(end, int(self.now_ts())), period

    def event_candles(self, q, series, event):
        w = self._world_for_event(event)
        if self._archived(w):
            raise KalshiApiError(404, f"event {event} candlesticks are archived: use /historical")
        start, end, _ = self._candle_window(q, len(w.brackets))
        return {"market_tickers": [b.ticker for b in w.brackets],
                "market_candlesticks": [self._candles(w, i, start, end, False) for i in range(len(w.brackets))],
                "adjusted_end_ts": int(q["end_ts"])}

    def batch_candles(self, q):
        tickers = [t for t in q.get("market_tickers", "").split(",") if t]
        if not tickers or len(tickers) > 100:
            raise KalshiApiError(400, f"market_tickers must name 1 to 100 markets, got {len(tickers)}")
        start, end, _ = self._candle_window(q, len(tickers), cap=10_000)
        markets = []
        for ticker in tickers:
            w, i = self._world_for_market(ticker)
            if self._archived(w):
                raise KalshiApiError(404, f"market {ticker} is archived: use /historical")
            markets.append({"market_ticker": ticker, "candlesticks": self._candles(w, i, start, end, False)})
        return {"markets": markets}

    def market_candles(self, q, series, ticker):
        w, i = self._world_for_market(ticker)
        if self._archived(w):
            raise KalshiApiError(404, f"market {ticker} is archived: use /historical")
        start, end, _ = self._candle_window(q, 1)
        return {"ticker": ticker, "candlesticks": self._candles(w, i, start, end, False)}

    def historical_candles(self, q, ticker):
        w, i = self._world_for_market(ticker)
        if not self._archived(w):
            raise KalshiApiError(404, f"market {ticker} is not archived")
        start, end, _ = self._candle_window(q, 1)
        return {"ticker": ticker, "candlesticks": self._candles(w, i, start, end, True)}

    def _candle_columns(self, w: World, i: int, start: int, end: int) -> tuple[np.ndarray, np.ndarray, dict, np.ndarray, np.ndarray]:
        """One bracket's sparse 1-minute candles as arrays: (end_ts, traded, prices by field, volume, open
        interest) of the minutes whose quotes changed or that traded, within [start, end]."""
        n_min = w.bid.shape[0] // SUBSTEPS_PER_MIN
        bid = w.bid[: n_min * SUBSTEPS_PER_MIN, i].reshape(n_min, SUBSTEPS_PER_MIN)
        ask = w.ask[: n_min * SUBSTEPS_PER_MIN, i].reshape(n_min, SUBSTEPS_PER_MIN)
        end_ts = w.open_time + 60 * (np.arange(n_min) + 1)
        sel = w.trade_bracket == i
        t_min = ((w.trade_ts[sel] // 1_000_000 - w.open_time) // 60).astype(int)
        t_px, t_ct = w.trade_price[sel], w.trade_count[sel]
        traded = np.bincount(t_min, minlength=n_min)[:n_min] > 0
        prev_close_bid = np.concatenate([[np.nan], bid[:-1, -1]])
        prev_close_ask = np.concatenate([[np.nan], ask[:-1, -1]])
        bid_lo, bid_hi, ask_lo, ask_hi = _across(bid, np.minimum), _across(bid, np.maximum), _across(ask, np.minimum), _across(ask, np.maximum)
        changed = (bid_lo != bid_hi) | (ask_lo != ask_hi) | (bid[:, 0] != prev_close_bid) | (ask[:, 0] != prev_close_ask)
        active = (changed | traded) & (end_ts >= start) & (end_ts <= end)
        vol = np.bincount(t_min, weights=t_ct, minlength=n_min)[:n_min]
        oi = np.cumsum(vol) * 0.55
        first_idx = np.searchsorted(t_min, np.arange(n_min), side="left")
        last_idx = np.searchsorted(t_min, np.arange(n_min), side="right") - 1
        hi = np.full(n_min, np.nan)
        lo = np.full(n_min, np.nan)
        np.fmax.at(hi, t_min, t_px)
        np.fmin.at(lo, t_min, t_px)
        notional = np.bincount(t_min, weights=t_px * t_ct, minlength=n_min)[:n_min]
        act = np.nonzero(active)[0]
        prev_idx = np.where(act > 0, last_idx[np.maximum(act - 1, 0)], -1)
        cols = {
            "bo": bid[act, 0], "bl": bid_lo[act], "bh": bid_hi[act], "bc": bid[act, -1],
            "ao": ask[act, 0], "al": ask_lo[act], "ah": ask_hi[act], "ac": ask[act, -1],
            "po": np.where(traded[act], t_px[np.clip(first_idx[act], 0, max(len(t_px) - 1, 0))] if len(t_px) else np.nan, np.nan),
            "pl": lo[act], "ph": hi[act],
            "pc": np.where(traded[act], t_px[np.clip(last_idx[act], 0, max(len(t_px) - 1, 0))] if len(t_px) else np.nan, np.nan),
            "pm": np.where(traded[act], notional[act] / np.where(vol[act] > 0, vol[act], 1), np.nan),
            "pp": np.where(prev_idx >= 0, t_px[np.maximum(prev_idx, 0)] if len(t_px) else np.nan, np.nan),
        }
        return end_ts[act], traded[act], cols, vol[act], oi[act]

    def _candles(self, w: World, i: int, start: int, end: int, historical: bool) -> list[RawJson]:
        """Sparse 1-minute candles of one bracket: only minutes whose quotes changed or that traded."""
        end_ts, traded, cols, vol, oi = self._candle_columns(w, i, start, end)
        sfx = "" if historical else "_dollars"
        tok = {k: _tokens(_prices(v)) for k, v in cols.items()}
        vkey, oikey = ("volume", "open_interest") if historical else ("volume_fp", "open_interest_fp")
        quote = "{" + ", ".join(f'"{k}{sfx}": %s' for k in ("open", "low", "high", "close")) + "}"
        full = "{" + ", ".join(f'"{k}{sfx}": %s' for k in ("open", "low", "high", "close", "mean", "previous")) + "}"
        if historical:
            no_trade = ['{"open": null, "low": null, "high": null, "close": null, "mean": null, "previous": %s}' % p
                        for p in tok["pp"]]
        else:
            no_trade = ["{}" if p == "null" else '{"previous_dollars": %s}' % p for p in tok["pp"]]
        price = [full % row if t else nt for row, t, nt in zip(zip(tok["po"], tok["pl"], tok["ph"], tok["pc"], tok["pm"], tok["pp"]),
                                                              traded.tolist(), no_trade)]
        bids = [quote % row for row in zip(tok["bo"], tok["bl"], tok["bh"], tok["bc"])]
        asks = [quote % row for row in zip(tok["ao"], tok["al"], tok["ah"], tok["ac"])]
        candle = f'{{"end_period_ts": %d, "yes_bid": %s, "yes_ask": %s, "price": %s, "{vkey}": "%.2f", "{oikey}": "%.2f"}}'
        return [RawJson(candle % row) for row in zip(end_ts.tolist(), bids, asks, price, vol.tolist(), oi.tolist())]

    # --- columnar batches: the values the JSON above parses to, without the JSON (ingest at scale) ---------
    def candle_batch(self, markets: pd.DataFrame) -> pd.DataFrame:
        """The event's candles over its trading window (up to now), as ``parse.candles_frame`` reads them from
        the JSON of the candlestick endpoints, bracket by bracket."""
        w = self._batch_world(markets)
        start, end = int(markets["open_time"].min().timestamp()), min(int(markets["close_time"].max().timestamp()), int(self.now_ts()))
        per_bracket = [self._candle_columns(w, i, start, end) for i in range(len(w.brackets))]
        # every bracket's arrays joined first: each conversion runs once per column, not once per column and bracket
        joined = {k: np.concatenate([cols[k] for _, _, cols, _, _ in per_bracket]) for k in _CANDLE_FIELDS}
        frame = {"market_ticker": np.repeat(np.array([b.ticker for b in w.brackets], dtype=object),
                                            [len(end_ts) for end_ts, *_ in per_bracket]),
                 "end_period_ts": utc_stamps(np.concatenate([end_ts for end_ts, *_ in per_bracket]), "s")}
        frame |= {name: _as_parsed(joined[k]) for k, name in _CANDLE_FIELDS.items()}
        frame |= {"volume": _as_parsed(np.concatenate([v for *_, v, _ in per_bracket]), 2),
                  "open_interest": _as_parsed(np.concatenate([oi for *_, oi in per_bracket]), 2)}
        return pd.DataFrame(frame, columns=CANDLE_COLUMNS)

    def trade_batch(self, markets: pd.DataFrame) -> pd.DataFrame:
        """The event's trades over its trading window (up to now), as ``parse.trades_frame`` reads them from
        the trade endpoints' JSON (both tiers), in the order the endpoints serve them."""
        w = self._batch_world(markets)
        lo = int(markets["open_time"].min().timestamp()) * 1_000_000
        hi = min(int(markets["close_time"].max().timestamp()), int(self.now_ts())) * 1_000_000 + 999_999
        cut = self._cutoff_ts() * 1_000_000
        parts = []
        index = {b.ticker: k for k, b in enumerate(w.brackets)}
        for ticker in markets["market_ticker"]:
            if ticker not in index:
                continue  # as the trade endpoints answer for a market they do not know: no trades
            i = index[ticker]
            sel = (w.trade_bracket == i) & (w.trade_ts >= lo) & (w.trade_ts <= hi)
            parts += [np.nonzero(sel & (w.trade_ts < cut))[0][::-1], np.nonzero(sel & (w.trade_ts >= cut))[0][::-1]]
        idx = np.concatenate(parts).astype(int)
        names = np.array([b.ticker for b in w.brackets], dtype=object)
        return pd.DataFrame({
            "trade_id": [w.trade_id[k] for k in idx], "market_ticker": names[w.trade_bracket[idx]],
            "created_time": utc_stamps(w.trade_ts[idx], "us"),
            "count": _as_parsed(w.trade_count[idx], 2), "yes_price": _as_parsed(w.trade_price[idx]),
            "no_price": _as_parsed(1 - w.trade_price[idx]),
            "taker_outcome_side": np.where(w.trade_yes[idx], "yes", "no").astype(object),
            "is_block_trade": w.trade_block[idx].astype(bool),
        }, columns=TRADE_COLUMNS)

    def _batch_world(self, markets: pd.DataFrame) -> World:
        try:
            return self._world_for_event(markets["event_ticker"].iloc[0])
        except KalshiApiError as exc:
            raise ApiError("simulated batch", {"event_ticker": markets["event_ticker"].iloc[0]}, exc.status, exc.message)

    def trades(self, q, historical: bool):
        limit = _limit(q, 1000, default=100)
        ticker = q.get("ticker")
        if not ticker:
            raise KalshiApiError(400, "the simulator serves trades by ticker only")
        try:
            w, i = self._world_for_market(ticker)
        except KalshiApiError:
            return {"trades": [], "cursor": ""}
        lo = int(q.get("min_ts") or 0) * 1_000_000
        hi = min(int(q.get("max_ts") or 2**40), int(self.now_ts())) * 1_000_000 + 999_999
        cut = self._cutoff_ts() * 1_000_000
        sel = (w.trade_bracket == i) & (w.trade_ts >= lo) & (w.trade_ts <= hi)
        sel &= (w.trade_ts < cut) if historical else (w.trade_ts >= cut)
        idx = np.nonzero(sel)[0][::-1]  # newest first
        created = np.datetime_as_string(w.trade_ts[idx].astype("datetime64[us]"), unit="us").tolist()
        yes = w.trade_yes[idx].tolist()
        side = ['"yes", "taker_side": "yes", "taker_book_side": "bid"' if y else '"no", "taker_side": "no", "taker_book_side": "ask"'
                for y in yes]
        template = ('{"trade_id": "%s", "ticker": "' + ticker + '", "created_time": "%sZ", "count_fp": "%.2f", '
                    '"yes_price_dollars": %s, "no_price_dollars": %s, "taker_outcome_side": %s, "is_block_trade": %s}')
        rows = [RawJson(template % r) for r in zip([w.trade_id[k] for k in idx], created, w.trade_count[idx].tolist(),
                                                   _tokens(_prices(w.trade_price[idx])), _tokens(_prices(1 - w.trade_price[idx])),
                                                   side, ["true" if b else "false" for b in w.trade_block[idx].tolist()])]
        return self._page(rows, q, limit, "trades")

    def _page(self, rows: list, q: dict, limit: int, key: str) -> dict:
        offset = _decode_cursor(q.get("cursor"))
        if offset and self.faults.empty_page():
            return {key: [], "cursor": _encode_cursor(offset, nonce=self.requests)}
        page = rows[offset: offset + limit]
        nxt = offset + limit
        return {key: page, "cursor": _encode_cursor(nxt) if nxt < len(rows) else ""}


def _depth(q: dict) -> int:
    try:
        depth = int(q.get("depth") or 0)
    except ValueError:
        raise KalshiApiError(400, "depth must be an integer") from None
    if not 0 <= depth <= 100:
        raise KalshiApiError(400, "depth must be between 0 and 100")
    return depth


def _limit(q: dict, maximum: int, default: int | None = None) -> int:
    try:
        limit = int(q.get("limit") or default or maximum)
    except ValueError:
        raise KalshiApiError(400, "limit must be an integer")
    if not 1 <= limit <= maximum:
        raise KalshiApiError(400, f"limit must be between 1 and {maximum}")
    return limit


def _encode_cursor(offset: int, nonce: int = 0) -> str:
    return base64.urlsafe_b64encode(json.dumps({"o": offset, "n": nonce}).encode()).decode()


def _decode_cursor(cursor: str | None) -> int:
    if not cursor:
        return 0
    try:
        return int(json.loads(base64.urlsafe_b64decode(cursor.encode()))["o"])
    except (ValueError, KeyError):
        raise KalshiApiError(400, "invalid cursor")


def _error(status: int, message: str) -> httpx.Response:
    return httpx.Response(status, content=json.dumps({"error": {"code": "bad_request" if status == 400 else "error",
                                                                 "message": message}}).encode(),
                          headers={"content-type": "application/json"})
