"""A simulated Visual Crossing behind an httpx transport: the Timeline API (5-minute station obs) and
the Historical Forecast API (``byrun``), same paths and JSON shape, plain-text error bodies, and
nothing observed or issued after ``now``.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import re
from functools import lru_cache
from typing import Callable

import httpx
import numpy as np

from kw_assets.cities import City, all_cities
from kw_assets.sources.simulator.faults import FaultConfig, FaultInjector
from kw_assets.sources.simulator.world import build_weather

TIMELINE = re.compile(r"/VisualCrossingWebServices/rest/services/timeline/stn:(?P<station>[A-Z0-9]+)/(?P<d1>[\d-]+)/(?P<d2>[\d-]+)")
BYRUN = re.compile(r"/VisualCrossingWebServices/rest/api/v1/historicalforecast/stn:(?P<station>[A-Z0-9]+)/byrun/(?P<d1>[\d-]+)/(?P<d2>[\d-]+)")
MAX_DAYS = 10


class SimulatedWeatherFeed:
    def __init__(self, seed: int = 7, now: Callable[[], dt.datetime] | None = None,
                 faults: FaultConfig | None = None, cities: tuple[City, ...] | None = None):
        self.seed = seed
        self._now = now or (lambda: dt.datetime.now(dt.timezone.utc))
        self.faults = FaultInjector(faults or FaultConfig())
        self.stations = {c.station: c for c in (cities or all_cities())}
        self.requests = 0

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handle)

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.requests += 1
        injected = self.faults.before(request, b"Too many requests")
        if injected is not None:
            return injected
        q = request.url.params
        if not q.get("key"):
            return httpx.Response(401, text="No API key or session found. Please verify that your API key parameter is correct.")
        path = request.url.path
        for pattern, fn in ((TIMELINE, self.timeline), (BYRUN, self.byrun)):
            m = pattern.fullmatch(path)
            if m:
                city = self.stations.get(m["station"])
                if city is None or q.get("maxStations") != "1" or q.get("maxDistance") != "0":
                    return httpx.Response(400, text=f"Bad API Request:Invalid location parameter value {m['station']}")
                try:
                    d1, d2 = dt.date.fromisoformat(m["d1"]), dt.date.fromisoformat(m["d2"])
                except ValueError:
                    return httpx.Response(400, text="Bad API Request:Invalid date format")
                if d2 < d1 or (d2 - d1).days > MAX_DAYS:
                    return httpx.Response(400, text="Bad API Request:Invalid date range")
                body = fn(city, d1, d2)
                body.update({"queryCost": sum(len(d.get("hours", [])) for d in body["days"]), "latitude": 0.0,
                             "longitude": 0.0, "resolvedAddress": f"stn:{city.station} (simulated)",
                             "timezone": "UTC", "tzoffset": 0.0,
                             "stations": {city.station: {"id": city.station, "name": f"{city.name} (simulated)"}}})
                return httpx.Response(200, content=json.dumps(body).encode(), headers={"content-type": "application/json"})
        return httpx.Response(404, text="Not found")

    def _worlds(self, city: City, t0: float, t1: float):
        day = city.climate_day_of(dt.datetime.fromtimestamp(t0, dt.timezone.utc)) - dt.timedelta(days=1)
        while True:
            start, _ = city.climate_day_window(day)
            if start.timestamp() >= t1:
                return
            yield build_weather(city, day, self.seed)
            day += dt.timedelta(days=1)

    def timeline(self, city: City, d1: dt.date, d2: dt.date) -> dict:
        t0 = dt.datetime.combine(d1, dt.time(0), dt.timezone.utc).timestamp()
        t1 = dt.datetime.combine(d2 + dt.timedelta(days=1), dt.time(0), dt.timezone.utc).timestamp()
        t1_obs = min(t1, self._now().timestamp() + 1)
        epochs, temps = [], []
        for w in self._worlds(city, t0, t1):
            keep = (w.obs_epoch >= t0) & (w.obs_epoch < t1_obs)
            epochs.append(w.obs_epoch[keep])
            temps.append(w.obs_temp_f[keep])
        e = np.concatenate(epochs) if epochs else np.array([], int)
        v = np.concatenate(temps) if temps else np.array([])
        days = []
        for k in range((d2 - d1).days + 1):
            day0 = t0 + 86400 * k
            hours = []
            for h in range(24):
                h0 = day0 + 3600 * h
                sel = (e >= h0) & (e < h0 + 3600)
                minutes = [{"datetime": _clock(x), "datetimeEpoch": int(x), "temp": float(t), "source": "obs"}
                           for x, t in zip(e[sel], v[sel])]
                hours.append({"datetime": _clock(h0), "datetimeEpoch": int(h0),
                              "temp": minutes[0]["temp"] if minutes else None, "source": "obs", "minutes": minutes})
            days.append({"datetime": str(d1 + dt.timedelta(days=k)), "datetimeEpoch": int(day0), "hours": hours})
        return {"days": days}

    def byrun(self, city: City, d1: dt.date, d2: dt.date) -> dict:
        """Every 6-hourly run issued between d1 and d2 (UTC dates) that exists by now, forecasting
        the hours from its issue time to two days ahead."""
        t0 = dt.datetime.combine(d1, dt.time(0), dt.timezone.utc).timestamp()
        t1 = min(dt.datetime.combine(d2 + dt.timedelta(days=1), dt.time(0), dt.timezone.utc).timestamp(),
                 self._now().timestamp() + 1)
        runs: dict[int, dict[int, float]] = {}
        for w in self._worlds(city, t0, t1 + 2 * 86400):
            issued, valid, temp = w.forecast_rows()
            keep = (issued >= t0) & (issued < t1)
            for i, v, x in zip(issued[keep].tolist(), valid[keep].tolist(), temp[keep].tolist()):
                runs.setdefault(int(i), {})[int(v)] = x
        days = []
        for issued in sorted(runs):
            by_date: dict[str, list] = {}
            for v in sorted(runs[issued]):
                by_date.setdefault(_date(v), []).append({"datetime": _clock(v), "datetimeEpoch": v,
                                                         "temp": runs[issued][v], "source": "fcst"})
            for k, (date, hours) in enumerate(by_date.items()):
                days.append({"rundatetime": _iso(issued), "forecastday": k, "datetime": date,
                             "datetimeEpoch": int(dt.datetime.fromisoformat(date).replace(tzinfo=dt.timezone.utc).timestamp()),
                             "tempmax": max(h["temp"] for h in hours), "hours": hours})
        return {"days": days}


def _clock(ts: float) -> str:
    return _time_of_day(math.floor(ts) % 86400)  # UTC: every day has 86,400 seconds


@lru_cache(maxsize=None)
def _time_of_day(second: int) -> str:
    """HH:MM:SS of a second of the day: a feed of thousands of rows formats each once (~5-minute steps)."""
    return f"{second // 3600:02d}:{second // 60 % 60:02d}:{second % 60:02d}"


@lru_cache(maxsize=4096)
def _date(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, dt.timezone.utc).strftime("%Y-%m-%d")


def _iso(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
