"""What changed among a series' Kalshi events since the last look (the sensor's logic, without Dagster):
a newly listed event asks for its raw data, an event newly ``settled`` for the whole graph, each once."""

from __future__ import annotations

import datetime as dt
from typing import Iterable, NamedTuple

from kw_assets.cities import city_for_series, parse_event_ticker
from kw_assets.partitions import partition_key


class EventRequest(NamedTuple):
    event: str
    reason: str  # "listed" (raw data) or "settled" (the whole graph)
    partition: str

    @property
    def run_key(self) -> str:
        return f"{self.event}:{self.reason}"


def event_requests(listed: Iterable[str], settled: set[str], seen: dict[str, str],
                   valid: set[str]) -> list[EventRequest]:
    """Requests for events first seen or newly settled; ``seen`` (event -> last status) is updated. Events
    whose partition is not in ``valid`` yet are left for a later look; unknown tickers are ignored."""
    out = []
    for ticker in listed:
        try:
            series, day = parse_event_ticker(ticker)
            key = str(partition_key(city_for_series(series).key, day))
        except (ValueError, KeyError):
            continue
        if key not in valid:
            continue
        before, status = seen.get(ticker), "settled" if ticker in settled else "listed"
        if before is None:
            out.append(EventRequest(ticker, "listed", key))
        if status == "settled" and before != "settled":
            out.append(EventRequest(ticker, "settled", key))
        seen[ticker] = status
    return out


def prune(seen: dict[str, str], today: dt.date, keep_days: int = 45) -> dict[str, str]:
    """Forget events older than ``keep_days`` so the sensor's cursor stays small."""
    horizon = today - dt.timedelta(days=keep_days)
    out = {}
    for ticker, status in seen.items():
        try:
            if parse_event_ticker(ticker)[1] >= horizon:
                out[ticker] = status
        except ValueError:
            continue
    return out
