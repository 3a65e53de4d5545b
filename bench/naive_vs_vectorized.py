"""The seed design's loops, written here as a faithful naive baseline, against the project's code on the
same simulated inputs in one process: speed-up ratios, and a check that both give the same numbers.

    .venv/bin/python bench/naive_vs_vectorized.py

- features: the seed's per-row style (for each minute, for each bracket: carry quotes forward, update
  EWM velocity/acceleration, then renormalize and compute RAS with neighbour loops) vs model/panel.py;
- Monte Carlo: the seed's loop over steps in Python (per decision time, paths vectorized within a step),
  replaying the same random numbers, vs model/weather.py (one reverse cummax per forecast run, float32,
  bracket counts per decision in cache-sized chunks);
- backtest signals: a minute-by-minute iterrows pass over the panel evaluating the entry gates vs
  model/strategy.py's vectorized signals (same onsets).
Deliberately slow code lives only here; the naive loops are the baseline, not the product.
"""

import datetime as dt
import math
import time

import numpy as np
import pandas as pd

from kw_assets.cities import get_city
from kw_assets.model.panel import build_panel, minute_grid
from kw_assets.model.strategy import StrategyConfig, signal_intents
from kw_assets.model.weather import WeatherModelConfig, simulate_weather_pmf
from kw_assets.sources.simulator.city_day import simulated_city_day

NOW = dt.datetime(2026, 11, 27, tzinfo=dt.timezone.utc)


def naive_panel(markets, candles, span_v=5.0, span_a=10.0) -> pd.DataFrame:
    tickers = markets.sort_values("bracket_index")["market_ticker"].tolist()
    grid = minute_grid(markets)
    rows = {(r["market_ticker"], r["end_period_ts"]): r for r in candles.to_dict("records")}
    av, aa = 2 / (span_v + 1), 2 / (span_a + 1)
    st = {t: {"bid": math.nan, "ask": math.nan, "last": math.nan, "mid": math.nan, "v": math.nan, "a": math.nan} for t in tickers}
    out = []
    for ts in grid:
        cur = {}
        for t in tickers:
            s, r = st[t], rows.get((t, ts))
            if r is not None:
                if not math.isnan(r["yes_bid_close"]):
                    s["bid"] = r["yes_bid_close"]
                if not math.isnan(r["yes_ask_close"]):
                    s["ask"] = r["yes_ask_close"]
                px = r["price_close"] if not math.isnan(r["price_close"]) else r["price_previous"]
                if not math.isnan(px):
                    s["last"] = px
            quoted = not (math.isnan(s["bid"]) or math.isnan(s["ask"])) and not (s["bid"] <= 0 and s["ask"] >= 1)
            mid = (s["bid"] + s["ask"]) / 2 if quoted else s["last"]
            dmid = mid - s["mid"]
            v_prev = s["v"]
            if not math.isnan(dmid):
                s["v"] = dmid if math.isnan(s["v"]) else (1 - av) * s["v"] + av * dmid
            dv = s["v"] - v_prev
            if not math.isnan(dv):
                s["a"] = dv if math.isnan(s["a"]) else (1 - aa) * s["a"] + aa * dv
            s["mid"] = mid
            cur[t] = (mid, s["v"], s["a"])
        total = sum(m for m, _, _ in cur.values() if not math.isnan(m))
        for j, t in enumerate(tickers):
            mid, v, a = cur[t]
            nb = [cur[tickers[k]][2] for k in (j - 1, j + 1) if 0 <= k < len(tickers) and not math.isnan(cur[tickers[k]][2])]
            ras = a - sum(nb) / len(nb) if nb else math.nan
            out.append((ts, t, mid, v, a, mid / total if total > 0 and not math.isnan(mid) else math.nan, ras))
    return pd.DataFrame(out, columns=["minute_ts", "market_ticker", "mid", "velocity", "acceleration", "p_norm", "ras"])


def naive_mc(start, decisions, obs, fc, lows, highs, rng, cfg):
    """Same model and random numbers (float32, as the project draws them), the seed's way: for each
    decision, walk the future steps in Python."""
    x = simulate_weather_pmf(start, decisions, obs, fc, lows, highs, rng, cfg, _inputs_only=True)
    k_steps, n = x["resid"].shape
    f32 = np.float32
    pmf = np.zeros((len(decisions), len(lows)))
    for d in range(len(decisions)):
        r = x["r_idx"][d]
        curve = (x["curves"][r] if r >= 0 else np.zeros(k_steps)).astype(f32)
        running = np.full(n, -np.inf, f32)
        for k in range(x["d_step"][d], k_steps):  # one step at a time
            running = np.maximum(running, curve[k] + x["resid"][k])
        shift = f32(x["b"][d] if r >= 0 else x["persistence"][d])
        future = running + f32(x["level_sd"][d]) * x["z"] + shift
        high = np.floor(np.fmax(future, f32(x["m"][d]) + x["gap"]) + f32(0.5))
        for j, (lo, hi) in enumerate(zip(lows, highs)):
            pmf[d, j] = np.mean((high >= lo) & (high <= hi))
    return pmf


def seed_style_mc(start, decisions, obs, fc, lows, highs, rng, cfg):
    """The seed's mc_tmax shape: fresh AR(1) paths for every decision, drawn step by step in Python."""
    x = simulate_weather_pmf(start, decisions, obs, fc, lows, highs, np.random.default_rng(0), cfg, _inputs_only=True)
    k_steps, n = x["resid"].shape[0], cfg.n_paths
    phi = np.exp(-5 / (60 * cfg.residual_tau_h))
    pmf = np.zeros((len(decisions), len(lows)))
    for d in range(len(decisions)):
        r = x["r_idx"][d]
        curve = x["curves"][r] if r >= 0 else np.zeros(k_steps)
        shift = (x["b"][d] if r >= 0 else x["persistence"][d]) + x["level_sd"][d] * rng.standard_normal(n)
        gap = np.clip(cfg.gap_mean + cfg.gap_sd * rng.standard_normal(n), -0.9, 2.5)
        eps = cfg.residual_sd * rng.standard_normal(n)
        running = np.full(n, -np.inf)
        for k in range(x["d_step"][d], k_steps):
            eps = phi * eps + np.sqrt(1 - phi**2) * cfg.residual_sd * rng.standard_normal(n)
            running = np.maximum(running, curve[k] + eps + shift)
        high = np.floor(np.fmax(x["m"][d] + gap, running) + 0.5)
        for j, (lo, hi) in enumerate(zip(lows, highs)):
            pmf[d, j] = np.mean((high >= lo) & (high <= hi))
    return pmf


def naive_signals(panel, calibrated, cfg: StrategyConfig) -> set:
    """Entry-gate evaluation row by row (iterrows over minute x bracket), onsets only."""
    p = {(r["minute_ts"], r["bracket_index"]): r["p_calibrated"] for r in calibrated.to_dict("records")}
    acc = {(r["minute_ts"], r["bracket_index"]): r["acceleration"] for r in panel.to_dict("records")}
    hz = {r["minute_ts"]: r["hazard"] for r in calibrated.to_dict("records")}
    clv_state, prev, onsets = {}, {}, set()
    nb = panel["bracket_index"].nunique()
    rows = panel.sort_values(["minute_ts", "bracket_index"])
    minutes = {m: i for i, m in enumerate(rows["minute_ts"].drop_duplicates())}
    a_clv = 2 / (cfg.clv_span_min + 1)
    for _, row in rows.iterrows():
        b, ts = row["bracket_index"], row["minute_ts"]
        c = row["clv"]
        if not math.isnan(c):
            clv_state[b] = c if b not in clv_state else (1 - a_clv) * clv_state[b] + a_clv * c
        clv = clv_state.get(b, math.nan)
        pc, bid, ask = p.get((ts, b), math.nan), row["yes_bid"], row["yes_ask"]
        nbr = [acc[(ts, k)] for k in (b - 1, b + 1) if 0 <= k < nb and not math.isnan(acc[(ts, k)])]
        nmean = sum(nbr) / len(nbr) if nbr else math.nan
        book = not (math.isnan(bid) or math.isnan(ask)) and not (bid <= 0 and ask >= 1)
        maker_edge = pc - bid  # weather series: no maker fee
        h = hz.get(ts, math.nan)
        cushion = cfg.slippage_cushion * (1 - cfg.hazard_cushion_discount if h >= cfg.hazard_high else 1.0)
        sig = (book and row["ras"] > cfg.ras_min and nmean < 0 and clv > cfg.clv_buy and maker_edge > cushion)
        if sig and not prev.get(b, False):
            onsets.add((minutes[ts], b))
        prev[b] = sig
    return onsets


def timed(fn):
    t = time.perf_counter()
    out = fn()
    return time.perf_counter() - t, out


def main():
    city, day = get_city("ny"), dt.date(2025, 6, 3)
    cd = simulated_city_day(city, day, NOW)
    print(f"city-day {city.key} {day}: {len(cd.candles):,} candles, {len(cd.trades):,} trades (simulated)")

    t_naive, naive = timed(lambda: naive_panel(cd.markets, cd.candles))
    t_fast, fast = timed(lambda: build_panel(cd.markets, cd.candles, cd.trades))
    cols = ["mid", "velocity", "acceleration", "p_norm", "ras"]
    same = all(np.allclose(naive[c].to_numpy(float), fast[c].to_numpy(float), equal_nan=True, atol=1e-12) for c in cols)
    print(f"features     naive {t_naive * 1000:8.0f} ms   vectorized {t_fast * 1000:6.0f} ms   x{t_naive / t_fast:6.0f}   same numbers: {same}")

    cfg = WeatherModelConfig(n_paths=5000)
    decisions = pd.date_range(cd.day_start + pd.Timedelta(minutes=5), cd.day_start + pd.Timedelta(days=1), freq="5min")
    lows, highs = cd.markets["bracket_low_f"].to_numpy(float), cd.markets["bracket_high_f"].to_numpy(float)
    t_naive, pmf_naive = timed(lambda: naive_mc(cd.day_start, decisions, cd.obs, cd.forecasts, lows, highs, np.random.default_rng(1), cfg))
    t_fast, res = timed(lambda: simulate_weather_pmf(cd.day_start, decisions, cd.obs, cd.forecasts, lows, highs, np.random.default_rng(1), cfg))
    same = np.allclose(pmf_naive, res["pmf"], atol=1e-12)
    print(f"monte carlo  naive {t_naive * 1000:8.0f} ms   vectorized {t_fast * 1000:6.0f} ms   x{t_naive / t_fast:6.0f}   same numbers: {same}  (5,000 paths x 288 decisions, shared draws)")
    t_seed, pmf_seed = timed(lambda: seed_style_mc(cd.day_start, decisions, cd.obs, cd.forecasts, lows, highs, np.random.default_rng(9), cfg))
    gap = np.abs(pmf_seed - res["pmf"]).max()
    print(f"monte carlo  seed  {t_seed * 1000:8.0f} ms   vectorized {t_fast * 1000:6.0f} ms   x{t_seed / t_fast:6.0f}   max |PMF diff| {gap:.3f} (fresh paths per decision: Monte Carlo noise only)")

    panel = fast
    panel_full = build_panel(cd.markets, cd.candles, cd.trades)
    from kw_assets.model.fusion import fuse_panel
    from kw_assets.model.weather import weather_pmf_frame
    wx = weather_pmf_frame(cd.markets, cd.obs, cd.forecasts, cd.day_start, np.random.default_rng(2), WeatherModelConfig(n_paths=1000))
    cal = fuse_panel(panel_full, wx).rename(columns={"p_fused": "p_calibrated"})
    scfg = StrategyConfig()
    t_naive, naive_on = timed(lambda: naive_signals(panel_full, cal, scfg))
    t_fast, (intents, _) = timed(lambda: signal_intents(panel_full, cal, StrategyConfig(cooldown_min=0)))
    fast_on = {(int(r), int(b)) for r, b, s in zip(intents["row"], intents["bracket"], intents["side"]) if s == "yes"}
    print(f"signals      naive {t_naive * 1000:8.0f} ms   vectorized {t_fast * 1000:6.0f} ms   x{t_naive / t_fast:6.0f}   "
          f"same YES onsets: {naive_on == fast_on} ({len(fast_on)})")


if __name__ == "__main__":
    main()
