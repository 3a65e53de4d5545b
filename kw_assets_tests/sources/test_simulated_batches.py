"""The simulated exchange's and weather feed's columnar batches are the HTTP + JSON path without the JSON: same
frames."""

import datetime as dt

import numpy as np
import pandas as pd
import pytest

from kw_assets.cities import get_city
from kw_assets.sources.clients import SourceSettings, kalshi_client, weather_client
from kw_assets.sources.http import ApiError
from kw_assets.sources.kalshi.fetch import fetch_candles, fetch_markets, fetch_trades
from kw_assets.sources.visual_crossing import fetch_weather_forecasts, fetch_weather_obs


@pytest.mark.parametrize("city,day,now", [
    ("ny", dt.date(2025, 3, 4), "2026-11-27T00:00:00Z"),   # archived: historical tier
    ("lax", dt.date(2025, 6, 10), "2025-06-12T00:00:00Z"),  # settled, live tier
    ("chi", dt.date(2025, 6, 10), "2025-06-10T20:00:00Z"),  # still trading: up to now
    ("mia", dt.date(2025, 6, 20), "2025-09-19T12:00:00Z"),  # trades on both sides of the cutoff
])
def test_batches_equal_what_the_json_parses_to(city, day, now):
    via_json = kalshi_client(SourceSettings(simulated_now=now, simulated_through_http=True))
    batched = kalshi_client(SourceSettings(simulated_now=now))
    assert via_json.batches is None and batched.batches is not None
    markets = fetch_markets(via_json, get_city(city), day)
    pd.testing.assert_frame_equal(fetch_markets(batched, get_city(city), day), markets, check_exact=True)
    candles = fetch_candles(batched, markets)
    trades = fetch_trades(batched, markets)
    assert len(candles) > 100 and len(trades) > 100
    pd.testing.assert_frame_equal(candles, fetch_candles(via_json, markets), check_exact=True)  # to the bit
    pd.testing.assert_frame_equal(trades, fetch_trades(via_json, markets), check_exact=True)
    assert batched.http.stats["requests"] < via_json.http.stats["requests"]


@pytest.mark.parametrize("city,day,now", [
    ("ny", dt.date(2025, 3, 9), "2026-11-27T00:00:00Z"),    # the spring DST switch: a 24-hour LST window all the same
    ("den", dt.date(2025, 11, 2), "2026-11-27T00:00:00Z"),  # the autumn switch
    ("phil", dt.date(2025, 12, 31), "2026-11-27T00:00:00Z"),  # runs issued in the year before, hours in the next
    ("chi", dt.date(2025, 6, 10), "2025-06-10T20:07:30Z"),  # the day still running: obs and runs up to now only
])
def test_weather_batches_equal_what_the_json_parses_to(city, day, now):
    via_json = weather_client(SourceSettings(simulated_now=now, simulated_through_http=True))
    batched = weather_client(SourceSettings(simulated_now=now))
    assert via_json.batches is None and batched.batches is not None
    for fetch in (fetch_weather_obs, fetch_weather_forecasts):
        want = fetch(via_json, get_city(city), day)
        got = fetch(batched, get_city(city), day)
        assert len(want) > 50
        pd.testing.assert_frame_equal(got, want, check_exact=True)
    station = get_city(city).station
    for d1, d2 in ((day - dt.timedelta(days=2), day + dt.timedelta(days=1)), (day, day)):  # the clients' whole answers
        pd.testing.assert_frame_equal(batched.get_observations(station, d1, d2), via_json.get_observations(station, d1, d2),
                                      check_exact=True)
        pd.testing.assert_frame_equal(batched.get_forecast_runs(station, d1, d2),
                                      via_json.get_forecast_runs(station, d1, d2), check_exact=True)
    assert via_json.http.stats["requests"] > 0 and batched.http.stats["requests"] == 0


def test_weather_batches_refuse_what_the_api_refuses():
    batched = weather_client(SourceSettings())
    with pytest.raises(ApiError, match="Invalid location parameter value KXXX"):
        batched.get_observations("KXXX", dt.date(2025, 6, 1), dt.date(2025, 6, 2))
    with pytest.raises(ApiError, match="Invalid date range"):
        batched.get_forecast_runs("KNYC", dt.date(2025, 6, 1), dt.date(2025, 5, 30))


def test_faults_or_a_rate_limit_keep_the_http_path():
    assert kalshi_client(SourceSettings(fault_rate_429=0.1)).batches is None
    assert kalshi_client(SourceSettings(simulated_rate_limit=20)).batches is None
    assert weather_client(SourceSettings(fault_rate_5xx=0.1)).batches is None


def test_the_batches_numbers_are_what_parsing_the_exchanges_text_gives():
    """Prices as the exchange writes them (4 places), counts as "%.2f": the parsed double of each, halves and
    values too large to scale exactly included."""
    from kw_assets.sources.simulator.exchange import _as_parsed
    rng = np.random.default_rng(2)
    values = np.concatenate([rng.uniform(0, 1, 20_000), rng.lognormal(2, 1.5, 20_000), np.arange(0, 50, 0.005),
                             [0.125, 2.675, 1.005, 0.00005, 0.99995, 3e16, 0.0, np.nan, np.inf],
                             rng.uniform(8.5e7, 9e12, 20_000)])  # products past 2**33: formatted and parsed
    for places in (2, 4):
        want = [float(f"{x:.{places}f}") if np.isfinite(x) else np.nan for x in values]
        assert np.array_equal(_as_parsed(values, places), np.array(want), equal_nan=True)
    assert _as_parsed(np.array([2.675, 0.125]), 2).tolist() == [2.67, 0.12]  # 2.675 is 2.67499..., 0.125 rounds to even
