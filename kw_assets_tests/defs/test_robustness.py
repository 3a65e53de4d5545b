"""Prove it holds: injected faults, bad input, a crash mid-write, and secrets that must never leak."""

import json
import signal
import subprocess
import sys
import textwrap

import dagster as dg
import httpx
import pandas as pd
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from kw_assets.defs.raw import raw_assets
from kw_assets.defs.resources import MarketDataResource, WarehouseResource
from kw_assets.schemas import TABLES
from kw_assets.sources.http import RetryPolicy
from kw_assets.sources.kalshi.client import KalshiClient
from kw_assets.sources.kalshi.signing import KalshiSigner
from kw_assets.sources.simulator.exchange import SimulatedExchange
from kw_assets.sources.simulator.weather_feed import SimulatedWeatherFeed
from kw_assets.sources.visual_crossing import VisualCrossingClient
from kw_assets.warehouse import Warehouse
from kw_assets_tests.conftest import SIM_NOW, local_test_instance

KEY = "ny|2025-06-10"
LOGS = {"python_logs": {"managed_python_loggers": ["kw_assets"], "python_log_level": "INFO"}}


def snapshot(path) -> dict[str, pd.DataFrame]:
    wh = Warehouse(path)
    out = {}
    for t in TABLES:
        f = wh.read(t)
        out[t] = f.sort_values(list(f.columns)).reset_index(drop=True) if len(f) else f
    return out


def assert_same(a, b):
    for t in TABLES:
        pd.testing.assert_frame_equal(a[t], b[t], check_exact=True, obj=t)


# --- faults ------------------------------------------------------------------------------------------
FAULTS = dict(fault_rate_429=0.20, fault_rate_5xx=0.05, fault_rate_timeout=0.02, fault_rate_drop=0.01,
              fault_rate_empty_page=0.10)


@pytest.mark.slow
def test_a_backfill_through_faults_equals_a_fault_free_one(tmp_path):
    tags = {"dagster/asset_partition_range_start": "ny|2025-06-01", "dagster/asset_partition_range_end": "mia|2025-06-14"}
    clean, faulty = str(tmp_path / "clean.duckdb"), str(tmp_path / "faulty.duckdb")
    with local_test_instance(tmp_path / "runs", **LOGS) as instance:
        assert dg.materialize(raw_assets, instance=instance, tags=tags, resources={
            "market_data": MarketDataResource(simulated_now=SIM_NOW), "warehouse": WarehouseResource(path=clean)}).success
        result = dg.materialize(raw_assets, instance=instance, tags=tags, resources={
            "market_data": MarketDataResource(simulated_now=SIM_NOW, retry_sleep=False, **FAULTS),
            "warehouse": WarehouseResource(path=faulty)})
        assert result.success
        logs = [e.user_message for e in instance.all_logs(result.run_id)]
    assert_same(snapshot(clean), snapshot(faulty))
    assert len(Warehouse(faulty).partitions("kalshi_candles")) == 42  # 14 days x 3 cities
    retries = [m for m in logs if "retrying in" in m]
    assert len(retries) > 20
    assert any("kalshi GET /" in m and "attempt 1/10" in m for m in retries)
    assert any("visual_crossing GET /" in m for m in retries)


def test_past_the_retry_bound_the_run_fails_clearly_and_old_data_stays(resources, warehouse_path, instance):
    assert dg.materialize(raw_assets, partition_key=KEY, resources=resources, instance=instance).success
    before = snapshot(warehouse_path)
    down = {**resources, "market_data": MarketDataResource(simulated_now=SIM_NOW, retry_sleep=False, max_attempts=4,
                                                           fault_rate_429=1.0)}
    result = dg.materialize(raw_assets, partition_key=KEY, resources=down, instance=instance, raise_on_error=False)
    assert not result.success
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    message = str(failure.event_specific_data.error)
    assert f"partition {KEY}" in message and "gave up after 4 attempts" in message and "too many requests" in message
    assert_same(before, snapshot(warehouse_path))


# --- bad input -----------------------------------------------------------------------------------------
def _mutate_json(response: httpx.Response, fn) -> httpx.Response:
    body = response.json()
    fn(body)
    return httpx.Response(response.status_code, json=body)


def _candles(body):
    return body.get("candlesticks") or []


KALSHI_CORRUPTIONS = {
    # name: (url fragment, mutation, table, field)
    "truncated_json": ("/events/", lambda r: httpx.Response(200, content=r.content[: len(r.content) // 2]), "kalshi_markets", "<response>"),
    "html_with_200": ("/events/", lambda r: httpx.Response(200, text="<html><body>Bad gateway</body></html>"), "kalshi_markets", "<response>"),
    "missing_field": ("candlesticks", lambda r: _mutate_json(r, lambda b: _candles(b)[2].pop("volume")), "kalshi_candles", "volume"),
    "price_abc": ("candlesticks", lambda r: _mutate_json(r, lambda b: _candles(b)[2]["yes_ask"].update(close="abc")), "kalshi_candles", "yes_ask.close"),
    "price_above_one": ("candlesticks", lambda r: _mutate_json(r, lambda b: _candles(b)[2]["yes_ask"].update(close="1.7000", high="1.7000")), "kalshi_candles", "yes_ask_close"),
    "price_below_zero": ("candlesticks", lambda r: _mutate_json(r, lambda b: _candles(b)[2]["yes_bid"].update(low="-0.2000")), "kalshi_candles", "yes_bid_low"),
    "high_below_low": ("candlesticks", lambda r: _mutate_json(r, lambda b: _candles(b)[2]["yes_bid"].update(high="0.0000", low="0.5000")), "kalshi_candles", "low <= open"),
    "duplicate_candles": ("candlesticks", lambda r: _mutate_json(r, lambda b: _candles(b).insert(3, _candles(b)[2])), "kalshi_candles", "end_period_ts"),
    "candles_out_of_order": ("candlesticks", lambda r: _mutate_json(r, lambda b: _candles(b).reverse()), "kalshi_candles", "end_period_ts"),
    "unknown_strike_type": ("/historical/markets", lambda r: _mutate_json(r, lambda b: b["markets"][0].update(strike_type="custom")), "kalshi_markets", "strike_type"),
    "bracket_gap": ("/historical/markets", lambda r: _mutate_json(r, lambda b: b["markets"][2].update(floor_strike="70", cap_strike="71")), "kalshi_markets", "bracket_low_f"),
    "bracket_overlap": ("/historical/markets", lambda r: _mutate_json(r, lambda b: b["markets"][2].update(floor_strike=b["markets"][1]["floor_strike"])), "kalshi_markets", "bracket_low_f"),
    "zero_markets": ("/historical/markets", lambda r: _mutate_json(r, lambda b: b.update(markets=[])), "kalshi_markets", "markets"),
    "wrong_event_ticker": ("/historical/markets", lambda r: _mutate_json(r, lambda b: b["markets"][0].update(event_ticker="KXHIGHNY-25JUN11")), "kalshi_markets", "event_ticker"),
}
VC_CORRUPTIONS = {
    "vc_plain_text_error": ("timeline", lambda r: httpx.Response(400, text="Bad API Request:Invalid location parameter value."), "weather_obs", "Invalid location parameter"),
    "forecast_issued_after_the_day": ("byrun", lambda r: _mutate_json(r, lambda b: [d.update(rundatetime="2025-06-12T00:00:00Z") for d in b["days"]]), "weather_forecasts", "issued_at"),
}


class Tampered(MarketDataResource):
    """The simulated source with one named corruption applied to matching responses."""

    corruption: str = ""

    def _wrap(self, server, table):
        where, fn, _, _ = table[self.corruption] if self.corruption in table else (None, None, None, None)

        def handler(request: httpx.Request) -> httpx.Response:
            response = server.handle(request)
            if where and where in request.url.path and response.status_code == 200:
                return fn(response)
            return response

        return httpx.MockTransport(handler)

    def kalshi_client(self):
        return KalshiClient(transport=self._wrap(SimulatedExchange(now=self.settings().simulated_clock()), KALSHI_CORRUPTIONS),
                            requests_per_second=None, sleep=lambda s: None, retry=RetryPolicy(max_attempts=2))

    def weather_client(self):
        return VisualCrossingClient("k", transport=self._wrap(SimulatedWeatherFeed(now=self.settings().simulated_clock()), VC_CORRUPTIONS),
                                    requests_per_second=None, sleep=lambda s: None, retry=RetryPolicy(max_attempts=2))


@pytest.fixture(scope="module")
def clean_warehouse(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("clean") / "w.duckdb")
    with local_test_instance(tmp_path_factory.mktemp("clean_runs")) as instance:
        assert dg.materialize(raw_assets, partition_key=KEY, instance=instance, resources={
            "market_data": MarketDataResource(simulated_now=SIM_NOW), "warehouse": WarehouseResource(path=path)}).success
    return path


@pytest.mark.parametrize("corruption", sorted({**KALSHI_CORRUPTIONS, **VC_CORRUPTIONS}))
def test_bad_input_is_rejected_naming_partition_table_field_and_writes_nothing(corruption, clean_warehouse, tmp_path, instance):
    path = str(tmp_path / "w.duckdb")
    with open(clean_warehouse, "rb") as src, open(path, "wb") as dst:
        dst.write(src.read())
    before = snapshot(path)
    _, _, table, field = {**KALSHI_CORRUPTIONS, **VC_CORRUPTIONS}[corruption]
    res = {"market_data": Tampered(simulated_now=SIM_NOW, corruption=corruption), "warehouse": WarehouseResource(path=path)}
    result = dg.materialize(raw_assets, partition_key=KEY, resources=res, instance=instance, raise_on_error=False)
    assert not result.success
    failures = [str(e.event_specific_data.error) for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    message = next(m for m in failures if f"table {table}" in m or f"{table}:" in m)
    assert f"partition {KEY}" in message and field in message, message
    assert_same(before, snapshot(path))


# --- crash safety ---------------------------------------------------------------------------------------
CRASHING_RUN = textwrap.dedent("""
    import contextlib, os, signal, sys, warnings
    warnings.filterwarnings("ignore")
    import dagster as dg
    from kw_assets import warehouse as wmod
    from kw_assets.defs.raw import raw_assets
    from kw_assets.defs.resources import MarketDataResource, WarehouseResource
    path, now, seed, crash_table = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
    original = wmod.Warehouse.connect

    class Killer:
        def __init__(self, con): self.con, self.inserting = con, False
        def execute(self, sql, *args):
            if sql.startswith("INSERT INTO " + crash_table + " "):
                self.inserting = True
            if sql == "COMMIT" and self.inserting:
                os.kill(os.getpid(), signal.SIGKILL)  # die with the new rows inserted but not committed
            return self.con.execute(sql, *args)
        def __getattr__(self, name): return getattr(self.con, name)

    @contextlib.contextmanager
    def connect(self, read_only=False):
        with original(self, read_only) as con:
            yield con if read_only else Killer(con)

    if crash_table != "-":
        wmod.Warehouse.connect = connect
    res = {"market_data": MarketDataResource(simulated_now=now, seed=seed), "warehouse": WarehouseResource(path=path)}
    ok = dg.materialize(raw_assets, partition_key="ny|2025-06-10", resources=res).success
    sys.exit(0 if ok else 1)
""")


def _run(path, seed, crash_table):
    return subprocess.run([sys.executable, "-c", CRASHING_RUN, path, SIM_NOW, str(seed), crash_table],
                          capture_output=True, text=True, timeout=240)


@pytest.mark.slow
def test_a_kill_mid_write_leaves_old_or_new_never_a_mix_and_a_rerun_matches(tmp_path):
    path = str(tmp_path / "w.duckdb")
    assert _run(path, 7, "-").returncode == 0
    old = snapshot(path)
    killed = _run(path, 8, "kalshi_candles")  # another seed: every value differs
    assert killed.returncode == -signal.SIGKILL, killed.stdout[-2000:] + killed.stderr[-2000:]
    after = snapshot(path)
    pd.testing.assert_frame_equal(after["kalshi_candles"], old["kalshi_candles"])  # the uncommitted write vanished
    assert not after["kalshi_markets"].equals(old["kalshi_markets"])  # the table committed before the kill is new
    assert _run(path, 8, "-").returncode == 0
    fresh = str(tmp_path / "fresh.duckdb")
    assert _run(fresh, 8, "-").returncode == 0
    assert_same(snapshot(path), snapshot(fresh))


# --- secrets ------------------------------------------------------------------------------------------------
def test_no_secret_or_signature_reaches_logs_metadata_or_warehouse(tmp_path):
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()).decode()
    key_id, vc_key = "kid-SECRET-7f3a9c", "vc-SECRET-b81d44e0"
    seen_signatures: list[str] = []
    seen_vc_keys: list[str] = []

    class Recording(MarketDataResource):
        def kalshi_client(self):
            ex = SimulatedExchange(now=self.settings().simulated_clock())

            def handler(request):
                seen_signatures.append(request.headers["KALSHI-ACCESS-SIGNATURE"])
                return ex.handle(request)

            return KalshiClient(transport=httpx.MockTransport(handler), requests_per_second=None,
                                signer=KalshiSigner(self.kalshi_key_id, self.kalshi_private_key))

        def weather_client(self):
            feed = SimulatedWeatherFeed(now=self.settings().simulated_clock())

            def handler(request):
                seen_vc_keys.append(request.url.params["key"])
                return feed.handle(request)

            return VisualCrossingClient(self.visual_crossing_api_key, transport=httpx.MockTransport(handler),
                                        requests_per_second=None)

    path = str(tmp_path / "w.duckdb")
    res = {"market_data": Recording(simulated_now=SIM_NOW, kalshi_key_id=key_id, kalshi_private_key=pem,
                                    visual_crossing_api_key=vc_key),
           "warehouse": WarehouseResource(path=path)}
    with local_test_instance(tmp_path / "runs", **LOGS) as instance:
        result = dg.materialize(raw_assets, partition_key=KEY, resources=res, instance=instance)
        assert result.success
        records = instance.all_logs(result.run_id)
        text = "\n".join(repr(r) for r in records)
        text += json.dumps([str(r.dagster_event.event_specific_data) for r in records if r.dagster_event], default=str)
    for t in TABLES:
        text += Warehouse(path).read(t).to_csv()
    assert seen_signatures and seen_vc_keys == [vc_key] * len(seen_vc_keys)
    pem_body = "".join(pem.strip().splitlines()[1:-1])
    for secret in [vc_key, key_id, pem_body[:40], pem_body[-40:], *set(seen_signatures)]:
        assert secret not in text
