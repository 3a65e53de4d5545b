import datetime as dt

import pytest

from kw_assets.cities import all_cities, get_city, parse_event_ticker

UTC = dt.timezone.utc
# 2025 transitions: DST starts Sun 2025-03-09, ends Sun 2025-11-02 (all four US zones)
DST_EDGE_DAYS = [dt.date(2025, 3, 8), dt.date(2025, 3, 9), dt.date(2025, 3, 10),
                 dt.date(2025, 11, 1), dt.date(2025, 11, 2), dt.date(2025, 11, 3)]


def test_registry_has_the_seven_original_series():
    assert {c.series_ticker for c in all_cities()} >= {"KXHIGHNY", "KXHIGHCHI", "KXHIGHMIA", "KXHIGHAUS",
                                                       "KXHIGHDEN", "KXHIGHPHIL", "KXHIGHLAX"}
    assert get_city("chi").station == "KMDW"  # Midway, not O'Hare


@pytest.mark.parametrize("city", [c.key for c in all_cities()])
@pytest.mark.parametrize("day", DST_EDGE_DAYS)
def test_climate_day_is_24h_of_local_standard_time_across_dst(city, day):
    c = get_city(city)
    start, end = c.climate_day_window(day)
    assert end - start == dt.timedelta(hours=24)
    assert start.utcoffset() == dt.timedelta(0)
    local = start.astimezone(c.zone)
    in_dst = bool(local.dst())
    # midnight LST is 00:00 on the clock in winter and 01:00 during daylight saving
    assert (local.hour, local.minute) == ((1, 0) if in_dst else (0, 0))
    assert local.date() == day
    assert start.hour == -c.lst_utc_offset_hours  # e.g. 05:00Z in New York, 08:00Z in Los Angeles


def test_known_windows():
    ny = get_city("ny")
    assert ny.climate_day_window(dt.date(2025, 7, 21)) == (dt.datetime(2025, 7, 21, 5, tzinfo=UTC),
                                                           dt.datetime(2025, 7, 22, 5, tzinfo=UTC))
    # 00:30 EDT on Jul 22 is still Jul 21's climate day (23:30 EST)
    assert ny.climate_day_of(dt.datetime(2025, 7, 22, 4, 30, tzinfo=UTC)) == dt.date(2025, 7, 21)
    assert ny.climate_day_of(dt.datetime(2025, 7, 22, 5, 0, tzinfo=UTC)) == dt.date(2025, 7, 22)


def test_event_tickers_in_both_forms():
    chi = get_city("chi")
    assert chi.event_ticker(dt.date(2025, 11, 19)) == "KXHIGHCHI-25NOV19"
    assert get_city("ny").event_ticker(dt.date(2024, 6, 2), legacy=True) == "HIGHNY-24JUN02"
    assert get_city("ny").event_ticker_candidates(dt.date(2024, 6, 2)) == ["HIGHNY-24JUN02", "KXHIGHNY-24JUN02"]
    assert get_city("ny").event_ticker_candidates(dt.date(2025, 6, 2)) == ["KXHIGHNY-25JUN02", "HIGHNY-25JUN02"]
    assert parse_event_ticker("KXHIGHCHI-25NOV19") == ("KXHIGHCHI", dt.date(2025, 11, 19))
    with pytest.raises(ValueError):
        parse_event_ticker("KXHIGHCHI-25XYZ19")


def test_the_partitioning_remembers_a_range_without_changing_its_keys():
    import dagster as dg
    from kw_assets.partitions import city_day_partitions, partition_key
    rng = dg.PartitionKeyRange(str(partition_key("ny", "2025-03-01")), str(partition_key("lax", "2025-03-30")))
    base = dg.MultiPartitionsDefinition.get_partition_keys_in_range(city_day_partitions, rng)
    assert city_day_partitions.get_partition_keys_in_range(rng) == base
    assert city_day_partitions.get_partition_keys_in_range(rng) is city_day_partitions.get_partition_keys_in_range(rng)
