"""Kalshi JSON -> canonical frames: prices as float dollars in [0, 1], counts as float contracts.

Live candles use ``*_dollars`` / ``*_fp`` names; historical candles the suffix-less names with the same
string values. A live minute with a quote change but no trade carries ``price`` with only
``previous_dollars``: the OHLC keys are absent, and become NaN here. Sparse stays sparse.
"""

from __future__ import annotations

from typing import Any, Iterable

import pandas as pd

from kw_assets.convert import numbers
from kw_assets.errors import DataError

OHLC = ("open", "high", "low", "close")
PRICE_FIELDS = ("open", "high", "low", "close", "mean", "previous")

CANDLE_COLUMNS = (
    ["market_ticker", "end_period_ts"]
    + [f"yes_bid_{k}" for k in OHLC]
    + [f"yes_ask_{k}" for k in OHLC]
    + [f"price_{k}" for k in PRICE_FIELDS]
    + ["volume", "open_interest"]
)
TRADE_COLUMNS = ["trade_id", "market_ticker", "created_time", "count", "yes_price", "no_price",
                 "taker_outcome_side", "is_block_trade"]
ORDERBOOK_SAMPLE_COLUMNS = ["market_ticker", "sampled_at", "yes_bid", "yes_bid_size", "yes_ask", "yes_ask_size", "spread"]
MARKET_COLUMNS = ["market_ticker", "event_ticker", "strike_type", "floor_strike", "cap_strike", "yes_sub_title",
                  "open_time", "close_time", "expected_expiration_time", "status", "result", "expiration_value"]


def timestamps(values: Iterable[Any], table: str, field: str, unit: str | None = None) -> pd.Series:
    raw = pd.Series(list(values), dtype=object)
    try:
        if unit:
            return pd.to_datetime(pd.to_numeric(raw, errors="raise"), unit=unit, utc=True)
        return pd.to_datetime(raw, utc=True, format="ISO8601")
    except (ValueError, TypeError) as exc:
        raise DataError(table, field, f"unreadable timestamp ({exc})") from exc


def _require(records: list[dict], keys: Iterable[str], table: str) -> None:
    for i, r in enumerate(records):
        if not isinstance(r, dict):
            raise DataError(table, "<record>", f"record {i} is {type(r).__name__}, not an object")
        for k in keys:
            if k not in r:
                raise DataError(table, k, f"required field missing in record {i}")


def candles_frame(ticker: str, candles: list[dict], historical: bool = False) -> pd.DataFrame:
    """One market's candles (either schema) -> canonical candle rows."""
    table = "kalshi_candles"
    volume_key, oi_key = ("volume", "open_interest") if historical else ("volume_fp", "open_interest_fp")
    suffix = "" if historical else "_dollars"
    _require(candles, ("end_period_ts", "yes_bid", "yes_ask", "price", volume_key, oi_key), table)
    out: dict[str, Any] = {
        "market_ticker": [ticker] * len(candles),
        "end_period_ts": timestamps([c["end_period_ts"] for c in candles], table, "end_period_ts", unit="s"),
    }
    for side in ("yes_bid", "yes_ask"):
        for k in OHLC:
            out[f"{side}_{k}"] = numbers([(c[side] or {}).get(k + suffix) for c in candles], table, f"{side}.{k}{suffix}")
    for k in PRICE_FIELDS:
        out[f"price_{k}"] = numbers([(c["price"] or {}).get(k + suffix) for c in candles], table, f"price.{k}{suffix}")
    out["volume"] = numbers([c[volume_key] for c in candles], table, volume_key)
    out["open_interest"] = numbers([c[oi_key] for c in candles], table, oi_key)
    return pd.DataFrame(out, columns=CANDLE_COLUMNS)


def trades_frame(trades: list[dict]) -> pd.DataFrame:
    table = "kalshi_trades"
    _require(trades, ("trade_id", "ticker", "created_time", "count_fp", "yes_price_dollars", "no_price_dollars",
                      "taker_outcome_side", "is_block_trade"), table)
    side = [t["taker_outcome_side"] for t in trades]
    bad = sorted({s for s in side if s not in ("yes", "no")})
    if bad:
        raise DataError(table, "taker_outcome_side", f"unknown value(s) {bad}")
    return pd.DataFrame({
        "trade_id": [str(t["trade_id"]) for t in trades],
        "market_ticker": [t["ticker"] for t in trades],
        "created_time": timestamps([t["created_time"] for t in trades], table, "created_time"),
        "count": numbers([t["count_fp"] for t in trades], table, "count_fp"),
        "yes_price": numbers([t["yes_price_dollars"] for t in trades], table, "yes_price_dollars"),
        "no_price": numbers([t["no_price_dollars"] for t in trades], table, "no_price_dollars"),
        "taker_outcome_side": side,
        "is_block_trade": [bool(t["is_block_trade"]) for t in trades],
    }, columns=TRADE_COLUMNS)


def markets_frame(markets: list[dict]) -> pd.DataFrame:
    table = "kalshi_markets"
    _require(markets, ("ticker", "event_ticker", "strike_type", "open_time", "close_time", "status"), table)
    opt = lambda k: [m.get(k) for m in markets]  # noqa: E731
    return pd.DataFrame({
        "market_ticker": opt("ticker"),
        "event_ticker": opt("event_ticker"),
        "strike_type": opt("strike_type"),
        "floor_strike": numbers(opt("floor_strike"), table, "floor_strike"),
        "cap_strike": numbers(opt("cap_strike"), table, "cap_strike"),
        "yes_sub_title": [m.get("yes_sub_title") or "" for m in markets],
        "open_time": timestamps(opt("open_time"), table, "open_time"),
        "close_time": timestamps(opt("close_time"), table, "close_time"),
        "expected_expiration_time": timestamps(opt("expected_expiration_time"), table, "expected_expiration_time"),
        "status": opt("status"),
        "result": [m.get("result") or "" for m in markets],
        "expiration_value": numbers(opt("expiration_value"), table, "expiration_value"),
    }, columns=MARKET_COLUMNS)


def orderbook_samples_frame(books: dict[str, dict], sampled_at: pd.Timestamp) -> pd.DataFrame:
    """Sampled order books (ticker -> ``orderbook_fp``) -> one row per market: the best YES bid and ask (100
    minus the best NO bid) with their sizes, and the spread; NaN for an empty side."""
    table = "orderbook_samples"
    rows = []
    for ticker, book in books.items():
        best = []
        for side in ("yes_dollars", "no_dollars"):
            levels = book.get(side) or []
            if any(not isinstance(level, (list, tuple)) or len(level) != 2 for level in levels):
                raise DataError(table, f"{ticker}.{side}", "each level must be [price, count]")
            prices = numbers([p for p, _ in levels], table, f"{side}.price")
            counts = numbers([c for _, c in levels], table, f"{side}.count")
            k = int(prices.argmax()) if len(prices) else -1
            best.append((prices[k], counts[k]) if k >= 0 else (float("nan"), 0.0))
        (bid, bid_size), (no_bid, ask_size) = best
        ask = round(1.0 - no_bid, 6)
        rows.append((ticker, sampled_at, bid, bid_size, ask, ask_size, round(ask - bid, 6)))
    return pd.DataFrame(rows, columns=ORDERBOOK_SAMPLE_COLUMNS)
