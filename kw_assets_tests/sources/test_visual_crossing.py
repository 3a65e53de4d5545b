import datetime as dt

import httpx
import pytest

from kw_assets.cities import get_city
from kw_assets.errors import DataError
from kw_assets.sources.http import ApiError
from kw_assets.sources.visual_crossing import VisualCrossingClient, fetch_weather_forecasts

E0 = int(dt.datetime(2025, 6, 10, 5, tzinfo=dt.timezone.utc).timestamp())


def vc(handler) -> VisualCrossingClient:
    return VisualCrossingClient("SECRET-KEY", transport=httpx.MockTransport(handler), requests_per_second=None,
                                sleep=lambda s: None)


def test_observation_request_locks_the_station_and_parses_minutes():
    seen = {}

    def handler(request):
        seen["path"], seen["params"] = request.url.path, dict(request.url.params)
        return httpx.Response(200, json={"queryCost": 2, "days": [{"datetime": "2025-06-10", "hours": [
            {"datetimeEpoch": E0, "temp": 70.0, "minutes": [
                {"datetime": "01:00:00", "datetimeEpoch": E0, "temp": 69.8, "source": "obs"},
                {"datetime": "01:05:00", "datetimeEpoch": E0 + 300, "temp": None, "source": "obs"},
                {"datetime": "01:10:00", "datetimeEpoch": E0 + 600, "temp": 71.6, "source": "obs"},
                {"datetime": "01:15:00", "datetimeEpoch": E0 + 900, "temp": 72.0, "source": "fcst"}]}]}]})

    obs = vc(handler).get_observations("KNYC", dt.date(2025, 6, 10), dt.date(2025, 6, 11))
    assert seen["path"].endswith("/rest/services/timeline/stn:KNYC/2025-06-10/2025-06-11")
    p = seen["params"]
    assert (p["maxStations"], p["maxDistance"], p["options"], p["timezone"], p["unitGroup"]) == ("1", "0", "minuteinterval_5", "Z", "us")
    assert "minutes" in p["include"] and "obs" in p["include"]
    assert obs["temp_f"].tolist() == [69.8, 71.6]  # nulls dropped, forecast rows are not observations
    assert obs["valid_time"].iloc[1] == dt.datetime(2025, 6, 10, 5, 10, tzinfo=dt.timezone.utc)


def test_forecast_rows_carry_issued_at_and_date_only_runs_count_from_the_end_of_the_day():
    def handler(request):
        assert "/historicalforecast/stn:KNYC/byrun/" in request.url.path
        return httpx.Response(200, json={"days": [
            {"rundatetime": "2025-06-09T12:00:00Z", "forecastday": 1, "hours": [{"datetimeEpoch": E0, "temp": 70.1}]},
            {"rundatetime": "2025-06-09", "forecastday": 1, "hours": [{"datetimeEpoch": E0 + 3600, "temp": 71.0}]},
        ]})

    f = vc(handler).get_forecast_runs("KNYC", dt.date(2025, 6, 8), dt.date(2025, 6, 10))
    assert [str(t) for t in f["issued_at"]] == ["2025-06-09 12:00:00+00:00", "2025-06-09 23:59:59+00:00"]


def test_a_run_issued_after_the_climate_day_is_rejected():
    end = E0 + 86400

    def handler(request):
        return httpx.Response(200, json={"days": [
            {"rundatetime": "2025-06-11T06:00:00Z", "hours": [{"datetimeEpoch": E0 + 3600, "temp": 70.0}]}]})

    with pytest.raises(DataError, match="weather_forecasts, field issued_at"):
        fetch_weather_forecasts(vc(handler), get_city("ny"), dt.date(2025, 6, 10))
    assert end  # window end is 2025-06-11 05:00Z


def test_plain_text_error_is_surfaced_and_the_key_is_never_shown():
    def handler(request):
        return httpx.Response(401, text="No API key or session found. Please verify that your API key parameter is correct.")

    with pytest.raises(ApiError) as err:
        vc(handler).get_observations("KNYC", dt.date(2025, 6, 10), dt.date(2025, 6, 10))
    assert "No API key or session found" in str(err.value)
    assert "SECRET-KEY" not in str(err.value) and "key=***" in str(err.value)


def test_missing_days_list_is_bad_input():
    with pytest.raises(DataError, match="weather_obs, field days"):
        vc(lambda r: httpx.Response(200, json={"error": "x"})).get_observations("KNYC", dt.date(2025, 6, 10), dt.date(2025, 6, 10))
