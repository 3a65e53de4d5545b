import datetime as dt

import numpy as np
import pytest

from kw_assets.cities import get_city
from kw_assets.errors import DataError
from kw_assets.sources.price_history import export_path, read_export

CSV = """timestamp,78° or below,79° to 80°,81° to 82°,83° to 84°,85° to 86°,87° or above
2026-04-19T14:02:00Z,4.00,,,,,60.00
2026-04-19T14:03:00Z,1.29,25.00,59.00,,25.90,26.90
2026-04-21T04:56:00Z,1.00,1.00,1.00,1.00,99.00,1.00
"""


def test_website_export_becomes_markets_and_close_only_candles(tmp_path):
    (tmp_path / "kalshi-price-history-kxhighmia-26apr20-minute.csv").write_text(CSV)
    mia, day = get_city("mia"), dt.date(2026, 4, 20)
    path = export_path(tmp_path, mia, day)
    markets, candles = read_export(path, mia, day)
    assert markets["event_ticker"].unique().tolist() == ["KXHIGHMIA-26APR20"]
    assert markets["bracket_low_f"].tolist() == [-np.inf, 79, 81, 83, 85, 87]
    assert markets["bracket_high_f"].tolist() == [78, 80, 82, 84, 86, np.inf]
    assert markets.loc[markets["result"] == "yes", "yes_sub_title"].tolist() == ["85° to 86°"]
    assert len(candles) == 13  # sparse: blank cells are not candles
    first = candles[candles["market_ticker"] == markets["market_ticker"].iloc[0]].iloc[0]
    assert first["price_close"] == 0.04
    assert np.isnan(first["yes_bid_close"]) and np.isnan(first["volume"])  # not invented


def test_a_word_in_a_price_cell_fails_naming_table_field_row_and_value(tmp_path):
    bad = CSV.replace("1.29,25.00", "1.29,abc")  # blanks stay missing (the test above), a word does not
    (tmp_path / "kalshi-price-history-kxhighmia-26apr20-minute.csv").write_text(bad)
    mia, day = get_city("mia"), dt.date(2026, 4, 20)
    with pytest.raises(DataError, match=r"table kalshi_candles, field 79° to 80°: row 1: not a number: 'abc'"):
        read_export(export_path(tmp_path, mia, day), mia, day)
