"""The order book (group ``orderbook``): ``orderbook_l2`` rebuilt per city x climate day from the
recorder's closed Parquet segments, and the sensor that requests it as segments arrive.

Sensor ``l2_segments_sensor``: every ``L2_SENSOR_INTERVAL_S`` it lists the recorded city-days under the L2
root (``KW_L2_ROOT``, default ``data/l2``) and requests ``orderbook_l2`` for each partition whose newest closed
segment is newer than its cursor remembers (run key ``l2:<partition>:<newest mtime>``, so a set of segments
is never requested twice). It loads with the other automation's default status.
"""


import datetime as dt
import json
import os
import time

import dagster as dg
import pandas as pd
import pydantic

from kw_assets.cities import all_cities, parse_event_ticker
from kw_assets.defs.automation import DEFAULT_SENSOR_STATUS, DEFAULT_STATUS
from kw_assets.defs.jobs import orderbook_job
from kw_assets.defs.materialize import reject, schema_check, table_metadata
from kw_assets.defs.resources import MarketDataResource, WAREHOUSE_KIND, WAREHOUSE_POOL, WarehouseResource
from kw_assets.model.spreads import spread_table
from kw_assets.queries import spread_observations
from kw_assets.reporting import markdown_table
from kw_assets.schemas import TableInvalid, conform, validate
from kw_assets.sources import SIMULATED_BANNER
from kw_assets.sources.kalshi.parse import orderbook_samples_frame
from kw_assets.defs.tables import derived_table
from kw_assets.model.order_book import level_rows, rebuild_minutes
from kw_assets.model.panel import minute_grid
from kw_assets.partitions import city_day_partitions, partition_key
from kw_assets.recorder.segments import read_segments, recorded_days

L2_SENSOR_INTERVAL_S = 120


def l2_root() -> str:
    return os.environ.get("KW_L2_ROOT", "data/l2")


class OrderbookRunConfig(dg.Config):
    l2_root: str = pydantic.Field(default_factory=l2_root, description="the recorder's segment root (KW_L2_ROOT)")


@derived_table("orderbook_l2", group="orderbook", time_column="minute_ts", config=OrderbookRunConfig,
               inputs=("kalshi_markets",), required=("kalshi_markets",),
               description="The recorded order book per minute x bracket, rebuilt from the L2 recorder's segments "
                           "(snapshot + deltas, YES and NO bids; the YES ask is 100 minus the best NO bid): best "
                           "bid/ask and sizes, depth over the top 3 levels, spread, queue imbalance, order-flow "
                           "imbalance (OFI at the best level) and the share of the minute with a known-good book. "
                           "Rows only where the book is known at the minute's end; none from inside a gap. Empty for "
                           "a day that was not recorded.")
def orderbook_l2(context, wh, config):
    root = config.l2_root

    def produce(city, day, data):
        markets = data["kalshi_markets"]
        records = read_segments(root, city.key, day)
        book = rebuild_minutes(records, markets["market_ticker"].tolist(), minute_grid(markets))
        index = dict(zip(markets["market_ticker"], markets["bracket_index"]))
        book.insert(2, "bracket_index", book["market_ticker"].map(index).astype("int64"))
        return book.sort_values(["market_ticker", "minute_ts"], kind="stable").reset_index(drop=True)

    return produce


@derived_table("orderbook_levels", group="orderbook", time_column="minute_ts", config=OrderbookRunConfig,
               inputs=("kalshi_markets",), required=("kalshi_markets",),
               description="Every resting level (side, price, contracts) of each bracket's recorded book at each minute's "
                           "end where the book was known (the minutes of orderbook_l2): the queue the maker fill model "
                           "joins. Empty for a day that was not recorded.")
def orderbook_levels(context, wh, config):
    root = config.l2_root

    def produce(city, day, data):
        markets = data["kalshi_markets"]
        return level_rows(read_segments(root, city.key, day), markets["market_ticker"].tolist(), minute_grid(markets))

    return produce


@dg.sensor(minimum_interval_seconds=L2_SENSOR_INTERVAL_S, default_status=DEFAULT_SENSOR_STATUS,
           job=orderbook_job,
           description="Requests orderbook_l2 for every city x climate day with newly closed L2 segments.")
def l2_segments_sensor(context: dg.SensorEvaluationContext):
    started = time.monotonic()
    seen: dict[str, float] = json.loads(context.cursor) if context.cursor else {}
    valid = set(city_day_partitions.get_partition_keys())
    requests = []
    for (city, day), newest in sorted(recorded_days(l2_root()).items()):
        key = str(partition_key(city, day))
        if key not in valid or newest <= seen.get(key, 0.0):
            continue
        seen[key] = newest
        requests.append(dg.RunRequest(run_key=f"l2:{key}:{newest:.3f}", partition_key=key))
    context.log.info(f"l2_segments_sensor: {len(seen)} recorded city-days, {len(requests)} run request(s), "
                     f"{time.monotonic() - started:.2f}s")
    return dg.SensorResult(run_requests=requests, cursor=json.dumps(seen))


def open_markets(client, city, now_ts: int) -> list[tuple[dt.date, list[str]]]:
    """(climate day, its open market tickers) of a city's current and next event."""
    events = sorted(client.iter_events(city.series_ticker, min_close_ts=now_ts),
                    key=lambda e: parse_event_ticker(e["event_ticker"])[1])[:2]
    out = []
    for ev in events:
        tickers = [m["ticker"] for m in client.get_markets(ev["event_ticker"]) if m.get("status") in ("active", "open")]
        if tickers:
            out.append((parse_event_ticker(ev["event_ticker"])[1], tickers))
    return out


@dg.asset(group_name="orderbook", pool=WAREHOUSE_POOL, owners=["team:kw-data"], kinds={"python", WAREHOUSE_KIND},
          check_specs=[schema_check("orderbook_samples")],
          description="Order books sampled now through REST (GET /markets/orderbooks, 100 markets a call) for every open "
                      "bracket of each city's current and next event: best bid and ask, their sizes and the spread. "
                      "Each run adds a sample to the partitions of the events it saw (the seed's occasional "
                      "snapshots: the spreads for days without an L2 recording). orderbook_sample_schedule runs it.")
def orderbook_samples(context: dg.AssetExecutionContext, market_data: MarketDataResource, warehouse: WarehouseResource):
    settings, wh = market_data.settings(), warehouse.get()
    now = pd.Timestamp(settings.now())
    frames = []
    with market_data.kalshi_client() as client:
        for city in all_cities():
            for day, tickers in open_markets(client, city, int(now.timestamp())):
                sampled = orderbook_samples_frame(client.get_orderbooks(tickers), now)
                frames.append(sampled.assign(city=city.key, climate_day=pd.Timestamp(day), source=settings.label()))
    new = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    parts = sorted({(c, d.date()) for c, d in zip(new["city"], new["climate_day"])}) if len(new) else []
    merged = pd.concat([wh.read("orderbook_samples", parts), conform("orderbook_samples", new)], ignore_index=True) if parts else new
    if len(merged):
        merged = merged.drop_duplicates(["city", "climate_day", "sampled_at", "market_ticker"], keep="last")
        try:
            merged = validate("orderbook_samples", conform("orderbook_samples", merged))
        except TableInvalid as exc:
            yield from reject("orderbook_samples", exc.failures, f"{exc}; nothing was written")
        wh.replace_partitions("orderbook_samples", merged, parts)
    meta = {**table_metadata("orderbook_samples"), "sampled_at": dg.MetadataValue.text(str(now)),
            "markets_sampled": dg.MetadataValue.int(len(new)), "partitions": dg.MetadataValue.int(len(parts)),
            "source": dg.MetadataValue.text(settings.label())}
    if settings.label() == "simulated":
        meta["warning"] = dg.MetadataValue.text(SIMULATED_BANNER)
    yield dg.MaterializeResult(metadata=meta)
    yield dg.AssetCheckResult(check_name="orderbook_samples_schema", passed=True,
                              metadata={"rows_checked": dg.MetadataValue.int(len(merged))})


@dg.asset(group_name="orderbook", pool=WAREHOUSE_POOL, owners=["team:kw-quant"], kinds={"python", WAREHOUSE_KIND},
          deps=["orderbook_samples", "orderbook_l2"], check_specs=[schema_check("orderbook_spreads")],
          description="Half-spread quantiles (p25, median, p75, p90, mean) per city and price regime (1-10c, 10-30c, "
                      "30-70c, 70-90c, 90-99c), from the sampled order books and, separately, from the recorded L2 "
                      "minutes. The backtest's taker fill uses each regime's median from books observed before the "
                      "day it trades.")
def orderbook_spreads(context: dg.AssetExecutionContext, warehouse: WarehouseResource):
    wh = warehouse.get()
    obs = spread_observations(wh)
    table = spread_table(obs).assign(source=", ".join(sorted(set(obs["source"].dropna())) or ["none"]))
    try:
        table = validate("orderbook_spreads", table)
    except TableInvalid as exc:
        yield from reject("orderbook_spreads", exc.failures, f"{exc}; nothing was written")
    wh.replace_table("orderbook_spreads", table)
    meta = {**table_metadata("orderbook_spreads"), "dagster/row_count": dg.MetadataValue.int(len(table)),
            "observations": dg.MetadataValue.int(len(obs)), "spreads": dg.MetadataValue.md(markdown_table(table, 40))}
    if "simulated" in set(obs["source"].dropna()):
        meta["warning"] = dg.MetadataValue.text(SIMULATED_BANNER)
    yield dg.MaterializeResult(metadata=meta)
    yield dg.AssetCheckResult(check_name="orderbook_spreads_schema", passed=True,
                              metadata={"rows_checked": dg.MetadataValue.int(len(table))})


orderbook_sample_job = dg.define_asset_job(
    "orderbook_sample_job", selection=dg.AssetSelection.assets("orderbook_samples", "orderbook_spreads"),
    description="Sample every open market's order book now (REST) and refresh the spread statistics.")


@dg.schedule(cron_schedule="*/10 * * * *", execution_timezone="UTC", job=orderbook_sample_job,
             default_status=DEFAULT_STATUS,
             description="Every 10 minutes: one order-book sample of every open bracket, and the spread statistics.")
def orderbook_sample_schedule(context: dg.ScheduleEvaluationContext):
    return dg.RunRequest(run_key=f"orderbook-sample-{context.scheduled_execution_time:%Y%m%dT%H%M}")


orderbook_assets = [orderbook_l2, orderbook_levels, orderbook_samples, orderbook_spreads]
orderbook_sensors = [l2_segments_sensor]
orderbook_schedules = [orderbook_sample_schedule]
