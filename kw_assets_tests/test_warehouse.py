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


def test_a_forked_worker_opens_its_own_connection_not_the_one_its_parent_holds(tmp_path):
    from kw_assets import parallel
    wh = Warehouse(tmp_path / "w.duckdb")
    d1, d2 = dt.date(2025, 6, 1), dt.date(2025, 6, 2)
    wh.replace_partitions("weather_obs", pd.concat([obs("ny", d1, [70.0]), obs("ny", d2, [60.0])]), [("ny", d1), ("ny", d2)])
    with wh.held(read_only=True):
        assert wh._holding()
        got = parallel.map_items(lambda day: (wh._holding(), wh.read("weather_obs", [("ny", day)])["temp_f"].tolist()),
                                 [d1, d2], workers=2)
    assert got == [(False, [70.0]), (False, [60.0])]


def test_rows_outside_the_replaced_partitions_are_refused(tmp_path):
    wh = Warehouse(tmp_path / "w.duckdb")
    with pytest.raises(ValueError, match="partitions not being replaced"):
        wh.replace_partitions("weather_obs", obs("ny", dt.date(2025, 6, 1), [70.0]), [("ny", dt.date(2025, 6, 2))])
    assert wh.read("weather_obs").empty


def test_reading_a_table_never_written_gives_an_empty_typed_frame(tmp_path):
    f = Warehouse(tmp_path / "w.duckdb").read("kalshi_candles")
    assert f.empty and "yes_bid_close" in f.columns


def test_reads_keep_insertion_order_text_values_and_nulls_and_can_pick_columns(tmp_path):
    wh = Warehouse(tmp_path / "w.duckdb")
    days = [dt.date(2025, 6, 1) + dt.timedelta(days=i) for i in range(3)]
    frames = [obs(city, d, [70.0 + i, 71.0 + i]) for i, d in enumerate(days) for city in ("chi", "ny")]
    frames[0] = frames[0].assign(station="KMDW")
    wh.replace_partitions("weather_obs", pd.concat(frames), [(c, d) for d in days for c in ("chi", "ny")])
    s = pd.DataFrame({"city": ["ny", "chi"], "climate_day": pd.Timestamp(days[0]), "source": "simulated",
                      "event_ticker": ["KXHIGHNY-25JUN01", "KXHIGHCHI-25JUN01"], "official_high_f": [81.0, None],
                      "winning_market_ticker": ["KXHIGHNY-25JUN01-B80.5", None], "winning_bracket_index": [3, -1],
                      "settlement_source": "simulated (CLI semantics)", "obs_max_f": [80.6, None]})
    wh.replace_partitions("settlement", s, [("ny", days[0]), ("chi", days[0])])

    got = wh.read("weather_obs", [("ny", days[1]), ("chi", days[0])])
    # rows come back in the order they were written, text values intact (repetitive text is read as codes)
    assert got["city"].tolist() == ["chi", "chi", "ny", "ny"] and got["station"].tolist() == ["KMDW", "KMDW", "KNYC", "KNYC"]
    assert got["temp_f"].tolist() == [70.0, 71.0, 71.0, 72.0]
    settled = wh.read("settlement").set_index("city")
    assert settled.loc["chi", "winning_market_ticker"] is None and settled.loc["ny", "winning_market_ticker"] == "KXHIGHNY-25JUN01-B80.5"

    picked = wh.read("weather_obs", [("ny", days[2])], columns=["temp_f"])
    assert list(picked.columns) == ["city", "climate_day", "temp_f"] and picked["temp_f"].tolist() == [72.0, 73.0]
    with pytest.raises(KeyError, match="no column"):
        wh.read("weather_obs", columns=["temperature"])


def test_a_table_left_by_an_older_schema_is_named_and_kept_as_it_was(tmp_path):
    import duckdb

    from kw_assets.errors import DataError
    path = tmp_path / "w.duckdb"
    with duckdb.connect(str(path)) as con:  # what an older version wrote: another column set
        con.execute("CREATE TABLE weather_obs (city VARCHAR, climate_day DATE, temp_c DOUBLE)")
        con.execute("INSERT INTO weather_obs VALUES ('ny', DATE '2025-06-01', 21.0)")
    wh = Warehouse(path)
    with pytest.raises(DataError, match=r"table weather_obs, field .*another schema.*DROP TABLE weather_obs") as e:
        wh.replace_partitions("weather_obs", obs("ny", dt.date(2025, 6, 1), [70.0]), [("ny", dt.date(2025, 6, 1))])
    assert "temp_c" in str(e.value) and "temp_f" in str(e.value)
    with duckdb.connect(str(path)) as con:
        assert con.execute("SELECT temp_c FROM weather_obs").fetchall() == [(21.0,)]


def test_a_table_without_the_schemas_new_nullable_columns_reads_them_as_missing_and_gains_them_on_write(tmp_path):
    """The minute panel before it had order-flow features: its old rows read with NaN there, and the next
    write adds the columns (NULL on the old rows) instead of refusing."""
    from kw_assets.schemas import sql_columns
    path = tmp_path / "w.duckdb"
    wh = Warehouse(path)
    old = [(n, t) for n, t in sql_columns("minute_panel") if n not in ("ofi", "queue_imbalance")]
    with wh.connect() as con:
        con.execute(f"CREATE TABLE minute_panel ({', '.join(f'{n} {t}' for n, t in old)})")
        con.execute("INSERT INTO minute_panel (city, climate_day, source, minute_ts, market_ticker, bracket_index, trade_count) "
                    "VALUES ('ny', DATE '2025-06-01', 'simulated', TIMESTAMPTZ '2025-06-01 15:00:00+00', 'T', 0, 0)")
    before = wh.read("minute_panel")
    assert len(before) == 1 and before[["ofi", "queue_imbalance"]].isna().all().all()
    row = before.assign(climate_day=pd.Timestamp("2025-06-02"), ofi=12.0, queue_imbalance=-0.5)
    wh.replace_partitions("minute_panel", row, [("ny", dt.date(2025, 6, 2))])
    after = wh.read("minute_panel").sort_values("climate_day")
    assert after["ofi"].tolist()[0] != after["ofi"].tolist()[0] and after["ofi"].tolist()[1] == 12.0


def test_duckdb_memory_and_threads_are_bounded_when_configured(tmp_path):
    wh = Warehouse(tmp_path / "w.duckdb", memory_limit="256MB", threads=1)
    with wh.connect() as con:
        limit, threads = con.execute("SELECT current_setting('memory_limit'), current_setting('threads')").fetchone()
    assert limit.replace(" ", "").upper().startswith(("256MB", "244.1MIB")) and int(threads) == 1
