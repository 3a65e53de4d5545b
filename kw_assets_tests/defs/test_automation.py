import datetime as dt
import json
import time

import dagster as dg

from kw_assets.cities import all_cities
from kw_assets.defs.automation import daily_climate_day_schedule, kalshi_events_sensor
from kw_assets.defs.resources import MarketDataResource
from kw_assets.partitions import city_day_partitions

UTC = dt.timezone.utc


def test_daily_schedule_requests_every_city_for_the_previous_climate_day_in_one_run():
    ctx = dg.build_schedule_context(scheduled_execution_time=dt.datetime(2025, 6, 11, 17, tzinfo=UTC))
    request = daily_climate_day_schedule(ctx)
    assert request.run_key == "daily-2025-06-10"
    rng = dg.PartitionKeyRange(request.tags["dagster/asset_partition_range_start"],
                               request.tags["dagster/asset_partition_range_end"])
    keys = city_day_partitions.get_partition_keys_in_range(rng)
    assert sorted(str(k) for k in keys) == sorted(f"{c.key}|2025-06-10" for c in all_cities())


def tick(now: str, cursor: str | None):
    ctx = dg.build_sensor_context(cursor=cursor, resources={"market_data": MarketDataResource(simulated_now=now)})
    started = time.monotonic()
    result = kalshi_events_sensor(ctx)
    return result, time.monotonic() - started


def test_sensor_requests_new_and_settled_events_once_each_as_time_passes():
    r1, took = tick("2025-06-09T10:00:00Z", None)
    assert took < 30  # well inside Dagster's 60 s tick limit, 7 series
    listed = {r.tags["kw/event"] for r in r1.run_requests if r.tags["kw/reason"] == "listed"}
    settled = {r.tags["kw/event"] for r in r1.run_requests if r.tags["kw/reason"] == "settled"}
    assert "KXHIGHNY-25JUN10" in listed and "KXHIGHNY-25JUN11" not in listed  # listed ~10 h before it opens
    assert "KXHIGHNY-25JUN07" in settled and "KXHIGHNY-25JUN09" not in settled
    assert all(r.job_name == "raw_job" for r in r1.run_requests if r.tags["kw/reason"] == "listed")
    assert all(r.job_name == "all_assets_job" for r in r1.run_requests if r.tags["kw/reason"] == "settled")
    assert {r.partition_key for r in r1.run_requests if r.tags["kw/event"] == "KXHIGHCHI-25JUN10"} == {"chi|2025-06-10"}
    # same state, same cursor: nothing new
    r2, _ = tick("2025-06-09T10:00:00Z", r1.cursor)
    assert r2.run_requests == []
    # two days later: the new events are listed and the ones that settled are requested, once
    r3, _ = tick("2025-06-11T18:00:00Z", r2.cursor)
    reasons = {(r.tags["kw/event"], r.tags["kw/reason"]) for r in r3.run_requests}
    assert ("KXHIGHNY-25JUN12", "listed") in reasons and ("KXHIGHNY-25JUN10", "settled") in reasons
    assert ("KXHIGHNY-25JUN10", "listed") not in reasons
    keys = [r.run_key for r in r1.run_requests + r3.run_requests]
    assert len(keys) == len(set(keys))
    assert json.loads(r3.cursor)["KXHIGHNY-25JUN10"] == "settled"


def test_automation_loads_stopped_on_the_simulated_default_and_running_live():
    from kw_assets.defs.automation import automation_on
    assert automation_on({}) is False and automation_on({"KW_SOURCE": "simulated"}) is False
    assert automation_on({"KW_SOURCE": "live"}) is True
    assert automation_on({"KW_AUTOMATION": "running"}) is True
    assert automation_on({"KW_SOURCE": "live", "KW_AUTOMATION": "stopped"}) is False
