"""The L2 recorder against the simulated exchange on loopback: a simulated hour at speed with every fault
the exchange can inject, rebuilt and compared with the exchange's own book at every minute; a SIGKILL
mid-segment; a SIGTERM."""

import asyncio
import datetime as dt
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from kw_assets.cities import get_city
from kw_assets.model.order_book import book_at_minute_ends, rebuild_minutes
from kw_assets.recorder.segments import SEGMENT_SCHEMA, SegmentWriter, read_segments, segment_paths
from kw_assets.recorder.session import Recorder, RecorderConfig
from kw_assets.sources.clock import Clock
from kw_assets.sources.kalshi.client import KalshiClient
from kw_assets.sources.kalshi.signing import KalshiSigner
from kw_assets.sources.simulator.exchange import SimulatedExchange
from kw_assets.sources.simulator.world import Agents
from kw_assets.sources.simulator.world_store import WorldStore
from kw_assets.sources.simulator.ws_exchange import ExchangeServer, SimulatedMarketServer, WsFaults

START = dt.datetime(2025, 7, 1, 15, tzinfo=dt.timezone.utc)
DAYS = (dt.date(2025, 7, 1), dt.date(2025, 7, 2))  # the current and the next event at 15:00 UTC
SPEED = 480.0
FAULT_SPEED = 240.0
ROOT = Path(__file__).resolve().parents[2]


def at(minutes: float) -> float:
    return START.timestamp() + 60 * minutes


@pytest.fixture(scope="module")
def key():
    k = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = k.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()).decode()
    return k, pem


def exchange(key, faults=None, speed=SPEED):
    clock = Clock.simulated(START, speed=speed)
    return SimulatedMarketServer(SimulatedExchange(seed=7, now=clock.now), clock, faults=faults, verify_key=key[0].public_key())


def compare(server: SimulatedMarketServer, root: Path, ends: pd.DatetimeIndex) -> tuple[int, int, int]:
    """(market-minutes known, of them different from the exchange's own book, market-minutes in all)."""
    known = wrong = total = 0
    for day in DAYS:
        records = read_segments(root, "ny", day)
        event = get_city("ny").event_ticker(day)
        truth = {T: server.book_at(event, T.timestamp() - 1e-3) for T in ends}
        for ticker in server.event(event).bracket:
            books, ok = book_at_minute_ends(records, ticker, ends)
            total += len(ends)
            known += int(ok.sum())
            wrong += sum(not np.array_equal(books[j], truth[T][ticker]) for j, T in enumerate(ends) if ok[j])
    return known, wrong, total


def test_a_simulated_hour_with_faults_rebuilds_the_exchanges_book_at_every_minute_outside_gaps(tmp_path, key):
    faults = WsFaults(drop_at=(at(12),), skip_seq_at=(at(24),), duplicate_at=(at(36),), overflow_at=(at(48),))
    server = exchange(key, faults, FAULT_SPEED)
    writer = SegmentWriter(tmp_path, max_minutes=5)
    with ExchangeServer(server) as running, KalshiClient(running.rest_url, requests_per_second=None) as rest:
        recorder = Recorder([get_city("ny")], rest, writer, RecorderConfig(ws_url=running.ws_url, backoff_s=0.02, backoff_max_s=0.1),
                            signer=KalshiSigner("test-key", key[1]), clock=server.clock)

        async def one_hour():
            stop = asyncio.Event()
            asyncio.get_running_loop().call_later(3600 / FAULT_SPEED, stop.set)
            await recorder.run(stop)

        asyncio.run(one_hour())

    assert sorted(f[0] for f in faults.fired) == ["drop", "duplicate", "overflow", "skip_seq"]
    ends = pd.date_range(START + dt.timedelta(minutes=1), periods=59, freq="min")
    known, wrong, total = compare(server, tmp_path, ends)
    assert wrong == 0
    assert known >= 0.85 * total, (known, total)
    assert server.connections == 4 and recorder.stats.reconnects == 3 and recorder.stats.duplicates == 1


    for day in DAYS:
        rows = read_segments(tmp_path, "ny", day)
        gaps = rows[rows["kind"] == "gap"]
        # every fault that breaks the stream is marked within a few seconds of the exchange's clock
        for kind, scheduled, _ in faults.fired:
            if kind != "duplicate":
                assert ((gaps["clock_ms"] >= scheduled * 1000) & (gaps["clock_ms"] <= scheduled * 1000 + 30_000)).any(), kind
        # and after each gap a market's book is not known again until its own snapshot
        for gap_ms in gaps["clock_ms"].iloc[:-1]:
            end = pd.Timestamp(int(np.ceil(gap_ms / 60_000)) * 60_000, unit="ms", tz="UTC")
            for ticker in rows["market_ticker"].dropna().unique():
                snaps = rows[(rows["kind"] == "orderbook_snapshot") & (rows["market_ticker"] == ticker)]
                next_snap = snaps.loc[snaps["clock_ms"] >= gap_ms, "clock_ms"].min()
                if next_snap >= end.value // 1_000_000:
                    assert not book_at_minute_ends(rows, ticker, pd.DatetimeIndex([end]))[1][0]
        # no seq is written twice on a connection's subscription
        seqd = rows[(rows["seq"] >= 0)]
        assert not seqd.duplicated(["connection", "sid", "seq"]).any()
        assert rows["kind"].iloc[-1] == "gap" and rows["raw"].iloc[-1] == "recorder stop"
        # the table the asset writes from it: bid below ask, sizes non-negative
        table = rebuild_minutes(rows, list(rows["market_ticker"].dropna().unique()), ends)
        both = table["yes_bid"].notna() & table["yes_ask"].notna()
        assert (table.loc[both, "yes_bid"] < table.loc[both, "yes_ask"]).all()
        assert (table[["yes_bid_size", "yes_ask_size", "bid_depth3", "ask_depth3"]] >= 0).all().all()
    assert not list(tmp_path.rglob("*.tmp"))


def _record(root: Path, running: ExchangeServer, server: SimulatedMarketServer, key, *extra: str) -> subprocess.Popen:
    env = {**os.environ, "KALSHI_KEY_ID": "test-key", "KALSHI_PRIVATE_KEY": key[1], "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, "-m", "kw_assets", "record", "--city", "new york", "--root", str(root),
                             "--ws-url", running.ws_url, "--rest-url", running.rest_url, "--clock", server.clock.spec,
                             "--status-every-s", "1", *extra],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _wait_for_segments(root: Path, n: int, proc: subprocess.Popen, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if len(list(root.rglob("*.parquet"))) >= n:
            return
        if proc.poll() is not None:
            raise AssertionError(proc.stdout.read())
        time.sleep(0.05)
    raise AssertionError(f"fewer than {n} segments after {timeout_s} s")


def test_sigkill_mid_segment_loses_only_the_open_segments_and_every_closed_one_reads_back_whole(tmp_path, key):
    server = exchange(key)
    with ExchangeServer(server) as running:
        proc = _record(tmp_path, running, server, key, "--segment-messages", "250")
        _wait_for_segments(tmp_path, 6, proc)
        time.sleep(0.3)  # into the next segments
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        killed_at = server.clock.now_ts()
    closed = [p for day in DAYS for p in segment_paths(tmp_path, "ny", day)]
    assert len(closed) >= 6
    for path in closed:
        table = pq.read_table(path)
        assert table.schema.equals(SEGMENT_SCHEMA) and 0 < table.num_rows <= 250
        assert pq.ParquetFile(path).metadata.num_rows == table.num_rows
    # what was lost is never taken for a known book: the rebuild from the closed segments is exact wherever known
    first_row = min(read_segments(tmp_path, "ny", d)["clock_ms"].min() for d in DAYS)
    ends = pd.date_range(pd.Timestamp(first_row, unit="ms", tz="UTC").ceil("min"),
                         pd.Timestamp(killed_at, unit="s", tz="UTC").ceil("min") + pd.Timedelta(minutes=2), freq="min")
    known, wrong, _ = compare(server, tmp_path, ends)
    assert known > 0 and wrong == 0


def test_sigterm_closes_the_open_segments_cleanly(tmp_path, key):
    server = exchange(key)
    with ExchangeServer(server) as running:
        proc = _record(tmp_path, running, server, key)
        _wait_for_segments(tmp_path, 0, proc)
        deadline = time.monotonic() + 60
        while "recorder:" not in proc.stdout.readline() and time.monotonic() < deadline:
            pass  # the first status line: subscribed and recording
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
    assert not list(tmp_path.rglob("*.tmp"))
    for day in DAYS:
        rows = read_segments(tmp_path, "ny", day)
        assert (rows["kind"] == "orderbook_snapshot").sum() == 6
        assert rows["raw"].iloc[-1] == "recorder stop"


@pytest.mark.parametrize("text", ['{"type": "orderbook_delta", "sid": 1, "seq": 2, "msg": {"market_ticker": "KXHIGHNY-25JUL01-B83.5"}}',
                                  '{"type": "orderbook_delta", "sid": 1, "seq": 2, "msg": {"market_ticker": "KXHIGHNY-25JUL01-B83.5", '
                                  '"price_dollars": "abc", "delta_fp": "5.00", "side": "yes"}}',
                                  'not json', '[1, 2]'])
def test_a_message_it_cannot_parse_is_a_gap_and_a_fresh_subscription_not_a_crash(tmp_path, text):
    from kw_assets.recorder.session import Resubscribe
    recorder = Recorder([get_city("ny")], rest=None, writer=SegmentWriter(tmp_path), clock=Clock())
    recorder.tickers = {"KXHIGHNY-25JUL01-B83.5": ("ny", DAYS[0])}
    recorder.record('{"type": "orderbook_snapshot", "sid": 1, "seq": 1, "msg": {"market_ticker": "KXHIGHNY-25JUL01-B83.5"}}')
    with pytest.raises(Resubscribe) as e:
        recorder.record(text)
    assert e.value.marked and recorder.stats.gaps == 1
    recorder.writer.close_all()
    rows = read_segments(tmp_path, "ny", DAYS[0])
    assert rows["kind"].tolist() == ["orderbook_snapshot", "gap"] and rows["raw"].iloc[-1].startswith("unparseable message")


def test_a_message_in_flight_for_a_dropped_market_does_not_reopen_its_finished_day(tmp_path):
    class Sent:
        def __init__(self):
            self.commands = []

        async def send(self, text):
            self.commands.append(text)

    old, new = "KXHIGHNY-25JUL01-B83.5", "KXHIGHNY-25JUL02-B85.5"
    recorder = Recorder([get_city("ny")], rest=None, writer=SegmentWriter(tmp_path), clock=Clock())
    recorder.tickers = {old: ("ny", DAYS[0]), new: ("ny", DAYS[1])}
    recorder._sids = {"orderbook_delta": 1, "trade": 2, "ticker": 3}
    recorder.record(f'{{"type": "orderbook_snapshot", "sid": 1, "seq": 1, "msg": {{"market_ticker": "{old}"}}}}')
    ws = Sent()
    asyncio.run(recorder._refresh(ws, {new: ("ny", DAYS[1])}))  # a listing sees the 1 July event closed
    assert sum('"delete_markets"' in c and old in c for c in ws.commands) == 3  # one per channel
    assert ("ny", DAYS[0]) not in recorder.writer.open_keys
    # the exchange sent these before it took the unsubscription
    recorder.record(f'{{"type": "orderbook_delta", "sid": 1, "seq": 2, "msg": {{"market_ticker": "{old}", '
                    '"price_dollars": "0.41", "delta_fp": "5.00", "side": "yes", "ts_ms": 1}}')
    recorder.record(f'{{"type": "ticker", "sid": 3, "msg": {{"market_ticker": "{old}", "ts_ms": 2}}}}')
    recorder.mark("heartbeat", "pong")
    assert recorder.writer.open_keys == [("ny", DAYS[1])] and recorder.stats.after_drop == 2
    # the sequence still counts the dropped market's message: the next one on the sid is no gap
    recorder.record(f'{{"type": "orderbook_delta", "sid": 1, "seq": 3, "msg": {{"market_ticker": "{new}", '
                    '"price_dollars": "0.52", "delta_fp": "1.00", "side": "no", "ts_ms": 3}}')
    assert recorder.stats.gaps == 0
    recorder.writer.close_all()
    assert read_segments(tmp_path, "ny", DAYS[0])["kind"].tolist() == ["orderbook_snapshot"]
    assert read_segments(tmp_path, "ny", DAYS[1])["kind"].tolist() == ["heartbeat", "orderbook_delta"]


def test_a_newly_listed_event_is_added_and_a_closed_one_dropped_without_reconnecting(tmp_path, key):
    start = dt.datetime(2025, 7, 2, 4, 50, tzinfo=dt.timezone.utc)  # the 1 July event closes at 04:59
    # the listed days' worlds, built before the clock runs: a listing then loads them (~1 ms each) instead of
    # building 2-3 (~0.1 s each, more on a busy machine, minutes of this clock) while the bound below counts
    store = WorldStore(tmp_path / "worlds")
    for day in (dt.date(2025, 7, 1), dt.date(2025, 7, 2), dt.date(2025, 7, 3)):
        store.world(get_city("ny"), day, 7, Agents())
    clock = Clock.simulated(start, speed=SPEED)
    server = SimulatedMarketServer(SimulatedExchange(seed=7, now=clock.now, store=store), clock,
                                   verify_key=key[0].public_key())
    with ExchangeServer(server) as running, KalshiClient(running.rest_url, requests_per_second=None) as rest:
        recorder = Recorder([get_city("ny")], rest, SegmentWriter(tmp_path), RecorderConfig(ws_url=running.ws_url, refresh_s=120),
                            signer=KalshiSigner("test-key", key[1]), clock=clock)

        async def twenty_minutes():
            stop = asyncio.Event()
            asyncio.get_running_loop().call_later(1200 / SPEED, stop.set)
            await recorder.run(stop)

        asyncio.run(twenty_minutes())
    assert server.connections == 1 and recorder.stats.reconnects == 0
    assert sorted({d for _, d in recorder.tickers.values()}) == [dt.date(2025, 7, 2), dt.date(2025, 7, 3)]
    new = read_segments(tmp_path, "ny", dt.date(2025, 7, 3))
    assert (new["kind"] == "orderbook_snapshot").sum() == 6  # add_markets sends the new markets' snapshots
    assert set(new.loc[new["kind"] == "orderbook_snapshot", "market_ticker"]) == {t for t, (_, d) in recorder.tickers.items()
                                                                                 if d == dt.date(2025, 7, 3)}
    old = read_segments(tmp_path, "ny", dt.date(2025, 7, 1))
    # nothing recorded for it once a listing saw it closed: within four listings of its close (a listing every
    # 120 s of this clock, 0.25 s of real time, which a loaded machine can delay by two), long before the run's
    # end at 05:10, which a recorder that never dropped it would reach
    closed_ms = (dt.datetime(2025, 7, 2, 4, 59, tzinfo=dt.timezone.utc).timestamp() + 4 * 120 + 30) * 1000
    assert old["clock_ms"].max() < closed_ms
