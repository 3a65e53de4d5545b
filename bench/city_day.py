"""Compute time of one city-day through every modelling layer and the backtest (pure core, inputs in memory).

    .venv/bin/python bench/city_day.py [--repeat 5]

Inputs come from the simulated source through the real clients; fetching is not timed here.
Reports the median of ``--repeat`` runs per layer, and the weather Monte Carlo at the size
the modelling issue names (5,000 paths x 288 decision times of the climate day).
"""

import argparse
import datetime as dt
import os
import platform
import statistics
import time

import numpy as np
import pandas as pd

from kw_assets.cities import get_city
from kw_assets.model.backtest import equity_path, run_backtest
from kw_assets.model.calibration import fit_calibrator
from kw_assets.model.fills import Tape
from kw_assets.model.strategy import signal_intents
from kw_assets.model.fusion import fuse_panel
from kw_assets.model.panel import build_panel
from kw_assets.model.weather import WeatherModelConfig, simulate_weather_pmf, weather_pmf_frame
from kw_assets.sources.simulator.city_day import simulated_city_day

NOW = dt.datetime(2026, 11, 27, tzinfo=dt.timezone.utc)


def timed(fn, repeat):
    times, out = [], None
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times), out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--city", default="ny")
    ap.add_argument("--day", default="2025-06-03")
    a = ap.parse_args()
    city, day = get_city(a.city), dt.date.fromisoformat(a.day)
    cd = simulated_city_day(city, day, NOW)
    markets, candles, trades, obs, fc, start = cd.markets, cd.candles, cd.trades, cd.obs, cd.forecasts, cd.day_start
    lows, highs = markets["bracket_low_f"].to_numpy(float), markets["bracket_high_f"].to_numpy(float)

    rows = []
    t_panel, panel = timed(lambda: build_panel(markets, candles, trades), a.repeat)
    rows.append(("minute_panel", t_panel, f"{len(panel):,} rows"))
    day_decisions = pd.date_range(start + pd.Timedelta(minutes=5), start + pd.Timedelta(days=1), freq="5min")
    t_mc, _ = timed(lambda: simulate_weather_pmf(start, day_decisions, obs, fc, lows, highs, np.random.default_rng(0),
                                                 WeatherModelConfig(n_paths=5000)), a.repeat)
    rows.append(("weather MC 5000 x 288", t_mc, "climate day only"))
    t_wx, wx = timed(lambda: weather_pmf_frame(markets, obs, fc, start, np.random.default_rng(0)), a.repeat)
    rows.append(("weather_pmf (asset)", t_wx, f"{wx['decision_ts'].nunique()} decisions incl. pre-day"))
    t_fuse, fused = timed(lambda: fuse_panel(panel, wx), a.repeat)
    rows.append(("fused_pmf", t_fuse, f"{len(fused):,} rows"))
    rng = np.random.default_rng(1)
    cal = fit_calibrator("temperature", rng.dirichlet(np.ones(6), 5000), rng.integers(0, 6, 5000))
    p = fused["p_fused"].to_numpy().reshape(-1, len(markets))
    t_cal, _ = timed(lambda: cal.apply(p), a.repeat)
    rows.append(("calibrated_pmf (apply)", t_cal, ""))
    calibrated = fused.assign(p_calibrated=cal.apply(p).ravel())
    winner = int(markets.loc[markets["result"] == "yes", "bracket_index"].iloc[0])

    def backtest():
        tape = Tape.build(panel, trades, candles)
        intents, opposite = signal_intents(panel, calibrated)
        fills = run_backtest(tape, intents, winner, opposite)
        return fills, equity_path(fills, tape)

    t_bt, (fills, _) = timed(backtest, a.repeat)
    rows.append(("backtest_fills + pnl", t_bt, f"{int((fills['contracts'] > 0).sum())} fills"))

    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}")
    print(f"city-day {city.key} {day}, median of {a.repeat}")
    for name, t, note in rows:
        print(f"  {name:<24} {t * 1000:8.1f} ms  {note}")
    total = t_panel + t_wx + t_fuse + t_cal + t_bt
    print(f"  {'all layers (asset path)':<24} {total * 1000:8.1f} ms")


if __name__ == "__main__":
    main()
