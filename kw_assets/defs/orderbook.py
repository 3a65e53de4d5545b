"""The order book (group ``orderbook``): ``orderbook_l2`` rebuilt per city x climate day from the
recorder's closed Parquet segments, and the sensor that requests it as segments arrive.

Sensor ``l2_segments_sensor``: every ``L2_SENSOR_INTERVAL_S`` it lists the recorded city-days under the L2
root (``KW_L2_ROOT``, default ``data/l2``) and requests ``orderbook_l2`` for each partition whose newest closed
segment is newer than its cursor remembers (run key ``l2:<partition>:<newest mtime>``, so a set of segments
is never requested twice). It loads with the other automation's default status.
"""

from __future__ import annotations

import json
import os
import time

import dagster as dg
import pydantic

from kw_assets.defs.automation import DEFAULT_SENSOR_STATUS
from kw_assets.defs.jobs import orderbook_job
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
    silence_s: float = pydantic.Field(default=30.0, description=(
        "the book counts as known between two recorded rows at most this far apart (the recorder writes a "
        "heartbeat every 10 s)"))


@derived_table("orderbook_l2", group="orderbook", time_column="minute_ts", config=OrderbookRunConfig,
               inputs=("kalshi_markets",), required=("kalshi_markets",),
               description="The recorded order book per minute x bracket, rebuilt from the L2 recorder's segments "
                           "(snapshot + deltas, YES and NO bids; the YES ask is 100 minus the best NO bid): best "
                           "bid/ask and sizes, depth over the top 3 levels, spread, queue imbalance, order-flow "
                           "imbalance (OFI at the best level) and the share of the minute with a known-good book. "
                           "Rows only where the book is known at the minute's end; none from inside a gap. Empty for "
                           "a day that was not recorded.")
def orderbook_l2(context, wh, config):
    root, silence_ms = config.l2_root, int(config.silence_s * 1000)

    def produce(city, day, data):
        markets = data["kalshi_markets"]
        records = read_segments(root, city.key, day)
        book = rebuild_minutes(records, markets["market_ticker"].tolist(), minute_grid(markets), silence_ms)
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
    root, silence_ms = config.l2_root, int(config.silence_s * 1000)

    def produce(city, day, data):
        markets = data["kalshi_markets"]
        return level_rows(read_segments(root, city.key, day), markets["market_ticker"].tolist(), minute_grid(markets), silence_ms)

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


orderbook_assets = [orderbook_l2, orderbook_levels]
orderbook_sensors = [l2_segments_sensor]
