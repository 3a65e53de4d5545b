"""The live tail and the paper book on it, replayed through a simulated day on a moving clock.

The decisive property (issue: parity): a simulated day fed minute by minute through the live tail, with the
paper loop trading on what the tail has stored, gives exactly the orders and fills the backtest gives for
that day, and the tail's rows at every tick are the batch's rows up to that minute. Any difference is a
lookahead in one of the paths or a divergence of their code.
"""

import datetime as dt
import logging

import dagster as dg
import pandas as pd
import pytest

from kw_assets.cities import get_city
from kw_assets.definitions import defs
from kw_assets.defs.resources import MarketDataResource, WarehouseResource
from kw_assets.live_tail import TailDay, TickFailed
from kw_assets.model.backtest import ExecutionConfig
from kw_assets.model.strategy import StrategyConfig
from kw_assets.paper_loop import PaperDay
from kw_assets.partitions import partition_key
from kw_assets.sources.clients import SourceSettings, kalshi_client, weather_client
from kw_assets.sources.kalshi.fetch import fetch_markets
from kw_assets.warehouse import Warehouse

BATCH = ["kalshi_markets", "kalshi_candles", "kalshi_trades", "weather_obs", "weather_forecasts", "settlement",
         "weather_model_params", "minute_panel", "weather_pmf", "fused_pmf", "calibrated_pmf", "backtest_fills"]
MINUTE_TABLES = {"minute_panel": "minute_ts", "weather_pmf": "decision_ts", "fused_pmf": "minute_ts",
                 "calibrated_pmf": "minute_ts", "kalshi_candles": "end_period_ts", "weather_obs": "valid_time"}
# the planted edge: the simulated traders learn each observation six hours late; a strategy that trades only on
# the calibrated probability's edge then trades (and, over many days, profits: test_planted_edge)
EDGE_ONLY = {"use_ras": False, "use_clv": False, "allow_maker": False, "exit_mode": "settlement",
             "slippage_cushion": 0.05, "taker_extra_edge": 0.0}


def _settles(city, day: dt.date, delay: float) -> tuple[pd.Timestamp, pd.Timestamp]:
    """The event's first open, and an instant by which it has settled (up to two hours after its expected
    expiration, on the simulated exchange)."""
    later = lambda: dt.datetime.combine(day + dt.timedelta(days=3), dt.time(), dt.timezone.utc)  # noqa: E731
    markets = fetch_markets(kalshi_client(SourceSettings(retry_sleep=False, sim_agents_obs_delay_min=delay), now=later),
                            city, day)
    return markets["open_time"].min(), markets["expected_expiration_time"].max() + pd.Timedelta(hours=2, minutes=1)


def _batch(path: str, city, day: dt.date, delay: float, at: pd.Timestamp, backtest: dict, instance) -> Warehouse:
    """The day as the batch backfill builds it, with the exchange's clock just after settlement."""
    res = {"market_data": MarketDataResource(simulated_now=at.isoformat(), retry_sleep=False,
                                             sim_agents_obs_delay_min=delay),
           "warehouse": WarehouseResource(path=path)}
    result = dg.materialize([defs.get_assets_def(t) for t in BATCH], resources=res, instance=instance,
                            partition_key=str(partition_key(city.key, day)),
                            run_config={"ops": {"backtest_fills": {"config": backtest}}})
    assert result.success
    return Warehouse(path)


def _same(live: pd.DataFrame, batch: pd.DataFrame, table: str, where: str) -> None:
    """The same rows (a table's row order is not its content: the tail appends minutes as they come)."""
    cols = [c for c in batch.columns if c != "source"]
    key = [c for c in ("minute_ts", "decision_ts", "market_ticker", "end_period_ts", "created_time", "trade_id",
                       "issued_at", "valid_time", "bracket_index") if c in cols]
    pd.testing.assert_frame_equal(live[cols].sort_values(key).reset_index(drop=True),
                                  batch[cols].sort_values(key).reset_index(drop=True),
                                  check_exact=False, rtol=0, atol=1e-12, obj=f"{table} {where}")


def replay(tmp_path, instance, city_key: str, day: dt.date, delay: float, backtest: dict, steps_min=(41, 97, 31, 83, 127, 59),
           outage: tuple[float, float] | None = None):
    """Tail and paper-trade the day on a clock that moves by ``steps_min`` (cycled, and a few seconds past the
    minute), from before the open to the settlement; compare with the batch at every few ticks."""
    city = get_city(city_key)
    opened, settles = _settles(city, day, delay)
    final = settles
    batch = _batch(str(tmp_path / f"batch-{day}.duckdb"), city, day, delay, final, backtest, instance)
    wh = Warehouse(tmp_path / f"live-{day}.duckdb")
    clock = [opened.to_pydatetime() - dt.timedelta(minutes=3)]
    settings = SourceSettings(simulated_through_http=True, retry_sleep=False, max_attempts=2,
                              sim_agents_obs_delay_min=delay)
    kalshi, weather = kalshi_client(settings, now=lambda: clock[0]), weather_client(settings, now=lambda: clock[0])
    tail = TailDay(wh, city, day, kalshi, weather, "simulated")
    strategy = StrategyConfig(**{k: v for k, v in backtest.items() if k in StrategyConfig.__dataclass_fields__})
    execution = ExecutionConfig(**{k: v for k, v in backtest.items() if k in ExecutionConfig.__dataclass_fields__})
    paper = PaperDay(wh, city, day, "run-live", strategy=strategy, execution=execution)
    reference = {t: batch.read(t, [(city.key, day)]) for t in MINUTE_TABLES}
    ticks, compared, failed, held = 0, 0, [], []
    while True:
        now = pd.Timestamp(clock[0])
        try:
            tick = tail.tick(now)
        except TickFailed as exc:
            failed.append((now, str(exc)))
            tick = None
        book = paper.tick(now)
        if book.stale:
            held.append((now, book.stale))
        if tick is not None and tick.through is not None and not tick.settled and ticks % 3 == 1:
            for table, col in MINUTE_TABLES.items():
                want = reference[table][reference[table][col] <= tick.through]
                got = wh.read(table, [(city.key, day)])
                got = got[got[col] <= tick.through]  # obs and candles past the last complete minute are kept
                _same(got, want, table, f"at {now}")
            compared += 1
        ticks += 1
        if tick is not None and tick.settled:
            break
        clock[0] += dt.timedelta(minutes=steps_min[ticks % len(steps_min)], seconds=ticks * 17 % 60)
        assert clock[0] < final.to_pydatetime() + dt.timedelta(hours=1), "the tail never swapped in the settled day"
    paper.tick(pd.Timestamp(clock[0]))  # the settlement, once the tail has stored it
    return batch, wh, {"ticks": ticks, "compared": compared, "failed": failed, "held": held}


def check_settled_day_is_the_batch(batch: Warehouse, wh: Warehouse, city_key: str, day: dt.date) -> None:
    part = [(city_key, day)]
    for table in BATCH[:-1]:
        live, want = wh.read(table, part), batch.read(table, part)
        if table == "kalshi_markets":
            live, want = live.drop(columns=["tier", "status"]), want.drop(columns=["tier", "status"])
        _same(live, want, table, "after the settled swap")


def check_paper_is_the_backtest(batch: Warehouse, wh: Warehouse, city_key: str, day: dt.date) -> pd.DataFrame:
    part = [(city_key, day)]
    backtest, paper = batch.read("backtest_fills", part), wh.read("paper_fills", part)
    key = ["order_id", "action", "fill_ts"]
    cols = [c for c in backtest.columns if c != "source"]
    pd.testing.assert_frame_equal(paper[cols].sort_values(key).reset_index(drop=True),
                                  backtest[cols].sort_values(key).reset_index(drop=True))
    return backtest


@pytest.mark.slow
@pytest.mark.parametrize("city_key, day, delay, backtest", [
    ("ny", dt.date(2025, 6, 3), 360.0, EDGE_ONLY),  # the planted edge: it trades
    ("ny", dt.date(2025, 6, 5), 0.0, {}),  # the fair market, the default strategy (maker orders, rule exits)
])
def test_the_tail_and_the_paper_book_replay_the_batch_and_the_backtest(tmp_path, instance, city_key, day, delay, backtest):
    batch, wh, seen = replay(tmp_path, instance, city_key, day, delay, backtest)
    assert seen["compared"] >= 8 and not seen["failed"]
    check_settled_day_is_the_batch(batch, wh, city_key, day)
    fills = check_paper_is_the_backtest(batch, wh, city_key, day)
    assert (fills["action"] == "buy").sum() >= 1 and (fills["contracts"] > 0).any(), "the day must trade"


@pytest.mark.slow
def test_an_outage_fails_the_tail_loudly_holds_the_paper_book_and_is_caught_up(tmp_path, instance, caplog):
    """The simulated exchange answers 503 for ten minutes of the clock: each tail tick in it fails and says
    so (nothing written), the paper book holds once its inputs are older than ``stale_min`` and says why, and
    the first tick after catches up: the partition is then the batch's rows up to that minute, with no row
    twice, and a rerun of the tick adds nothing."""
    from kw_assets.live_tail import tick_all as tail_ticks
    from kw_assets.paper_loop import tick_all as paper_ticks
    city, day = get_city("ny"), dt.date(2025, 6, 5)
    _, settles = _settles(city, day, 0.0)
    batch = _batch(str(tmp_path / "batch.duckdb"), city, day, 0.0, settles, {}, instance)
    start = pd.Timestamp(f"{day} 14:00", tz="UTC")
    down = (start + pd.Timedelta(minutes=5), start + pd.Timedelta(minutes=15))
    settings = SourceSettings(simulated_through_http=True, retry_sleep=False, max_attempts=3,
                              fault_outages=f"{down[0].isoformat()}/{down[1].isoformat()}")
    clock = [start.to_pydatetime()]
    now = lambda: clock[0]  # noqa: E731
    wh = Warehouse(tmp_path / "live.duckdb")
    tail = TailDay(wh, city, day, kalshi_client(settings, now=now), weather_client(settings, now=now), "simulated")
    paper = PaperDay(wh, city, day, "run-outage", stale_min=3)
    part = [(city.key, day)]
    recorded = []
    caplog.set_level(logging.INFO, logger="kw_assets")
    for minute in range(22):
        clock[0] = (start + pd.Timedelta(minutes=minute, seconds=20)).to_pydatetime()
        tail_ticks([tail], now, True)
        paper_ticks([paper], now, True)
        recorded.append(len(wh.read("paper_fills", part)))
    failed = [r.getMessage() for r in caplog.records if "the tick failed" in r.getMessage()]
    assert len(failed) == 10 and all("503" in m and "nothing written" in m for m in failed), failed[:2]
    held = [r.getMessage() for r in caplog.records if r.name == "kw_assets.paper" and "holding, sending nothing" in r.getMessage()]
    assert len(held) == 7, held  # minutes 8..14: the last stored minute (14:04) is more than 3 minutes old
    assert recorded[8:15] == [recorded[7]] * 7  # nothing recorded while held
    through = pd.Timestamp(start + pd.Timedelta(minutes=21))
    for table, col in MINUTE_TABLES.items():
        got = wh.read(table, part)
        want = batch.read(table, part)
        _same(got[got[col] <= through], want[want[col] <= through], table, "after the outage")
    for table, key in {"kalshi_trades": ["trade_id"], "kalshi_candles": ["market_ticker", "end_period_ts"],
                       "minute_panel": ["minute_ts", "bracket_index"]}.items():
        assert not wh.read(table, part).duplicated(key).any(), table
    before = {t: len(wh.read(t, part)) for t in MINUTE_TABLES}
    again = tail.tick(clock[0])
    assert not again.written and {t: len(wh.read(t, part)) for t in MINUTE_TABLES} == before  # idempotent
    # what the paper book recorded is the backtest's, row for row
    paper_rows, backtest = wh.read("paper_fills", part), batch.read("backtest_fills", part)
    key = ["order_id", "action", "fill_ts"]
    cols = [c for c in backtest.columns if c != "source"]
    joined = paper_rows[cols].merge(backtest[cols], on=cols, how="left", indicator=True)
    assert len(paper_rows) > 0 and (joined["_merge"] == "both").all() and not paper_rows.duplicated(key).any()


def test_the_scheduled_job_ticks_the_open_days_and_records_their_materializations(tmp_path, instance):
    """``live_tail_job`` at 17:00 UTC on 5 June: yesterday's market has settled (swapped in whole), today's and
    tomorrow's are open (filled up to 17:00); five minutes later only the open days move on. Each written
    table and partition is a materialization in the asset's history, marked as the live tail's."""
    from kw_assets.defs.live import live_tail_job
    path = str(tmp_path / "wh.duckdb")
    job = defs.resolve_job_def("live_tail_job")
    assert job.name == live_tail_job.name and any(s.name == "live_tail_schedule" for s in defs.schedules)
    for at in ("2025-06-05T17:00:20Z", "2025-06-05T17:05:20Z"):
        res = {"market_data": MarketDataResource(simulated_now=at, retry_sleep=False),
               "warehouse": WarehouseResource(path=path)}
        assert job.execute_in_process(instance=instance, resources=res,
                                      run_config={"ops": {"live_tail_tick": {"config": {"cities": ["ny"]}}}}).success
        wh = Warehouse(path)
        through = wh.read("minute_panel", [("ny", dt.date(2025, 6, 5))])["minute_ts"].max()
        assert through == pd.Timestamp(at).floor("min")
        assert len(wh.read("minute_panel", [("ny", dt.date(2025, 6, 6))])) > 0
        assert wh.read("settlement", [("ny", dt.date(2025, 6, 4))])["winning_bracket_index"].iloc[0] >= 0
    events = instance.fetch_materializations(dg.AssetKey("minute_panel"), limit=20).records
    by_partition = {}
    for e in events:
        m = e.asset_materialization
        by_partition.setdefault(m.partition, []).append(m.metadata["by"].value)
    assert by_partition[str(partition_key("ny", dt.date(2025, 6, 4)))] == ["settled swap"]  # once, not every minute
    assert by_partition[str(partition_key("ny", dt.date(2025, 6, 5)))] == ["live tail", "live tail"]


def test_the_tail_command_with_its_paper_book_runs_sped_up_and_stops_cleanly_on_sigterm(tmp_path):
    """``python -m kw_assets tail --paper`` on the simulated exchange at 600x: it tails the day (status lines
    with the lag, the paper book's lines with its orders and P&L) and SIGTERM ends it with exit 0, every row
    it reported written."""
    import signal
    import subprocess
    import sys
    import time
    from pathlib import Path
    root = Path(__file__).resolve().parents[1]
    path = tmp_path / "wh.duckdb"
    proc = subprocess.Popen([sys.executable, "-m", "kw_assets", "tail", "--city", "ny", "--day", "2025-06-05",
                             "--warehouse", str(path), "--start", "2025-06-05T12:00Z", "--speed", "600", "--paper",
                             "--status-every-s", "0"], cwd=root, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        lines.append(line)
        if sum("kw_assets.paper" in x and "decided through" in x for x in lines) >= 3:
            break
    proc.send_signal(signal.SIGTERM)
    rest, _ = proc.communicate(timeout=60)
    text = "".join(lines) + rest
    assert proc.returncode == 0, text[-3000:]
    assert "SIMULATED source" in text and "never to an exchange" in text and "tail: stopped" in rest
    assert "complete through" in text and " behind)" in text
    panel = Warehouse(path).read("minute_panel", [("ny", dt.date(2025, 6, 5))])
    assert panel["minute_ts"].max() >= pd.Timestamp("2025-06-05 12:00", tz="UTC")


def test_a_paper_book_killed_mid_day_resumes_from_the_warehouse_without_doubling_an_order(tmp_path, instance):
    """``tail --paper`` killed with SIGKILL in the middle of the day, then started again (a new run id, the
    clock further on): the tail catches up from its cursor, the book resumes its positions from the warehouse
    and its rows are the backtest's, none twice, each order once."""
    import signal
    import subprocess
    import sys
    import time
    from pathlib import Path
    city, day = get_city("ny"), dt.date(2025, 6, 5)
    _, settles = _settles(city, day, 0.0)
    batch = _batch(str(tmp_path / "batch.duckdb"), city, day, 0.0, settles, {}, instance)
    path = tmp_path / "live.duckdb"
    root = Path(__file__).resolve().parents[1]

    def start(at: str, run_id: str) -> subprocess.Popen:
        return subprocess.Popen([sys.executable, "-m", "kw_assets", "tail", "--city", "ny", "--day", str(day),
                                 "--warehouse", str(path), "--start", at, "--speed", "600", "--paper", "--run-id", run_id,
                                 "--status-every-s", "0"], cwd=root, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True)

    def wait_for_rows(proc: subprocess.Popen, n: int) -> str:
        lines, deadline = [], time.monotonic() + 90
        while time.monotonic() < deadline and sum("new rows" in x and "kw_assets.paper" in x and " 0 new rows" not in x
                                                  for x in lines) < n:
            lines.append(proc.stdout.readline())
        return "".join(lines)

    first = start("2025-06-05T11:00Z", "run-killed")
    seen = wait_for_rows(first, 2)
    first.send_signal(signal.SIGKILL)
    first.wait(timeout=30)
    part = [(city.key, day)]
    before = Warehouse(path).read("paper_fills", part)
    assert len(before), seen[-2000:]
    second = start("2025-06-05T16:00Z", "run-resumed")
    wait_for_rows(second, 2)
    second.send_signal(signal.SIGTERM)
    second.communicate(timeout=60)
    assert second.returncode == 0
    paper, backtest = Warehouse(path).read("paper_fills", part), batch.read("backtest_fills", part)
    key = ["order_id", "action", "fill_ts"]
    assert not paper.duplicated(key).any() and set(paper["run_id"]) == {"run-killed", "run-resumed"}
    cols = [c for c in backtest.columns if c != "source"]
    joined = paper[cols].merge(backtest[cols], on=cols, how="left", indicator=True)
    assert (joined["_merge"] == "both").all()  # every row the backtest's, to the cent
    kept = before[key].merge(paper[key], on=key, how="left", indicator=True)
    assert (kept["_merge"] == "both").all()  # what the killed run recorded is still there, once
    orders = Warehouse(path).read("paper_orders", part)
    buys = backtest[backtest["action"] == "buy"]
    filled_by_then = buys[(buys["contracts"] > 0) & (buys["fill_ts"] <= paper["fill_ts"].max())]
    assert orders["order_id"].is_unique and set(orders["order_id"]) <= set(buys["order_id"])
    assert set(filled_by_then["order_id"]) <= set(orders["order_id"])  # no filled order lost across the kill


def test_duration_stops_the_paper_and_tail_commands_after_that_many_wall_seconds(tmp_path):
    """``--duration`` (offered by every command with a clock) ends the minute loops without a signal."""
    import subprocess
    import sys
    import time
    from pathlib import Path
    root = Path(__file__).resolve().parents[1]
    for command in ("paper", "tail"):
        started = time.monotonic()
        done = subprocess.run([sys.executable, "-m", "kw_assets", command, "--city", "ny", "--day", "2025-06-05",
                               "--warehouse", str(tmp_path / f"{command}.duckdb"), "--start", "2025-06-04T12:00Z",
                               "--duration", "1"], cwd=root, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0 and f"{command}: stopped" in done.stderr, done.stderr[-2000:]
        assert time.monotonic() - started < 60
