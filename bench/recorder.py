"""How fast the L2 recorder can go: the simulated exchange (``python -m kw_assets exchange``) and the recorder
(``python -m kw_assets record --all``) in processes of their own on loopback, the exchange's clock sped up
``speed`` times, for ``--seconds`` of wall time at each speed.

Per speed it prints the messages per second the exchange sent and the recorder wrote, the recorder's CPU
(user + system, share of one core), whether it kept up (every message sent was written, the rows' lag
behind the exchange's stamps stayed small) and the segments it closed. The exchange's rate at speed 1 is
the simulated busy day x 7 cities (two events each, 84 markets); the README quotes the highest speed the
recorder kept up with.

    python bench/recorder.py [--speeds 1,10,20,40] [--seconds 20] [--start 2025-07-01T15:00Z]
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from kw_assets.recorder.segments import read_segments

ROOT = Path(__file__).resolve().parents[1]
MARKET_DATA = ("orderbook_snapshot", "orderbook_delta", "trade", "ticker")


def private_key_pem() -> str:
    """A throwaway key: the simulated exchange wants the signed headers (it cannot check them without the key)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()).decode()


def run(speed: float, seconds: float, start: str) -> dict:
    root = Path(tempfile.mkdtemp(prefix="kw_l2_bench_"))
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    exchange = subprocess.Popen([sys.executable, "-m", "kw_assets", "exchange", "--port", "0", "--start", start,
                                 "--speed", str(speed)], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    banner = exchange.stdout.readline()
    m = re.search(r"REST (\S+)\s+WebSocket (\S+)\s+clock (\S+)", banner)
    if not m:
        exchange.kill()
        raise SystemExit(f"the exchange did not start: {banner!r}")
    rest, ws, clock = m.groups()
    started = time.monotonic()
    recorder = subprocess.Popen([sys.executable, "-m", "kw_assets", "record", "--all", "--root", str(root), "--ws-url", ws,
                                 "--rest-url", rest, "--clock", clock, "--duration", str(seconds), "--status-every-s", "5"],
                                cwd=ROOT, env={**env, "KALSHI_KEY_ID": "bench", "KALSHI_PRIVATE_KEY": private_key_pem()},
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    _, status, usage = os.wait4(recorder.pid, 0)
    wall = time.monotonic() - started
    log = recorder.stderr.read()
    exchange.send_signal(signal.SIGTERM)
    sent_line = exchange.stdout.read()
    exchange.wait(30)
    sent = int(re.search(r"sent (\d+) messages", sent_line).group(1)) if "sent" in sent_line else -1
    rows = pd.concat([read_segments(root, city.name, dt.date.fromisoformat(day.name))
                      for city in root.iterdir() if city.is_dir() for day in city.iterdir() if day.is_dir()], ignore_index=True)
    data = rows[rows["kind"].isin(MARKET_DATA)]
    # a message is written once per city-day it concerns: market data belongs to one
    timed = data[data["ts_ms"] >= 0]
    lag_s = (timed["clock_ms"] - timed["ts_ms"]).to_numpy() / 1000.0 / speed  # in wall seconds
    cpu = usage.ru_utime + usage.ru_stime
    segments = sum(1 for _ in root.rglob("*.parquet"))
    streamed = int(data["kind"].isin(("orderbook_delta", "trade", "ticker")).sum())
    return {"speed": speed, "wall_s": wall, "sent": sent, "written": len(data), "streamed": streamed, "exit": os.waitstatus_to_exitcode(status),
            "cpu_s": cpu, "segments": segments, "lag_p99_s": float(np.percentile(lag_s, 99)) if lag_s.size else float("nan"),
            "log_tail": log.strip().splitlines()[-1:] if log else []}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--speeds", default="1,10,20,40")
    p.add_argument("--seconds", type=float, default=20.0)
    p.add_argument("--start", default="2025-07-01T15:00Z")
    args = p.parse_args()
    base = None
    print("speed  sent/s  written/s  recorder CPU  lag p99  kept up  segments")
    for speed in [float(s) for s in args.speeds.split(",")]:
        r = run(speed, args.seconds, args.start)
        # the exchange streams from the recorder's subscription to its stop; the recorder's own wall time is the window
        rate_sent, rate_written = r["sent"] / args.seconds, r["written"] / args.seconds
        base = base or (r["streamed"] / args.seconds / speed)
        # kept up: at most half a second of messages still in flight at the stop, rows at most 1 s behind
        kept = r["sent"] - r["written"] <= 0.5 * rate_sent and r["lag_p99_s"] < 1.0 and r["exit"] == 0
        print(f"{speed:5.0f}  {rate_sent:7.1f}  {rate_written:9.1f}  {r['cpu_s'] / r['wall_s']:11.0%}  "
              f"{r['lag_p99_s']:6.3f}s  {'yes' if kept else 'NO':>7}  {r['segments']:8d}", flush=True)
    if base:
        print(f"the simulated day x 7 cities streams {base:.1f} messages/s at speed 1 (deltas, trades, tickers; "
          "snapshots come once per market per connection)")


if __name__ == "__main__":
    main()
