"""The file source over real Kalshi price-history exports (kw_assets_tests/data/kalshi-price-history, see
SOURCE.md there): the market PMF the pipeline stores scores exactly as a by-hand reading of the raw CSV."""
import datetime as dt
from pathlib import Path

import dagster as dg
import numpy as np
import pandas as pd

from kw_assets.definitions import defs
from kw_assets.defs.resources import MarketDataResource, WarehouseResource
from kw_assets.partitions import partition_key
from kw_assets.warehouse import Warehouse
from kw_assets_tests.conftest import local_test_instance

DATA = Path(__file__).resolve().parents[1] / "data" / "kalshi-price-history"
DAYS = [dt.date(2026, 4, 20), dt.date(2026, 4, 21), dt.date(2026, 4, 22)]
MIAMI_LST = pd.Timedelta(hours=-5)


def by_hand(day: dt.date, hour_lst: int) -> tuple[np.ndarray, int]:
    """Last traded price of each bracket at or before the instant, renormalized; the winner ends at 99."""
    raw = pd.read_csv(DATA / f"kalshi-price-history-kxhighmia-{day:%y}{day.strftime('%b').lower()}{day:%d}-minute.csv")
    raw["timestamp"] = pd.to_datetime(raw["timestamp"], utc=True)
    prices = raw.set_index("timestamp").ffill()
    at = pd.Timestamp(day, tz="UTC") - MIAMI_LST + pd.Timedelta(hours=hour_lst)
    last = prices[prices.index <= at].iloc[-1].to_numpy(float)
    p = np.nan_to_num(last) / np.nansum(last)
    winner = int(np.argmax(raw.set_index("timestamp").apply(lambda c: c.dropna().iloc[-1]).to_numpy() >= 99))
    return p, winner


def rps_by_hand(p: np.ndarray, winner: int) -> float:
    cdf = np.cumsum(p)[:-1]
    obs = (np.arange(len(p)) >= winner)[:-1].astype(float)
    return float(np.mean((cdf - obs) ** 2))


def test_market_pmf_rps_at_08_12_15_lst_matches_the_raw_csv(tmp_path):
    res = {"market_data": MarketDataResource(source="file", weather_source="none", price_history_dir=str(DATA)),
           "warehouse": WarehouseResource(path=str(tmp_path / "w.duckdb"), workers=1)}
    assets = [defs.get_assets_def(k) for k in ("kalshi_markets", "kalshi_candles", "kalshi_trades", "weather_obs",
                                               "settlement", "minute_panel")]
    with local_test_instance(tmp_path / "runs") as instance:
        for day in DAYS:
            assert dg.materialize(assets, partition_key=str(partition_key("mia", day)), resources=res, instance=instance).success
    wh = Warehouse(tmp_path / "w.duckdb")
    panel, settlement = wh.read("minute_panel"), wh.read("settlement")
    for day in DAYS:
        winner = int(settlement.loc[settlement["climate_day"] == pd.Timestamp(day), "winning_bracket_index"].iloc[0])
        for hour in (8, 12, 15):
            expected_p, expected_winner = by_hand(day, hour)
            at = pd.Timestamp(day, tz="UTC") - MIAMI_LST + pd.Timedelta(hours=hour)
            rows = panel[(panel["climate_day"] == pd.Timestamp(day)) & (panel["minute_ts"] == at)].sort_values("bracket_index")
            p = np.nan_to_num(rows["p_norm"].to_numpy(float))
            assert winner == expected_winner
            assert abs(rps_by_hand(p, winner) - rps_by_hand(expected_p, expected_winner)) < 1e-6, (day, hour)
            np.testing.assert_allclose(p, expected_p, atol=1e-9)
