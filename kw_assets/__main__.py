"""Command line: ``python -m kw_assets record ...`` (the L2 recorder), ``python -m kw_assets exchange ...``
(the simulated exchange, REST and WebSocket, on a loopback port), ``python -m kw_assets tail ...`` (the open
days' partitions, minute by minute) and ``python -m kw_assets paper ...`` (the paper book, minute by minute)."""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import logging
import os
import signal
import sys

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from kw_assets.cities import City, all_cities, get_city
from kw_assets.recorder.segments import SegmentWriter
from kw_assets.recorder.session import PRODUCTION_WS_URL, Recorder, RecorderConfig
from kw_assets.sources.clock import Clock, every
from kw_assets.sources.kalshi.client import PRODUCTION_URL, KalshiClient
from kw_assets.sources.kalshi.signing import KalshiSigner
from kw_assets.sources.simulator.exchange import SimulatedExchange
from kw_assets.sources.simulator.ws_exchange import ExchangeServer, SimulatedMarketServer, WsFaults

log = logging.getLogger("kw_assets")


def find_city(name: str) -> City:
    """A city by key (``mia``) or by name (``miami``, ``new york``), case-insensitive."""
    wanted = name.strip().lower()
    try:
        return get_city(wanted)
    except KeyError:
        pass
    matches = [c for c in all_cities() if c.name.lower().startswith(wanted) or c.name.lower().split(" (")[0] == wanted]
    if len(matches) != 1:
        known = ", ".join(f"{c.key} ({c.name})" for c in all_cities())
        raise SystemExit(f"unknown city {name!r}: one of {known}")
    return matches[0]


def _clock(args) -> Clock:
    if args.start:
        start = dt.datetime.fromisoformat(args.start.replace("Z", "+00:00"))
        if start.tzinfo is None:
            start = start.replace(tzinfo=dt.timezone.utc)
        return Clock.simulated(start, args.speed)
    return Clock.parse(args.clock) if getattr(args, "clock", None) else Clock()


def _simulated_server(args, clock: Clock, verify_key=None) -> SimulatedMarketServer:
    exchange = SimulatedExchange(seed=args.seed, now=clock.now)
    return SimulatedMarketServer(exchange, clock, verify_key=verify_key, faults=WsFaults())


def _ephemeral_key() -> tuple[rsa.RSAPrivateKey, str]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    return key, pem.decode()


async def _record(recorder: Recorder, duration_s: float | None) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    if duration_s:
        loop.call_later(duration_s, stop.set)
    await recorder.run(stop)


def cmd_record(args) -> int:
    cities = list(all_cities()) if args.all else [find_city(c) for c in args.city]
    if not cities:
        raise SystemExit("record: name a city (--city miami) or --all")
    clock = _clock(args)
    config = RecorderConfig(segment_minutes=args.segment_minutes, segment_messages=args.segment_messages,
                            refresh_s=args.refresh_s, heartbeat_s=args.heartbeat_s, status_every_s=args.status_every_s)
    writer = SegmentWriter(args.root, args.segment_minutes, args.segment_messages)
    if args.simulated:
        key, pem = _ephemeral_key()
        with ExchangeServer(_simulated_server(args, clock, key.public_key())) as server:
            log.info("recording the SIMULATED exchange at %s (clock %s) into %s", server.ws_url, clock.spec, args.root)
            config.ws_url = server.ws_url
            with KalshiClient(server.rest_url, requests_per_second=None) as rest:
                recorder = Recorder(cities, rest, writer, config, signer=KalshiSigner("simulated", pem), clock=clock)
                asyncio.run(_record(recorder, args.duration))
        return 0
    key_id, private_key = os.environ.get("KALSHI_KEY_ID"), os.environ.get("KALSHI_PRIVATE_KEY")
    if args.ws_url == PRODUCTION_WS_URL and not (key_id and private_key):
        raise SystemExit("record: the live exchange needs KALSHI_KEY_ID and KALSHI_PRIVATE_KEY (PEM text) in the environment")
    signer = KalshiSigner(key_id, private_key) if key_id and private_key else None
    config.ws_url = args.ws_url
    log.info("recording %s into %s (clock %s)", args.ws_url, args.root, clock.spec)
    with KalshiClient(args.rest_url, requests_per_second=args.rest_rate, signer=signer) as rest:
        recorder = Recorder(cities, rest, writer, config, signer=signer, clock=clock)
        asyncio.run(_record(recorder, args.duration))
    return 0


def cmd_exchange(args) -> int:
    clock = _clock(args)
    faults = WsFaults(**{f"{k}_at": tuple(clock.now_ts() + float(x) for x in (getattr(args, k) or "").split(",") if x)
                         for k in ("drop", "skip_seq", "duplicate", "overflow")})
    exchange = SimulatedExchange(seed=args.seed, now=clock.now)
    server = SimulatedMarketServer(exchange, clock, faults=faults)
    with ExchangeServer(server, port=args.port) as running:
        print(f"SIMULATED exchange: REST {running.rest_url}  WebSocket {running.ws_url}  clock {clock.spec}", flush=True)
        stop = asyncio.Event()

        async def wait() -> None:
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, stop.set)
            if args.duration:
                loop.call_later(args.duration, stop.set)
            await stop.wait()

        asyncio.run(wait())
    print(f"SIMULATED exchange: sent {server.sent} messages over {server.connections} connection(s)", flush=True)
    return 0


def _stopper(args, clock: Clock):
    """When a minute loop stops: SIGTERM or Ctrl-C (between ticks), ``--until`` on the clock, or ``--duration``
    wall seconds after the start."""
    import time
    stopping = {"now": False}
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stopping.update(now=True))
    until = dt.datetime.fromisoformat(args.until.replace("Z", "+00:00")).timestamp() if args.until else None
    ends = time.monotonic() + args.duration if args.duration else None
    return lambda: (stopping["now"] or (until is not None and clock.now_ts() >= until)
                    or (ends is not None and time.monotonic() >= ends))


def day_options(q: argparse.ArgumentParser, days: str) -> None:
    """The city-days a minute loop works on, and the warehouse it works in."""
    q.add_argument("--city", action="append", default=[], help="city key or name (repeatable)")
    q.add_argument("--all", action="store_true", help="every city in the registry")
    q.add_argument("--day", help=f"one climate day (default: each city's {days})")
    q.add_argument("--warehouse", default=os.environ.get("KW_WAREHOUSE", "data/warehouse.duckdb"),
                   help="DuckDB file or postgresql:// URL (KW_WAREHOUSE)")


def _settings(text: str | None) -> dict:
    """The paper book's strategy, fill and execution settings from a JSON object of their fields (the
    ``backtest_fills`` run config's), so the paper book trades what the backtest traded."""
    from kw_assets.model.backtest import ExecutionConfig
    from kw_assets.model.fills import FillConfig
    from kw_assets.model.strategy import StrategyConfig
    import json
    values = json.loads(text) if text else {}
    known = {f for c in (StrategyConfig, FillConfig, ExecutionConfig) for f in c.__dataclass_fields__}
    unknown = sorted(set(values) - known)
    if unknown:
        raise SystemExit(f"paper --config: unknown setting(s) {unknown}")
    pick = lambda c: c(**{k: v for k, v in values.items() if k in c.__dataclass_fields__})  # noqa: E731
    return {"strategy": pick(StrategyConfig), "fills": pick(FillConfig), "execution": pick(ExecutionConfig)}


def cmd_paper(args) -> int:
    from kw_assets.paper_loop import PaperDay, new_run_id, run
    from kw_assets.warehouse import open_warehouse
    cities = list(all_cities()) if args.all else [find_city(c) for c in args.city]
    if not cities:
        raise SystemExit("paper: name a city (--city miami) or --all")
    clock = _clock(args)
    now = clock.now()
    run_id = args.run_id or new_run_id()
    days = [dt.date.fromisoformat(args.day)] if args.day else None
    book = []
    for city in cities:
        for day in days or [city.climate_day_of(now), city.climate_day_of(now) + dt.timedelta(days=1)]:
            book.append(PaperDay(open_warehouse(args.warehouse), city, day, run_id, stale_min=args.stale_min, **_settings(args.config)))
    log.info("paper trading %s (run %s, clock %s, warehouse %s): orders go to paper_fills / paper_orders / "
             "paper_positions, never to an exchange", ", ".join(f"{d.city.key} {d.day}" for d in book), run_id,
             clock.spec, args.warehouse)
    run(book, clock.now, _stopper(args, clock),
        every_s=clock.wall_seconds(60.0), status_every_s=args.status_every_s)
    log.info("paper: stopped (run %s)", run_id)
    return 0


def cmd_tail(args) -> int:
    from kw_assets.live_tail import TailDay, live_days, tick_all as tail_ticks
    from kw_assets.sources.clients import SourceSettings, kalshi_client, weather_client
    from kw_assets.warehouse import open_warehouse
    cities = list(all_cities()) if args.all else [find_city(c) for c in args.city]
    if not cities:
        raise SystemExit("tail: name a city (--city miami) or --all")
    clock = _clock(args)
    if args.live:
        settings = SourceSettings(source="live", kalshi_key_id=os.environ.get("KALSHI_KEY_ID"),
                                  kalshi_private_key=os.environ.get("KALSHI_PRIVATE_KEY"),
                                  visual_crossing_api_key=os.environ.get("VISUAL_CROSSING_API_KEY"),
                                  weather_source="live" if os.environ.get("VISUAL_CROSSING_API_KEY") else "none")
    else:
        settings = SourceSettings(seed=args.seed, simulated_through_http=True, fault_outages=args.outage,
                                  sim_agents_obs_delay_min=args.sim_obs_delay_min)
    kalshi, weather = kalshi_client(settings, now=clock.now), weather_client(settings, now=clock.now)
    wh = open_warehouse(args.warehouse)
    now = clock.now()
    days = [dt.date.fromisoformat(args.day)] if args.day else None
    tails = [TailDay(wh, city, day, kalshi, weather, settings.label())
             for city in cities for day in days or live_days(city, now)]
    log.info("tailing %s from the %s source (clock %s) into %s", ", ".join(f"{t.city.key} {t.day}" for t in tails),
             "SIMULATED" if settings.label() == "simulated" else settings.label(), clock.spec, args.warehouse)
    stopped = _stopper(args, clock)
    papers = []
    if args.paper:
        from kw_assets.paper_loop import PaperDay, new_run_id, tick_all as paper_ticks
        run_id = args.run_id or new_run_id()
        papers = [PaperDay(wh, t.city, t.day, run_id, stale_min=args.stale_min, **_settings(args.config)) for t in tails]
        log.info("paper trading the same days in this process (run %s): orders go to paper_fills / paper_orders / "
                 "paper_positions, never to an exchange", run_id)

    def step(due: bool) -> None:
        at = clock.now()  # the paper book decides on what the tail stored for this instant (a sped-up clock
        tail_ticks(tails, lambda: at, due)  # moves on while the tail works)
        if papers:
            paper_ticks(papers, lambda: at, due)

    def stop() -> bool:
        return stopped() or all(t.settled for t in tails)

    try:
        every(step, stop, clock.wall_seconds(60.0), args.status_every_s)
        if papers:
            paper_ticks(papers, clock.now, True)  # the settlement, once the tail stored it
    finally:
        kalshi.close()
        if weather is not None:
            weather.close()
    log.info("tail: stopped")
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m kw_assets")
    sub = p.add_subparsers(dest="command", required=True)

    def clock_options(q: argparse.ArgumentParser) -> None:
        q.add_argument("--start", help="simulated clock: ISO instant it starts at (default: the wall clock)")
        q.add_argument("--speed", type=float, default=1.0, help="simulated clock: times faster than the wall clock")
        q.add_argument("--seed", type=int, default=7, help="simulated world's seed")
        q.add_argument("--duration", type=float, help="stop after this many wall seconds (default: run until SIGTERM)")

    r = sub.add_parser("record", help="record Kalshi order books, trades and tickers to Parquet segments")
    r.add_argument("--city", action="append", default=[], help="city key or name (repeatable): mia, miami, ny, ...")
    r.add_argument("--all", action="store_true", help="every city in the registry, on one connection")
    r.add_argument("--root", default="data/l2", help="segments go to ROOT/<city>/<climate day>/<segment>.parquet")
    r.add_argument("--simulated", action="store_true", help="record the simulated exchange, started in this process")
    r.add_argument("--ws-url", default=PRODUCTION_WS_URL)
    r.add_argument("--rest-url", default=PRODUCTION_URL)
    r.add_argument("--rest-rate", type=float, default=10.0, help="REST requests per second (event listings)")
    r.add_argument("--clock", help="the exchange's clock spec when it is a sped-up simulated one (see `exchange`)")
    r.add_argument("--segment-minutes", type=float, default=15.0)
    r.add_argument("--segment-messages", type=int, default=50_000)
    r.add_argument("--refresh-s", type=float, default=300.0, help="seconds of the clock between event listings")
    r.add_argument("--heartbeat-s", type=float, default=10.0)
    r.add_argument("--status-every-s", type=float, default=60.0, help="wall seconds between status lines")
    clock_options(r)
    r.set_defaults(func=cmd_record)

    e = sub.add_parser("exchange", help="serve the simulated exchange (REST + WebSocket) on 127.0.0.1")
    e.add_argument("--port", type=int, default=8765, help="0: any free port (printed)")
    for fault in ("drop", "skip_seq", "duplicate", "overflow"):
        e.add_argument(f"--{fault.replace('_', '-')}", dest=fault, help=f"{fault} fault at these clock seconds from start (comma list)")
    clock_options(e)
    e.set_defaults(func=cmd_exchange)

    q = sub.add_parser("paper", help="paper-trade the strategy on the warehouse's open days, minute by minute")
    day_options(q, "current and next")
    q.add_argument("--run-id", help="default: a new one; a restart with any id resumes the stored book")
    q.add_argument("--until", help="stop at this instant of the clock (ISO)")
    q.add_argument("--stale-min", type=float, default=5.0, help="send nothing while inputs are older than this")
    q.add_argument("--status-every-s", type=float, default=60.0)
    q.add_argument("--config", help="strategy, fill and execution settings as JSON (backtest_fills' run config fields)")
    q.add_argument("--clock", help="share the tail's clock: its spec (printed by `tail`)")
    clock_options(q)
    q.set_defaults(func=cmd_paper)

    t = sub.add_parser("tail", help="fill the open climate days' partitions minute by minute (the live tail)")
    day_options(t, "previous until it settles, current and next")
    t.add_argument("--live", action="store_true", help="the live exchange (KALSHI_KEY_ID / KALSHI_PRIVATE_KEY; "
                                                       "VISUAL_CROSSING_API_KEY for weather); default: simulated")
    t.add_argument("--until", help="stop at this instant of the clock (ISO); it also stops once every day has settled")
    t.add_argument("--outage", help="simulated exchange: 503 for every request over ISO/ISO[,ISO/ISO] of the clock")
    t.add_argument("--sim-obs-delay-min", type=float, default=0.0,
                   help="simulated market: its traders learn each observation this late (a planted edge)")
    t.add_argument("--status-every-s", type=float, default=60.0)
    t.add_argument("--paper", action="store_true", help="paper-trade the same days in this process, after each tick")
    t.add_argument("--config", help="with --paper: strategy, fill and execution settings as JSON")
    t.add_argument("--run-id", help="with --paper: the paper run's id (default: a new one)")
    t.add_argument("--stale-min", type=float, default=5.0, help="with --paper: send nothing while inputs are older")
    t.add_argument("--clock", help="share another process's clock: its spec (see `exchange`)")
    clock_options(t)
    t.set_defaults(func=cmd_tail)

    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.getLogger("websockets").setLevel(logging.WARNING)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
