"""Monte Carlo of the rest of the climate day: the bracket PMF of the official high, the new-high
hazard, and the expected high, at every decision time.

Model, at decision time tau (all inputs stamped <= tau):
- M: the running max of 5-minute obs so far. The official high is the rounded max of 2-minute means
  of 2-5 s samples, which whole-C 5-minute readings can miss or round off, so the max so far is
  M + G with G ~ N(gap_mean, gap_sd), clipped to [-0.9, 2.5] F.
- F(t): the latest forecast run issued <= tau, interpolated to 5-minute steps, plus the forecasts'
  cold bias (+0.25 F).
- The future path is X_k = F(t_k) + b + L + R_k, where:
  - b = kappa x (latest obs - F at that time) is the current error, persisting;
  - L ~ N(0, s_L^2) is the day-level error, with s_L^2 = (a + c x lead_h) x remaining/24, so it shrinks
    as the day runs out;
  - R is a stationary AR(1) residual (sd r_sd, e-folding r_tau_h hours).
- Official high H = round(max(M + G, max_k X_k)); PMF = share of paths per bracket.
- Hazard: the share of paths whose next 5-minute reading (whole C, shown in F) exceeds M.

Defaults fitted from NWS high forecasts vs observed, ~160 US cities, 2021-01-30..2021-09-30 (the reference
data): error SD 2.55/2.87/3.11/3.35 F at leads ~8/20/32/44 h to the afternoon peak, i.e.
SD^2 ~ 5.45 + 0.131 x lead_h, bias -0.25 F. r_sd, r_tau_h, kappa and the gap have no published figure:
they are priors, exposed as parameters.

Random numbers are shared across decision times (one z, G and R per path), so the future max for
every decision time comes from one reverse cumulative max per forecast run. Paths are float32 and
steps-major; decisions are evaluated in cache-sized chunks, and the PMF comes from counts of paths at or
above each bracket edge (no per-path bracket lookup): ~45 ms for 5,000 paths x ~470 decisions.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.signal import lfilter

STEP = pd.Timedelta(minutes=5)
STEPS_PER_DAY = 288


@dataclass(frozen=True)
class WeatherModelConfig:
    n_paths: int = 5000
    decision_every_min: int = 5
    level_var_intercept: float = 5.45  # F^2
    level_var_per_hour: float = 0.131  # F^2 per hour of lead
    forecast_bias: float = -0.25  # forecasts run this much below the observed high
    peak_hour_lst: float = 14.5  # climatological time of the high (KNYC CLI median ~13:40-14:20)
    residual_sd: float = 0.8
    residual_tau_h: float = 1.0
    kappa: float = 0.7
    gap_mean: float = 0.4
    gap_sd: float = 0.6
    no_forecast_level_sd: float = 4.0


def _quantize_c(temp_f: np.ndarray) -> np.ndarray:
    """What a 5-minute ASOS reading shows: whole degrees C, converted back to F."""
    return np.round(np.round((temp_f - 32) / 1.8) * 1.8 + 32, 1)


def decision_times(day_start: pd.Timestamp, first: pd.Timestamp, every_min: int = 5) -> pd.DatetimeIndex:
    """Every ``every_min`` minutes from the first decision (rounded up) to the end of the climate day."""
    step = pd.Timedelta(minutes=every_min)
    offset = (first - day_start) / step
    k0 = int(np.ceil(offset))
    end = day_start + pd.Timedelta(days=1)
    return pd.date_range(day_start + k0 * step, end, freq=step)


def simulate_weather_pmf(day_start: pd.Timestamp, decisions: pd.DatetimeIndex, obs: pd.DataFrame,
                         forecasts: pd.DataFrame, lows: np.ndarray, highs: np.ndarray,
                         rng: np.random.Generator, cfg: WeatherModelConfig = WeatherModelConfig(),
                         _inputs_only: bool = False) -> dict[str, np.ndarray]:
    """Arrays per decision time: pmf (D x brackets), hazard, expected_high, high_sd, obs_max, run issued_at.
    (``_inputs_only`` returns the shared random inputs instead: the naive benchmark replays them.)"""
    n, k_steps = cfg.n_paths, STEPS_PER_DAY
    step_ns = STEP.value
    t0 = day_start.value
    step_times = t0 + step_ns * np.arange(1, k_steps + 1)  # end of each 5-minute step
    dec = decisions.asi8
    n_dec = len(dec)

    # observations known at each decision time
    o = obs.sort_values("valid_time")
    o_t = o["valid_time"].astype("int64").to_numpy()
    o_v = o["temp_f"].to_numpy(float)
    o_idx = np.searchsorted(o_t, dec, side="right") - 1  # latest obs <= tau
    run_max = np.maximum.accumulate(o_v) if len(o_v) else o_v
    m = np.where(o_idx >= 0, run_max[np.maximum(o_idx, 0)] if len(o_v) else -np.inf, -np.inf)

    # the latest forecast run issued <= tau, on the 5-minute grid
    runs = forecasts.sort_values(["issued_at", "valid_time"])
    issued_all = runs["issued_at"].astype("int64").to_numpy()
    run_ids = np.unique(issued_all)
    r_idx = np.searchsorted(run_ids, dec, side="right") - 1  # -1: no run yet
    curves = np.empty((len(run_ids), k_steps))
    for j, rid in enumerate(run_ids):  # one interpolation per run (a handful per day)
        sel = issued_all == rid
        vt = runs["valid_time"].astype("int64").to_numpy()[sel]
        curves[j] = np.interp(step_times, vt, runs["temp_f"].to_numpy(float)[sel]) - cfg.forecast_bias

    # per decision: current error b, level sd
    lead_h = (t0 + cfg.peak_hour_lst * 3600e9 - dec) / 3600e9
    remaining = np.clip((t0 + 86400e9 - dec) / 86400e9, 0, 1)
    level_sd = np.sqrt(np.maximum(cfg.level_var_intercept + cfg.level_var_per_hour * np.maximum(lead_h, 0), 0) * remaining)
    has_run = r_idx >= 0
    level_sd = np.where(has_run, level_sd, cfg.no_forecast_level_sd * np.sqrt(remaining))
    latest_obs_t = np.where(o_idx >= 0, o_t[np.maximum(o_idx, 0)] if len(o_t) else 0, 0)
    latest_obs_v = np.where(o_idx >= 0, o_v[np.maximum(o_idx, 0)] if len(o_v) else np.nan, np.nan)
    obs_step = np.clip((latest_obs_t - t0) // step_ns - 1, 0, k_steps - 1)
    fc_at_obs = np.where(has_run, curves[np.maximum(r_idx, 0), obs_step] if len(run_ids) else np.nan, np.nan)
    b = np.where(np.isfinite(latest_obs_v) & has_run, cfg.kappa * (latest_obs_v - fc_at_obs), 0.0)
    # no forecast yet: persistence of the latest obs (or nothing at all)
    persistence = np.where(np.isfinite(latest_obs_v), latest_obs_v, np.nan)

    # common random numbers, float32 and steps-major: (steps, paths)
    f32 = np.float32
    z = rng.standard_normal(n, dtype=f32)
    gap = np.clip(cfg.gap_mean + cfg.gap_sd * rng.standard_normal(n, dtype=f32), -0.9, 2.5).astype(f32)
    phi = np.exp(-5 / (60 * cfg.residual_tau_h))
    innov = rng.standard_normal((k_steps, n), dtype=f32) * f32(cfg.residual_sd * np.sqrt(1 - phi**2))
    zi = (phi * cfg.residual_sd * rng.standard_normal(n, dtype=f32))[None, :]
    resid = lfilter(np.array([1.0], f32), np.array([1.0, -phi], f32), innov, axis=0, zi=zi)[0].astype(f32, copy=False)

    # step index of each decision: future steps are those ending strictly after tau
    d_step = np.clip((dec - t0) // step_ns, 0, k_steps).astype(int)  # number of steps already elapsed
    shift = np.where(has_run, b, persistence)  # path-independent part of the future level
    if _inputs_only:
        return {"curves": curves, "r_idx": r_idx, "resid": resid, "z": z, "gap": gap, "b": b, "level_sd": level_sd,
                "persistence": persistence, "m": m, "d_step": d_step}

    # per decision: P(H >= edge) for each bracket edge, sums of H and H^2, P(next reading > M)
    edges = (np.ceil(lows[1:]) - 0.5).astype(f32)  # H = floor(x + 0.5) >= low  <=>  x >= ceil(low) - 0.5
    n_br = len(lows)
    ge = np.zeros((n_dec, n_br - 1))
    h_mean = np.zeros(n_dec)
    h_var = np.zeros(n_dec)
    hazard = np.full(n_dec, np.nan)
    hazard_at = _new_high_threshold(m)  # the next reading shows a new max iff x >= this
    in_day = np.isfinite(m) & (d_step < k_steps)
    m32, level32, shift32 = m.astype(f32), level_sd.astype(f32), shift.astype(f32)
    chunk = max(1, (1 << 18) // n)
    for r in np.unique(r_idx):  # one pass per forecast run (a handful per day)
        cols = np.nonzero(r_idx == r)[0]
        curve = (curves[r] if r >= 0 else np.zeros(k_steps)).astype(f32)
        lo = int(min(d_step[cols].min(), k_steps - 1))  # steps before this run's first decision are never needed
        hi = int(min(d_step[cols].max() + 1, k_steps))  # the run's decisions look at steps >= lo; rows lo..hi-1 differ
        y = resid[lo:hi] + curve[lo:hi, None]
        suffix = np.full((hi - lo + 1, n), -np.inf, f32)  # row k: max over steps >= lo + k
        if hi < k_steps:
            suffix[-1] = (resid[hi:] + curve[hi:, None]).max(axis=0)
        suffix[:-1] = np.fmax(np.maximum.accumulate(y[::-1], axis=0)[::-1], suffix[-1])
        for i in range(0, len(cols), chunk):
            c = cols[i:i + chunk]
            noise = level32[c, None] * z[None, :]
            x = suffix[d_step[c] - lo] + noise
            x += shift32[c, None]
            if np.isfinite(m[c]).any():
                np.fmax(x, m32[c, None] + gap[None, :], out=x)
            ge[c] = np.column_stack([_count_at_least(x, e) for e in edges]) if len(edges) else ge[c]
            h = np.floor(x + f32(0.5))
            ref = h[:, :1].copy()
            h -= ref  # small whole numbers around the first path's high: exact float32 sums
            s1 = h.sum(axis=1, dtype=np.float64) / n
            h_mean[c] = ref[:, 0] + s1
            h_var[c] = np.einsum("ij,ij->i", h, h) / n - s1**2
            nxt = in_day[c]
            if nxt.any():
                cn = c[nxt]
                ahead = y[d_step[cn] - lo] + noise[nxt]
                hazard[cn] = _count_at_least(ahead, (hazard_at[cn] - shift[cn]).astype(f32)[:, None]) / n

    valid = ((d_step < k_steps) & np.isfinite(shift)) | np.isfinite(m)
    counts = np.column_stack([np.full(n_dec, float(n)), ge, np.zeros(n_dec)])
    pmf = (counts[:, :-1] - counts[:, 1:]) / n
    hazard = np.where(d_step < k_steps, hazard, 0.0)
    return {
        "valid": valid & (has_run | np.isfinite(m)),
        "pmf": pmf, "hazard": hazard,
        "expected_high": h_mean, "high_sd": np.sqrt(np.maximum(h_var, 0.0)),
        "obs_max": np.where(np.isfinite(m), m, np.nan),
        "forecast_issued_at": np.where(has_run, run_ids[np.maximum(r_idx, 0)] if len(run_ids) else 0, np.iinfo(np.int64).min),
    }


def _count_at_least(x: np.ndarray, threshold) -> np.ndarray:
    """Per row of ``x``, how many entries are >= ``threshold`` (bytes summed: ~4x numpy's count_nonzero)."""
    return np.greater_equal(x, threshold).view(np.uint8).sum(axis=1, dtype=np.int32)


def _new_high_threshold(m: np.ndarray) -> np.ndarray:
    """Smallest temperature whose 5-minute reading (whole C, shown in F) exceeds ``m``: the next reading
    sets a new max iff the true temperature is at least this (-inf where nothing is known yet)."""
    finite = np.isfinite(m)
    mm = np.where(finite, m, 32.0)
    c = np.floor((mm - 32) / 1.8) + 2  # a whole C whose reading is above m; step down while the one below is too
    for _ in range(3):
        below = np.round((c - 1) * 1.8 + 32, 1) > mm
        c = np.where(below, c - 1, c)
    return np.where(finite, (c - 0.5) * 1.8 + 32, -np.inf)


def weather_pmf_frame(markets: pd.DataFrame, obs: pd.DataFrame, forecasts: pd.DataFrame, day_start: pd.Timestamp,
                      rng: np.random.Generator, cfg: WeatherModelConfig = WeatherModelConfig()) -> pd.DataFrame:
    """Long frame: one row per decision time x bracket. Empty when there is no weather data."""
    if obs.empty and forecasts.empty:
        return pd.DataFrame()
    markets = markets.sort_values("bracket_index")
    first = max(markets["open_time"].min(), day_start - pd.Timedelta(days=1))
    decisions = decision_times(day_start, first, cfg.decision_every_min)
    out = simulate_weather_pmf(day_start, decisions, obs, forecasts, markets["bracket_low_f"].to_numpy(float),
                               markets["bracket_high_f"].to_numpy(float), rng, cfg)
    keep = out["valid"]
    n_br = len(markets)
    d = decisions[keep]
    issued = out["forecast_issued_at"][keep]
    return pd.DataFrame({
        "decision_ts": pd.to_datetime(np.repeat(d.asi8, n_br), utc=True),
        "market_ticker": np.tile(markets["market_ticker"].to_numpy(), len(d)),
        "bracket_index": np.tile(markets["bracket_index"].to_numpy(), len(d)),
        "p_weather": out["pmf"][keep].ravel(),
        "hazard": np.repeat(out["hazard"][keep], n_br),
        "expected_high_f": np.repeat(out["expected_high"][keep], n_br),
        "high_sd_f": np.repeat(out["high_sd"][keep], n_br),
        "obs_max_f": np.repeat(out["obs_max"][keep], n_br),
        "forecast_issued_at": pd.to_datetime(np.repeat(np.where(issued == np.iinfo(np.int64).min, np.datetime64("NaT"),
                                                                 issued.astype("datetime64[ns]")), n_br), utc=True),
        "n_paths": cfg.n_paths,
    })
