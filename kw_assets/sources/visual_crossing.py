"""Visual Crossing: 5-minute station observations (Timeline API) and point-in-time forecasts
(Historical Forecast API, ``byrun``), locked to the settlement station with ``stn:<ICAO>``,
``maxStations=1`` and ``maxDistance=0`` so nothing is blended from nearby stations.

Rows are keyed on ``datetimeEpoch`` (UTC seconds); the local ``datetime`` text is ignored. Every
forecast row carries ``issued_at``, the run time: a run stamped with a date only is taken as issued at
the end of that UTC date, so it can never be used before it existed.
"""

from __future__ import annotations

import datetime as dt
import time
from typing import Any, Callable

import httpx
import numpy as np
import pandas as pd

from kw_assets.errors import DataError
from kw_assets.sources.http import JsonHttp, RetryPolicy, TokenBucket
from kw_assets.convert import numbers
from kw_assets.model.stamps import utc_stamps

BASE_URL = "https://weather.visualcrossing.com/VisualCrossingWebServices"
OBS_COLUMNS = ["valid_time", "temp_f", "source_kind"]
FORECAST_COLUMNS = ["issued_at", "valid_time", "temp_f"]


class VisualCrossingClient:
    def __init__(self, api_key: str, base_url: str = BASE_URL, *, transport: httpx.BaseTransport | None = None,
                 requests_per_second: float | None = 2.0, retry: RetryPolicy | None = None,
                 timeout_s: float = 60.0, sleep: Callable[[float], None] = time.sleep, batches: Any = None):
        """``batches``: a source of the frames the two endpoints' JSON parses to (``observation_frame`` and
        ``forecast_run_frame`` of a station and two dates) that the client uses instead of them: the simulated
        feed at scale. None (live): every value comes through HTTP and JSON."""
        if not api_key:
            raise ValueError("Visual Crossing needs an API key (set VISUAL_CROSSING_API_KEY)")
        self._key = api_key
        self.batches = batches
        self._client = httpx.Client(base_url=base_url.rstrip("/"), transport=transport, timeout=timeout_s)
        bucket = TokenBucket(requests_per_second, sleep=sleep) if requests_per_second else None
        # VC asks clients not to hammer it after a 429: few attempts, long waits.
        policy = retry or RetryPolicy(max_attempts=4, base_delay_s=2.0, max_delay_s=30.0)
        self.http = JsonHttp(self._client, bucket, policy, sleep=sleep, redact=frozenset({"key"}), name="visual_crossing")

    def __repr__(self) -> str:
        return "VisualCrossingClient(api_key=***)"

    def close(self) -> None:
        self._client.close()

    def _station_params(self, include: str) -> dict[str, Any]:
        return {"key": self._key, "unitGroup": "us", "contentType": "json", "include": include,
                "timezone": "Z", "maxStations": 1, "maxDistance": 0,
                "elements": "datetimeEpoch,temp,source,stations"}

    def get_observations(self, station: str, date1: dt.date, date2: dt.date) -> pd.DataFrame:
        """5-minute observed temperatures between two UTC dates (inclusive)."""
        if self.batches is not None:
            frame = self.batches.observation_frame(station, date1, date2)
        else:
            frame = self._observations_json(station, date1, date2)
        frame = frame[frame["source_kind"].isin(["obs", "comb"])]
        return frame.dropna(subset=["temp_f"])[OBS_COLUMNS].sort_values("valid_time").reset_index(drop=True)

    def _observations_json(self, station: str, date1: dt.date, date2: dt.date) -> pd.DataFrame:
        params = {**self._station_params("obs,minutes"), "options": "minuteinterval_5"}
        body = self.http.get(f"/rest/services/timeline/stn:{station}/{date1}/{date2}", params)
        rows = [mi for day in _days(body, "weather_obs") for hr in day.get("hours") or [] for mi in (hr.get("minutes") or [])]
        frame = _rows_frame(rows, "weather_obs")
        frame["source_kind"] = [r.get("source") or "obs" for r in rows]
        return frame

    def get_forecast_runs(self, station: str, run_date1: dt.date, run_date2: dt.date) -> pd.DataFrame:
        """Hourly forecasts from every run between two dates, each row stamped with its run time."""
        if self.batches is not None:
            frame = self.batches.forecast_run_frame(station, run_date1, run_date2)
        else:
            frame = self._forecast_runs_json(station, run_date1, run_date2)
        return frame.dropna(subset=["temp_f"])[FORECAST_COLUMNS].sort_values(["issued_at", "valid_time"]).reset_index(drop=True)

    def _forecast_runs_json(self, station: str, run_date1: dt.date, run_date2: dt.date) -> pd.DataFrame:
        params = self._station_params("hours")
        body = self.http.get(f"/rest/api/v1/historicalforecast/stn:{station}/byrun/{run_date1}/{run_date2}", params)
        rows: list[dict] = []
        issued: list[pd.Timestamp] = []
        runs: dict[Any, pd.Timestamp] = {}  # a run's hours share its time: each distinct text parsed once
        for day in _days(body, "weather_forecasts"):
            for hr in day.get("hours") or []:
                rows.append(hr)
                text = hr.get("rundatetime") or day.get("rundatetime")
                key = text if isinstance(text, str) else repr(text)
                if key not in runs:
                    runs[key] = _run_time(text)
                issued.append(runs[key])
        frame = _rows_frame(rows, "weather_forecasts")
        frame["issued_at"] = pd.to_datetime(pd.Series(issued, dtype="datetime64[ns, UTC]"))
        return frame


def _days(body: Any, table: str) -> list[dict]:
    if not isinstance(body, dict) or not isinstance(body.get("days"), list):
        raise DataError(table, "days", "Visual Crossing response has no 'days' list")
    return body["days"]


def _rows_frame(rows: list[dict], table: str) -> pd.DataFrame:
    for i, r in enumerate(rows):
        if "datetimeEpoch" not in r:
            raise DataError(table, "datetimeEpoch", f"missing in row {i}")
    epochs = numbers([r["datetimeEpoch"] for r in rows], table, "datetimeEpoch")
    if np.isnan(epochs).any():
        raise DataError(table, "datetimeEpoch", "null epoch")
    return pd.DataFrame({
        "valid_time": utc_stamps(epochs.astype("int64"), "s"),
        "temp_f": numbers([r.get("temp") for r in rows], table, "temp"),
    })


def _run_time(value: Any) -> pd.Timestamp:
    if value is None or value == "":
        raise DataError("weather_forecasts", "rundatetime", "forecast row without a run time")
    text = str(value)
    try:
        if len(text) == 10:  # date only: available, at the latest, by the end of that day
            return pd.Timestamp(text, tz="UTC") + pd.Timedelta(days=1) - pd.Timedelta(seconds=1)
        ts = pd.Timestamp(text)
    except ValueError as exc:
        raise DataError("weather_forecasts", "rundatetime", f"unreadable run time {text!r}") from exc
    return ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")


def fetch_weather_obs(client: VisualCrossingClient, city, day: dt.date, after: pd.Timestamp | None = None) -> pd.DataFrame:
    """The station's 5-minute obs inside the climate day's UTC window [start, end); with ``after``, only
    those stamped later, asked for from its date on (the live tail)."""
    start, end = city.climate_day_window(day)
    first = start if after is None else max(start, pd.Timestamp(after).to_pydatetime())
    obs = client.get_observations(city.station, first.date(), (end - dt.timedelta(seconds=1)).date())
    inside = (obs["valid_time"] >= pd.Timestamp(start)) & (obs["valid_time"] < pd.Timestamp(end))
    if after is not None:
        inside &= obs["valid_time"] > pd.Timestamp(after)
    out = obs.loc[inside].reset_index(drop=True)
    out.insert(0, "station", city.station)
    return out


FORECAST_LOOKBACK_DAYS = 2


def fetch_weather_forecasts(client: VisualCrossingClient, city, day: dt.date,
                            after: pd.Timestamp | None = None) -> pd.DataFrame:
    """Every run from two days before through the climate day, restricted to hours inside the day; with
    ``after``, only runs issued later, asked for from its date on (the live tail).

    A run's hours before its own issue time are not forecasts and are dropped; a run stamped after
    the day ended cannot be a forecast of it and is rejected as bad input.
    """
    start, end = city.climate_day_window(day)
    first = start.date() - dt.timedelta(days=FORECAST_LOOKBACK_DAYS)
    if after is not None:
        first = max(first, pd.Timestamp(after).date())
    runs = client.get_forecast_runs(city.station, first, (end - dt.timedelta(seconds=1)).date())
    if after is not None:
        runs = runs[runs["issued_at"] > pd.Timestamp(after)]
    late = runs["issued_at"] >= pd.Timestamp(end)
    inside = (runs["valid_time"] >= pd.Timestamp(start)) & (runs["valid_time"] < pd.Timestamp(end))
    if (late & inside).any():
        first = runs.loc[late & inside, "issued_at"].min()
        raise DataError("weather_forecasts", "issued_at", f"run issued {first} is after the climate day ended ({end})")
    keep = inside & (runs["valid_time"] >= runs["issued_at"])
    out = runs.loc[keep].reset_index(drop=True)
    out.insert(0, "station", city.station)
    return out
