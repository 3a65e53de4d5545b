"""``orderbook_l2`` from recorded segments through Dagster, and ``l2_segments_sensor`` requesting it as
segments close."""

import asyncio
import datetime as dt
import shutil

import dagster as dg
import numpy as np
import pandas as pd
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from kw_assets.cities import get_city
from kw_assets.defs.orderbook import l2_segments_sensor, orderbook_l2
from kw_assets.defs.raw import kalshi_markets
from kw_assets.model.order_book import rebuild_minutes
from kw_assets.model.panel import minute_grid
from kw_assets.partitions import partition_key
from kw_assets.recorder.segments import SegmentWriter, read_segments
from kw_assets.recorder.session import Recorder, RecorderConfig
from kw_assets.sources.clock import Clock
from kw_assets.sources.kalshi.client import KalshiClient
from kw_assets.sources.kalshi.signing import KalshiSigner
from kw_assets.sources.simulator.exchange import SimulatedExchange
from kw_assets.sources.simulator.ws_exchange import ExchangeServer, SimulatedMarketServer
from kw_assets.warehouse import Warehouse

START = dt.datetime(2025, 7, 1, 15, tzinfo=dt.timezone.utc)
DAY = dt.date(2025, 7, 1)
KEY = str(partition_key("ny", DAY))


@pytest.fixture(scope="module")
def l2_root(tmp_path_factory):
    """Ten simulated minutes of New York's two events, recorded."""
    root = tmp_path_factory.mktemp("l2")
    k = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = k.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()).decode()
    clock = Clock.simulated(START, speed=240)
    server = SimulatedMarketServer(SimulatedExchange(seed=7, now=clock.now), clock, verify_key=k.public_key())
    with ExchangeServer(server) as running, KalshiClient(running.rest_url, requests_per_second=None) as rest:
        recorder = Recorder([get_city("ny")], rest, SegmentWriter(root, max_minutes=4), RecorderConfig(ws_url=running.ws_url),
                            signer=KalshiSigner("k", pem), clock=clock)

        async def ten_minutes():
            stop = asyncio.Event()
            asyncio.get_running_loop().call_later(600 / 240, stop.set)
            await recorder.run(stop)

        asyncio.run(ten_minutes())
    return root


def _config(root):
    return {"ops": {"orderbook_l2": {"config": {"l2_root": str(root)}}}}


def test_orderbook_l2_is_the_rebuilt_book_validated_and_idempotent(l2_root, resources, warehouse_path, instance):
    for _ in range(2):
        result = dg.materialize([kalshi_markets, orderbook_l2], partition_key=KEY, resources=resources, instance=instance,
                                run_config=_config(l2_root))
        assert result.success
    stored = Warehouse(warehouse_path).read("orderbook_l2")
    markets = Warehouse(warehouse_path).read("kalshi_markets")
    expected = rebuild_minutes(read_segments(l2_root, "ny", DAY), markets["market_ticker"].tolist(), minute_grid(markets))
    assert len(stored) == len(expected) >= 6 * 5  # six brackets, at least half of ten minutes (fewer on a loaded machine)
    assert stored["source"].eq("simulated").all() and stored["bracket_index"].between(0, 5).all()
    pd.testing.assert_series_equal(stored.sort_values(["market_ticker", "minute_ts"])["yes_bid"].reset_index(drop=True),
                                   expected.sort_values(["market_ticker", "minute_ts"])["yes_bid"].reset_index(drop=True))
    checks = [e.event_specific_data for e in result.all_events if e.event_type_value == "ASSET_CHECK_EVALUATION"]
    assert ("orderbook_l2_schema", True) in [(c.check_name, c.passed) for c in checks]


def test_a_day_that_was_not_recorded_is_an_empty_partition(tmp_path, resources, warehouse_path, instance):
    result = dg.materialize([kalshi_markets, orderbook_l2], partition_key=KEY, resources=resources, instance=instance,
                            run_config=_config(tmp_path / "nothing"))
    assert result.success and Warehouse(warehouse_path).read("orderbook_l2").empty


def test_a_crossed_book_fails_the_check_naming_the_field_and_writes_nothing(l2_root, resources, warehouse_path, instance,
                                                                             monkeypatch):
    import kw_assets.defs.orderbook as orderbook
    real = orderbook.rebuild_minutes

    def crossed(*args, **kwargs):
        out = real(*args, **kwargs)
        row = out.index[out["yes_ask"].notna()][3]
        out.loc[row, "yes_bid"] = out.loc[row, "yes_ask"]  # a locked book: bid == ask
        return out

    monkeypatch.setattr(orderbook, "rebuild_minutes", crossed)
    result = dg.materialize([kalshi_markets, orderbook_l2], partition_key=KEY, resources=resources, instance=instance,
                            run_config=_config(l2_root), raise_on_error=False)
    assert not result.success
    failures = [str(e.event_specific_data.error) for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    assert any("orderbook_l2" in m and KEY in m and "yes_bid" in m for m in failures), failures
    assert Warehouse(warehouse_path).read("orderbook_l2").empty


def test_the_sensor_requests_each_recorded_day_once_and_again_when_a_segment_closes(l2_root, tmp_path, monkeypatch):
    root = shutil.copytree(l2_root, tmp_path / "l2")
    monkeypatch.setenv("KW_L2_ROOT", str(root))
    first = l2_segments_sensor(dg.build_sensor_context())
    assert sorted(r.partition_key for r in first.run_requests) == [KEY, str(partition_key("ny", DAY + dt.timedelta(days=1)))]
    again = l2_segments_sensor(dg.build_sensor_context(cursor=first.cursor))
    assert again.run_requests == []
    writer = SegmentWriter(root)
    writer.add(("ny", DAY), {"recv_ns": 2_000_000_000_000_000_000, "clock_ms": 0, "kind": "heartbeat", "raw": ""})
    writer.close_all()
    later = l2_segments_sensor(dg.build_sensor_context(cursor=first.cursor))
    assert [r.partition_key for r in later.run_requests] == [KEY]


def test_order_books_are_sampled_on_schedule_into_spreads_by_regime(warehouse_path, instance):
    from kw_assets.defs.orderbook import orderbook_sample_schedule, orderbook_samples, orderbook_spreads
    from kw_assets.defs.resources import MarketDataResource, WarehouseResource
    from kw_assets_tests.conftest import SIM_NOW
    for minutes in (0, 10):
        now = (pd.Timestamp(SIM_NOW) + pd.Timedelta(minutes=minutes)).isoformat()
        res = {"market_data": MarketDataResource(simulated_now=now, retry_sleep=False), "warehouse": WarehouseResource(path=warehouse_path)}
        assert dg.materialize([orderbook_samples, orderbook_spreads], resources=res, instance=instance).success
    samples = Warehouse(warehouse_path).read("orderbook_samples")
    per_market = samples.groupby("market_ticker")["sampled_at"].nunique()
    assert set(samples["city"]) == {"ny", "chi", "mia", "aus", "den", "phil", "lax"} and (per_market == 2).all()
    assert set(samples["source"]) == {"simulated"}
    both = samples.dropna(subset=["yes_bid", "yes_ask"])
    assert (both["yes_bid"] < both["yes_ask"]).all() and np.allclose(both["spread"], both["yes_ask"] - both["yes_bid"])
    spreads = Warehouse(warehouse_path).read("orderbook_spreads")
    assert len(spreads) and set(spreads["observed_by"]) == {"samples"} and spreads["n"].sum() == len(both)
    request = orderbook_sample_schedule(dg.build_schedule_context(scheduled_execution_time=dt.datetime(2026, 11, 27, 0, 10)))
    assert request.run_key == "orderbook-sample-20261127T0010"
