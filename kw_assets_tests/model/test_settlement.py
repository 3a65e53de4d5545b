"""Settlement from the markets: the settled high, the winning bracket, and who published the high."""

import datetime as dt

import numpy as np
import pandas as pd
import pytest

from kw_assets.errors import DataError
from kw_assets.model.settlement import settlement_row, settlement_source_name

LOWS, HIGHS = [-np.inf, 79, 81, 83, 85, 87], [78, 80, 82, 84, 86, np.inf]


def markets(result_index: int | None, value: float | None) -> pd.DataFrame:
    return pd.DataFrame({"event_ticker": "KXHIGHNY-26AUG13", "market_ticker": [f"KXHIGHNY-26AUG13-{i}" for i in range(6)],
                         "bracket_index": range(6), "bracket_low_f": LOWS, "bracket_high_f": HIGHS,
                         "result": ["yes" if i == result_index else ("no" if result_index is not None else "")
                                    for i in range(6)],
                         "expiration_value": value})


def test_the_settled_high_picks_its_bracket_and_the_obs_max_stands_beside_it():
    obs = pd.DataFrame({"temp_f": [80.6, 83.8, 82.4]})
    row = settlement_row(markets(3, 84.0), obs, "live", dt.date(2026, 8, 13)).iloc[0]
    assert row["official_high_f"] == 84 and row["winning_bracket_index"] == 3 and row["obs_max_f"] == 83.8
    assert row["winning_market_ticker"] == "KXHIGHNY-26AUG13-3"


def test_no_row_before_settlement():
    assert settlement_row(markets(None, None), pd.DataFrame({"temp_f": []}), "live", dt.date(2026, 8, 13)).empty


def test_inconsistent_settlements_fail_naming_the_field():
    with pytest.raises(DataError, match="official_high_f: settled high 88 is outside the winning bracket"):
        settlement_row(markets(3, 88.0), pd.DataFrame({"temp_f": [80.0]}), "live", dt.date(2026, 8, 13))
    bad = markets(3, 84.0)
    bad.loc[0, "expiration_value"] = 85.0
    with pytest.raises(DataError, match="expiration_value: markets disagree"):
        settlement_row(bad, pd.DataFrame({"temp_f": [80.0]}), "live", dt.date(2026, 8, 13))


def test_the_settlement_source_switches_after_2026_08_13():
    assert settlement_source_name("live", dt.date(2026, 8, 13)) == "NWS Daily Climate Report"
    assert settlement_source_name("live", dt.date(2026, 8, 14)) == "The Weather Company"
    assert settlement_source_name("simulated", dt.date(2026, 8, 14)) == "simulated (CLI semantics)"
    assert settlement_source_name("file", dt.date(2025, 1, 1)) == "inferred from final website prices"
