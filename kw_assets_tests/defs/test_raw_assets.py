import datetime as dt

import dagster as dg
import httpx
import pandas as pd
import pytest

from kw_assets.defs.raw import raw_assets
from kw_assets.defs.resources import MarketDataResource, WarehouseResource
from kw_assets.partitions import partition_key
from kw_assets.schemas import TABLES
from kw_assets.sources.kalshi.client import KalshiClient
from kw_assets.sources.simulator.exchange import SimulatedExchange
from kw_assets.warehouse import Warehouse
from kw_assets_tests.conftest import SIM_NOW

KEY = "ny|2025-06-10"


def snapshot(path) -> dict[str, pd.DataFrame]:
    wh = Warehouse(path)
    out = {}
    for t in TABLES:
        f = wh.read(t)
        out[t] = f.sort_values(list(f.columns[:5])).reset_index(drop=True)
    return out


def test_materialize_twice_gives_identical_tables(resources, warehouse_path, instance):
    assert dg.materialize(raw_assets, partition_key=KEY, resources=resources, instance=instance).success
    first = snapshot(warehouse_path)
    assert len(first["kalshi_markets"]) == 6 and len(first["kalshi_candles"]) > 1000
    assert len(first["weather_obs"]) > 250 and first["weather_forecasts"]["issued_at"].nunique() >= 8
    s = first["settlement"].iloc[0]
    assert s["winning_market_ticker"].startswith("KXHIGHNY-25JUN10") and s["source"] == "simulated"
    assert set(pd.concat([f["source"] for f in first.values()])) == {"simulated"}
    assert dg.materialize(raw_assets, partition_key=KEY, resources=resources, instance=instance).success
    second = snapshot(warehouse_path)
    for t in TABLES:
        pd.testing.assert_frame_equal(first[t], second[t], check_exact=True)


def test_one_run_materializes_a_range_across_cities_and_dates(resources, warehouse_path, instance):
    tags = {"dagster/asset_partition_range_start": str(partition_key("ny", dt.date(2025, 6, 1))),
            "dagster/asset_partition_range_end": str(partition_key("chi", dt.date(2025, 6, 2)))}
    result = dg.materialize(raw_assets, resources=resources, instance=instance, tags=tags)
    assert result.success
    assert Warehouse(warehouse_path).partitions("kalshi_candles") == {
        ("ny", dt.date(2025, 6, 1)), ("ny", dt.date(2025, 6, 2)), ("chi", dt.date(2025, 6, 1)), ("chi", dt.date(2025, 6, 2))}


class CorruptingMarketData(MarketDataResource):
    """The simulated source with one kind of damage applied to candle responses."""

    corruption: str = "price_above_one"

    def kalshi_client(self) -> KalshiClient:
        ex = SimulatedExchange(seed=self.seed, now=self.settings().simulated_clock())
        corruption = self.corruption

        def handler(request: httpx.Request) -> httpx.Response:
            response = ex.handle(request)
            if "candlesticks" not in request.url.path or response.status_code != 200:
                return response
            body = response.json()
            candles = body.get("candlesticks")
            if candles:
                if corruption == "price_above_one":
                    candles[3]["yes_bid"]["close"] = "1.7000"
                elif corruption == "word_for_price":
                    candles[3]["yes_bid"]["close"] = "abc"
                elif corruption == "duplicate_candle":
                    candles.insert(4, candles[3])
            return httpx.Response(200, json=body)

        return KalshiClient(transport=httpx.MockTransport(handler), requests_per_second=None, sleep=lambda s: None)


@pytest.mark.parametrize("corruption,field", [("price_above_one", "yes_bid_close"),
                                              ("word_for_price", "yes_bid.close"),
                                              ("duplicate_candle", "end_period_ts")])
def test_corrupted_candles_fail_the_check_and_leave_the_warehouse_unchanged(resources, warehouse_path, instance,
                                                                          corruption, field):
    assert dg.materialize(raw_assets, partition_key=KEY, resources=resources, instance=instance).success
    before = snapshot(warehouse_path)
    bad = {**resources, "market_data": CorruptingMarketData(simulated_now=SIM_NOW, retry_sleep=False, corruption=corruption)}
    result = dg.materialize(raw_assets, partition_key=KEY, resources=bad, instance=instance, raise_on_error=False)
    assert not result.success
    checks = [e.event_specific_data for e in result.all_events if e.event_type_value == "ASSET_CHECK_EVALUATION"]
    failed = [c for c in checks if not c.passed]
    assert [c.check_name for c in failed] == ["kalshi_candles_schema"]
    failure_md = failed[0].metadata["failure_cases"].value
    assert field in failure_md
    failures = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    message = str(failures[0].event_specific_data.error)
    assert f"partition {KEY}" in message and "kalshi_candles" in message and field in message
    if corruption == "word_for_price":  # the value and its row, not a silent missing price
        assert "row 3: not a number: 'abc'" in message and "row 3: not a number: 'abc'" in failure_md
    after = snapshot(warehouse_path)
    for t in TABLES:
        pd.testing.assert_frame_equal(before[t], after[t])


def test_file_source_flows_without_weather(tmp_path, instance):
    csv = ("timestamp,78° or below,79° to 80°,81° to 82°,83° to 84°,85° to 86°,87° or above\n"
           "2026-04-19T14:02:00Z,4.00,,,,,60.00\n2026-04-21T04:56:00Z,1.00,1.00,1.00,1.00,99.00,1.00\n")
    (tmp_path / "kalshi-price-history-kxhighmia-26apr20-minute.csv").write_text(csv)
    res = {"market_data": MarketDataResource(source="file", price_history_dir=str(tmp_path)),
           "warehouse": WarehouseResource(path=str(tmp_path / "w.duckdb"))}
    assert dg.materialize(raw_assets, partition_key="mia|2026-04-20", resources=res, instance=instance).success
    wh = Warehouse(tmp_path / "w.duckdb")
    assert set(wh.read("kalshi_markets")["source"]) == {"file"}
    assert wh.read("weather_obs").empty and wh.read("kalshi_trades").empty
    s = wh.read("settlement").iloc[0]
    assert s["winning_bracket_index"] == 4 and s["settlement_source"] == "inferred from final website prices"


def test_definitions_load():
    from kw_assets.definitions import defs
    dg.Definitions.validate_loadable(defs)
    names = {k.to_user_string() for k in defs.resolve_asset_graph().get_all_asset_keys()}
    assert {"kalshi_markets", "kalshi_candles", "kalshi_trades", "weather_obs", "weather_forecasts", "settlement"} <= names


def test_minute_panel_flows_from_the_raw_tables_and_is_idempotent(resources, warehouse_path, instance):
    from kw_assets.defs.features import minute_panel
    assert dg.materialize([*raw_assets, minute_panel], partition_key=KEY, resources=resources, instance=instance).success
    wh = Warehouse(warehouse_path)
    first = wh.read("minute_panel").sort_values(["minute_ts", "bracket_index"]).reset_index(drop=True)
    markets = wh.read("kalshi_markets")
    span = (markets["close_time"].max().ceil("min") - markets["open_time"].min().ceil("min")) / pd.Timedelta(minutes=1)
    assert len(first) == int(span) * 6 and set(first["source"]) == {"simulated"}
    assert dg.materialize([minute_panel], partition_key=KEY, resources=resources, instance=instance).success
    second = wh.read("minute_panel").sort_values(["minute_ts", "bracket_index"]).reset_index(drop=True)
    pd.testing.assert_frame_equal(first, second, check_exact=True)


def test_each_partition_event_carries_its_own_row_count_and_the_definition_the_table_schema(resources, warehouse_path,
                                                                                          instance):
    tags = {"dagster/asset_partition_range_start": "ny|2025-06-10", "dagster/asset_partition_range_end": "ny|2025-06-11"}
    result = dg.materialize(raw_assets, resources=resources, instance=instance, tags=tags)
    assert result.success
    events = {str(m.partition): m.metadata for m in result.asset_materializations_for_node("kalshi_trades")}
    stored = Warehouse(warehouse_path).read("kalshi_trades").groupby(["city", "climate_day"]).size()
    counts = {key: events[key]["dagster/row_count"].value for key in ("ny|2025-06-10", "ny|2025-06-11")}
    assert counts == {"ny|2025-06-10": stored[("ny", pd.Timestamp("2025-06-10"))],
                      "ny|2025-06-11": stored[("ny", pd.Timestamp("2025-06-11"))]}
    assert counts["ny|2025-06-10"] != counts["ny|2025-06-11"]  # the partition's own, not the run's total
    for meta in events.values():
        assert meta["run_partitions"].value == 2 and meta["run_rows"].value == sum(counts.values())
        assert "2025-06-1" in meta["time_span"].value and "trade_id" in meta["preview"].value
        assert meta["dagster/table_name"].value == "warehouse.main.kalshi_trades"
        assert "dagster/column_schema" not in meta  # 0.44 ms to serialize on each of a year's ~33,000 events
    from kw_assets.definitions import defs
    defined = defs.resolve_assets_def("kalshi_trades").metadata_by_key[dg.AssetKey("kalshi_trades")]
    columns = [c.name for c in defined["dagster/column_schema"].columns]
    assert columns == list(TABLES["kalshi_trades"].to_schema().columns)


def test_partition_metadata_goes_in_one_call_each_where_the_step_context_is_not_the_one_it_knows():
    """``add_partition_metadata`` adds a run's partitions in one rebuild of Dagster 1.13's accumulator; any
    other context (a later Dagster's) gets Dagster's public call for each partition, with the same values."""
    from kw_assets.defs.materialize import add_partition_metadata

    class LaterContext:
        def __init__(self):
            self.calls = []

        def add_asset_metadata(self, metadata, asset_key=None, partition_key=None):
            self.calls.append((asset_key, partition_key, metadata))

    context = LaterContext()
    add_partition_metadata(context, "kalshi_trades", {"ny|2025-06-10": {"n": 3}, "ny|2025-06-11": {"n": 5}})
    assert context.calls == [("kalshi_trades", "ny|2025-06-10", {"n": 3}), ("kalshi_trades", "ny|2025-06-11", {"n": 5})]
