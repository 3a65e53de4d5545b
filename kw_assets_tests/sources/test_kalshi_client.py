import base64
import json

import httpx
import numpy as np
import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives import serialization

from kw_assets.errors import DataError
from kw_assets.sources.http import ApiError, RetriesExhausted, RetryPolicy
from kw_assets.sources.kalshi.client import KalshiClient
from kw_assets.sources.kalshi.parse import candles_frame, trades_frame
from kw_assets.sources.kalshi.signing import PSS, KalshiSigner, signed_message
from kw_assets_tests.payloads import HISTORICAL_CANDLE, LIVE_CANDLE, LIVE_QUOTE_ONLY, trade


def client_for(handler, **kw) -> KalshiClient:
    kw.setdefault("requests_per_second", None)
    kw.setdefault("sleep", lambda s: None)
    return KalshiClient("https://example.test/trade-api/v2", transport=httpx.MockTransport(handler), **kw)


def test_live_candles_parse_dollar_strings_and_fp_counts():
    f = candles_frame("M", [LIVE_CANDLE, LIVE_QUOTE_ONLY])
    row = f.iloc[0]
    assert row["yes_bid_close"] == 0.42 and row["yes_ask_high"] == 0.45
    assert row["price_mean"] == 0.4325 and row["price_previous"] == 0.41
    assert row["volume"] == 57.51 and row["open_interest"] == 1200.0
    assert str(row["end_period_ts"]) == "2025-06-15 15:07:00+00:00"
    quiet = f.iloc[1]  # OHLC keys absent: NaN, not zero, not carried over
    assert np.isnan(quiet["price_close"]) and np.isnan(quiet["price_open"])
    assert quiet["price_previous"] == 0.44 and quiet["volume"] == 0.0


def test_historical_candles_use_suffixless_names_and_nulls():
    f = candles_frame("HIGHNY-24JUN02-B79.5", [HISTORICAL_CANDLE], historical=True)
    row = f.iloc[0]
    assert row["yes_ask_close"] == 0.99 and row["yes_bid_close"] == 0.0
    assert np.isnan(row["price_close"]) and row["volume"] == 0.0


def test_unreadable_price_names_table_and_field():
    bad = json.loads(json.dumps(LIVE_CANDLE))
    bad["yes_bid"]["close_dollars"] = "abc"
    with pytest.raises(DataError, match=r"kalshi_candles, field yes_bid.close_dollars: row 0: not a number: 'abc'"):
        candles_frame("M", [bad])


def test_missing_required_field_is_named():
    bad = dict(LIVE_CANDLE)
    del bad["volume_fp"]
    with pytest.raises(DataError, match="field volume_fp"):
        candles_frame("M", [bad])


def test_trades_cursor_loop_survives_an_empty_page_with_a_cursor():
    pages = {None: ([trade(1), trade(2)], "c1"), "c1": ([], "c2"), "c2": ([trade(3)], "")}
    seen = []

    def handler(request: httpx.Request) -> httpx.Response:
        assert request.url.path == "/trade-api/v2/markets/trades"
        assert request.url.params["limit"] == "1000"
        cursor = request.url.params.get("cursor")
        seen.append(cursor)
        items, nxt = pages[cursor]
        return httpx.Response(200, json={"trades": items, "cursor": nxt})

    trades = client_for(handler).get_trades("KXHIGHNY-25JUN10-B87.5", 1, 2)
    assert [t["trade_id"] for t in trades] == ["t1", "t2", "t3"]
    assert seen == [None, "c1", "c2"]
    f = trades_frame(trades)
    assert f["count"].tolist() == [1.67] * 3 and f["yes_price"].iloc[0] == 0.37


def test_repeated_cursor_is_an_error_not_an_infinite_loop():
    handler = lambda r: httpx.Response(200, json={"trades": [], "cursor": "same"})  # noqa: E731
    with pytest.raises(ApiError, match="repeated"):
        client_for(handler).get_trades("T", 1, 2)


def test_batch_candles_respect_100_tickers_and_10000_candles_a_request():
    calls = []

    def handler(request: httpx.Request) -> httpx.Response:
        assert request.url.path.endswith("/markets/candlesticks")
        p = request.url.params
        s, e, tickers = int(p["start_ts"]), int(p["end_ts"]), p["market_tickers"].split(",")
        assert len(tickers) <= 100 and ((e - s) // 60 + 1) * len(tickers) <= 10_000, (len(tickers), s, e)
        calls.append((len(tickers), s, e))
        return httpx.Response(200, json={"markets": [{"market_ticker": t, "candlesticks": [
            {**LIVE_CANDLE, "end_period_ts": s + 60}]} for t in tickers]})

    start = 1_750_000_000
    end = start + 2340 * 60  # a whole trading window, ~39 hours
    event = [f"KXHIGHNY-25JUN10-B{80 + 2 * i}.5" for i in range(6)]
    out = client_for(handler).get_batch_candles(event, start, end, 1)
    assert calls == [(6, start, start + 1665 * 60), (6, start + 1665 * 60 + 1, end)]  # 1,666 minutes x 6 = 9,996
    assert sorted(out) == sorted(event) and all(len(c) == 2 for c in out.values())
    calls.clear()
    many = [f"KXHIGHCHI-25JUN{d:02d}-B{80 + 2 * i}.5" for d in range(1, 26) for i in range(6)]  # 150 markets
    out = client_for(handler).get_batch_candles(many, start, start + 99 * 60, 1)
    assert [c[0] for c in calls] == [100, 50] and sorted(out) == sorted(many)  # 100 minutes x 100 = 10,000


def test_429_then_5xx_then_success_is_retried():
    responses = iter([httpx.Response(429, json={"error": "too many requests"}),
                      httpx.Response(503, text="unavailable"),
                      httpx.Response(200, json={"series": {"ticker": "KXHIGHNY", "fee_type": "quadratic",
                                                           "fee_multiplier": 1}})])
    sleeps = []
    c = client_for(lambda r: next(responses), sleep=sleeps.append)
    assert c.get_series("KXHIGHNY")["fee_type"] == "quadratic"
    assert len(sleeps) == 2 and sleeps[1] > sleeps[0] * 0.5  # backoff grows (with jitter)
    assert c.http.stats == {"requests": 3, "retries": 2, "http_429": 1}


def test_timeouts_and_dropped_connections_are_retried():
    state = {"n": 0}

    def handler(request):
        state["n"] += 1
        if state["n"] == 1:
            raise httpx.ReadTimeout("slow", request=request)
        if state["n"] == 2:
            raise httpx.RemoteProtocolError("dropped", request=request)
        return httpx.Response(200, json={"market_settled_ts": "2026-07-25T00:00:00Z",
                                         "trades_created_ts": "2026-07-25T00:00:00Z",
                                         "orders_updated_ts": "2026-07-25T00:00:00Z"})

    cutoff = client_for(handler).get_historical_cutoff()
    assert cutoff["market_settled_ts"].isoformat() == "2026-07-25T00:00:00+00:00"


def test_give_up_after_the_bound_with_a_clear_error():
    c = client_for(lambda r: httpx.Response(429, json={"error": {"code": "too_many_requests", "message": "too many requests"}}),
                   retry=RetryPolicy(max_attempts=3))
    with pytest.raises(RetriesExhausted) as err:
        c.get_series("KXHIGHNY")
    msg = str(err.value)
    assert "GET /series/KXHIGHNY" in msg and "gave up after 3 attempts" in msg and "too many requests" in msg
    assert c.http.stats["requests"] == 3


def test_other_4xx_raise_at_once_naming_endpoint_params_and_server_message():
    calls = []

    def handler(r):
        calls.append(r)
        return httpx.Response(400, json={"error": {"code": "bad_request",
                                                   "message": "requested time range with candlesticks: 6000, max candlesticks: 5000"}})

    with pytest.raises(ApiError) as err:
        client_for(handler).get_market_candles("KXHIGHNY", "KXHIGHNY-25JUN10-B87.5", 0, 60, 1)
    assert len(calls) == 1
    assert "HTTP 400" in str(err.value) and "max candlesticks: 5000" in str(err.value) and "start_ts=0" in str(err.value)


def test_html_error_page_with_status_200_is_an_api_error():
    c = client_for(lambda r: httpx.Response(200, text="<html><body>Gateway</body></html>"))
    with pytest.raises(ApiError, match="not JSON"):
        c.get_series("KXHIGHNY")


def test_token_bucket_paces_requests():
    from kw_assets.sources.http import TokenBucket
    now = {"t": 0.0}
    slept = []

    def sleep(s):
        slept.append(s)
        now["t"] += s

    b = TokenBucket(20, clock=lambda: now["t"], sleep=sleep)
    for _ in range(60):
        b.acquire()
    # 20 in the initial burst, then 40 more at 20/s
    assert abs(now["t"] - 2.0) < 1e-6


def test_signing_headers_verify_with_the_public_key():
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption()).decode()
    seen = {}

    def handler(request):
        seen.update(request.headers)
        seen["path"] = request.url.path
        return httpx.Response(200, json={"series": {"ticker": "KXHIGHNY"}})

    signer = KalshiSigner("key-123", pem, clock=lambda: 1_750_000_000.123)
    client_for(handler, signer=signer).get_series("KXHIGHNY")
    assert seen["kalshi-access-key"] == "key-123"
    assert seen["kalshi-access-timestamp"] == "1750000000123"
    message = signed_message("1750000000123", "GET", "/trade-api/v2/series/KXHIGHNY")
    assert message == b"1750000000123GET/trade-api/v2/series/KXHIGHNY"
    key.public_key().verify(base64.b64decode(seen["kalshi-access-signature"]), message, PSS, hashes.SHA256())
    assert "key-123" not in repr(signer) and "PRIVATE" not in repr(signer)


def test_query_string_is_not_signed():
    assert signed_message("1", "get", "/trade-api/v2/markets/trades?ticker=X") == b"1GET/trade-api/v2/markets/trades"


def test_trades_come_in_time_then_id_order_as_pandas_would_sort_them():
    """``in_time_order`` is ``sort_values(["created_time", "trade_id"], kind="stable")``: prints sharing a microsecond
    by id, equal ids (a feed's duplicates) in the order received, and pandas' own order where a time or an id is missing."""
    import pandas as pd
    from kw_assets.sources.kalshi.fetch import in_time_order
    rng = np.random.default_rng(3)
    for trial in range(200):
        n = int(rng.integers(0, 40))
        t = pd.to_datetime(1_700_000_000_000_000 + 1000 * rng.integers(0, 6, n), unit="us", utc=True)
        frame = pd.DataFrame({"created_time": t, "trade_id": rng.choice(list("abcdef"), n).astype(object),
                              "received": np.arange(n)}, index=rng.permutation(n) + 7)
        if trial % 10 == 9 and n:
            frame.loc[frame.index[0], "created_time"] = pd.NaT
        if trial % 10 == 8 and n:
            frame.loc[frame.index[-1], "trade_id"] = None
        want = frame.sort_values(["created_time", "trade_id"], kind="stable")
        got = in_time_order(frame)
        assert got.equals(want) and got.index.equals(want.index), trial
    tied = pd.DataFrame({"created_time": pd.to_datetime([5, 5, 3, 5], unit="us", utc=True), "trade_id": ["b", "a", "z", "a"],
                         "received": [0, 1, 2, 3]})
    assert in_time_order(tied)["received"].tolist() == [2, 1, 3, 0]
