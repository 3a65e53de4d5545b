"""The city registry (one row of ``cities.csv`` per Kalshi daily-high series) and climate-day helpers.

A climate day is midnight to midnight *local standard time* all year (the NWS climate report's day),
so during daylight saving it runs 01:00 to 00:59 local clock time. Kalshi events are named after it:
``KXHIGHCHI-25NOV19``; events before late 2024 used the series without the ``KX`` prefix.
"""

from __future__ import annotations

import csv
import datetime as dt
import re
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from zoneinfo import ZoneInfo

_MONTHS = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")
_EVENT_RE = re.compile(r"^(?P<series>[A-Z]+)-(?P<yy>\d{2})(?P<mon>[A-Z]{3})(?P<dd>\d{2})$")


@dataclass(frozen=True)
class City:
    key: str
    name: str
    series_ticker: str
    station: str
    timezone: str
    lst_utc_offset_hours: int

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @property
    def legacy_series_ticker(self) -> str | None:
        """The pre-2025 series name (``HIGHNY`` for ``KXHIGHNY``), which the KX series does not list."""
        return self.series_ticker[2:] if self.series_ticker.startswith("KX") else None

    def event_ticker(self, climate_day: dt.date, legacy: bool = False) -> str:
        series = self.legacy_series_ticker if legacy else self.series_ticker
        if series is None:
            raise ValueError(f"city {self.key}: series {self.series_ticker} has no legacy prefix form")
        return event_ticker(series, climate_day)

    def event_ticker_candidates(self, climate_day: dt.date) -> list[str]:
        """Tickers an event for this day may carry, most likely first."""
        out = [self.event_ticker(climate_day)]
        if self.legacy_series_ticker:
            legacy = self.event_ticker(climate_day, legacy=True)
            out = [legacy, *out] if climate_day < LEGACY_PREFIX_LIKELY_BEFORE else [*out, legacy]
        return out

    def climate_day_window(self, climate_day: dt.date) -> tuple[dt.datetime, dt.datetime]:
        return climate_day_window(self, climate_day)

    def climate_day_of(self, instant: dt.datetime) -> dt.date:
        """The climate day an instant (tz-aware) belongs to."""
        lst = instant.astimezone(dt.timezone(self.standard_offset()))
        return lst.date()

    def standard_offset(self) -> dt.timedelta:
        return dt.timedelta(hours=self.lst_utc_offset_hours)


# The exact switch date is not published; both forms are always tried, this only orders the attempts.
LEGACY_PREFIX_LIKELY_BEFORE = dt.date(2024, 12, 1)


def climate_day_window(city: City, climate_day: dt.date) -> tuple[dt.datetime, dt.datetime]:
    """[start, end) of a climate day in UTC: local-standard-time midnight to the next one (always 24 h)."""
    start_lst = dt.datetime.combine(climate_day, dt.time(0), tzinfo=dt.timezone(city.standard_offset()))
    start = start_lst.astimezone(dt.timezone.utc)
    return start, start + dt.timedelta(days=1)


def event_ticker(series_ticker: str, climate_day: dt.date) -> str:
    return f"{series_ticker}-{climate_day:%y}{_MONTHS[climate_day.month - 1]}{climate_day:%d}"


def parse_event_ticker(ticker: str) -> tuple[str, dt.date]:
    """``KXHIGHCHI-25NOV19`` -> (``KXHIGHCHI``, 2025-11-19)."""
    m = _EVENT_RE.match(ticker)
    if not m or m["mon"] not in _MONTHS:
        raise ValueError(f"not a daily event ticker: {ticker!r}")
    day = dt.date(2000 + int(m["yy"]), _MONTHS.index(m["mon"]) + 1, int(m["dd"]))
    return m["series"], day


@lru_cache(maxsize=1)
def _load() -> tuple[City, ...]:
    text = resources.files("kw_assets").joinpath("cities.csv").read_text()
    rows = list(csv.DictReader(text.splitlines()))
    cities = tuple(
        City(
            key=r["key"].strip(),
            name=r["name"].strip(),
            series_ticker=r["series_ticker"].strip(),
            station=r["station"].strip(),
            timezone=r["timezone"].strip(),
            lst_utc_offset_hours=int(r["lst_utc_offset_hours"]),
        )
        for r in rows
    )
    for c in cities:
        _check_standard_offset(c)
    return cities


def _check_standard_offset(city: City) -> None:
    """The stated LST offset must be the zone's standard offset (a typo would shift every settlement day)."""
    jan = dt.datetime(2025, 1, 15, 12, tzinfo=city.zone)
    jul = dt.datetime(2025, 7, 15, 12, tzinfo=city.zone)
    std = {(d.utcoffset() - d.dst()) for d in (jan, jul)}
    if std != {city.standard_offset()}:
        raise ValueError(
            f"cities.csv row {city.key}: lst_utc_offset_hours={city.lst_utc_offset_hours} "
            f"does not match the standard offset of {city.timezone} ({std})"
        )


def all_cities() -> tuple[City, ...]:
    return _load()


def city_keys() -> list[str]:
    return [c.key for c in _load()]


def get_city(key: str) -> City:
    for c in _load():
        if c.key == key:
            return c
    raise KeyError(f"unknown city {key!r}; known: {', '.join(city_keys())}")


def city_for_series(series_ticker: str) -> City:
    for c in _load():
        if series_ticker in (c.series_ticker, c.legacy_series_ticker):
            return c
    raise KeyError(f"no city has series {series_ticker!r}")
