"""The seed design's loops, written here as a faithful naive baseline, against the project's code on the
same simulated inputs in one process: speed-up ratios, and a check that both give the same numbers.

    .venv/bin/python bench/naive_vs_vectorized.py

- features: the seed's per-row style (for each minute, for each bracket: carry quotes forward, update
  EWM velocity/acceleration, then renormalize and compute RAS with neighbour loops) vs model/panel.py;
- Monte Carlo: the seed's loop over steps in Python (per decision time, paths vectorized within a step),
  replaying the same random numbers, vs model/weather.py (one reverse cummax per forecast run, float32,
  bracket counts per decision in cache-sized chunks);
- backtest signals: a minute-by-minute iterrows pass over the panel evaluating the entry gates vs
  model/strategy.py's vectorized signals (same onsets);
- backtest: the whole strategy minute by minute with iterrows (signals, cooldown, limits, taker and maker
  fills, exits, fees, settlement) vs model/strategy.py + model/backtest.py (same fills, same P&L).
Deliberately slow code lives only here; the naive loops are the baseline, not the product.
"""

import datetime as dt
import math
import time

import numpy as np
import pandas as pd

from kw_assets.cities import get_city
from kw_assets.model.panel import build_panel, minute_grid
from kw_assets.model.backtest import ExecutionConfig, run_backtest
from kw_assets.model.fees import fee_cents, rates
from kw_assets.model.fills import FillConfig, Tape
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
        r = x["state"][d]
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
        r = x["state"][d]
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


def naive_backtest(panel, calibrated, trades, winner, scfg: StrategyConfig, fcfg: FillConfig, ecfg: ExecutionConfig,
                   half_spread: float = 0.02) -> pd.DataFrame:
    """The seed's backtest shape: one iterrows pass over the panel, minute by minute, bracket by bracket,
    keeping our own orders and positions in dicts. Same strategy, fill model, limits, exits and fees as
    model/backtest.py; every decision at minute t uses rows <= t, and fills happen as the minutes pass."""
    rows = panel.sort_values(["minute_ts", "bracket_index"]).reset_index(drop=True)
    minutes = list(rows["minute_ts"].drop_duplicates())
    n, nb = len(minutes), rows["bracket_index"].nunique()
    tickers = rows["market_ticker"].drop_duplicates().tolist()
    p_cal = {(r["minute_ts"], r["bracket_index"]): r["p_calibrated"] for r in calibrated.to_dict("records")}
    hz = {r["minute_ts"]: r["hazard"] for r in calibrated.to_dict("records")}
    t0 = minutes[0].value
    prints: dict = {}  # (row, bracket) -> [(yes price, contracts)]
    for tr in trades.to_dict("records"):
        if tr["is_block_trade"] or tr["market_ticker"] not in tickers:
            continue
        r = math.ceil((tr["created_time"].value - t0) / 60e9)
        if 0 <= r < n:
            prints.setdefault((r, tickers.index(tr["market_ticker"])), []).append((tr["yes_price"], tr["count"]))
    square_up = max(n - 1 - ecfg.square_up_min, 0)
    a_clv = 2 / (scfg.clv_span_min + 1)
    fee_pc = lambda price, rate: math.ceil(rate * scfg.contracts * price * (1 - price) * 100 - 1e-9) / 100 / scfg.contracts  # noqa: E731
    maker_rate, taker_rate = rates("quadratic", ecfg.fee_multiplier)  # weather series: makers pay nothing
    clv_state, prev_sig, last_intent = {}, {}, {}
    quotes = {}  # the current minute's row per bracket
    opposite = {}  # (row, bracket, side) -> the other side's signal at that minute
    positions, fills = [], []
    k_order = 0

    def fill(oid, decided, row, b, side, action, liquidity, price, qty, edge, reason):
        fee = 0.0 if liquidity == "settlement" or qty <= 0 else fee_cents(price, qty, liquidity == "maker", ecfg.fee_type,
                                                                            ecfg.fee_multiplier) / 100
        notional = round(price * qty, 6) if qty > 0 else 0.0
        cash = (-notional - fee) if action == "buy" else (notional - fee)
        fills.append({"order_id": oid, "row": row, "decided": decided, "bracket_index": b, "side": side, "action": action,
                      "liquidity": liquidity, "price": price, "contracts": qty, "fee": fee, "cash_flow": round(cash, 6), "reason": reason})
        return round(cash, 6)

    def taker_price(q, side, action):
        bid, ask, last = q["yes_bid"], q["yes_ask"], q["last_price"]
        if action == "buy":
            yes = ask if not math.isnan(ask) and ask < 1 else last + half_spread
            no = (1 - bid) if not math.isnan(bid) and bid > 0 else (1 - last) + half_spread
            return (yes if side == "yes" else no) + fcfg.taker_slippage
        yes = bid if not math.isnan(bid) and bid > 0 else last - half_spread
        no = (1 - ask) if not math.isnan(ask) and ask < 1 else (1 - last) - half_spread
        return (yes if side == "yes" else no) - fcfg.taker_slippage

    def mark(q, side):
        bid, ask, last = q["yes_bid"], q["yes_ask"], q["last_price"]
        if side == "yes":
            return bid if not math.isnan(bid) and bid > 0 else last - half_spread
        return 1 - ask if not math.isnan(ask) and ask < 1 else 1 - last - half_spread

    for t, (ts, minute_rows) in enumerate(rows.groupby("minute_ts", sort=True)):
        for _, row in minute_rows.iterrows():
            quotes[int(row["bracket_index"])] = row
        # 1. the strategy's signals at this minute, bracket by bracket
        accs = {b: quotes[b]["acceleration"] for b in quotes}
        sig_now = {}
        for _, row in minute_rows.iterrows():
            b = int(row["bracket_index"])
            c = row["clv"]
            if not math.isnan(c):
                clv_state[b] = c if b not in clv_state else (1 - a_clv) * clv_state[b] + a_clv * c
            clv = clv_state.get(b, math.nan)
            nbr = [accs[k] for k in (b - 1, b + 1) if 0 <= k < nb and k in accs and not math.isnan(accs[k])]
            nmean = sum(nbr) / len(nbr) if nbr else math.nan
            pc, bid, ask = p_cal.get((ts, b), math.nan), row["yes_bid"], row["yes_ask"]
            h = hz.get(ts, math.nan)
            cushion = scfg.slippage_cushion * (1 - scfg.hazard_cushion_discount if h >= scfg.hazard_high else 1.0)
            book = not (math.isnan(bid) or math.isnan(ask)) and not (bid <= 0 and ask >= 1)
            fp = lambda x, rate: fee_pc(0.5 if math.isnan(x) else min(max(x, 0.0), 1.0), rate)  # noqa: E731
            edges = {"yes": (pc - ask - fp(ask, taker_rate), pc - bid - fp(bid, maker_rate)),
                     "no": ((1 - pc) - (1 - bid) - fp(1 - bid, taker_rate), (1 - pc) - (1 - ask) - fp(1 - ask, maker_rate))}
            sig = {"yes": book and row["ras"] > scfg.ras_min and nmean < 0 and clv > scfg.clv_buy and edges["yes"][1] > cushion,
                   "no": book and row["ras"] < -scfg.ras_min and nmean > 0 and clv < scfg.clv_sell and edges["no"][1] > cushion}
            sig_now[b] = (sig, edges, cushion)
            opposite[(t, b, "yes")], opposite[(t, b, "no")] = sig["no"], sig["yes"]
        # 2. what fills at this minute, and exits decided by what is known now
        for pos in positions:
            q = quotes[pos["b"]]
            if pos["phase"] == "entry" and pos["liquidity"] == "taker" and t == pos["decided"] + fcfg.latency_min:
                price = taker_price(q, pos["side"], "buy")
                vol = q["volume"]
                qty = float(min(pos["size"], vol)) if not math.isnan(vol) else 0.0
                if math.isnan(price) or not 0 < price < 1 or qty <= 0:
                    pos["phase"] = "void"
                    fill(pos["id"], pos["decided"], pos["decided"], pos["b"], pos["side"], "buy", "taker", math.nan, 0.0, pos["edge"], "not filled")
                    continue
                price = round(price, 6)
                pos["pnl"] += fill(pos["id"], pos["decided"], t, pos["b"], pos["side"], "buy", "taker", price, qty, pos["edge"], "entry")
                pos.update(held=qty, qty=qty, first=t, cost=price * qty, phase="held", done=t)
            elif pos["phase"] == "entry" and pos["liquidity"] == "maker" and t >= pos["decided"] + fcfg.latency_min:
                yes_limit = pos["limit"] if pos["side"] == "yes" else 1 - pos["limit"]
                through = sum(c for px, c in prints.get((t, pos["b"]), [])
                              if (px <= yes_limit + 1e-9 if pos["side"] == "yes" else px >= yes_limit - 1e-9))
                want = min(pos["filled_raw"] + fcfg.maker_queue_share * through, pos["size"])
                # the contracts filled so far in cents, each fill the change of that (no cent lost to rounding)
                qty = float(np.round(np.round(want, 2) - np.round(pos["filled_raw"], 2), 2))
                pos["filled_raw"] = want
                if qty > 1e-12:
                    pos["pnl"] += fill(pos["id"], pos["decided"], t, pos["b"], pos["side"], "buy", "maker", pos["limit"], qty, pos["edge"], "entry")
                    pos["held"] += qty
                    pos["qty"] += qty
                    pos["cost"] += pos["limit"] * qty
                    pos["first"] = t if pos["first"] is None else pos["first"]
                expired = t >= min(pos["decided"] + fcfg.maker_ttl_min, n - 1)
                if pos["filled_raw"] >= pos["size"] - 1e-12 or expired:
                    if pos["held"] <= 0:
                        pos["phase"] = "void"
                        fill(pos["id"], pos["decided"], pos["decided"], pos["b"], pos["side"], "buy", "maker", math.nan, 0.0, pos["edge"], "not filled")
                    else:
                        pos["phase"], pos["done"] = "held", t if pos["held"] >= pos["size"] - 1e-9 else max(t, min(pos["decided"] + fcfg.maker_ttl_min, n - 1))
            elif pos["phase"] == "exiting" and t > pos["exit_decided"] and t < n:
                price = taker_price(q, pos["side"], "sell")
                vol = q["volume"]
                qty = float(min(pos["held"], vol)) if not math.isnan(vol) else 0.0
                if not math.isnan(price) and 0 < price < 1 and qty > 0:
                    pos["pnl"] += fill(pos["id"], pos["exit_decided"], t, pos["b"], pos["side"], "sell", "taker", round(price, 6), qty, pos["edge"], "exit")
                    pos["held"] -= qty
                    pos["exit_row"] = t
                    if pos["held"] <= 0:
                        pos["phase"] = "closed"
            if pos["phase"] == "held" and ecfg.exit_mode == "rules" and t > pos["done"] and pos["done"] < n - 1:
                avg = pos["cost"] / pos["qty"]
                m = mark(q, pos["side"])
                hit = (m - avg >= ecfg.take_profit) or (avg - m >= ecfg.stop_loss) or t >= square_up or opposite.get((t, pos["b"], pos["side"]), False)
                if hit:
                    pos["phase"], pos["exit_decided"] = "exiting", t
        # 3. new orders
        for b in sorted(sig_now):
            sig, edges, cushion = sig_now[b]
            for side in ("no", "yes"):
                onset = sig[side] and not prev_sig.get((b, side), False)
                prev_sig[(b, side)] = sig[side]
                if not onset or ((b, side) in last_intent and t - last_intent[(b, side)] < scfg.cooldown_min):
                    continue
                last_intent[(b, side)] = t
                taker = edges[side][0] > cushion + scfg.taker_extra_edge
                q = quotes[b]
                oid = f"o{k_order:05d}"
                k_order += 1
                liq, edge = ("taker", edges[side][0]) if taker else ("maker", edges[side][1])
                realized = sum(p["pnl"] for p in positions if p["phase"] == "closed" and p["exit_row"] <= t)
                tied = lambda p: p["size"] if p["phase"] == "entry" else p["qty"] if p["phase"] in ("held", "exiting") else 0.0  # noqa: E731
                open_b = sum(tied(p) for p in positions if p["b"] == b)
                open_e = sum(tied(p) for p in positions)
                size = round(min(scfg.contracts, ecfg.max_contracts_bracket - open_b, ecfg.max_contracts_event - open_e), 2)
                bid, ask = q["yes_bid"], q["yes_ask"]
                reason = ("daily loss limit" if realized <= -ecfg.daily_loss_limit else "position limit" if size <= 0 else
                          "empty book" if math.isnan(bid) or math.isnan(ask) or (bid <= 0 and ask >= 1) else
                          "too close to the close" if t >= square_up else None)
                if reason:
                    fill(oid, t, t, b, side, "buy", liq, math.nan, 0.0, edge, reason)
                    continue
                positions.append({"id": oid, "b": b, "side": side, "liquidity": liq, "decided": t, "size": size,
                                  "limit": bid if side == "yes" else 1 - ask, "edge": edge, "phase": "entry", "held": 0.0,
                                  "qty": 0.0, "cost": 0.0, "pnl": 0.0, "first": None, "filled_raw": 0.0, "exit_row": n})
    for pos in positions:  # the close: whatever is still held settles at 1 or 0
        if pos["phase"] in ("held", "exiting") and pos["held"] > 0:
            pays = 1.0 if (pos["side"] == "yes") == (pos["b"] == winner) else 0.0
            pos["pnl"] += fill(pos["id"], n - 1, n - 1, pos["b"], pos["side"], "settle", "settlement", pays, pos["held"], pos["edge"], "settlement")
    return pd.DataFrame(fills)


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

    fcfg, ecfg = FillConfig(), ExecutionConfig()
    winner = int(cd.markets.loc[cd.markets["result"] == "yes", "bracket_index"].iloc[0])

    def engine():
        tape = Tape.build(panel_full, cd.trades, cd.candles)
        intents, opp = signal_intents(panel_full, cal, scfg)
        return run_backtest(tape, intents, winner, opp, fcfg, ecfg)

    t_naive, naive_fills = timed(lambda: naive_backtest(panel_full, cal, cd.trades, winner, scfg, fcfg, ecfg))
    t_fast, fast_fills = timed(engine)
    key = ["order_id", "action", "contracts", "price", "fee", "cash_flow"]
    a = naive_fills[naive_fills["contracts"] > 0].sort_values(key[:2] + ["row"])[key].reset_index(drop=True)
    b = fast_fills[fast_fills["contracts"] > 0].sort_values(["order_id", "action", "fill_ts"])[key].reset_index(drop=True)
    same = len(a) == len(b) and np.allclose(a[key[2:]].to_numpy(float), b[key[2:]].to_numpy(float), equal_nan=True) \
        and (a[key[:2]].to_numpy() == b[key[:2]].to_numpy()).all()
    print(f"backtest     naive {t_naive * 1000:8.0f} ms   vectorized {t_fast * 1000:6.0f} ms   x{t_naive / t_fast:6.0f}   "
          f"same fills: {same} ({len(b)} fills, net P&L {naive_fills['cash_flow'].sum():+.2f} vs {fast_fills['cash_flow'].sum():+.2f}, "
          f"fees {naive_fills['fee'].sum():.2f} vs {fast_fills['fee'].sum():.2f})")


if __name__ == "__main__":
    main()
