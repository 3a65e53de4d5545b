"""The one partitioning of the whole graph: city x climate day.

Dagster orders multi-partition dimensions alphabetically, so keys read ``chi|2025-06-01``.
The first climate day comes from ``KW_START_DATE`` (default 2025-01-01) at load time.
"""

from __future__ import annotations

import datetime as dt
import os

import dagster as dg

from kw_assets.cities import city_keys

DEFAULT_START_DATE = "2025-01-01"
CITY = "city"
CLIMATE_DAY = "climate_day"


def start_date() -> str:
    return os.environ.get("KW_START_DATE", DEFAULT_START_DATE)


class CityDayPartitions(dg.MultiPartitionsDefinition):
    """The multi-partitioning with the keys of a range remembered: Dagster 1.13 re-derives every key of the
    run's range on each ``add_asset_metadata(partition_key=...)`` call, which made per-partition metadata
    quadratic (a year x 7 cities: ~90 s per asset). Both dimensions are static or daily, so a range's keys
    never change."""

    def get_partition_keys_in_range(self, partition_key_range, dynamic_partitions_store=None):
        cache = self.__dict__.setdefault("_kw_range_keys", {})
        key = (str(partition_key_range.start), str(partition_key_range.end))
        if key not in cache:
            cache[key] = super().get_partition_keys_in_range(partition_key_range, dynamic_partitions_store)
        return cache[key]


city_partitions = dg.StaticPartitionsDefinition(city_keys())
climate_day_partitions = dg.DailyPartitionsDefinition(start_date=start_date(), timezone="UTC")
city_day_partitions = CityDayPartitions({CITY: city_partitions, CLIMATE_DAY: climate_day_partitions})


def partition_key(city: str, climate_day: dt.date | str) -> str:
    day = climate_day if isinstance(climate_day, str) else climate_day.isoformat()
    return dg.MultiPartitionKey({CITY: city, CLIMATE_DAY: day})


def split_key(key: str | dg.MultiPartitionKey) -> tuple[str, dt.date]:
    """(city, climate_day) from a partition key, whether a MultiPartitionKey or its plain string."""
    if not isinstance(key, dg.MultiPartitionKey):
        key = city_day_partitions.get_partition_key_from_str(str(key))
    parts = key.keys_by_dimension
    return parts[CITY], dt.date.fromisoformat(parts[CLIMATE_DAY])
