"""Kalshi website price-history exports (``kalshi-price-history-<event>-minute.csv``) as a market source.

One column per bracket labelled like "79° to 80°", last traded price in cents per minute, sparse.
They become the same markets/candles tables as the API: close-only candles (``price_close``), with
no quotes and no volume (NaN, not invented). Times of open/close are the first/last rows; the result
is read off the last price (a winning bracket ends at 99), and flagged as inferred.
"""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import numpy as np
import pandas as pd

from kw_assets.cities import City, event_ticker as make_event_ticker
from kw_assets.convert import numbers
from kw_assets.errors import DataError
from kw_assets.model.brackets import BracketError, add_bracket_columns, parse_bracket_label
from kw_assets.sources.kalshi.parse import CANDLE_COLUMNS

FILE_RE = re.compile(r"^kalshi-price-history-(?P<event>[a-z0-9-]+)-minute\.csv$", re.I)
SETTLED_AT = 0.95


def export_path(directory: Path, city: City, day: dt.date) -> Path | None:
    for series in filter(None, (city.series_ticker, city.legacy_series_ticker)):
        p = Path(directory) / f"kalshi-price-history-{make_event_ticker(series, day).lower()}-minute.csv"
        if p.exists():
            return p
    return None


def read_partition(directory: str | None, city: City, day: dt.date) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(markets, candles) of one city x climate day from a folder of exports."""
    if not directory:
        raise DataError("kalshi_markets", "price_history_dir", "source 'file' needs price_history_dir")
    path = export_path(directory, city, day)
    if path is None:
        raise DataError("kalshi_markets", "file", f"no price-history export for {city.key} {day} in {directory}")
    return read_export(path, city, day)


def read_export(path: Path, city: City, day: dt.date) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(markets, candles) frames from one export file."""
    m = FILE_RE.match(Path(path).name)
    if not m:
        raise DataError("kalshi_markets", "file", f"{Path(path).name} is not a price-history export name")
    event_ticker = m["event"].upper()
    raw = pd.read_csv(path)
    if "timestamp" not in raw.columns or raw.shape[1] < 2:
        raise DataError("kalshi_candles", "timestamp", f"{path}: expected a timestamp column and one per bracket")
    times = pd.to_datetime(raw["timestamp"], utc=True, format="ISO8601")
    labels = [c for c in raw.columns if c != "timestamp"]
    rows = []
    for label in labels:
        try:
            strike_type, floor, cap = parse_bracket_label(label)
        except BracketError as exc:
            raise DataError("kalshi_markets", "yes_sub_title", str(exc)) from exc
        prices = pd.Series(numbers(raw[label], "kalshi_candles", label), index=raw.index) / 100.0
        last = prices.dropna()
        final = float(last.iloc[-1]) if len(last) else np.nan
        result = "yes" if final >= SETTLED_AT else ("no" if final <= 1 - SETTLED_AT else "")
        rows.append({"yes_sub_title": label, "strike_type": strike_type, "floor_strike": floor, "cap_strike": cap,
                     "result": result, "prices": prices})
    markets = pd.DataFrame({
        "market_ticker": [f"{event_ticker}-{_suffix(r)}" for r in rows],
        "event_ticker": event_ticker,
        "strike_type": [r["strike_type"] for r in rows],
        "floor_strike": [np.nan if r["floor_strike"] is None else r["floor_strike"] for r in rows],
        "cap_strike": [np.nan if r["cap_strike"] is None else r["cap_strike"] for r in rows],
        "yes_sub_title": [r["yes_sub_title"] for r in rows],
        "open_time": times.min(),
        "close_time": times.max(),
        "expected_expiration_time": pd.NaT,
        "status": "finalized",
        "result": [r["result"] for r in rows],
        "expiration_value": np.nan,
        "tier": "file",
        "series_ticker": event_ticker.split("-")[0],
        "fee_type": "quadratic",
        "fee_multiplier": 1.0,
    })
    markets["expected_expiration_time"] = pd.to_datetime(markets["expected_expiration_time"], utc=True)
    markets = add_bracket_columns(markets)
    markets.insert(0, "climate_day", day)
    markets.insert(0, "city", city.key)
    candle_parts = []
    for ticker, r in zip(markets["market_ticker"], rows):
        keep = r["prices"].notna().to_numpy()
        part = pd.DataFrame({"market_ticker": ticker, "end_period_ts": times[keep].to_numpy(),
                             "price_close": r["prices"][keep].to_numpy()})
        candle_parts.append(part)
    candles = pd.concat(candle_parts, ignore_index=True).reindex(columns=CANDLE_COLUMNS)
    candles["end_period_ts"] = pd.to_datetime(candles["end_period_ts"], utc=True)
    for c in CANDLE_COLUMNS[2:]:
        candles[c] = candles[c].astype("float64")
    candles.insert(0, "climate_day", day)
    candles.insert(0, "city", city.key)
    return markets.sort_values("bracket_index").reset_index(drop=True), candles


def _suffix(r: dict) -> str:
    if r["strike_type"] == "between":
        return f"B{(r['floor_strike'] + r['cap_strike']) / 2:g}"
    return f"T{r['floor_strike'] if r['strike_type'].startswith('greater') else r['cap_strike']:g}"
