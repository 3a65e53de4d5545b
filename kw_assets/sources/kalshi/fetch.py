"""Everything Kalshi knows about one city's climate day, as canonical frames.

Plan: resolve the event ticker (KX form, then the legacy form), list its markets from the live tier
and, when the event may have been archived, from the historical tier; then candles (the batch
endpoint ``/markets/candlesticks`` for live markets, the per-market historical endpoint otherwise) and trades (split at the trades cutoff).
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd

from kw_assets.cities import City
from kw_assets.errors import DataError
from kw_assets.model.brackets import BracketError, add_bracket_columns
from kw_assets.sources.kalshi.client import KalshiClient
from kw_assets.sources.kalshi.parse import candles_frame, markets_frame, trades_frame

ARCHIVE_MARGIN = dt.timedelta(days=3)


class EventNotFound(DataError):
    def __init__(self, city: City, day: dt.date, tried: list[str]):
        super().__init__("kalshi_markets", "event_ticker", f"no Kalshi event for {city.key} {day}: tried {tried}")


def resolve_event(client: KalshiClient, city: City, day: dt.date) -> tuple[dict, list[dict]]:
    tried = city.event_ticker_candidates(day)
    for ticker in tried:
        found = client.get_event(ticker)
        if found is not None:
            return found
    raise EventNotFound(city, day, tried)


def fetch_markets(client: KalshiClient, city: City, day: dt.date) -> pd.DataFrame:
    """One row per bracket, with bracket bounds, fee settings and the tier that serves its data."""
    event, nested = resolve_event(client, city, day)
    event_ticker = event["event_ticker"]
    series_ticker = event.get("series_ticker") or event_ticker.split("-")[0]
    live = client.get_markets(event_ticker) or nested
    historical: list[dict] = []
    cutoff = client.get_historical_cutoff()["market_settled_ts"]
    _, day_end = city.climate_day_window(day)
    if len(live) == 0 or day_end < cutoff + ARCHIVE_MARGIN:
        historical = client.get_historical_markets(event_ticker)
    live_tickers = {m["ticker"] for m in live}
    records = live + [m for m in historical if m["ticker"] not in live_tickers]
    if not records:
        raise DataError("kalshi_markets", "markets", f"event {event_ticker} has zero markets")
    frame = markets_frame(records)
    wrong = frame.loc[frame["event_ticker"] != event_ticker, "market_ticker"].tolist()
    if wrong:
        raise DataError("kalshi_markets", "event_ticker", f"markets {wrong} do not belong to event {event_ticker}")
    frame["tier"] = ["live" if t in live_tickers else "historical" for t in frame["market_ticker"]]
    series = client.get_series(series_ticker)
    frame["series_ticker"] = series_ticker
    frame["fee_type"] = series.get("fee_type", "quadratic")
    frame["fee_multiplier"] = float(series.get("fee_multiplier", 1.0))
    try:
        frame = add_bracket_columns(frame)
    except BracketError as exc:
        raise DataError("kalshi_markets", "strike_type", str(exc)) from exc
    frame.insert(0, "climate_day", day)
    frame.insert(0, "city", city.key)
    return frame.sort_values("bracket_index", kind="stable").reset_index(drop=True)


def trading_window(markets: pd.DataFrame, now: dt.datetime | None = None,
                   since: pd.Timestamp | None = None) -> tuple[int, int]:
    """Unix seconds [first open, last close], capped at ``now`` for events still trading and starting after
    ``since`` for a fetch that continues an earlier one."""
    start = markets["open_time"].min()
    end = markets["close_time"].max()
    if now is not None:
        end = min(end, pd.Timestamp(now))
    first = int(start.timestamp())
    if since is not None:
        first = max(first, int(pd.Timestamp(since).timestamp()) + 1)
    return first, int(end.timestamp())


def fetch_candles(client: KalshiClient, markets: pd.DataFrame, now: dt.datetime | None = None,
                  since: pd.Timestamp | None = None) -> pd.DataFrame:
    """The event's 1-minute candles up to ``now``; with ``since``, only those ending after it (the live tail)."""
    start, end = trading_window(markets, now, since)
    series = markets["series_ticker"].iloc[0]
    frames = []
    if end < start:
        frames = [candles_frame("", [])]
    elif client.batches is not None:
        batch = client.batches.candle_batch(markets)
        frames = [batch[batch["end_period_ts"] >= pd.Timestamp(start, unit="s", tz="UTC")]]
    elif (markets["tier"] == "live").all():
        by_ticker = client.get_batch_candles(markets["market_ticker"].tolist(), start, end, period=1)
        frames = [candles_frame(t, c) for t, c in by_ticker.items()]
    else:
        for ticker, tier in zip(markets["market_ticker"], markets["tier"]):
            hist = tier == "historical"
            frames.append(candles_frame(ticker, client.get_market_candles(series, ticker, start, end, 1, hist), hist))
    out = pd.concat(frames, ignore_index=True) if frames else candles_frame("", [])
    known = set(markets["market_ticker"])
    stray = sorted(set(out["market_ticker"]) - known)
    if stray:
        raise DataError("kalshi_candles", "market_ticker", f"candles for markets not in the event: {stray}")
    # stable sort by market keeps the order the server sent, so out-of-order candles stay visible to the checks
    return _with_partition(out, markets).sort_values("market_ticker", kind="stable").reset_index(drop=True)


def fetch_trades(client: KalshiClient, markets: pd.DataFrame, now: dt.datetime | None = None,
                 since: pd.Timestamp | None = None) -> pd.DataFrame:
    """The event's prints up to ``now``; with ``since``, those stamped from the second after it on."""
    start, end = trading_window(markets, now, since)
    if end < start:
        out = trades_frame([])
    elif client.batches is not None:
        out = client.batches.trade_batch(markets)
        out = out[out["created_time"] >= pd.Timestamp(start, unit="s", tz="UTC")]
    else:
        cut = int(client.get_historical_cutoff()["trades_created_ts"].timestamp())
        records: list[dict] = []
        for ticker in markets["market_ticker"]:
            if start < cut:
                records += client.get_trades(ticker, start, min(end, cut - 1), historical=True)
            if end >= cut:
                records += client.get_trades(ticker, max(start, cut), end, historical=False)
        out = trades_frame(records)
    stray = sorted(set(out["market_ticker"]) - set(markets["market_ticker"]))
    if stray:
        raise DataError("kalshi_trades", "ticker", f"trades for markets not in the event: {stray}")
    return in_time_order(_with_partition(out, markets))


def in_time_order(trades: pd.DataFrame) -> pd.DataFrame:
    """``trades`` sorted by (created_time, trade_id), stable: what ``sort_values`` on both gives, by one integer sort
    and, only where prints share a microsecond, a sort of their ids (pandas factorized every id to sort on them: 2.5
    ms of a 3,000-print day, 0.2 this way). Frames with a missing time or id take pandas' way (its NaN order)."""
    ids = trades["trade_id"].to_numpy()
    times = pd.DatetimeIndex(trades["created_time"])
    if times.hasnans or pd.api.types.infer_dtype(ids, skipna=False) != "string":
        return trades.sort_values(["created_time", "trade_id"], kind="stable")
    t = times.asi8
    order = np.argsort(t, kind="stable")
    tied = np.flatnonzero(t[order][1:] == t[order][:-1])  # position k: rows k and k + 1 share a time
    if len(tied):
        gap = np.diff(tied) > 1
        for a, b in zip(tied[np.r_[True, gap]], tied[np.r_[gap, True]] + 2):  # each run of tied rows: [a, b)
            run = order[a:b]
            order[a:b] = run[np.argsort(ids[run], kind="stable")]
    return trades.take(order)


def inside_trading_window(frame: pd.DataFrame, markets: pd.DataFrame, column: str, table: str) -> pd.DataFrame:
    """``frame`` if every ``column`` time lies within the event's trading window; else a ``DataError``."""
    start, end = markets["open_time"].min(), markets["close_time"].max()
    outside = ((frame[column] < start) | (frame[column] > end)).to_numpy()
    if outside.any():
        raise DataError(table, column, f"{int(outside.sum())} row(s) outside the trading window {start} .. {end}")
    return frame


def _with_partition(frame: pd.DataFrame, markets: pd.DataFrame) -> pd.DataFrame:
    frame = frame.copy()
    frame.insert(0, "climate_day", markets["climate_day"].iloc[0])
    frame.insert(0, "city", markets["city"].iloc[0])
    return frame.reset_index(drop=True)
