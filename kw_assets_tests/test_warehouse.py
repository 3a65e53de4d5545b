"""The warehouse contract: the DuckDB file and PostgreSQL pass the same tests (``any_warehouse``); the
tests of a DuckDB-only behaviour say so in their names."""

import datetime as dt
import os

import duckdb
import numpy as np
import pandas as pd
import pytest

from kw_assets.warehouse import Warehouse, open_warehouse


def obs(city, day, temps):
    start = pd.Timestamp(day, tz="UTC") + pd.Timedelta(hours=5)
    return pd.DataFrame({"city": city, "climate_day": pd.Timestamp(day), "source": "simulated", "station": "KNYC",
                         "valid_time": [start + pd.Timedelta(minutes=5 * i) for i in range(len(temps))],
                         "temp_f": temps, "source_kind": "obs"})


def test_replace_touches_only_the_named_partitions(any_warehouse):
    wh = any_warehouse
    d1, d2 = dt.date(2025, 6, 1), dt.date(2025, 6, 2)
    wh.replace_partitions("weather_obs", pd.concat([obs("ny", d1, [70.0, 71.6]), obs("ny", d2, [60.0])]), [("ny", d1), ("ny", d2)])
    wh.replace_partitions("weather_obs", obs("ny", d1, [75.2]), [("ny", d1)])
    wh.replace_partitions("weather_obs", obs("ny", d1, [75.2]), [("ny", d1)])  # idempotent
    got = wh.read("weather_obs").sort_values("climate_day")
    assert got["temp_f"].tolist() == [75.2, 60.0]
    assert wh.read("weather_obs", [("ny", d2)])["temp_f"].tolist() == [60.0]
    assert str(got["valid_time"].dtype) == "datetime64[ns, UTC]"


def test_a_held_connection_asks_the_catalog_once_per_table_and_again_after_its_own_write(tmp_path, monkeypatch):
    """A step reads a table ~50 times on one held connection: its columns are looked up once, and a write (which may
    create the table or add columns) makes the next read look again."""
    wh, asked = Warehouse(tmp_path / "w.duckdb"), []
    real = Warehouse._columns
    monkeypatch.setattr(Warehouse, "_columns", staticmethod(lambda con, table: asked.append(table) or real(con, table)))
    d1, d2 = dt.date(2025, 6, 1), dt.date(2025, 6, 2)
    with wh.held():
        assert wh.read("weather_obs").empty  # not written yet
        wh.replace_partitions("weather_obs", obs("ny", d1, [70.0, 71.6]), [("ny", d1)])
        for _ in range(3):
            assert wh.read("weather_obs", [("ny", d1)])["temp_f"].tolist() == [70.0, 71.6]
        reads_then = asked.count("weather_obs")
        wh.replace_partitions("weather_obs", obs("ny", d2, [60.0]), [("ny", d2)])
        assert wh.read("weather_obs")["temp_f"].tolist() == [70.0, 71.6, 60.0]
    assert wh.read("weather_obs", [("ny", d2)])["temp_f"].tolist() == [60.0]  # not held: asked each time
    # while held: the empty read, the write's own check, one read for three; then the write's and one read
    assert reads_then == 3 and asked.count("weather_obs") == 6


def test_a_forked_duckdb_worker_opens_its_own_connection_not_the_one_its_parent_holds(tmp_path):
    from kw_assets import parallel
    wh = Warehouse(tmp_path / "w.duckdb")
    d1, d2 = dt.date(2025, 6, 1), dt.date(2025, 6, 2)
    wh.replace_partitions("weather_obs", pd.concat([obs("ny", d1, [70.0]), obs("ny", d2, [60.0])]), [("ny", d1), ("ny", d2)])
    with wh.held(read_only=True):
        assert wh._holding()
        got = parallel.map_items(lambda day: (wh._holding(), wh.read("weather_obs", [("ny", day)])["temp_f"].tolist()),
                                 [d1, d2], workers=2)
    assert got == [(False, [70.0]), (False, [60.0])]


def test_rows_outside_the_replaced_partitions_are_refused(any_warehouse, handed):
    wh = any_warehouse
    with pytest.raises(ValueError, match="partitions not being replaced"):
        wh.replace_partitions("weather_obs", handed("weather_obs", obs("ny", dt.date(2025, 6, 1), [70.0])), [("ny", dt.date(2025, 6, 2))])
    assert wh.read("weather_obs").empty


def test_a_steps_read_sends_text_as_codes_that_its_workers_turn_back_into_the_same_strings_and_nulls(
        any_warehouse, monkeypatch):
    """A step pickles its reads to its workers: text as categorical codes (a copy, not a Python call per row),
    turned back in the worker into exactly what a plain read gives, NULL as None."""
    import kw_assets.warehouse as warehouse
    from kw_assets.partition_batch import object_text
    monkeypatch.setattr(warehouse, "SMALL_READ_ROWS", 0)  # code even these few rows
    wh, day = any_warehouse, pd.Timestamp("2025-06-01")
    s = pd.DataFrame({"city": ["ny", "chi", "mia"], "climate_day": day, "source": "simulated",
                      "event_ticker": ["KXHIGHNY-25JUN01", "KXHIGHCHI-25JUN01", "KXHIGHMIA-25JUN01"],
                      "official_high_f": [81.0, None, 90.0], "winning_market_ticker": ["KXHIGHNY-25JUN01-B80.5", None, None],
                      "winning_bracket_index": [3, -1, -1], "settlement_source": "simulated (CLI semantics)",
                      "obs_max_f": [80.6, None, 89.0]})
    wh.replace_partitions("settlement", s, [(c, day.date()) for c in s["city"]])
    plain, coded = wh.read("settlement"), wh.read("settlement", text_codes=True)
    if isinstance(wh, warehouse.Warehouse):
        assert isinstance(coded["winning_market_ticker"].dtype, pd.CategoricalDtype)
        assert coded["winning_market_ticker"].array.codes.tolist() == [0, -1, -1]
    back = object_text(coded)
    pd.testing.assert_frame_equal(back, plain, check_exact=True)
    assert back["winning_market_ticker"].tolist() == ["KXHIGHNY-25JUN01-B80.5", None, None]
    assert object_text(plain) is plain


def test_the_stray_rows_of_a_workers_table_are_counted_wherever_they_sit():
    """A worker's rows come partition by partition; a stray run between two runs of wanted partitions, one at the
    end and a partition split in two runs are each counted exactly."""
    from kw_assets.partition_batch import arrow_rows
    from kw_assets.schemas import conform
    from kw_assets.warehouse import checked_writes
    d1, d2, d3 = dt.date(2025, 6, 1), dt.date(2025, 6, 2), dt.date(2025, 6, 3)
    parts = [obs("ny", d1, [70.0, 71.0]), obs("chi", d1, [60.0] * 3), obs("ny", d2, [72.0]), obs("ny", d1, [69.0]),
             obs("ny", d3, [75.0] * 4)]
    rows = arrow_rows([conform("weather_obs", f) for f in parts])
    for wanted, stray in (([("ny", d1), ("ny", d2)], 7), ([("ny", d1), ("chi", d1), ("ny", d2), ("ny", d3)], 0),
                          ([("chi", d1), ("ny", d3)], 4)):
        if stray:
            with pytest.raises(ValueError, match=f"weather_obs: {stray} row\\(s\\) belong to partitions not being replaced"):
                checked_writes({"weather_obs": rows}, wanted)
        else:
            assert checked_writes({"weather_obs": rows}, wanted)[0]["weather_obs"] is rows


def test_a_validated_frames_text_columns_become_arrow_from_their_codes_exactly_as_from_pandas(any_warehouse):
    """A worker's validated rows: the text columns validation factorized are built from the codes, and the Arrow
    table equals ``from_pandas``'s column for column (types, strings, nulls, chunks) and is written the same."""
    from kw_assets.partition_batch import arrow_rows
    from kw_assets.schemas import CODED_TEXT_ROWS, conform, validate
    days = [dt.date(2025, 6, 1) + dt.timedelta(days=k) for k in range(3)]
    frame = conform("weather_obs", pd.concat(
        [obs(city, day, np.linspace(60.0, 80.0, CODED_TEXT_ROWS // 4)) for city in ("ny", "chi") for day in days],
        ignore_index=True).assign(station=lambda f: np.where(f["city"] == "ny", "KNYC", "KMDW"),
                                  valid_time=lambda f: f["valid_time"] + pd.to_timedelta(np.arange(len(f)), "s")))
    codes: dict = {}
    validate("weather_obs", frame, text_codes=codes)
    assert {"city", "source", "source_kind"} <= set(codes)
    plain, coded = arrow_rows([frame]), arrow_rows([frame], codes)
    assert coded.equals(plain) and coded.schema.equals(plain.schema)
    assert [c.num_chunks for c in coded.columns] == [c.num_chunks for c in plain.columns]
    with_nulls = {"city": (np.array([0, -1, 1] * (len(frame) // 3)), np.array(["ny", "chi"], dtype=object))}
    assert arrow_rows([frame.iloc[: len(frame) // 3 * 3]], with_nulls).column("city").to_pylist()[:4] == ["ny", None, "chi", "ny"]
    partitions = [(c, d) for c in ("ny", "chi") for d in days]
    any_warehouse.replace_partitions("weather_obs", coded, partitions)
    pd.testing.assert_frame_equal(any_warehouse.read("weather_obs"), frame)


def test_an_arrow_table_whose_columns_are_not_the_tables_in_order_is_refused_before_anything_is_written(any_warehouse):
    from kw_assets.partition_batch import arrow_rows
    from kw_assets.schemas import conform
    day = dt.date(2025, 6, 1)
    rows = arrow_rows([conform("weather_obs", obs("ny", day, [70.0]))])
    with pytest.raises(ValueError, match="columns .* in order"):
        any_warehouse.replace_partitions("weather_obs", rows.select(rows.column_names[::-1]), [("ny", day)])
    with pytest.raises(ValueError, match="columns .* in order"):
        any_warehouse.replace_partitions("weather_obs", rows.drop_columns(["temp_f"]), [("ny", day)])
    assert any_warehouse.read("weather_obs").empty


def test_reading_a_table_never_written_gives_an_empty_typed_frame(any_warehouse):
    f = any_warehouse.read("kalshi_candles")
    assert f.empty and "yes_bid_close" in f.columns


def test_reads_keep_insertion_order_text_values_and_nulls_and_can_pick_columns(any_warehouse):
    wh = any_warehouse
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


@pytest.fixture(params=["frame", "arrow"])
def handed(request):
    """How rows reach a write: a frame (the live tail, the reports), or the Arrow table a step's worker hands
    over (``partition_batch.arrow_rows`` of conformed frames)."""
    if request.param == "frame":
        return lambda table, frame: frame
    from kw_assets.partition_batch import arrow_rows
    from kw_assets.schemas import conform
    return lambda table, frame: arrow_rows([conform(table, frame)])


def test_values_come_back_exactly_awkward_text_floats_timestamps_and_booleans(any_warehouse, handed):
    """What the bulk write must not bend: text with a comma, a quote, a newline or nothing in it (not NULL),
    floats to the last bit, timestamps to the microsecond, booleans."""
    day = pd.Timestamp("2025-06-01")
    t0 = pd.Timestamp("2025-06-01 14:00:00.123456", tz="UTC")
    trades = pd.DataFrame({
        "city": "ny", "climate_day": day, "source": "simulated",
        "trade_id": ["a,b", 'say "yes"', "line\nbreak", "", "\\N"],
        "market_ticker": "KXHIGHNY-25JUN01-B80.5",
        "created_time": [t0 + pd.Timedelta(microseconds=i) for i in range(5)],
        "count": [0.1 + 0.2, 1e-300, 2 / 3, 12345.678901234567, 5e300],
        "yes_price": [0.07, 0.1 + 0.2, 1 / 3, 0.0, 1.0],
        "taker_outcome_side": ["yes", "no", "yes", "no", "yes"],
        "is_block_trade": [True, False, False, True, False]})
    trades["no_price"] = 1 - trades["yes_price"]
    any_warehouse.replace_partitions("kalshi_trades", handed("kalshi_trades", trades), [("ny", day)])
    got = any_warehouse.read("kalshi_trades")
    assert got["trade_id"].tolist() == trades["trade_id"].tolist()
    for col in ("count", "yes_price", "no_price"):
        assert got[col].to_numpy().tobytes() == trades[col].to_numpy().tobytes(), col
    assert (got["created_time"] == trades["created_time"]).all()
    assert got["is_block_trade"].tolist() == [True, False, False, True, False]
    # many megabytes of such text: a reader that parses in blocks must not lose track of quoted newlines
    many = trades.iloc[[2] * 60_000].reset_index(drop=True)
    many["trade_id"] = [f"t{i},\n\"{i}\"" for i in range(len(many))]
    any_warehouse.replace_partitions("kalshi_trades", handed("kalshi_trades", many), [("ny", day)])
    assert any_warehouse.read("kalshi_trades")["trade_id"].tolist() == many["trade_id"].tolist()


def test_times_and_dates_come_back_exact_in_the_schemas_dtypes_with_missing_as_nat(any_warehouse, handed):
    """Timestamps (UTC, to the microsecond, before 1970 too) and dates in the schema's nanosecond dtypes;
    a NULL time reads as NaT, not as a number or the epoch."""
    wh = any_warehouse
    day = pd.Timestamp("2025-03-09")  # US clocks spring forward: nothing here may shift by an hour
    decisions = pd.to_datetime(["2025-03-09 06:59:59.999999", "2025-03-09 07:00:00.000001"], utc=True)
    issued = pd.Series(pd.to_datetime(["1969-07-20 20:17:40.123456", None], utc=True))
    pmf = pd.DataFrame({"city": "ny", "climate_day": day, "source": "simulated", "decision_ts": decisions,
                        "market_ticker": "T", "bracket_index": 0, "p_weather": 1.0, "hazard": None,
                        "expected_high_f": 50.0, "high_sd_f": 2.0, "obs_max_f": None, "forecast_issued_at": issued,
                        "n_paths": 10})
    wh.replace_partitions("weather_pmf", handed("weather_pmf", pmf), [("ny", day)])
    got = wh.read("weather_pmf")
    assert str(got["decision_ts"].dtype) == str(got["forecast_issued_at"].dtype) == "datetime64[ns, UTC]"
    assert got["decision_ts"].tolist() == decisions.tolist()
    assert got["forecast_issued_at"].iloc[0] == issued.iloc[0] and pd.isna(got["forecast_issued_at"].iloc[1])
    params = pd.DataFrame({"city": ["ny", "chi"], "climate_day": [day, pd.Timestamp("1969-12-31")], "source": "simulated",
                           "fit_start": [pd.Timestamp("1960-01-01"), pd.NaT], "fit_end": [pd.Timestamp("2100-02-28"), pd.NaT],
                           "fit_days": 0, "fit_samples": 0, "pooled_samples": 0})
    wh.replace_partitions("weather_model_params", handed("weather_model_params", params), [("ny", day), ("chi", dt.date(1969, 12, 31))])
    got = wh.read("weather_model_params").sort_values("city", ignore_index=True)  # chi, ny
    assert {str(got[c].dtype) for c in ("climate_day", "fit_start", "fit_end")} == {"datetime64[ns]"}
    assert got["climate_day"].tolist() == [pd.Timestamp("1969-12-31"), day]
    assert got["fit_start"].isna().tolist() == [True, False] and got["fit_end"].iloc[1] == pd.Timestamp("2100-02-28")
    assert got["fit_start"].iloc[1] == pd.Timestamp("1960-01-01")


def test_a_duckdb_table_left_by_an_older_schema_is_named_and_kept_as_it_was(tmp_path):
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


def test_a_duckdb_table_without_the_schemas_new_nullable_columns_reads_them_as_missing_and_gains_them_on_write(tmp_path):
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


def test_duckdb_readers_in_several_workers_share_the_cores_unless_threads_are_set(tmp_path, monkeypatch):
    monkeypatch.setattr("os.cpu_count", lambda: 8)
    shared = Warehouse(tmp_path / "w.duckdb", memory_limit="256MB").for_workers(2)
    assert shared.config == {"memory_limit": "256MB", "threads": 4} and shared.path == tmp_path / "w.duckdb"
    assert Warehouse(tmp_path / "w.duckdb").for_workers(16).config == {"threads": 1}
    pinned = Warehouse(tmp_path / "w.duckdb", threads=3)
    assert pinned.for_workers(2) is pinned


def test_a_swap_of_several_tables_can_replace_only_the_rows_after_a_stamp(any_warehouse):
    """The live tail's write: obs after 05:05 replaced, the earlier ones kept, the settlement swapped whole,
    in one call; a row at or before the stamp in such a write is refused and nothing lands."""
    wh, day = any_warehouse, dt.date(2025, 6, 1)
    wh.replace_partitions("weather_obs", obs("ny", day, [70.0, 71.0, 72.0]), [("ny", day)])
    cut = pd.Timestamp(day, tz="UTC") + pd.Timedelta(hours=5, minutes=5)
    newer = obs("ny", day, [0.0, 0.0, 73.4, 74.0]).iloc[2:]
    settled = pd.DataFrame({"city": ["ny"], "climate_day": pd.Timestamp(day), "source": "simulated",
                            "event_ticker": ["E"], "official_high_f": [74.0], "winning_market_ticker": ["E-B73.5"],
                            "winning_bracket_index": [2], "settlement_source": "s", "obs_max_f": [74.0]})
    written = wh.replace_partitions_of({"weather_obs": newer, "settlement": settled}, [("ny", day)],
                                       after={"weather_obs": ("valid_time", cut)})
    assert written == {"weather_obs": 2, "settlement": 1}
    assert wh.read("weather_obs")["temp_f"].tolist() == [70.0, 71.0, 73.4, 74.0]
    with pytest.raises(ValueError, match="at or before"):
        wh.replace_partitions_of({"weather_obs": obs("ny", day, [1.0]), "settlement": settled.iloc[:0]}, [("ny", day)],
                                 after={"weather_obs": ("valid_time", cut)})
    assert wh.read("weather_obs")["temp_f"].tolist() == [70.0, 71.0, 73.4, 74.0] and len(wh.read("settlement")) == 1


def _writer(target: str, city: str, rounds: int) -> None:
    """One process rewriting its own city's 3 days, ``rounds`` times, each partition with 288 obs."""
    wh = open_warehouse(target, lock_timeout_s=120)
    days = [dt.date(2025, 6, 1) + dt.timedelta(days=i) for i in range(3)]
    for r in range(rounds):
        frame = pd.concat([obs(city, d, [60.0 + r + i / 1000 for i in range(288)]) for d in days])
        wh.replace_partitions("weather_obs", frame, [(city, d) for d in days])


def test_four_writer_processes_and_a_reader_never_see_half_a_partition(any_warehouse, tmp_path):
    """Four processes rewrite their own partitions of one table at once while this one reads: every read
    sees whole partitions (288 rows, one round's values), and the end holds each partition once. On DuckDB
    the file lock serialises the writers (each waits its turn); on PostgreSQL they run side by side."""
    import multiprocessing as mp
    target = str(any_warehouse.path) if isinstance(any_warehouse, Warehouse) else any_warehouse.url
    cities = ["ny", "chi", "mia", "aus"]
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_writer, args=(target, c, 6)) for c in cities]
    for p in procs:
        p.start()
    reads = 0
    while any(p.is_alive() for p in procs):
        try:
            got = open_warehouse(target, lock_timeout_s=120).read("weather_obs")
        except Exception as exc:  # noqa: BLE001 - the table may not exist yet at the first read
            assert "weather_obs" in str(exc) or "lock" in str(exc).lower(), exc
            continue
        if len(got):
            sizes = got.groupby(["city", "climate_day"]).size()
            rounds = got.groupby(["city", "climate_day"])["temp_f"].agg(lambda t: len(set((t - 60).round().astype(int))))
            assert (sizes == 288).all() and (rounds == 1).all(), (sizes, rounds)
            reads += 1
    assert all(p.exitcode == 0 for p in procs)
    final = open_warehouse(target).read("weather_obs")
    assert final.groupby(["city", "climate_day"]).size().to_dict() == {(c, pd.Timestamp(d)): 288 for c in cities
                                                                        for d in [dt.date(2025, 6, 1) + dt.timedelta(days=i) for i in range(3)]}
    assert (final["temp_f"].round() == 65.0).all() and reads >= 1  # every partition's last round, nothing lost


def test_a_failed_swap_raises_the_error_that_failed_it_and_keeps_the_old_rows(tmp_path):
    """A statement failing inside the write's transaction: the caller sees that statement's error (not DuckDB's
    "transaction is aborted" from a later statement), and the table keeps the rows it had."""
    import duckdb
    wh = Warehouse(tmp_path / "w.duckdb")
    day = dt.date(2025, 6, 1)
    wh.replace_partitions("weather_obs", obs("ny", day, [70.0]), [("ny", day)])
    with pytest.raises(duckdb.CatalogException, match="no_such_table"):
        wh._swap({"weather_obs": obs("ny", day, [71.0, 72.0])}, {"weather_obs": ("DELETE FROM no_such_table", [])})
    assert wh.read("weather_obs")["temp_f"].tolist() == [70.0]
    with wh.held():  # a step's connection outlives the failed write: the rollback unregisters the incoming rows
        with pytest.raises(duckdb.CatalogException):
            wh._swap({"weather_obs": obs("ny", day, [71.0])}, {"weather_obs": ("DELETE FROM no_such_table", [])})
        with wh.connect() as con:
            assert con.execute("SELECT count(*) FROM duckdb_views() WHERE view_name = 'incoming_rows'").fetchone() == (0,)
            wh.replace_partitions("weather_obs", obs("ny", day, [72.0]), [("ny", day)])
    assert wh.read("weather_obs")["temp_f"].tolist() == [72.0]


def test_the_assets_pool_follows_the_warehouse():
    """On the DuckDB file every writing asset (and the live tail's op) is in pool ``duckdb`` (limit 1: one
    writing process per file); with a PostgreSQL warehouse they are in pool ``postgres``, which an instance
    can open wider."""
    import subprocess
    import sys
    from kw_assets.defs.resources import warehouse_kind
    assert warehouse_kind({}) == "duckdb" and warehouse_kind({"KW_WAREHOUSE": "data/w.duckdb"}) == "duckdb"
    assert warehouse_kind({"KW_WAREHOUSE": "postgresql://kw@db:5432/kw"}) == "postgres"
    code = ("from kw_assets.definitions import defs; "
            "print(sorted({defs.get_assets_def(k).op.pool for k in defs.resolve_asset_graph().executable_asset_keys} "
            "| {defs.resolve_job_def('live_tail_job').graph.node_defs[0].pool}))")
    for url, pool in (("data/w.duckdb", "duckdb"), ("postgresql://kw@db:5432/kw", "postgres")):
        out = subprocess.run([sys.executable, "-c", code], env={**__import__("os").environ, "KW_WAREHOUSE": url},
                             capture_output=True, text=True, check=True).stdout
        assert out.strip() == f"['{pool}']", out


def test_a_large_read_codes_its_text_and_equals_the_plain_strings_read_of_the_same_rows(any_warehouse, monkeypatch):
    """Above ``SMALL_READ_ROWS`` text columns cross as codes into their distinct values; below, as strings.
    Both give the same frame: rows in the order written (partitions picked out of order, with gaps), text
    and missing values intact."""
    import kw_assets.warehouse as warehouse
    wh = any_warehouse
    days = [dt.date(2025, 6, 1) + dt.timedelta(days=i) for i in range(6)]
    frames = [obs(city, d, [60.0 + i + k / 100 for k in range(1_000)]).assign(station=station)
              for i, d in enumerate(days) for city, station in (("chi", "KMDW"), ("ny", None))]
    wh.replace_partitions("weather_obs", pd.concat(frames), [(c, d) for d in days for c in ("chi", "ny")])
    wanted = [("ny", days[4]), ("chi", days[0]), ("chi", days[1]), ("chi", days[3]), ("ny", days[0]), ("ny", days[5])]
    coded = wh.read("weather_obs", wanted)
    assert len(coded) == 6_000 > warehouse.SMALL_READ_ROWS
    monkeypatch.setattr(warehouse, "SMALL_READ_ROWS", 10**9)
    plain = wh.read("weather_obs", wanted)
    pd.testing.assert_frame_equal(coded, plain)
    expected = pd.concat([frames[i] for i in (0, 1, 2, 6, 9, 11)], ignore_index=True)  # written order: day, then city
    assert coded["city"].tolist() == expected["city"].tolist()
    assert coded["temp_f"].tolist() == expected["temp_f"].tolist()
    assert coded["station"].tolist() == expected["station"].tolist() and coded["station"].isna().sum() == 3_000


def test_splitting_a_read_by_partition_keeps_each_partitions_rows_in_order_whether_or_not_they_are_contiguous():
    from kw_assets.partition_batch import split_by_partition
    d1, d2 = dt.date(2025, 6, 1), dt.date(2025, 6, 2)
    together = pd.concat([obs("ny", d1, [1.0, 2.0]), obs("ny", d2, [3.0]), obs("chi", d1, [4.0, 5.0])], ignore_index=True)
    rewritten = pd.concat([together.iloc[[0]], together.iloc[2:], together.iloc[[1]]])  # ny d1's later rows at the end
    for frame, ny_d1 in ((together, [1.0, 2.0]), (rewritten, [1.0, 2.0])):
        parts = split_by_partition(frame)
        assert sorted(parts) == [("chi", d1), ("ny", d1), ("ny", d2)]
        assert parts[("ny", d1)]["temp_f"].tolist() == ny_d1 and parts[("chi", d1)]["temp_f"].tolist() == [4.0, 5.0]
    parts = split_by_partition(together)  # contiguous: each partition is a view of the read, nothing copied
    assert all(np.shares_memory(p["temp_f"].to_numpy(), together["temp_f"].to_numpy()) for p in parts.values())
    assert [p.index.tolist() for p in parts.values()] == [[0, 1], [2], [3, 4]]


def test_a_chunk_goes_to_its_workers_as_consecutive_shares_each_reading_exactly_its_partitions_rows(
        any_warehouse, monkeypatch):
    """Each worker gets its partitions and one read per input table holding their rows, in the table's order:
    on DuckDB the query's Arrow table, left in shared memory and mapped by the worker, which builds the same frame
    a plain coded read gives (the file's name gone once mapped); on PostgreSQL the frame itself. A partition
    rewritten later (its rows apart) still gives all its rows; one with no rows gives none."""
    import glob
    import types

    from kw_assets import parallel
    from kw_assets.cities import get_city
    from kw_assets.partition_batch import object_text, read_shares, split_by_partition
    monkeypatch.setattr(parallel, "SHARED_MIN_BYTES", 0)  # every table through shared memory, however small
    wh = any_warehouse
    ny, chi = get_city("ny"), get_city("chi")
    d1, d2 = dt.date(2025, 6, 1), dt.date(2025, 6, 2)
    wh.replace_partitions("weather_obs", pd.concat([obs("chi", d1, [4.0, 5.0]), obs("ny", d1, [1.0, 2.0]),
                                                    obs("ny", d2, [3.0])], ignore_index=True),
                          [("chi", d1), ("ny", d1), ("ny", d2)])
    wh.replace_partitions("weather_obs", obs("ny", d1, [1.5, 2.5]), [("ny", d1)])  # now after ny d2's row
    these = [(chi, d1, "chi|2025-06-01"), (ny, d1, "ny|2025-06-01"), (ny, d2, "ny|2025-06-02"), (chi, d2, "chi|2025-06-02")]
    two_workers = types.SimpleNamespace(handles=[None, None])  # what read_shares asks of a pool
    with wh.held():
        shares = read_shares(wh, these, {"weather_obs": None}, two_workers)
    assert [[k for _, _, k in pairs] for pairs, _ in shares] == [["chi|2025-06-01", "ny|2025-06-01"],
                                                                 ["ny|2025-06-02", "chi|2025-06-02"]]
    kinds = {type(reads["weather_obs"].rows) for _, reads in shares}
    assert kinds == ({parallel.SharedTable} if isinstance(wh, Warehouse) else {pd.DataFrame})
    frames = [reads["weather_obs"].frame() for _, reads in shares]
    assert not glob.glob(parallel._shared_prefix(os.getpid()) + "*")  # mapped, and unlinked
    expected = [wh.read("weather_obs", [("chi", d1), ("ny", d1)], text_codes=True),
                wh.read("weather_obs", [("ny", d2), ("chi", d2)], text_codes=True)]
    for got, want in zip(frames, expected):
        pd.testing.assert_frame_equal(got, want)
    first = split_by_partition(object_text(frames[0]))
    assert first[("chi", d1)]["temp_f"].tolist() == [4.0, 5.0] and first[("ny", d1)]["temp_f"].tolist() == [1.5, 2.5]
    assert frames[1]["temp_f"].tolist() == [3.0]
    with wh.held():
        inline = read_shares(wh, these, {"weather_obs": ("temp_f",)}, types.SimpleNamespace(handles=[]))
    assert [len(pairs) for pairs, _ in inline] == [4]
    assert not isinstance(inline[0][1]["weather_obs"].rows, parallel.SharedTable)  # no workers: nothing to share
    assert list(inline[0][1]["weather_obs"].frame().columns) == ["city", "climate_day", "temp_f"]


def test_a_table_left_for_a_worker_that_never_opened_it_is_removed_when_the_pool_closes(monkeypatch):
    import glob

    import pyarrow as pa

    from kw_assets import parallel
    monkeypatch.setattr(parallel, "SHARED_MIN_BYTES", 0)
    pool = parallel.Pool(lambda items: items, 2)
    try:
        if not pool.handles:
            pytest.skip("no forked workers here")
        left = parallel.shared_with_workers(pa.table({"x": [1.0, 2.0]}), pool)
        assert isinstance(left, parallel.SharedTable) and os.path.exists(left.path)
    finally:
        pool.close()
    assert not os.path.exists(left.path) and not glob.glob(parallel._shared_prefix(os.getpid()) + "*")


def test_a_workers_partitions_cross_as_one_arrow_table_and_come_back_as_their_own_rows_with_their_summaries():
    """What a step's worker sends back: one Arrow table for its valid partitions, each outcome its slice and a
    summary (rows, time span, preview, sources) for its event; a rejected partition keeps its error."""
    import pickle
    from kw_assets.cities import get_city
    from kw_assets.errors import DataError
    from kw_assets.partition_batch import Outcome, _sliced, handed_over
    from kw_assets.schemas import conform
    ny = get_city("ny")
    d1, d2, d3 = dt.date(2025, 6, 1), dt.date(2025, 6, 2), dt.date(2025, 6, 3)
    f1, f3 = conform("weather_obs", obs("ny", d1, [70.0, 71.6])), conform("weather_obs", obs("ny", d3, [60.1]))
    bad = DataError("weather_obs", "temp_f", "not a number: 'x'", "ny|2025-06-02")
    outcomes = [Outcome(ny, d1, "ny|2025-06-01", f1, None), Outcome(ny, d2, "ny|2025-06-02", None, bad),
                Outcome(ny, d3, "ny|2025-06-03", f3, None)]
    sent, rows = handed_over(outcomes, "valid_time")
    assert [o.frame for o in sent] == [None, None, None] and rows.num_rows == 3
    s1 = sent[0].summary
    assert (s1.rows, s1.sources) == (2, ("simulated",)) and sent[1].summary is None and sent[1].error is bad
    assert s1.span == ("2025-06-01 05:00:00+00:00", "2025-06-01 05:05:00+00:00") and "| 71.6 |" in s1.preview
    back = _sliced(*pickle.loads(pickle.dumps((sent, rows))))  # as it crosses from the worker
    for got, want in ((back[0].frame, f1), (back[2].frame, f3)):
        pd.testing.assert_frame_equal(got.to_pandas(), want.reset_index(drop=True), check_exact=True)
    assert back[1].frame is None and back[1].error is not None


def test_an_arrow_column_of_several_chunks_becomes_what_pandas_holds_for_each_type_with_its_nulls():
    """How a read turns DuckDB's Arrow chunks into pandas, type by type: NULL as NaN, None, NaT or pandas' NA
    (integers and booleans, as DuckDB's own conversion gave), text as one Python string per distinct value."""
    import pyarrow as pa
    from kw_assets.warehouse import _pandas_column
    utc = pa.timestamp("us", tz="UTC")
    stamps = pa.chunked_array([pa.array([1_700_000_000_000_001, None], utc), pa.array([-5], utc)])
    got = _pandas_column(stamps, "TIMESTAMPTZ", False, False)
    assert str(got.dtype) == "datetime64[ns, UTC]" and got.isna().tolist() == [False, True, False]
    assert got[0].value == 1_700_000_000_000_001_000 and got[2].value == -5_000
    days = _pandas_column(pa.chunked_array([pa.array([dt.date(2025, 6, 1)]), pa.array([None, dt.date(1969, 12, 31)], pa.date32())]),
                          "DATE", False, False)
    assert str(days.dtype) == "datetime64[ns]" and list(days) == [pd.Timestamp("2025-06-01"), pd.NaT, pd.Timestamp("1969-12-31")]
    ints = _pandas_column(pa.chunked_array([pa.array([2**62 + 1, None]), pa.array([3])]), "BIGINT", False, False)
    assert str(ints.dtype) == "Int64" and ints[0] == 2**62 + 1 and ints[1] is pd.NA  # exact, not through a float
    assert _pandas_column(pa.chunked_array([pa.array([7, 8])]), "BIGINT", False, False).dtype == np.int64
    flags = _pandas_column(pa.chunked_array([pa.array([True, None]), pa.array([False])]), "BOOLEAN", False, False)
    assert str(flags.dtype) == "boolean" and flags[1] is pd.NA and not flags[2]
    floats = _pandas_column(pa.chunked_array([pa.array([0.1, None]), pa.array([2.5])]), "DOUBLE", False, False)
    assert floats.dtype == np.float64 and np.isnan(floats[1]) and floats[0] == 0.1
    text = pa.chunked_array([pa.array(["KX-B1", None, "KX-B1"]), pa.array(["KX-B2"])])
    plain, coded = _pandas_column(text, "VARCHAR", False, False), _pandas_column(text, "VARCHAR", True, False)
    assert plain.tolist() == coded.tolist() == ["KX-B1", None, "KX-B1", "KX-B2"]
    assert coded[0] is coded[2]  # one Python string per distinct value
    cat = _pandas_column(text, "VARCHAR", True, True)
    assert isinstance(cat, pd.Categorical) and cat.codes.tolist() == [0, -1, 0, 1]
    assert len(_pandas_column(pa.chunked_array([], pa.string()), "VARCHAR", True, True)) == 0


def test_a_written_partitions_summary_names_its_sources_however_its_rows_hold_them():
    """A step's event says where a partition's rows came from: one source on every row (the usual case), several,
    or none known."""
    from kw_assets.partition_batch import summarize
    day = dt.date(2025, 6, 1)
    one = obs("ny", day, [70.0, 71.0, 72.0])
    assert summarize(one, "valid_time").sources == ("simulated",)
    assert summarize(one, "valid_time").span == ("2025-06-01 05:00:00+00:00", "2025-06-01 05:10:00+00:00")
    mixed = one.assign(source=["simulated", None, "kalshi"])
    assert summarize(mixed, "valid_time").sources == ("kalshi", "simulated")
    assert summarize(one.assign(source=None), "valid_time").sources == ()
    assert summarize(one.assign(source=["kalshi", pd.NA, "kalshi"]), "valid_time").sources == ("kalshi",)
    assert summarize(one.iloc[:0], "valid_time") == (0, None, "(no rows)", ())
    # the span skips missing times, in any order, as the column's min and max do; equal text in distinct objects is one source
    shuffled = one.assign(valid_time=[pd.NaT, *one["valid_time"].iloc[[2, 0]]],
                          source=["simulated", "".join(["simu", "lated"]), "simulated"])
    assert summarize(shuffled, "valid_time").span == ("2025-06-01 05:00:00+00:00", "2025-06-01 05:10:00+00:00")
    assert summarize(shuffled, "valid_time").sources == ("simulated",)
    assert summarize(one.assign(valid_time=pd.NaT), "valid_time").span == ("NaT", "NaT")


def test_writes_behind_land_in_order_while_the_caller_reads_and_a_failed_one_stops_the_rest(any_warehouse):
    """A step's writer thread: each write is its own transaction, done in the order submitted, while the
    step's own connection reads; once one fails, no later one starts, and the failure reaches the caller."""
    wh = any_warehouse
    days = [dt.date(2025, 6, d) for d in range(1, 6)]
    with wh.held(), wh.written_behind() as behind:
        for k, day in enumerate(days[:3]):
            behind.submit(lambda w, day=day, k=k: w.replace_partitions("weather_obs", obs("ny", day, [60.0 + k]), [("ny", day)]))
        behind.submit(lambda w: w.replace_partitions("weather_obs", obs("ny", days[0], [99.0]), [("ny", days[0])]))
        wh.read("weather_obs")  # the step's connection reads meanwhile
    got = wh.read("weather_obs").sort_values("climate_day")
    assert got["temp_f"].tolist() == [99.0, 61.0, 62.0]  # the later write of day 1 came after the first
    bad = obs("chi", days[3], [70.0])  # rows outside the partitions named: refused
    with pytest.raises(ValueError, match="partitions not being replaced"):
        with wh.written_behind() as behind:
            behind.submit(lambda w: w.replace_partitions("weather_obs", bad, [("ny", days[3])]))
            behind.wait()
    with pytest.raises(ValueError, match="partitions not being replaced"):
        with wh.written_behind() as behind:
            behind.submit(lambda w: w.replace_partitions("weather_obs", bad, [("ny", days[3])]))
            behind.submit(lambda w: w.replace_partitions("weather_obs", obs("ny", days[4], [50.0]), [("ny", days[4])]))
    assert set(wh.read("weather_obs")["climate_day"].dt.date) == set(days[:3])  # neither day 4 nor day 5


def test_an_error_in_the_block_is_the_one_raised_after_its_writes_are_done(any_warehouse):
    wh = any_warehouse
    with pytest.raises(KeyError, match="the step's own"):
        with wh.written_behind() as behind:
            behind.submit(lambda w: w.replace_partitions("weather_obs", obs("ny", dt.date(2025, 6, 1), [70.0]),
                                                         [("ny", dt.date(2025, 6, 1))]))
            raise KeyError("the step's own")
    assert wh.read("weather_obs")["temp_f"].tolist() == [70.0]  # submitted before: done, not lost


def test_duckdb_runs_the_cores_a_steps_workers_leave_for_its_reads_and_writes_behind(tmp_path):
    """A step's reads and its write-behind inserts share one database in the step's process; beside workers that
    use every core, a thread per core made an insert cost 15-22% more CPU. A user's explicit ``threads`` is kept,
    and the next connection has DuckDB's default again."""
    def threads(con_or_wh):
        return int(con_or_wh.query("SELECT current_setting('threads') AS n")["n"].iloc[0])

    default = duckdb.connect().execute("SELECT current_setting('threads')").fetchone()[0]
    for wh, workers, expected in [(Warehouse(tmp_path / "a.duckdb"), 2, max(1, (os.cpu_count() or 1) - 2)),
                                  (Warehouse(tmp_path / "b.duckdb"), 0, default),
                                  (Warehouse(tmp_path / "c.duckdb", threads=3), 2, 3)]:
        seen = []
        with wh.written_behind() as behind, wh.held():
            wh.beside_workers(workers)
            behind.submit(lambda w: seen.append(threads(w)))
            behind.wait()
            assert seen == [expected] and threads(wh) == expected
        assert threads(wh) == (3 if wh.config else default)


def test_a_writer_that_cannot_connect_fails_the_block_instead_of_waiting_forever(tmp_path, monkeypatch):
    import threading
    wh = Warehouse(tmp_path / "w.duckdb")
    real = Warehouse.connect

    def refuse_the_writer(self, read_only=False):
        if threading.current_thread().name == "kw-write-behind":
            raise OSError("no connection for the writer")
        return real(self, read_only)

    monkeypatch.setattr(Warehouse, "connect", refuse_the_writer)
    with pytest.raises(OSError, match="no connection for the writer"):
        with wh.written_behind() as behind:
            for day in (1, 2, 3):  # the queue holds one: a dead writer would block the second submit forever
                behind.submit(lambda w, d=day: w.replace_partitions(
                    "weather_obs", obs("ny", dt.date(2025, 6, d), [70.0]), [("ny", dt.date(2025, 6, d))]))
    assert wh.read("weather_obs").empty
