"""Automation: a daily schedule for the previous climate day of every city, and a sensor that notices
newly listed and newly settled Kalshi events.

Schedule ``daily_climate_day_schedule``: at 17:00 UTC, when every city's market for the previous climate
day has settled (the last climate day to end is Los Angeles' at 08:00 UTC, and Kalshi settles the next
morning, ~15:00 UTC), one run materializes the whole graph for all cities of that day.

Sensor ``kalshi_events_sensor``: every ``SENSOR_INTERVAL_S`` it lists each configured series' recent events
(one cursor-paged call per series); its cursor remembers each event's last seen status, and
``event_watch.event_requests`` says what to run (run keys ``<event>:listed`` and ``<event>:settled``, so a
state is never requested twice). A sensor rather than declarative automation: the trigger is the
exchange's event status, which Dagster cannot observe from the graph.

Both load RUNNING when ``KW_SOURCE=live`` and STOPPED on the simulated default (``automation_on``);
``KW_AUTOMATION=running`` or ``stopped`` overrides, and the UI's Automation page toggles them.
"""

import datetime as dt
import json
import os
import time

import dagster as dg

from kw_assets.cities import all_cities
from kw_assets.defs.jobs import all_assets_job, raw_job
from kw_assets.defs.resources import MarketDataResource
from kw_assets.event_watch import event_requests, prune
from kw_assets.partitions import city_day_partitions, partition_key

SENSOR_INTERVAL_S = 300
LOOKBACK_DAYS = 4

def automation_on(env: dict[str, str] = os.environ) -> bool:
    """On for a live source, off for the simulated default (a newcomer's ``./run dev`` shows the demo's
    results, not a burst of queued runs for simulated days); ``KW_AUTOMATION=running|stopped`` decides."""
    chosen = env.get("KW_AUTOMATION", "").lower()
    if chosen in ("running", "stopped"):
        return chosen == "running"
    return env.get("KW_SOURCE", "simulated") == "live"


DEFAULT_STATUS = dg.DefaultScheduleStatus.RUNNING if automation_on() else dg.DefaultScheduleStatus.STOPPED
DEFAULT_SENSOR_STATUS = dg.DefaultSensorStatus.RUNNING if automation_on() else dg.DefaultSensorStatus.STOPPED


def day_range_tags(first: dt.date, last: dt.date) -> dict[str, str]:
    """Tags for one run over every city for [first, last] (a single-run backfill)."""
    cities = [c.key for c in all_cities()]
    return {"dagster/asset_partition_range_start": str(partition_key(cities[0], first)),
            "dagster/asset_partition_range_end": str(partition_key(cities[-1], last))}


@dg.schedule(cron_schedule="0 17 * * *", execution_timezone="UTC", job=all_assets_job,
             default_status=DEFAULT_STATUS,
             description="Daily at 17:00 UTC: the previous climate day for every city, raw data through report, in one run.")
def daily_climate_day_schedule(context: dg.ScheduleEvaluationContext):
    day = (context.scheduled_execution_time.astimezone(dt.timezone.utc) - dt.timedelta(days=1)).date()
    return dg.RunRequest(run_key=f"daily-{day}", tags=day_range_tags(day, day))


@dg.sensor(minimum_interval_seconds=SENSOR_INTERVAL_S, default_status=DEFAULT_SENSOR_STATUS,
           jobs=[raw_job, all_assets_job],
           description="Requests raw data for newly listed Kalshi events and the whole graph for newly settled ones.")
def kalshi_events_sensor(context: dg.SensorEvaluationContext, market_data: MarketDataResource):
    started = time.monotonic()
    seen: dict[str, str] = json.loads(context.cursor) if context.cursor else {}
    requests: list[dg.RunRequest] = []
    min_close = int((market_data.settings().now() - dt.timedelta(days=LOOKBACK_DAYS)).timestamp())
    valid = set(city_day_partitions.get_partition_keys())
    jobs = {"listed": "raw_job", "settled": "all_assets_job"}
    with market_data.kalshi_client() as client:
        for city in all_cities():
            listed = [e["event_ticker"] for e in client.iter_events(city.series_ticker, min_close_ts=min_close)]
            settled = {e["event_ticker"] for e in client.iter_events(city.series_ticker, status="settled",
                                                                      min_close_ts=min_close)}
            requests += [dg.RunRequest(run_key=r.run_key, job_name=jobs[r.reason], partition_key=r.partition,
                                       tags={"kw/event": r.event, "kw/reason": r.reason})
                         for r in event_requests(listed, settled, seen, valid)]
    context.log.info(f"kalshi_events_sensor: {len(seen)} events tracked, {len(requests)} run request(s), "
                     f"{time.monotonic() - started:.1f}s")
    return dg.SensorResult(run_requests=requests, cursor=json.dumps(prune(seen, market_data.settings().now().date())))


automation = {"schedules": [daily_climate_day_schedule], "sensors": [kalshi_events_sensor]}
