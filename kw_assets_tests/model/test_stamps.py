import numpy as np
import pandas as pd
import pytest

from kw_assets.model.stamps import utc_stamps


def test_epochs_become_the_same_utc_stamps_as_pandas_parses_them():
    ns = np.array([0, -86_400 * 10**9 - 5, 1_700_000_000_123_456_789, np.iinfo(np.int64).min])
    got = utc_stamps(ns)
    assert got.equals(pd.to_datetime(ns, utc=True)) and str(got.dtype) == "datetime64[ns, UTC]"
    assert got[1] == pd.Timestamp("1969-12-30 23:59:59.999999995", tz="UTC") and got[3] is pd.NaT
    seconds = np.array([1_741_503_600, 1_741_500_000 - 1])  # 2025-03-09 07:00 UTC (the DST switch in New York), and before it
    assert utc_stamps(seconds, "s").equals(pd.to_datetime(seconds, unit="s", utc=True))
    assert utc_stamps(seconds, "s")[0].tz_convert("America/New_York").hour == 3
    micros = np.array([1_700_000_000_123_456, 5])
    assert utc_stamps(micros, "us").equals(pd.to_datetime(micros, unit="us", utc=True))
    naive = ns.view("datetime64[ns]")
    assert utc_stamps(naive).equals(pd.to_datetime(naive, utc=True))
    assert str(utc_stamps(np.zeros(0, np.int64)).dtype) == "datetime64[ns, UTC]"


def test_floats_are_refused_not_rounded_a_new_way():
    with pytest.raises(TypeError, match="integer epochs"):
        utc_stamps(np.array([1.7e9]), "s")
