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
import pandas as pd

from kw_assets.cities import City, all_cities
from kw_assets.model.stamps import utc_stamps
from kw_assets.sources.http import ApiError
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

    def _observed(self, city: City, d1: dt.date, d2: dt.date) -> tuple[np.ndarray, np.ndarray]:
        """(epoch, temp_f) of every obs of the UTC dates d1..d2 taken by now, in time order."""
        t0, t1 = _utc_span(d1, d2)
        t1_obs = min(t1, self._now().timestamp() + 1)
        epochs, temps = [], []
        for w in self._worlds(city, t0, t1):
            keep = (w.obs_epoch >= t0) & (w.obs_epoch < t1_obs)
            epochs.append(w.obs_epoch[keep])
            temps.append(w.obs_temp_f[keep])
        return (np.concatenate(epochs) if epochs else np.array([], int)), (np.concatenate(temps) if temps else np.array([]))

    def _issued(self, city: City, d1: dt.date, d2: dt.date) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(issued, valid, temp_f) of every hour of every run issued on the UTC dates d1..d2 that exists by now,
        ordered by run and hour (a later world's value of the same run and hour wins, as in the JSON's map)."""
        t0, t1 = _utc_span(d1, d2)
        t1 = min(t1, self._now().timestamp() + 1)
        parts = []
        for w in self._worlds(city, t0, t1 + 2 * 86400):
            issued, valid, temp = w.forecast_rows()
            keep = (issued >= t0) & (issued < t1)
            parts.append((issued[keep].astype("int64"), valid[keep].astype("int64"), temp[keep]))
        if not parts:
            return np.array([], "int64"), np.array([], "int64"), np.array([])
        issued, valid, temp = (np.concatenate(c) for c in zip(*parts))
        last = len(issued) - 1 - np.unique(np.stack([issued, valid])[:, ::-1], axis=1, return_index=True)[1]
        return issued[last], valid[last], temp[last]  # np.unique sorts by (issued, valid)

    def timeline(self, city: City, d1: dt.date, d2: dt.date) -> dict:
        t0, _ = _utc_span(d1, d2)
        e, v = self._observed(city, d1, d2)
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
        issued_all, valid_all, temp_all = self._issued(city, d1, d2)
        runs = np.flatnonzero(np.diff(issued_all, prepend=-1)) if len(issued_all) else np.array([], int)
        days = []
        for a, b in zip(runs, [*runs[1:], len(issued_all)]):
            by_date: dict[str, list] = {}
            for v, x in zip(valid_all[a:b].tolist(), temp_all[a:b].tolist()):
                by_date.setdefault(_date(v), []).append({"datetime": _clock(v), "datetimeEpoch": v, "temp": x, "source": "fcst"})
            for k, (date, hours) in enumerate(by_date.items()):
                days.append({"rundatetime": _iso(int(issued_all[a])), "forecastday": k, "datetime": date,
                             "datetimeEpoch": int(dt.datetime.fromisoformat(date).replace(tzinfo=dt.timezone.utc).timestamp()),
                             "tempmax": max(h["temp"] for h in hours), "hours": hours})
        return {"days": days}

    # --- columnar batches: the frames the client parses the JSON above to, without the JSON (ingest at scale) ---
    def _city(self, endpoint: str, station: str, d1: dt.date, d2: dt.date) -> City:
        """The station's city, after the checks ``handle`` makes of a request (an unknown station or a bad range
        is refused as the API refuses it)."""
        self.requests += 1
        where = f"{endpoint} stn:{station}/{d1}/{d2} (simulated batch)"
        city = self.stations.get(station)
        if city is None:
            raise ApiError(where, {}, 400, f"Bad API Request:Invalid location parameter value {station}")
        if d2 < d1 or (d2 - d1).days > MAX_DAYS:
            raise ApiError(where, {}, 400, "Bad API Request:Invalid date range")
        return city

    def observation_frame(self, station: str, d1: dt.date, d2: dt.date) -> pd.DataFrame:
        """What ``VisualCrossingClient.get_observations`` reads from ``timeline``'s JSON, before it filters and sorts."""
        e, v = self._observed(self._city("timeline", station, d1, d2), d1, d2)
        return pd.DataFrame({"valid_time": utc_stamps(e.astype("int64"), "s"), "temp_f": v.astype(float),
                             "source_kind": np.full(len(e), "obs", dtype=object)})

    def forecast_run_frame(self, station: str, d1: dt.date, d2: dt.date) -> pd.DataFrame:
        """What ``VisualCrossingClient.get_forecast_runs`` reads from ``byrun``'s JSON, before it filters and sorts."""
        issued, valid, temp = self._issued(self._city("historicalforecast/byrun", station, d1, d2), d1, d2)
        return pd.DataFrame({"valid_time": utc_stamps(valid, "s"), "temp_f": temp.astype(float),
                             "issued_at": utc_stamps(issued, "s")})


def _utc_span(d1: dt.date, d2: dt.date) -> tuple[float, float]:
    """[start of d1, end of d2) in UTC seconds."""
    return (dt.datetime.combine(d1, dt.time(0), dt.timezone.utc).timestamp(),
            dt.datetime.combine(d2 + dt.timedelta(days=1), dt.time(0), dt.timezone.utc).timestamp())


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
