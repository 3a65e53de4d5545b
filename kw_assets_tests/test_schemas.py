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
