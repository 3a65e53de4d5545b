"""The schemas' fast text check: strings pass in one pass, anything else fails naming the field."""

import pandas as pd
import pytest

from kw_assets.errors import DataError
from kw_assets.schemas import TableInvalid, conform, validate


def obs(station):
    return conform("weather_obs", pd.DataFrame({
        "city": "ny", "climate_day": pd.Timestamp("2025-06-01"), "source": "simulated", "station": station,
        "valid_time": pd.date_range("2025-06-01T05:05Z", periods=len(station), freq="5min"),
        "temp_f": 70.0, "source_kind": "obs"}))


def test_text_columns_accept_strings_and_reject_anything_else_by_field():
    assert len(validate("weather_obs", obs(["KNYC", "KNYC"]))) == 2
    with pytest.raises(TableInvalid, match="station") as err:
        validate("weather_obs", obs(["KNYC", 725030]), partition="ny|2025-06-01")
    assert "partition ny|2025-06-01" in str(err.value)
    assert 725030 in err.value.failures["failure_case"].tolist()  # the element-wise fallback shows the culprit
    with pytest.raises(TableInvalid, match="station"):
        validate("weather_obs", obs(["KNYC", None]))  # not nullable


def test_conform_rejects_a_word_in_a_float_column_and_keeps_blanks_missing():
    frame = pd.DataFrame({"city": "ny", "climate_day": pd.Timestamp("2025-06-01"), "source": "simulated",
                          "station": "KNYC", "valid_time": pd.date_range("2025-06-01T05:05Z", periods=3, freq="5min"),
                          "temp_f": ["70.5", None, ""], "source_kind": "obs"})
    assert conform("weather_obs", frame)["temp_f"].tolist()[0] == 70.5
    assert conform("weather_obs", frame)["temp_f"].isna().tolist() == [False, True, True]
    with pytest.raises(DataError, match=r"table weather_obs, field temp_f: row 2: not a number: 'abc'"):
        conform("weather_obs", frame.assign(temp_f=["70.5", None, "abc"]))
    with pytest.raises(DataError, match=r"field temp_f: row 0: not a number: True"):
        conform("weather_obs", frame.assign(temp_f=[True, 70.0, 71.0]))


def test_numbers_read_pandas_string_and_nullable_columns():
    from kw_assets.convert import numbers
    assert numbers(pd.Series(["1.5", None, ""], dtype="string"), "t", "f").tolist()[0] == 1.5
    assert pd.isna(numbers(pd.Series([1.0, None], dtype="Float64"), "t", "f")[1])
    with pytest.raises(DataError, match="row 1: not a number: 'x'"):
        numbers(pd.Series(["1", "x"], dtype="string"), "t", "f")


def fused(minutes: int = 4) -> pd.DataFrame:
    """Two partitions x 3 brackets x ``minutes`` minutes of a valid fused PMF, rows in minute order."""
    frames = []
    for city, day in (("ny", "2025-06-01"), ("chi", "2025-06-01")):
        t = pd.date_range(f"{day}T04:00Z", periods=minutes, freq="1min")
        for b, p in enumerate((0.2, 0.3, 0.5)):
            frames.append(pd.DataFrame({"city": city, "climate_day": pd.Timestamp(day), "source": "simulated",
                                        "minute_ts": t, "market_ticker": f"KXHIGH-{city}-B{b}", "bracket_index": b,
                                        "p_market": p, "p_weather": p, "w_market": 0.6, "p_fused": p, "hazard": 0.1}))
    return conform("fused_pmf", pd.concat(frames).sort_values(["city", "minute_ts"], kind="stable").reset_index(drop=True))


def failing(table: str, frame: pd.DataFrame) -> pd.DataFrame:
    with pytest.raises(TableInvalid) as err:
        validate(table, frame)
    return err.value.failures


def test_minute_rules_group_by_partition_minute_and_bracket_in_any_row_order():
    good = fused()
    by_bracket = good.sort_values(["bracket_index", "city"], kind="stable")  # another layout, each bracket in time order
    assert len(validate("fused_pmf", by_bracket)) == len(validate("fused_pmf", good)) == 24
    # one minute of one partition sums to 1.01: exactly its 3 rows fail, not the other partition's same minute
    off = good.copy()
    off.loc[(off["city"] == "chi") & (off["minute_ts"] == off["minute_ts"].min() + pd.Timedelta(minutes=2))
            & (off["bracket_index"] == 0), "p_fused"] = 0.21
    cases = failing("fused_pmf", off)
    summed = cases[cases["check"].str.startswith("p_fused: fused PMF must sum to 1")]
    assert sorted(summed["index"].unique().tolist()) == sorted(off.index[(off["city"] == "chi") & (
        off["minute_ts"] == off["minute_ts"].min() + pd.Timedelta(minutes=2))].tolist())
    # a bracket whose minutes go back in time fails on the row that goes back, not the other brackets' rows
    back = good.copy()
    rows = back.index[(back["city"] == "ny") & (back["bracket_index"] == 1)]
    back.loc[rows[2], "minute_ts"] = back.loc[rows[0], "minute_ts"] - pd.Timedelta(minutes=5)
    cases = failing("fused_pmf", back)
    assert cases.loc[cases["check"] == "minute_ts: increasing per bracket", "index"].unique().tolist() == [rows[2]]


def test_the_panel_grid_is_one_minute_per_bracket_and_a_minute_with_no_price_is_not_summed():
    panel_like = fused().rename(columns={"p_fused": "p_norm"})
    from kw_assets.schemas import _regular, minute_totals
    assert _regular(panel_like, "minute_ts", pd.Timedelta(minutes=1)).all()
    gap = panel_like.drop(panel_like.index[(panel_like["city"] == "ny") & (panel_like["bracket_index"] == 2)][1])
    assert (~_regular(gap, "minute_ts", pd.Timedelta(minutes=1))).sum() == 1  # the minute after the hole
    unknown = panel_like.copy()
    first = unknown["minute_ts"] == unknown["minute_ts"].min()
    unknown.loc[first & (unknown["city"] == "ny"), "p_norm"] = float("nan")
    unknown.loc[first & (unknown["city"] == "chi") & (unknown["bracket_index"] == 0), "p_norm"] = float("nan")
    total, known = minute_totals(unknown, "p_norm", "minute_ts")
    assert known[first & (unknown["city"] == "ny")].tolist() == [0, 0, 0]  # no price that minute: nothing to sum
    assert total[first & (unknown["city"] == "chi")].round(12).tolist() == [0.8, 0.8, 0.8]  # the known ones: 0.3 + 0.5


def test_group_codes_are_equal_exactly_where_the_combinations_are_and_stay_small():
    import numpy as np

    from kw_assets.schemas import _code_bound, group_codes
    rng = np.random.default_rng(3)
    n = 5000
    frame = pd.DataFrame({"a": rng.choice(["x", "y", None], n), "b": rng.integers(0, 40, n),
                          "c": pd.Timestamp("2025-06-01", tz="UTC") + pd.to_timedelta(rng.integers(0, 3000, n), "min")})
    codes = group_codes(frame, ["a", "b", "c"])
    expected = frame.groupby(["a", "b", "c"], dropna=False, sort=False).ngroup().to_numpy()
    missing = frame["a"].isna().to_numpy()
    assert (codes[missing] == -1).all() and (codes[~missing] >= 0).all()
    same = codes[~missing][:, None] == codes[~missing][None, :]  # equal codes <=> equal combinations
    assert (same == (expected[~missing][:, None] == expected[~missing][None, :])).all()
    assert codes.max() < _code_bound(n)  # a 3 x 41 x ~2,300 radix product, re-densified: a bincount stays small
    few = group_codes(frame, ["a", "b"])  # a small product: the mixed-radix number itself
    a, b = pd.factorize(frame["a"])[0], pd.factorize(frame["b"])[0]
    assert (few == np.where(a < 0, -1, (a + 1) * 41 + b + 1)).all()


def test_text_factorized_by_address_gives_pandas_codes_and_values_even_for_equal_text_in_other_objects():
    import numpy as np

    from kw_assets.schemas import factorize_objects
    a, b = "KXHIGHNY-25JAN05-B40.5", "".join(["KXHIGHNY-25JAN05-", "B40.5"])  # the same text in two objects
    assert a == b and a is not b
    tickers = np.array(["KXHIGHNY-25JAN05-T39", a, "KXHIGHNY-25JAN05-T42"], dtype=object)
    cases = {
        "two objects, one text, and every kind of missing": np.array([b, a, None, "x", float("nan"), a, "x", pd.NA, b], dtype=object),
        "a minute table's tickers": np.tile(tickers, 2000),
        "a strided view of them": np.tile(tickers, 2000)[::2],
        "one city": np.array(["ny"] * 500, dtype=object),
        "all distinct": np.array([str(i) for i in range(1000)], dtype=object),
        "all missing": np.array([None] * 10, dtype=object),
        "mixed types": np.array([1, 1.0, True, "1", b"1", None, "1"], dtype=object),
    }
    for name, values in cases.items():
        want_codes, want_values = pd.factorize(values)
        codes, distinct = factorize_objects(values)
        assert codes.tolist() == want_codes.tolist(), name
        assert [(type(v), v) for v in distinct] == [(type(v), v) for v in want_values], name
    codes, distinct = factorize_objects(cases["a minute table's tickers"])
    assert codes[:6].tolist() == [0, 1, 2, 0, 1, 2] and list(distinct) == list(tickers)
    with pytest.raises(TypeError):  # unhashable, as pandas refuses it
        factorize_objects(np.array([None, ["a"], ["a"], "b"], dtype=object))


def test_one_validation_pass_shares_its_groupings_and_the_next_frame_gets_its_own():
    good = fused()
    assert len(validate("fused_pmf", good)) == 24
    bad = good.copy()
    row = bad.index[(bad["city"] == "ny") & (bad["bracket_index"] == 0)][1]
    bad.loc[row, "p_fused"] = 0.25
    cases = failing("fused_pmf", bad)  # a new frame, not the groupings of the one before
    summed = cases[cases["check"].str.startswith("p_fused: fused PMF must sum to 1")]
    assert sorted(summed["index"].unique()) == bad.index[(bad["city"] == "ny")
                                                         & (bad["minute_ts"] == bad.loc[row, "minute_ts"])].tolist()
    assert len(validate("fused_pmf", good)) == 24


def test_a_missing_value_in_a_required_column_fails_its_not_null_and_value_checks_by_field():
    frame = fused()
    frame.loc[5, "w_market"] = float("nan")
    cases = failing("fused_pmf", frame)
    assert set(cases.loc[cases["column"] == "w_market", "check"]) >= {"not_nullable", "greater_than_or_equal_to(0)"}
    ok = fused()
    ok.loc[5, "hazard"] = float("nan")  # a nullable column's checks still pass its missing values
    assert len(validate("fused_pmf", ok)) == 24


def test_a_repeated_key_fails_every_row_that_has_it_naming_the_key():
    frame = obs(["KNYC"] * 4)
    frame.loc[2, "valid_time"] = frame.loc[1, "valid_time"]
    cases = failing("weather_obs", frame)
    unique = cases[cases["check"] == "unique: one row per (city, climate_day, valid_time)"]
    assert sorted(unique["index"].dropna().unique().tolist()) == [1, 2]
    with pytest.raises(TableInvalid, match=r"unique: one row per \(city, climate_day, valid_time\)"):
        validate("weather_obs", frame, partition="ny|2025-06-01")
    assert len(validate("weather_obs", obs(["KNYC"] * 4))) == 4


def test_rows_with_a_missing_key_repeat_only_each_other():
    from kw_assets.schemas import _unique_rows
    frame = pd.DataFrame({"a": ["x", "x", None, None, None], "b": [1.0, 2.0, 3.0, 3.0, float("nan")]})
    assert _unique_rows(frame, ["a", "b"]).tolist() == [True, True, False, False, True]
    assert _unique_rows(frame.iloc[:0], ["a", "b"]).tolist() == []


def _pandera_failures(table: str, frame: pd.DataFrame) -> pd.DataFrame | None:
    """What Pandera's own checks (``schema(table)``, no coded text) report, as ``validate`` post-processes it."""
    import pandera.pandas as pa

    from kw_assets import schemas
    token = schemas._GROUPS.set({})
    try:
        schemas.schema(table).validate(frame, lazy=True, inplace=True)
        return None
    except pa.errors.SchemaErrors as exc:
        cases = exc.failure_cases
        rules = {c.error for c in schemas.schema(table).checks}
        return cases[cases["failure_case"].notna() | ~cases["check"].isin(rules)]
    finally:
        schemas._GROUPS.reset(token)


def test_coded_text_checks_fail_exactly_what_panderas_own_checks_fail():
    """Above ``CODED_TEXT_ROWS`` the required text columns' not-null, isin and type checks come from one
    factorization per column; planted missing values (None, NaN, pd.NA), words outside the allowed set, numbers
    and bytes fail the same rows under the same check names as Pandera's own checks."""
    import numpy as np

    from kw_assets.schemas import CODED_TEXT_ROWS, _validating
    good = fused(minutes=CODED_TEXT_ROWS // 6 + 1)
    assert len(good) >= CODED_TEXT_ROWS and {"city", "source", "market_ticker"} <= _validating("fused_pmf")[1]
    assert len(validate("fused_pmf", good)) == len(good)

    def key(cases):
        return sorted(map(tuple, cases.drop(columns=["check_number"]).astype(str).to_numpy()))

    rng = np.random.default_rng(11)
    planted = [None, float("nan"), pd.NA, "zzz", 7, b"ny", "", "simulated", "ny", "KXHIGH-ny-B0"]
    for trial in range(30):
        bad = good.copy()
        for _ in range(rng.integers(1, 4)):
            column = ("city", "source", "market_ticker")[rng.integers(3)]
            bad[column] = bad[column].astype(object)
            bad.iat[int(rng.integers(len(bad))), bad.columns.get_loc(column)] = planted[rng.integers(len(planted))]
        expected = _pandera_failures("fused_pmf", bad.copy())
        if expected is None:
            assert len(validate("fused_pmf", bad)) == len(bad)
            continue
        got = failing("fused_pmf", bad)
        assert key(got) == key(expected), f"trial {trial}"
    bad = good.copy()
    bad.loc[[3, 4], "source"] = [None, "elsewhere"]
    cases = failing("fused_pmf", bad)
    assert set(zip(cases["column"], cases["check"], cases["index"])) >= {
        ("source", "not_nullable", 3), ("source", "isin(('simulated', 'live', 'file'))", 3),
        ("source", "isin(('simulated', 'live', 'file'))", 4)}
