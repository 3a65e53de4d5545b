"""Kalshi Trade API v2 endpoints used by this project, with cursor loops.

All market-data GETs are public; when a key is configured every request is signed anyway.
Status FILTER values (unopened|open|closed|settled) differ from the status VALUES in market objects
(initialized|active|closed|determined|finalized|...): the filter arguments here take the former.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from typing import Any, Callable, Iterator

import httpx

from kw_assets.sources.http import ApiError, JsonHttp, RetryPolicy, TokenBucket
from kw_assets.sources.kalshi.signing import KalshiSigner

PRODUCTION_URL = "https://external-api.kalshi.com/trade-api/v2"
ELECTIONS_URL = "https://api.elections.kalshi.com/trade-api/v2"
DEMO_URL = "https://demo-api.kalshi.co/trade-api/v2"

CANDLE_PERIODS = (1, 60, 1440)
MAX_CANDLES_PER_REQUEST = 5000
MAX_BATCH_TICKERS, MAX_BATCH_CANDLES = 100, 10_000  # GET /markets/candlesticks
TRADES_PAGE_LIMIT = 1000
MARKETS_PAGE_LIMIT = 1000
EVENTS_PAGE_LIMIT = 200
ORDERBOOKS_PER_CALL = 100
EVENT_STATUS_FILTERS = ("unopened", "open", "closed", "settled")

log = logging.getLogger("kw_assets.kalshi")


class KalshiClient:
    def __init__(
        self,
        base_url: str = PRODUCTION_URL,
        *,
        transport: httpx.BaseTransport | None = None,
        requests_per_second: float | None = 20.0,
        retry: RetryPolicy | None = None,
        signer: KalshiSigner | None = None,
        timeout_s: float = 20.0,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        batches: Any = None,
    ):
        """``batches``: a source of whole events' candles and trades as frames (``candle_batch(markets)``,
        ``trade_batch(markets)``) that the fetches use instead of the endpoints: the simulated exchange at
        scale. None (live): every value comes through HTTP and JSON."""
        self.batches = batches
        self.base_url = base_url.rstrip("/")
        self._client = httpx.Client(base_url=self.base_url, transport=transport, auth=signer, timeout=timeout_s,
                                    headers={"Accept": "application/json"})
        bucket = TokenBucket(requests_per_second, clock=clock, sleep=sleep) if requests_per_second else None
        self.http = JsonHttp(self._client, bucket, retry or RetryPolicy(), sleep=sleep, name="kalshi")
        self._series_cache: dict[str, dict] = {}
        self._cutoff: tuple[float, dict[str, dt.datetime]] | None = None

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> "KalshiClient":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- cursor loop -------------------------------------------------------------------------------
    def _paged(self, path: str, params: dict[str, Any], key: str, max_pages: int = 10_000) -> Iterator[dict]:
        """Yield items across pages until the cursor is empty (a page may be empty while the cursor is not)."""
        cursor = None
        seen: set[str] = set()
        for _ in range(max_pages):
            body = self.http.get(path, {**params, "cursor": cursor})
            items = body.get(key)
            if items is None:
                raise ApiError(f"kalshi GET {path}", params, 200, f"response has no {key!r} list")
            yield from items
            cursor = body.get("cursor") or None
            if cursor is None:
                return
            if cursor in seen:
                raise ApiError(f"kalshi GET {path}", params, 200, f"cursor {cursor!r} repeated: pagination loop")
            seen.add(cursor)
        raise ApiError(f"kalshi GET {path}", params, 200, f"more than {max_pages} pages")

    # --- reference data ----------------------------------------------------------------------------
    def get_series(self, series_ticker: str) -> dict:
        if series_ticker not in self._series_cache:
            body = self.http.get(f"/series/{series_ticker}")
            self._series_cache[series_ticker] = body["series"]
        return self._series_cache[series_ticker]

    def get_historical_cutoff(self, max_age_s: float = 300.0) -> dict[str, dt.datetime]:
        """Live/historical boundaries (the API sends RFC3339 strings, not unix seconds)."""
        now = time.monotonic()
        if self._cutoff is None or now - self._cutoff[0] > max_age_s:
            body = self.http.get("/historical/cutoff")
            parsed = {k: _parse_rfc3339(v, k) for k, v in body.items() if k.endswith("_ts") and v}
            for needed in ("market_settled_ts", "trades_created_ts"):
                if needed not in parsed:
                    raise ApiError("kalshi GET /historical/cutoff", {}, 200, f"missing field {needed!r}")
            self._cutoff = (now, parsed)
        return self._cutoff[1]

    def iter_events(self, series_ticker: str, status: str | None = None, min_close_ts: int | None = None,
                    with_nested_markets: bool = False) -> Iterator[dict]:
        if status is not None and status not in EVENT_STATUS_FILTERS:
            raise ValueError(f"event status filter must be one of {EVENT_STATUS_FILTERS}, got {status!r}")
        params = {"series_ticker": series_ticker, "status": status, "min_close_ts": min_close_ts,
                  "limit": EVENTS_PAGE_LIMIT, "with_nested_markets": "true" if with_nested_markets else None}
        return self._paged("/events", params, "events")

    def get_event(self, event_ticker: str) -> tuple[dict, list[dict]] | None:
        """(event, markets) or None when no such event exists (404)."""
        body = self.http.get(f"/events/{event_ticker}", allow_404=True)
        if body is None:
            return None
        return body["event"], body.get("markets") or []

    def get_markets(self, event_ticker: str, status: str | None = None) -> list[dict]:
        params = {"event_ticker": event_ticker, "status": status, "limit": MARKETS_PAGE_LIMIT}
        return list(self._paged("/markets", params, "markets"))

    def get_historical_markets(self, event_ticker: str) -> list[dict]:
        params = {"event_ticker": event_ticker, "limit": MARKETS_PAGE_LIMIT}
        return list(self._paged("/historical/markets", params, "markets"))

    def get_orderbook(self, ticker: str, depth: int | None = None) -> dict:
        return self.http.get(f"/markets/{ticker}/orderbook", {"depth": depth})["orderbook_fp"]

    def get_orderbooks(self, tickers: list[str]) -> dict[str, dict]:
        """Many markets' books (``GET /markets/orderbooks``, at most 100 tickers a call): ticker -> orderbook_fp."""
        out: dict[str, dict] = {}
        for k in range(0, len(tickers), ORDERBOOKS_PER_CALL):
            body = self.http.get("/markets/orderbooks", {"tickers": tickers[k:k + ORDERBOOKS_PER_CALL]})
            for book in body["orderbooks"]:
                out[book["ticker"]] = book["orderbook_fp"]
        return out

    # --- candles -----------------------------------------------------------------------------------
    def get_batch_candles(self, tickers: list[str], start_ts: int, end_ts: int, period: int = 1) -> dict[str, list[dict]]:
        """Live markets' candles through ``GET /markets/candlesticks``: up to 100 tickers a request, windows
        chunked so tickers x periods stays within its 10,000-candle cap (a whole 6-bracket event at 1 minute:
        2 requests, where the event endpoint's 5,000 cap needs 3)."""
        _check_period(period)
        out: dict[str, list[dict]] = {t: [] for t in tickers}
        for i in range(0, len(tickers), MAX_BATCH_TICKERS):
            group = tickers[i:i + MAX_BATCH_TICKERS]
            for s, e in _chunks(start_ts, end_ts, period, max(1, MAX_BATCH_CANDLES // len(group))):
                body = self.http.get("/markets/candlesticks", {"market_tickers": ",".join(group), "start_ts": s,
                                                               "end_ts": e, "period_interval": period})
                for market in body["markets"]:
                    out.setdefault(market["market_ticker"], []).extend(market["candlesticks"])
        return out

    def get_market_candles(self, series_ticker: str, ticker: str, start_ts: int, end_ts: int,
                           period: int = 1, historical: bool = False) -> list[dict]:
        _check_period(period)
        path = (f"/historical/markets/{ticker}/candlesticks" if historical
                else f"/series/{series_ticker}/markets/{ticker}/candlesticks")
        out: list[dict] = []
        for s, e in _chunks(start_ts, end_ts, period, MAX_CANDLES_PER_REQUEST):
            out.extend(self.http.get(path, {"start_ts": s, "end_ts": e, "period_interval": period})["candlesticks"])
        return out

    # --- trades ------------------------------------------------------------------------------------
    def get_trades(self, ticker: str, min_ts: int, max_ts: int, historical: bool = False) -> list[dict]:
        path = "/historical/trades" if historical else "/markets/trades"
        params = {"ticker": ticker, "min_ts": min_ts, "max_ts": max_ts, "limit": TRADES_PAGE_LIMIT}
        return list(self._paged(path, params, "trades"))


def _check_period(period: int) -> None:
    if period not in CANDLE_PERIODS:
        raise ValueError(f"candle period must be one of {CANDLE_PERIODS} minutes, got {period}")


def _chunks(start_ts: int, end_ts: int, period: int, per_request: int) -> Iterator[tuple[int, int]]:
    """[s, e] windows holding at most ``per_request`` periods each, counted as (e - s) / period + 1."""
    step = period * 60
    span = (per_request - 1) * step
    s = int(start_ts)
    while s <= end_ts:
        e = min(int(end_ts), s + span)
        yield s, e
        s = e + 1


def _parse_rfc3339(value: str, field: str) -> dt.datetime:
    try:
        return dt.datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(dt.timezone.utc)
    except (TypeError, ValueError) as exc:
        raise ApiError("kalshi GET /historical/cutoff", {}, 200, f"field {field!r} is not RFC3339: {value!r}") from exc
