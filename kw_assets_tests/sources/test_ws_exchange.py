"""The simulated exchange's WebSocket, spoken to as a client would (the AsyncAPI spec's commands, replies,
errors and sequence numbers), its REST API over the same loopback port, and its book agreeing with the
candles."""

import datetime as dt
import json
import time

import numpy as np
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from kw_assets.sources.clock import Clock
from kw_assets.sources.kalshi.client import KalshiClient
from kw_assets.sources.kalshi.signing import KalshiSigner
from kw_assets.sources.simulator.exchange import SimulatedExchange
from kw_assets.sources.simulator.order_book import SimulatedBook
from kw_assets.sources.simulator.world import SUBSTEP_S, build_world
from kw_assets.cities import get_city
from kw_assets.sources.simulator.ws_exchange import WS_PATH, ExchangeServer, SimulatedMarketServer

START = dt.datetime(2025, 7, 1, 15, tzinfo=dt.timezone.utc)
EVENT = "KXHIGHNY-25JUL01"


@pytest.fixture(scope="module")
def key():
    k = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = k.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()).decode()
    return k, KalshiSigner("test-key", pem)


@pytest.fixture
def server(key):
    clock = Clock.simulated(START, speed=60)
    srv = SimulatedMarketServer(SimulatedExchange(seed=7, now=clock.now), clock, verify_key=key[0].public_key())
    with ExchangeServer(srv) as running:
        yield running


def _ws(server, signer):
    return connect(server.ws_url, additional_headers=signer.headers("GET", WS_PATH), open_timeout=20)


def _until(ws, kind, limit=500):
    for _ in range(limit):
        msg = json.loads(ws.recv(timeout=20))
        if msg["type"] == kind:
            return msg
    raise AssertionError(f"no {kind} in {limit} messages")


def test_the_handshake_needs_the_signed_headers(server, key):
    with pytest.raises(InvalidStatus) as no_headers:
        connect(server.ws_url, open_timeout=20)
    assert no_headers.value.response.status_code == 401
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    forged = KalshiSigner("test-key", other.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                         serialization.NoEncryption()).decode())
    with pytest.raises(InvalidStatus) as bad_signature:
        connect(server.ws_url, additional_headers=forged.headers("GET", WS_PATH), open_timeout=20)
    assert bad_signature.value.response.status_code == 401


def test_rest_is_served_beside_the_websocket_through_the_real_client(server):
    with KalshiClient(server.rest_url, requests_per_second=None) as client:
        events = [e["event_ticker"] for e in client.iter_events("KXHIGHNY", min_close_ts=int(START.timestamp()))]
        markets = client.get_markets(EVENT)
    assert EVENT in events and len(markets) == 6 and all(m["status"] == "active" for m in markets)


def test_subscribe_snapshots_first_then_deltas_with_one_seq_per_sid(server, key):
    tickers = [f"{EVENT}-B83.5", f"{EVENT}-B85.5"]
    with _ws(server, key[1]) as ws:
        ws.send(json.dumps({"id": 1, "cmd": "subscribe", "params": {"channels": ["orderbook_delta", "trade"], "market_tickers": tickers}}))
        got = [json.loads(ws.recv(timeout=20)) for _ in range(60)]
    acks = [m for m in got if m["type"] == "subscribed"]
    assert [(a["id"], a["msg"]["channel"]) for a in acks] == [(1, "orderbook_delta"), (1, "trade")]
    book_sid = acks[0]["msg"]["sid"]
    book = [m for m in got if m.get("sid") == book_sid and m["type"] != "subscribed"]
    assert [m["type"] for m in book[:2]] == ["orderbook_snapshot"] * 2
    assert {m["msg"]["market_ticker"] for m in book[:2]} == set(tickers)
    assert [m["seq"] for m in book] == list(range(1, len(book) + 1))
    d = next(m["msg"] for m in book if m["type"] == "orderbook_delta")
    assert set(d) >= {"market_ticker", "market_id", "price_dollars", "delta_fp", "side", "ts_ms"} and d["side"] in ("yes", "no")


@pytest.mark.parametrize("command, code", [
    ({"id": 5, "cmd": "subscrib", "params": {}}, 5),
    ({"id": 6, "cmd": "subscribe"}, 2),
    ({"id": 7, "cmd": "subscribe", "params": {"market_tickers": ["X"]}}, 3),
    ({"id": 8, "cmd": "subscribe", "params": {"channels": ["orderbook"], "market_ticker": f"{EVENT}-B83.5"}}, 8),
    ({"id": 9, "cmd": "subscribe", "params": {"channels": ["orderbook_delta"]}}, 14),
    ({"id": 10, "cmd": "subscribe", "params": {"channels": ["trade"], "market_ticker": "KXHIGHNY-25JUL01-B99.5"}}, 11),
    ({"id": 11, "cmd": "unsubscribe", "params": {}}, 4),
    ({"id": 12, "cmd": "unsubscribe", "params": {"sids": [404]}}, 7),
    ({"id": 13, "cmd": "update_subscription", "params": {"sids": [1]}}, 15),
    ({"id": 14, "cmd": "update_subscription", "params": {"sids": [1, 2], "action": "add_markets"}}, 12),
])
def test_a_bad_command_gets_the_specs_error_reply(server, key, command, code):
    with _ws(server, key[1]) as ws:
        ws.send(json.dumps(command))
        err = _until(ws, "error")
    assert err["id"] == command["id"] and err["msg"]["code"] == code and err["msg"]["msg"]


def test_update_subscription_adds_markets_with_their_snapshots_and_unsubscribe_replies(server, key):
    with _ws(server, key[1]) as ws:
        ws.send(json.dumps({"id": 1, "cmd": "subscribe", "params": {"channels": ["orderbook_delta"], "market_ticker": f"{EVENT}-B83.5"}}))
        sid = _until(ws, "subscribed")["msg"]["sid"]
        ws.send(json.dumps({"id": 2, "cmd": "update_subscription",
                            "params": {"sids": [sid], "market_tickers": [f"{EVENT}-T79"], "action": "add_markets"}}))
        ok = _until(ws, "ok")
        assert ok["id"] == 2 and ok["msg"]["market_tickers"] == [f"{EVENT}-B83.5", f"{EVENT}-T79"]
        snap = _until(ws, "orderbook_snapshot")
        while snap["msg"]["market_ticker"] != f"{EVENT}-T79":
            snap = _until(ws, "orderbook_snapshot")
        ws.send(json.dumps({"id": 3, "cmd": "unsubscribe", "params": {"sids": [sid]}}))
        gone = _until(ws, "unsubscribed")
    assert gone["id"] == 3 and gone["sid"] == sid and gone["seq"] >= snap["seq"]


def test_the_book_agrees_with_the_quotes_behind_the_candles_and_never_crosses():
    w = build_world(get_city("ny"), dt.date(2025, 7, 1))
    book = SimulatedBook(w, seed=7)
    sizes = book.sizes(0, book.n_substeps)
    has = sizes > 0
    best = np.where(has.any(-1), 99 - np.argmax(has[..., ::-1], axis=-1), 0)
    yes_bid = np.rint(w.bid * 100)
    ask = np.rint(w.ask * 100)
    assert np.array_equal(best[..., 0], np.where(yes_bid > 0, yes_bid, 0))
    assert np.array_equal(np.where(best[..., 1] > 0, 100 - best[..., 1], 100), ask)
    assert ((best[..., 0] == 0) | (best[..., 1] == 0) | (best[..., 0] + best[..., 1] < 100)).all()
    # replaying the published deltas from an empty book gives the book at every substep
    d = book.deltas(w.open_time - 1, w.open_time + 3600)
    replay = np.zeros_like(sizes[0])
    np.add.at(replay, (d["bracket"], d["side"], d["price"]), d["delta"])
    assert np.array_equal(replay, book.at(w.open_time + 3600))
    assert (np.diff(d["ts_ms"]) > 0).all() and d["ts_ms"][0] == w.open_time * 1000
    assert d["ts_ms"][-1] < (w.open_time + 3600 + SUBSTEP_S) * 1000


def test_the_rest_order_books_are_the_same_book_one_or_many_markets_a_call():
    from kw_assets.sources.kalshi.parse import orderbook_samples_frame
    from kw_assets.sources.http import ApiError
    now = START.timestamp()
    exchange = SimulatedExchange(seed=7, now=lambda: START)
    with KalshiClient(transport=exchange.transport(), requests_per_second=None) as client:
        tickers = [m["ticker"] for m in client.get_markets(EVENT)]
        books = client.get_orderbooks(tickers)
        one = client.get_orderbook(tickers[3], depth=2)
        with pytest.raises(ApiError, match="between 1 and 100"):
            client.http.get("/markets/orderbooks", {"tickers": [f"{EVENT}-B83.5"] * 101})
    truth = SimulatedBook(build_world(get_city("ny"), dt.date(2025, 7, 1)), seed=7).at(now)
    for i, t in enumerate(tickers):
        for k, side in enumerate(("yes_dollars", "no_dollars")):
            got = {round(float(p) * 100): float(c) for p, c in books[t][side]}
            assert got == {int(p): float(truth[i, k, p]) for p in np.nonzero(truth[i, k])[0]}
    assert len(one["yes_dollars"]) <= 2 and one["yes_dollars"] == books[tickers[3]]["yes_dollars"][:2]
    sample = orderbook_samples_frame(books, START).set_index("market_ticker")
    best_yes = 99 - np.argmax(truth[3, 0, ::-1] > 0)
    assert sample.loc[tickers[3], "yes_bid"] == best_yes / 100
    assert sample.loc[tickers[3], "yes_bid_size"] == truth[3, 0, best_yes]


@pytest.mark.parametrize("book, field", [({"yes_dollars": [["0.4000"]], "no_dollars": []}, "yes_dollars"),
                                         ({"yes_dollars": [["abc", "10.00"]], "no_dollars": []}, "yes_dollars.price"),
                                         ({"yes_dollars": [], "no_dollars": [["0.5000", "ten"]]}, "no_dollars.count")])
def test_a_malformed_order_book_is_refused_naming_the_field(book, field):
    from kw_assets.errors import DataError
    from kw_assets.sources.kalshi.parse import orderbook_samples_frame
    with pytest.raises(DataError, match=rf"table orderbook_samples, field .*{field}"):
        orderbook_samples_frame({"KXHIGHNY-25JUL01-B83.5": book}, START)


def _raw_client(port: int, headers: dict):
    """A WebSocket client by hand that will stop reading: a small receive buffer, the handshake, nothing more."""
    import base64 as b64
    import os
    import socket
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", port))
    lines = [f"GET {WS_PATH} HTTP/1.1", f"Host: 127.0.0.1:{port}", "Upgrade: websocket", "Connection: Upgrade",
             f"Sec-WebSocket-Key: {b64.b64encode(os.urandom(16)).decode()}", "Sec-WebSocket-Version: 13",
             *(f"{k}: {v}" for k, v in headers.items())]
    sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
    reply = b""
    while b"\r\n\r\n" not in reply:
        reply += sock.recv(1)
    assert reply.startswith(b"HTTP/1.1 101"), reply
    return sock


def _send_text(sock, text: str) -> None:
    import os
    payload, mask = text.encode(), os.urandom(4)
    assert len(payload) < 65536
    head = bytes([0x81, 0x80 | 126]) + len(payload).to_bytes(2, "big") if len(payload) >= 126 else bytes([0x81, 0x80 | len(payload)])
    sock.sendall(head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload)))


def test_a_consumer_that_stops_reading_is_cut_off_with_a_buffer_overflow(key):
    clock = Clock.simulated(START, speed=3000)
    srv = SimulatedMarketServer(SimulatedExchange(seed=7, now=clock.now), clock, verify_key=key[0].public_key(),
                                buffer_limit=64 << 10)
    with ExchangeServer(srv) as running:
        sock = _raw_client(running.port, key[1].headers("GET", WS_PATH))
        tickers = [f"{EVENT}-{s}" for s in ("T79", "B79.5", "B81.5", "B83.5", "B85.5", "T86")]
        _send_text(sock, json.dumps({"id": 1, "cmd": "subscribe", "params": {
            "channels": ["orderbook_delta", "trade", "ticker"], "market_tickers": tickers}}))
        deadline = time.monotonic() + 60
        while srv.overflows == 0 and time.monotonic() < deadline:
            time.sleep(0.2)  # not reading
        assert srv.overflows == 1
        sock.settimeout(10)
        received = b""
        while chunk := sock.recv(1 << 20):  # what was buffered, then the server's close
            received += chunk
        sock.close()
    assert b'"code": 25' in received[-400:] or b'"code":25' in received[-400:]
