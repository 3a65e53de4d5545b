"""Monte Carlo of the rest of the climate day: the bracket PMF of the official high, the new-high
hazard, and the expected high, at every decision time.

Model, at decision time tau (all inputs stamped <= tau):
- M: the running max of 5-minute obs so far. The official high is the rounded max of 2-minute means
  of 2-5 s samples, which whole-C 5-minute readings can miss or round off, so the max so far is
  M + G with G ~ N(gap_mean, gap_sd), clipped to [-0.9, 2.5] F.
- F(t): the latest forecast run issued <= tau, interpolated to 5-minute steps, shifted by the run's
  learned offset (below).
- The future path is X_k = F(t_k) + b + L + R_k, where:
  - b = kappa x (latest obs - F at that time) is the current error, persisting;
  - R is a stationary AR(1) residual (sd r_sd, e-folding r_tau_h hours);
  - L = s_L g(Z), Z ~ N(0, 1), is the day-level error, with s_L^2 = v_run x remaining/24 once obs have
    arrived, so it shrinks as the day runs out (v_run before the first obs); g is the EMOS fit's error
    shape (``emos.shape_quantile``: skewed, heavy-tailed on real forecasts), the identity when Gaussian.
- The run's offset and v_run come from the daily-high EMOS (``model/emos.py``, learned walk-forward
  from settled days): with mu and sd its mean and SD for the run's official high, and m0, v0 the mean
  and variance over paths of max_k(F_k + R_k) for the whole day, offset = mu - m0 and
  v_run = sd^2 - 1/12 - v0 (the rounding's share), so before any obs the PMF has the EMOS mean and SD.
- Yesterday's error at the same lead (``emos.lag_errors``: D-1's obs max through 18:00 LST minus the high of
  D-1's run issued 24 h earlier) and the jump from that obs max to the run's high enter the EMOS from
  18:00 LST of D-1 on, when they are known; before that the run's moments are those without them. Each
  (run, yesterday known) pair is one information state.
- Official high H = round(max(M + G, max_k X_k)); PMF = share of paths per bracket.
- Hazard: the share of paths whose next 5-minute reading (whole C, shown in F) exceeds M.

r_sd, r_tau_h, kappa and the gap have no published figure: they are priors, exposed as parameters. (The
gap's spread is mostly whole-C rounding, uniform over +-0.9 F: SD 0.52; its mean is the 5-minute
sampling missing the 2-minute peak.)

Random numbers are shared across decision times (one z, G and R per path), so the future max for
every decision time comes from one reverse cumulative max per forecast run. Paths are float32 and
steps-major; decisions are evaluated in cache-sized chunks, and the PMF comes from counts of paths at or
above each bracket edge (no per-path bracket lookup): ~45 ms for 5,000 paths x ~470 decisions.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import pandas as pd

from kw_assets.model import emos
from kw_assets.model.stamps import utc_stamps

STEP = pd.Timedelta(minutes=5)
STEPS_PER_DAY = 288


@dataclass(frozen=True)
class WeatherModelConfig:
    n_paths: int = 5000
    decision_every_min: int = 5
    peak_hour_lst: float = 14.5  # climatological time of the high (KNYC CLI median ~13:40-14:20)
    residual_sd: float = 0.8
    residual_tau_h: float = 1.0
    kappa: float = 0.7
    gap_mean: float = 0.3
    gap_sd: float = 0.5
    no_forecast_level_sd: float = 4.0
    min_level_sd: float = 0.3
    shared_residuals: bool = True  # every climate day's paths take the same AR(1) residuals (``shared_residuals``)


def decision_times(day_start: pd.Timestamp, first: pd.Timestamp, every_min: int = 5) -> pd.DatetimeIndex:
    """Every ``every_min`` minutes from the first decision (rounded up) to the end of the climate day."""
    step = pd.Timedelta(minutes=every_min)
    offset = (first - day_start) / step
    k0 = int(np.ceil(offset))
    end = day_start + pd.Timedelta(days=1)
    return pd.date_range(day_start + k0 * step, end, freq=step)


def ar1_paths(innov: np.ndarray, phi: float, start: np.ndarray) -> np.ndarray:
    """Each column an AR(1) path, in float64: y[0] = innov[0] + start, y[k] = innov[k] + phi * y[k-1]. scipy's
    ``lfilter`` does the same arithmetic (so the same bits) but 5x slower on a day's 288 steps x thousands of paths:
    it ran a third of a weather PMF's time."""
    y = innov.astype(np.float64)
    y[0] += start
    for k in range(1, len(y)):  # one vector operation per 5-minute step, across all paths
        y[k] += phi * y[k - 1]
    return y


def residual_paths(rng: np.random.Generator, n_paths: int, tau_h: float, sd: float) -> np.ndarray:
    """The AR(1) residual R of ``n_paths`` paths over the day's 288 five-minute steps (steps x paths, float32),
    stationary from the first step: SD ``sd``, e-folding ``tau_h`` hours."""
    f32 = np.float32
    phi = np.exp(-5 / (60 * tau_h))
    innov = rng.standard_normal((STEPS_PER_DAY, n_paths), dtype=f32) * f32(sd * np.sqrt(1 - phi**2))
    start = phi * sd * rng.standard_normal(n_paths, dtype=f32)
    return ar1_paths(innov, float(f32(phi)), start).astype(f32)


RESIDUAL_SEED = 20250101


@lru_cache(maxsize=8)
def shared_residuals(n_paths: int, tau_h: float, sd: float) -> np.ndarray:
    """``residual_paths`` drawn once per process from a fixed seed and shared, read-only, by every climate day's
    Monte Carlo. Drawing 288 x 5,000 normals and filtering them was about half of a day's weather PMF. Each day's PMF has
    the same law as with its own draws (a sample of the AR(1) paths, and the day's own level error, gap and
    information); what the days share is the Monte Carlo noise of the residual's max, which 5,000 paths keep small.
    A day's numbers depend on the day's inputs and seed only, whichever days a run computes."""
    paths = residual_paths(np.random.default_rng(RESIDUAL_SEED), n_paths, tau_h, sd)
    paths.flags.writeable = False
    return paths


def simulate_weather_pmf(day_start: pd.Timestamp, decisions: pd.DatetimeIndex, obs: pd.DataFrame,
                         forecasts: pd.DataFrame, lows: np.ndarray, highs: np.ndarray,
                         rng: np.random.Generator, cfg: WeatherModelConfig = WeatherModelConfig(),
                         params: np.ndarray | None = None, obs_delay: pd.Timedelta = pd.Timedelta(0),
                         yesterday: pd.DataFrame | None = None, shape: np.ndarray | None = None,
                         long_bias: np.ndarray | None = None, long_bias_weight: float = 0.0,
                         _inputs_only: bool = False) -> dict[str, np.ndarray]:
    """Arrays per decision time: pmf (D x brackets), hazard, expected_high, high_sd, obs_max, run issued_at.
    ``params`` are the city's EMOS coefficients for the day (``emos.PARAM_COLUMNS``; None: the prior).
    ``yesterday``: the previous climate day's runs (issued_at, forecast_high_f) with its obs max through
    18:00 LST (obs_max_f), for the lag term; None or empty: unknown all day.
    ``shape``: the fit's error shape (``emos.SHAPE_COLUMNS``) for the day-level error; None: Gaussian.
    ``long_bias``, ``long_bias_weight``: the city's long-run bias per lead bucket and the share of the way the EMOS
    mean moves to it (``emos.blend_long_bias``); None: the EMOS mean alone.
    ``obs_delay``: an obs is known only that long after its valid time (the simulator's slow traders).
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
    o_idx = np.searchsorted(o_t, dec - pd.Timedelta(obs_delay).value, side="right") - 1  # latest obs known at tau
    run_max = np.maximum.accumulate(o_v) if len(o_v) else o_v
    m = np.where(o_idx >= 0, run_max[np.maximum(o_idx, 0)] if len(o_v) else -np.inf, -np.inf)

    # the latest forecast run issued <= tau, on the 5-minute grid, and each run's daily-high features
    runs = forecasts.sort_values(["issued_at", "valid_time"])
    issued_all = runs["issued_at"].astype("int64").to_numpy()
    valid_all = runs["valid_time"].astype("int64").to_numpy()
    temp_all = runs["temp_f"].to_numpy(float)
    run_ids = np.unique(issued_all)
    r_idx = np.searchsorted(run_ids, dec, side="right") - 1  # -1: no run yet
    curves = np.empty((len(run_ids), k_steps))
    run_high = np.full(len(run_ids), np.nan)
    run_low = np.full(len(run_ids), np.nan)
    in_window = (valid_all >= t0) & (valid_all < t0 + 86400 * 10**9)
    for j, rid in enumerate(run_ids):  # one interpolation per run (a handful per day)
        sel = issued_all == rid
        curves[j] = np.interp(step_times, valid_all[sel], temp_all[sel])
        day_sel = sel & in_window
        if day_sel.any():
            run_high[j], run_low[j] = temp_all[day_sel].max(), temp_all[day_sel].min()
    run_high = np.where(np.isfinite(run_high), run_high, curves.max(axis=1) if len(run_ids) else run_high)
    # information states: run j without (2j) and with (2j + 1) yesterday's error, known from 18:00 LST of D-1
    lag_run, yesterday_high = emos.day_lag_errors(utc_stamps(run_ids), yesterday)
    if not emos.uses_yesterday(params):  # the terms are off: one state per run, not two with equal moments
        lag_run[:], yesterday_high[:] = np.nan, np.nan
    unknown = np.full(len(run_ids), np.nan)
    moments = [run_high_distribution(run_ids, run_high, run_low, t0, cfg.peak_hour_lst, params, lag, high,
                                     long_bias, long_bias_weight)
               for lag, high in ((unknown, unknown), (lag_run, yesterday_high))]
    mu_run = np.column_stack([moments[0][0], moments[1][0]]).ravel()
    sd_run = np.column_stack([moments[0][1], moments[1][1]]).ravel()
    curves = np.repeat(curves, 2, axis=0)
    lag_known = (dec >= t0 - emos.LAG_KNOWN_HOURS_BEFORE_DAY * 3600 * 10**9) & (r_idx >= 0)
    yesterday_known = np.isfinite(lag_run) | np.isfinite(yesterday_high)
    lag_known &= yesterday_known[np.maximum(r_idx, 0)] if len(run_ids) else False  # unknown: one state, not two
    state = np.where(r_idx >= 0, 2 * r_idx + lag_known, -1)

    # common random numbers, float32 and steps-major: (steps, paths)
    f32 = np.float32
    z = rng.standard_normal(n, dtype=f32)
    if not emos.is_gaussian(shape):
        z = emos.shape_quantile(np.asarray(shape, float), z).astype(f32)
    gap = np.clip(cfg.gap_mean + cfg.gap_sd * rng.standard_normal(n, dtype=f32), -0.9, 2.5).astype(f32)
    if cfg.shared_residuals:
        resid = shared_residuals(n, cfg.residual_tau_h, cfg.residual_sd)
    else:
        resid = residual_paths(rng, n, cfg.residual_tau_h, cfg.residual_sd)

    # each used run: shift its curve and size its level error so the whole-day high has the EMOS moments
    level_var = np.full(len(curves), cfg.min_level_sd**2)
    for j in np.unique(state[state >= 0]):
        day_max = (resid + curves[j].astype(f32)[:, None]).max(axis=0)
        curves[j] += mu_run[j] - float(day_max.mean(dtype=np.float64))
        level_var[j] = max(sd_run[j] ** 2 - 1 / 12 - float(day_max.var(dtype=np.float64)), cfg.min_level_sd**2)

    # per decision: current error b, level sd
    remaining = np.clip((t0 + 86400e9 - dec) / 86400e9, 0, 1)
    has_run = r_idx >= 0
    shrink = np.where(o_idx >= 0, remaining, 1.0)  # only obs tell what the hours gone were like
    level_sd = np.where(has_run, np.sqrt(level_var[np.maximum(state, 0)] * shrink) if len(run_ids) else 0.0,
                        cfg.no_forecast_level_sd * np.sqrt(shrink))
    latest_obs_t = np.where(o_idx >= 0, o_t[np.maximum(o_idx, 0)] if len(o_t) else 0, 0)
    latest_obs_v = np.where(o_idx >= 0, o_v[np.maximum(o_idx, 0)] if len(o_v) else np.nan, np.nan)
    obs_step = np.clip((latest_obs_t - t0) // step_ns - 1, 0, k_steps - 1)
    fc_at_obs = np.where(has_run, curves[np.maximum(state, 0), obs_step] if len(run_ids) else np.nan, np.nan)
    b = np.where(np.isfinite(latest_obs_v) & has_run, cfg.kappa * (latest_obs_v - fc_at_obs), 0.0)
    # no forecast yet: persistence of the latest obs (or nothing at all)
    persistence = np.where(np.isfinite(latest_obs_v), latest_obs_v, np.nan)

    # step index of each decision: future steps are those ending strictly after tau
    d_step = np.clip((dec - t0) // step_ns, 0, k_steps).astype(int)  # number of steps already elapsed
    shift = np.where(has_run, b, persistence)  # path-independent part of the future level
    if _inputs_only:
        return {"curves": curves, "state": state, "resid": resid, "z": z, "gap": gap, "b": b, "level_sd": level_sd,
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
    for r in np.unique(state):  # one pass per information state (a handful per day)
        cols = np.nonzero(state == r)[0]
        curve = (curves[r] if r >= 0 else np.zeros(k_steps)).astype(f32)
        lo = int(min(d_step[cols].min(), k_steps - 1))  # steps before this run's first decision are never needed
        hi = int(min(d_step[cols].max() + 1, k_steps))  # the run's decisions look at steps >= lo; rows lo..hi-1 differ
        y = resid[lo:hi] + curve[lo:hi, None]
        suffix = _suffix_max(y, (resid[hi:] + curve[hi:, None]).max(axis=0) if hi < k_steps else None)
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
            with np.errstate(invalid="ignore"):  # -inf - -inf: a decision with no obs and no step left, not valid
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


def run_high_distribution(run_ids: np.ndarray, run_high: np.ndarray, run_low: np.ndarray, t0: int,
                          peak_hour_lst: float, params: np.ndarray | None,
                          lag_error: np.ndarray | float = np.nan, yesterday_high: np.ndarray | float = np.nan,
                          long_bias: np.ndarray | None = None, long_bias_weight: float = 0.0
                          ) -> tuple[np.ndarray, np.ndarray]:
    """EMOS mean and SD of the official high given each forecast run (issued in order), the two before it,
    yesterday's error at the run's lead and yesterday's observed high (NaN: unknown); the mean moved toward the
    run's forecast plus the city's long-run bias (``emos.blend_long_bias``)."""
    prev1 = np.concatenate([[np.nan], run_high[:-1]])[: len(run_high)]
    prev2 = np.concatenate([[np.nan, np.nan], run_high[:-2]])[: len(run_high)]
    lead_h = np.maximum((t0 + peak_hour_lst * 3600e9 - run_ids.astype(float)) / 3600e9, 0)
    xm, xs = emos.design(run_high, prev1, prev2, run_low, lead_h, lag_error, yesterday_high)
    mu, sd = emos.predict(emos.PRIOR if params is None else params, xm, xs)
    return emos.blend_long_bias(mu, run_high, lead_h, long_bias, long_bias_weight), sd


def _suffix_max(y: np.ndarray, beyond: np.ndarray | None) -> np.ndarray:
    """Row k: the max over rows >= k of ``y``, then over ``beyond`` (the steps after them; None: none), with one
    row more at the end holding ``beyond`` alone (-inf if None). A NaN in ``y`` carries to the rows before it.
    One vector operation per row, from the last: a reversed ``np.maximum.accumulate`` over the rows gives the
    same numbers 6x slower (its strided pass was an eighth of a weather PMF)."""
    rows, n = y.shape
    out = np.empty((rows + 1, n), y.dtype)
    if beyond is None:
        out[rows] = -np.inf
    else:
        out[rows] = beyond
    if rows:
        acc = y[rows - 1].copy()
        np.fmax(acc, out[rows], out=out[rows - 1])
        for k in range(rows - 2, -1, -1):
            np.maximum(y[k], acc, out=acc)
            np.fmax(acc, out[rows], out=out[k])
    return out


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
                      rng: np.random.Generator, cfg: WeatherModelConfig = WeatherModelConfig(),
                      params: np.ndarray | None = None, yesterday: pd.DataFrame | None = None,
                      shape: np.ndarray | None = None, long_bias: np.ndarray | None = None,
                      long_bias_weight: float = 0.0) -> pd.DataFrame:
    """Long frame: one row per decision time x bracket. Empty when there is no weather data."""
    if obs.empty and forecasts.empty:
        return pd.DataFrame()
    markets = markets.sort_values("bracket_index")
    first = max(markets["open_time"].min(), day_start - pd.Timedelta(days=1))
    decisions = decision_times(day_start, first, cfg.decision_every_min)
    out = simulate_weather_pmf(day_start, decisions, obs, forecasts, markets["bracket_low_f"].to_numpy(float),
                               markets["bracket_high_f"].to_numpy(float), rng, cfg, params, yesterday=yesterday,
                               shape=shape, long_bias=long_bias, long_bias_weight=long_bias_weight)
    keep = out["valid"]
    n_br = len(markets)
    d = decisions[keep]
    issued = out["forecast_issued_at"][keep]
    return pd.DataFrame({
        "decision_ts": utc_stamps(np.repeat(d.asi8, n_br)),
        "market_ticker": np.tile(markets["market_ticker"].to_numpy(), len(d)),
        "bracket_index": np.tile(markets["bracket_index"].to_numpy(), len(d)),
        "p_weather": out["pmf"][keep].ravel(),
        "hazard": np.repeat(out["hazard"][keep], n_br),
        "expected_high_f": np.repeat(out["expected_high"][keep], n_br),
        "high_sd_f": np.repeat(out["high_sd"][keep], n_br),
        "obs_max_f": np.repeat(out["obs_max"][keep], n_br),
        "forecast_issued_at": utc_stamps(np.repeat(issued, n_br)),  # no run yet: the int64 minimum, NaT
        "n_paths": cfg.n_paths,
    })
