import datetime as dt

import pandas as pd
import pytest

from kw_assets.warehouse import Warehouse


def obs(city, day, temps):
    start = pd.Timestamp(day, tz="UTC") + pd.Timedelta(hours=5)
    return pd.DataFrame({"city": city, "climate_day": pd.Timestamp(day), "source": "simulated", "station": "KNYC",
                         "valid_time": [start + pd.Timedelta(minutes=5 * i) for i in range(len(temps))],
                         "temp_f": temps, "source_kind": "obs"})


def test_replace_touches_only_the_named_partitions(tmp_path):
    wh = Warehouse(tmp_path / "w.duckdb")
    d1, d2 = dt.date(2025, 6, 1), dt.date(2025, 6, 2)
    wh.replace_partitions("weather_obs", pd.concat([obs("ny", d1, [70.0, 71.6]), obs("ny", d2, [60.0])]), [("ny", d1), ("ny", d2)])
    wh.replace_partitions("weather_obs", obs("ny", d1, [75.2]), [("ny", d1)])
    wh.replace_partitions("weather_obs", obs("ny", d1, [75.2]), [("ny", d1)])  # idempotent
    got = wh.read("weather_obs").sort_values("climate_day")
    assert got["temp_f"].tolist() == [75.2, 60.0]
    assert wh.read("weather_obs", [("ny", d2)])["temp_f"].tolist() == [60.0]
    assert str(got["valid_time"].dtype) == "datetime64[ns, UTC]"


def test_rows_outside_the_replaced_partitions_are_refused(tmp_path):
    wh = Warehouse(tmp_path / "w.duckdb")
    with pytest.raises(ValueError, match="partitions not being replaced"):
        wh.replace_partitions("weather_obs", obs("ny", dt.date(2025, 6, 1), [70.0]), [("ny", dt.date(2025, 6, 2))])
    assert wh.read("weather_obs").empty


def test_reading_a_table_never_written_gives_an_empty_typed_frame(tmp_path):
    f = Warehouse(tmp_path / "w.duckdb").read("kalshi_candles")
    assert f.empty and "yes_bid_close" in f.columns
