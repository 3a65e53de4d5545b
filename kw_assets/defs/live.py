"""The live tail in Dagster (group ``live``): ``live_tail_job`` ticks every city's open climate days once
(``live_tail.TailDay``: new candles, prints, obs and runs appended, the minute chain recomputed for the new
minutes, the settled day swapped in), recording a materialization of each table and partition it wrote, so
the lineage and the Partitions tab show today's partitions filling. ``live_tail_schedule`` runs it every
minute.

A schedule rather than a sensor: the trigger is the clock, not an event to detect. Each tick is idempotent
and its cursor is the warehouse, so a skipped or failed minute is repaired by the next; a sensor would only
add a cursor of its own to keep in step with the warehouse's. For a sped-up clock or a machine without the
daemon, ``python -m kw_assets tail`` runs the same ticks in a loop.
"""

import dataclasses

import dagster as dg
import pydantic

from kw_assets.cities import all_cities, get_city
from kw_assets.defs.automation import DEFAULT_SENSOR_STATUS
from kw_assets.defs.resources import WAREHOUSE_POOL, MarketDataResource, WarehouseResource
from kw_assets.live_tail import TailDay, TickFailed, live_days
from kw_assets.sources import SIMULATED_BANNER
from kw_assets.sources.clients import kalshi_client, weather_client


class LiveTailConfig(dg.Config):
    cities: list[str] = pydantic.Field(default_factory=list, description="city keys; empty: every city")


@dg.op(out={}, pool=WAREHOUSE_POOL, description="One tick of the live tail for every city's previous (until settled), current and next "
                           "climate day; fails, after ticking the others, if any partition's tick failed.")
def live_tail_tick(context: dg.OpExecutionContext, config: LiveTailConfig, market_data: MarketDataResource,
                   warehouse: WarehouseResource):
    settings = dataclasses.replace(market_data.settings(), simulated_through_http=True)
    now = settings.now()
    kalshi, weather = kalshi_client(settings), weather_client(settings)
    wh = warehouse.get()
    failed = []
    try:
        for city in [get_city(c) for c in config.cities] or list(all_cities()):
            for day in live_days(city, now):
                tail = TailDay(wh, city, day, kalshi, weather, settings.label())
                try:
                    tick = tail.tick(now)
                except TickFailed as exc:
                    context.log.error(str(exc))
                    failed.append(str(exc))
                    continue
                context.log.info(f"{tail.key} at {now:%Y-%m-%d %H:%M:%S}: {tick.note or f'complete through {tick.through}'}")
                for table, rows in tick.written.items():
                    meta = {"rows_written": dg.MetadataValue.int(rows), "by": dg.MetadataValue.text(
                        "settled swap" if tick.settled else "live tail"), "source": dg.MetadataValue.text(settings.label())}
                    if tick.through is not None:
                        meta["complete_through"] = dg.MetadataValue.text(str(tick.through))
                    if settings.label() == "simulated":
                        meta["warning"] = dg.MetadataValue.text(SIMULATED_BANNER)
                    yield dg.AssetMaterialization(asset_key=table, partition=tail.key, metadata=meta)
    finally:
        kalshi.close()
        if weather is not None:
            weather.close()
    if failed:
        raise dg.Failure(description=f"{len(failed)} partition tick(s) failed; the next tick catches up. " + " | ".join(failed[:3]))


# one op a minute, in the run's own process: a step process of its own would start (and import the project) each
# minute before the tick, ~3 s later data (bench: a launched tick's run 6.3-6.6 s -> 3.0-3.3 s)
@dg.job(executor_def=dg.in_process_executor,
        description="One minute of the live tail: the open climate days' partitions brought up to now.")
def live_tail_job():
    live_tail_tick()


live_tail_schedule = dg.ScheduleDefinition(
    name="live_tail_schedule", job=live_tail_job, cron_schedule="* * * * *", execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING if DEFAULT_SENSOR_STATUS == dg.DefaultSensorStatus.RUNNING
    else dg.DefaultScheduleStatus.STOPPED,
    description="Every minute: live_tail_job (on for a live source, off for the simulated default, as the sensors).")
