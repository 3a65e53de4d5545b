"""The schemas' fast text check: strings pass in one pass, anything else fails naming the field."""

import pandas as pd
import pytest

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
