"""One simulated city x climate day, seeded by (seed, city, day): weather truth, observations,
forecast runs, the bracket event, and a market of agents who see the weather with noise and lag.

Priors (stated so they can be argued with): normal highs by city and season; day-to-day anomaly SD
2.5-8 F; daily high near 14:30 LST, jittered; frontal days (cool season) that peak near midnight;
forecast error for the daily high with SD^2 = 5.6 + 0.07 * lead_hours (MAE 1.9 F same morning,
2.15 F previous evening, 2.4 F two days out, matching the NWS figures in the reference) and a 0.3 F
cold bias; 5-minute obs read in whole C and converted to F; the official high is the rounded max of
2-minute means.
"""

from __future__ import annotations

import datetime as dt
import zlib
from dataclasses import dataclass, fields
from functools import lru_cache

import numpy as np
import pandas as pd
from scipy.signal import lfilter
from scipy.special import expit, logit

from kw_assets.cities import City, event_ticker
from kw_assets.model import emos
from kw_assets.model.weather import WeatherModelConfig, decision_times, simulate_weather_pmf
from kw_assets.model.stamps import utc_stamps

SUBSTEP_S = 15
SUBSTEPS_PER_MIN = 60 // SUBSTEP_S
RUN_EVERY_H = 6
LEGACY_SERIES_BEFORE = dt.date(2024, 11, 15)


@dataclass(frozen=True)
class Climate:
    normal_high_jan: float
    normal_high_jul: float
    diurnal_range: float
    anomaly_sd: float
    front_rate: float
    liquidity: float  # trades per bracket-minute at calm prices


CLIMATES = {
    "ny": Climate(39, 85, 14, 6.0, 0.10, 0.20),
    "chi": Climate(32, 84, 15, 7.0, 0.12, 0.18),
    "mia": Climate(76, 91, 11, 2.5, 0.04, 0.25),
    "aus": Climate(62, 97, 20, 5.0, 0.08, 0.15),
    "den": Climate(45, 89, 26, 8.0, 0.12, 0.12),
    "phil": Climate(41, 87, 15, 6.0, 0.10, 0.12),
    "lax": Climate(68, 76, 12, 3.0, 0.03, 0.15),
}
DEFAULT_CLIMATE = Climate(50, 85, 16, 6.0, 0.08, 0.12)


@dataclass(frozen=True)
class Agents:
    """How the simulated market's traders see the weather. By default they know more than this project:
    their fundamental is the project's own weather Monte Carlo (``model/weather.py``, fewer paths) on the
    station's 1-minute feed (the 2-minute means to 0.1 F, where the pipeline reads whole-C 5-minute obs) and
    on forecast runs with ``forecast_insight`` of each run's error taken out, with a daily-high EMOS learned
    from the city's last 90 days (``agent_emos``); followed through an EWM
    (``lag_half_life_min``) with slow disagreement (AR(1) in logit space, ``noise_logit_sd``); a strategy
    has no information edge over them. Planted edges: ``obs_delay_min`` makes them learn each obs that many
    minutes late; ``ignore_forecast_drift`` keeps them on the runs issued by the time the event was listed."""

    obs_delay_min: float = 0.0
    ignore_forecast_drift: bool = False
    lag_half_life_min: float = 2.0
    noise_logit_sd: float = 0.1
    n_paths: int = 1000
    forecast_insight: float = 0.3


@dataclass
class Bracket:
    ticker: str
    strike_type: str
    floor: float | None
    cap: float | None
    low: float
    high: float
    sub_title: str


@dataclass
class WeatherDay:
    """One city-day without its market: weather truth, obs, forecast runs, and the event's brackets and
    times. The weather feed needs only this (cheap) part; ``rng_state`` lets the market continue the draws."""

    city: City
    day: dt.date
    event_ticker: str
    series_ticker: str
    day_start: int  # unix s, LST midnight
    temp_true: np.ndarray  # per minute of the climate day, F
    two_min: np.ndarray  # 2-minute means of temp_true
    h_max: float  # hour (LST) of the day's peak
    official_high: int
    obs_epoch: np.ndarray
    obs_temp_f: np.ndarray
    run_times: np.ndarray  # unix s of forecast runs covering this day
    run_error: np.ndarray  # F, one per run
    smooth_hourly: np.ndarray  # 24 hourly smooth temps at day_start + h*3600 (+ the noise-free path)
    fcst_noise: np.ndarray  # runs x 24
    brackets: list[Bracket]
    listing_run: int  # the run the event's strikes were centred on
    open_time: int
    close_time: int
    expected_expiration: int
    settlement_ts: int
    rng_state: dict

    @property
    def winner(self) -> int:
        return next(i for i, b in enumerate(self.brackets) if b.low <= self.official_high <= b.high)

    def forecast_rows(self, insight: float = 0.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(issued, valid, temp_f) of every published forecast hour of this day: each run covers the
        day's hours from its issue time to two days ahead, to 0.1 F. ``insight``: the share of each run's
        level error taken out (what a trader with better models than the public feed would see)."""
        valid = self.day_start + 3600 * np.arange(24)
        issued = np.repeat(self.run_times, 24)
        valid = np.tile(valid, self.run_times.size)
        error = (1 - insight) * self.run_error[:, None]
        temp = np.round((self.smooth_hourly[None, :] + error + self.fcst_noise).ravel(), 1)
        keep = (issued <= valid) & (valid < issued + 2 * 86400)
        return issued[keep], valid[keep], temp[keep]


@dataclass
class World(WeatherDay):
    # market, per substep from open_time
    bid: np.ndarray  # substeps x brackets
    ask: np.ndarray
    # trades
    trade_ts: np.ndarray  # unix microseconds
    trade_bracket: np.ndarray
    trade_price: np.ndarray  # yes price, dollars
    trade_count: np.ndarray
    trade_yes: np.ndarray  # taker outcome side == yes
    trade_block: np.ndarray
    trade_id: list[str]


# The agents' long-run daily-high EMOS: what a market that has traded this world for years has learned of
# its forecasts (their hourly max runs ~2 F under the official high, more on a flat day). Fitted pooled on the public runs of
# two years x 7 cities of seed-7 days from 2024-01-01 by ``fit_agent_emos``; a test refits it. Each day the agents also
# learn from the season's recent days (``agent_emos``), as the pipeline does. Refitted (session 13) with every
# term the pipeline has, yesterday's error and the jump included: in this world both carry information (a day far
# above yesterday's high tends to fall short of its forecast), and the market must know at least what the
# pipeline can learn.
AGENT_EMOS = np.array([-0.2089, 0.8031, -0.0716, -0.0782, 1.2073, 1.3932, -1.5149, 1.0392, -0.0378, -0.1020, -0.0580,
                       0.1959, 0.0977])


def emos_samples(worlds, insight: float = 0.0, seed: int = 7) -> pd.DataFrame:
    """The EMOS samples of simulated days, as ``weather_model_params`` builds them from the warehouse: per
    run issued before the climatological peak, the run's high and low over the day, the two runs before
    it, yesterday's error at its lead and the official high."""
    return _samples_frame([(w.city.key, w.day, _run_features(w, insight, seed)) for w in worlds])


def yesterday_runs(city: City, day: dt.date, seed: int = 7, insight: float = 0.0) -> pd.DataFrame:
    """The previous day's runs (issued_at, forecast_high_f) and its 5-minute obs max through 18:00 LST
    (obs_max_f): the ``yesterday`` input of the weather model, as the pipeline reads it from the warehouse."""
    run_ids, high, obs_max = _yesterday(city, day, seed, insight)
    return pd.DataFrame({"issued_at": utc_stamps(run_ids, "s"), "forecast_high_f": high,
                         "obs_max_f": obs_max})


@lru_cache(maxsize=8192)
def _yesterday(city: City, day: dt.date, seed: int, insight: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``yesterday_runs`` as arrays: D-1's run issue times (unix s, sorted), their highs, and the obs max."""
    w = build_weather(city, day - dt.timedelta(days=1), seed)
    cutoff = w.day_start + (24 - emos.LAG_KNOWN_HOURS_BEFORE_DAY) * 3600
    seen = w.obs_temp_f[w.obs_epoch <= cutoff]
    issued, _, temp = w.forecast_rows(insight)  # the day's hours only
    run_ids, start = np.unique(issued, return_index=True)
    out = run_ids, np.maximum.reduceat(temp, start), np.full(len(run_ids), float(seen.max()) if seen.size else np.nan)
    for a in out:
        a.setflags(write=False)  # cached: shared by every caller
    return out


# ``_run_features``' arrays, in its order, as EMOS sample columns
RUN_FEATURES = ("lead_h", "forecast_high_f", "previous_high_f", "before_previous_high_f", "forecast_low_f",
                "observed_high_f", "lag_error_f", "yesterday_high_f")


def _joined_features(features: list[tuple[np.ndarray, ...]]) -> dict[str, np.ndarray]:
    """Several days' ``_run_features`` as one array per sample column."""
    return {name: np.concatenate([f[i] for f in features]) for i, name in enumerate(RUN_FEATURES)}


def _samples_frame(parts) -> pd.DataFrame:
    if not parts:
        return emos.empty_samples()
    n = [len(f[0]) for _, _, f in parts]
    cols = _joined_features([f for _, _, f in parts])
    return pd.DataFrame({"city": np.repeat([c for c, _, _ in parts], n), "climate_day": np.repeat([d for _, d, _ in parts], n),
                         **{c: cols[c] for c in emos.SAMPLE_COLUMNS[2:]}})


def _run_features(w: WeatherDay, insight: float, seed: int) -> tuple[np.ndarray, ...]:
    """(lead_h, high, previous high, the one before, low, official high, yesterday's error, yesterday's high) per run issued
    before the peak."""
    issued, _, temp = w.forecast_rows(insight)
    run_ids, start = np.unique(issued, return_index=True)
    high = np.maximum.reduceat(temp, start)
    low = np.minimum.reduceat(temp, start)
    lead = (w.day_start + WeatherModelConfig().peak_hour_lst * 3600 - run_ids) / 3600.0
    prev1 = np.concatenate([[np.nan], high[:-1]])
    prev2 = np.concatenate([[np.nan, np.nan], high[:-2]])[: len(high)]
    k = lead > 0
    known, known_high, obs_max = _yesterday(w.city, w.day, seed, insight)
    lag, yesterday_high = emos.lag_at(run_ids[k], known, known_high, obs_max, 86400)
    return lead[k], high[k], prev1[k], prev2[k], low[k], np.full(int(k.sum()), float(w.official_high)), lag, yesterday_high


@lru_cache(maxsize=8192)
def _day_features(city: City, day: dt.date, seed: int, insight: float) -> tuple[np.ndarray, ...]:
    return _run_features(build_weather(city, day, seed), insight, seed)


def fit_agent_emos(cities, first: dt.date, days: int, seed: int = 7) -> np.ndarray:
    """Pooled EMOS coefficients over ``days`` simulated days from ``first`` (no recency weighting)."""
    worlds = [build_weather(c, first + dt.timedelta(days=k), seed) for c in cities for k in range(days)]
    cfg = emos.EmosConfig(half_life_days=1e9, city_shrinkage=1e9, prior_weight=0.0, embargo_days=0, use_shape=False,
                          long_bias_weight=0.0)
    return emos.WalkForward(emos_samples(worlds, seed=seed), cfg).fit(first + dt.timedelta(days=days + 1)).pooled


AGENT_HISTORY_DAYS = 90
# the traders' walk-forward settings, fixed here: the world was calibrated with them, and a change of the
# pipeline's defaults (``emos.EmosConfig``) must not change the simulated market
AGENT_FIT = emos.EmosConfig(half_life_days=25.0, city_shrinkage=30.0, prior_weight=5.0, use_shape=False,
                            long_bias_weight=0.0)  # Gaussian traders, their EMOS mean alone


@lru_cache(maxsize=4096)
def agent_emos(city: City, day: dt.date, seed: int = 7, insight: float = 0.0) -> np.ndarray:
    """The agents' EMOS coefficients for ``city`` on ``day``: the project's walk-forward fit (same recency
    weighting and embargo) over the city's previous ``AGENT_HISTORY_DAYS`` simulated days, shrunk to
    ``AGENT_EMOS``. The market knows at least what the pipeline can learn."""
    days = [day - dt.timedelta(days=AGENT_HISTORY_DAYS - k) for k in range(AGENT_HISTORY_DAYS)]
    features = [_day_features(city, d, seed, insight) for d in days]
    on = np.repeat(np.array(days, dtype="datetime64[D]"), [len(f[0]) for f in features])
    return (emos.WalkForward.of_one_city(city.key, on, _joined_features(features), AGENT_FIT, prior=AGENT_EMOS)
            .fit(day).coefficients(city.key))


def _rng(seed: int, city: City, day: dt.date, stream: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([seed, zlib.crc32(city.key.encode()), day.toordinal(), stream]))


def _diurnal_shape(hour_lst: np.ndarray, h_min: float, h_max: float) -> np.ndarray:
    """0 at the morning minimum, 1 at the afternoon peak, cosine rise and a slow overnight fall."""
    h = np.asarray(hour_lst, float)
    rising = (h >= h_min) & (h <= h_max)
    after = np.where(h > h_max, h - h_max, h + 24 - h_max)
    fall_len = 24 + h_min - h_max
    shape = np.where(rising, 0.5 - 0.5 * np.cos(np.pi * (h - h_min) / (h_max - h_min)),
                     0.5 + 0.5 * np.cos(np.pi * np.clip(after, 0, fall_len) / fall_len))
    return shape


def forecast_error_sd(lead_h: np.ndarray) -> np.ndarray:
    """SD of the daily-high forecast error by lead to the afternoon peak; small once the peak is past."""
    lead = np.asarray(lead_h, float)
    return np.where(lead >= 0, np.sqrt(5.6 + 0.07 * np.maximum(lead, 0)), 1.2)


@lru_cache(maxsize=256)
def build_world(city: City, day: dt.date, seed: int = 7, agents: Agents = Agents()) -> World:
    """The whole city-day: its weather (``build_weather``) and the market that trades on it."""
    w = build_weather(city, day, seed)
    rng = np.random.Generator(np.random.PCG64())
    rng.bit_generator.state = w.rng_state  # the market's draws continue the weather's stream
    bid, ask, mid = _simulate_quotes(rng, w, agents, agent_emos(city, day, seed, agents.forecast_insight),
                                     _rng(seed, city, day, 2), yesterday_runs(city, day, seed, agents.forecast_insight))
    trades = _simulate_trades(_rng(seed, city, day, 1), mid, bid, ask, w.open_time,
                              CLIMATES.get(city.key, DEFAULT_CLIMATE).liquidity)
    return World(**{f.name: getattr(w, f.name) for f in fields(WeatherDay)}, bid=bid, ask=ask, **trades)


@lru_cache(maxsize=1024)
def build_weather(city: City, day: dt.date, seed: int = 7) -> WeatherDay:
    clim = CLIMATES.get(city.key, DEFAULT_CLIMATE)
    rng = _rng(seed, city, day, 0)
    start, _ = city.climate_day_window(day)
    day_start = int(start.timestamp())

    # --- weather truth ------------------------------------------------------------------------------
    doy = day.timetuple().tm_yday
    mid, amp = (clim.normal_high_jan + clim.normal_high_jul) / 2, (clim.normal_high_jul - clim.normal_high_jan) / 2
    normal = mid - amp * np.cos(2 * np.pi * (doy - 15) / 365.25)
    high0 = normal + rng.normal(0, clim.anomaly_sd)
    cool = 0.5 + 0.5 * np.cos(2 * np.pi * (doy - 15) / 365.25)  # 1 in January, 0 in July
    frontal = rng.random() < clim.front_rate * (0.3 + 1.4 * cool)
    h_max = float(np.clip(rng.normal(14.5, 0.8), 12.0, 17.0))
    h_min = float(np.clip(rng.normal(6.0, 0.6), 4.0, 8.0))
    minutes = np.arange(1440)
    hours = minutes / 60.0
    smooth = high0 - clim.diurnal_range * (1 - _diurnal_shape(hours, h_min, h_max))
    if frontal:
        drop = rng.uniform(8, 18)
        smooth = smooth + drop * (0.5 - hours / 24) + drop * 0.15
    ar = lfilter([1.0], [1.0, -np.exp(-1 / 30)], rng.normal(0, 0.7 * np.sqrt(1 - np.exp(-2 / 30)), 1440))
    temp_true = smooth + ar
    two_min = np.convolve(temp_true, np.ones(2) / 2, mode="valid")
    official_high = int(np.floor(two_min.max() + 0.5))

    obs_min = minutes[::5]
    obs_c = np.round((temp_true[obs_min] - 32) / 1.8)
    obs_f = np.round(obs_c * 1.8 + 32, 1)
    keep = rng.random(obs_min.size) > 0.02
    obs_epoch = day_start + obs_min[keep] * 60
    obs_temp = obs_f[keep]

    # --- forecast runs: every 6 h from two days before until the day ends -----------------------------
    first_run = (day_start - 48 * 3600) // (RUN_EVERY_H * 3600) * (RUN_EVERY_H * 3600)
    run_times = np.arange(first_run, day_start + 86400, RUN_EVERY_H * 3600)
    peak_epoch = day_start + h_max * 3600
    lead = (peak_epoch - run_times) / 3600.0
    rho = 0.8
    # AR(1) across runs, started at its stationary distribution
    z = lfilter([np.sqrt(1 - rho**2)], [1.0, -rho], rng.normal(size=run_times.size), zi=[rho * rng.normal()])[0]
    run_error = -0.3 + forecast_error_sd(lead) * z
    smooth_hourly = smooth[::60]
    fcst_noise = rng.normal(0, 0.5, (run_times.size, 24))

    # --- the event ------------------------------------------------------------------------------------
    open_time = day_start - (day_start % 86400) - 86400 + 14 * 3600  # 14:00 UTC the day before
    listing_run = int(np.searchsorted(run_times, open_time - 2 * 3600, side="right") - 1)
    fc_high = float((smooth_hourly + run_error[max(listing_run, 0)]).max())
    b0 = int(np.round(fc_high)) - 3
    series = city.series_ticker if day >= LEGACY_SERIES_BEFORE or not city.legacy_series_ticker else city.legacy_series_ticker
    ev = event_ticker(series, day)
    brackets = [Bracket(f"{ev}-T{b0}", "less", None, float(b0), -np.inf, float(b0 - 1), f"{b0 - 1}° or below")]
    for k in range(4):
        lo = b0 + 2 * k
        brackets.append(Bracket(f"{ev}-B{lo + 0.5:g}", "between", float(lo), float(lo + 1), float(lo), float(lo + 1),
                                f"{lo}° to {lo + 1}°"))
    brackets.append(Bracket(f"{ev}-T{b0 + 7}", "greater", float(b0 + 7), None, float(b0 + 8), np.inf, f"{b0 + 8}° or above"))
    close_time = day_start + 86400 - 60
    expected_exp = day_start - (day_start % 86400) + 86400 + 15 * 3600
    settlement_ts = expected_exp + int(rng.integers(0, 7200))

    return WeatherDay(city=city, day=day, event_ticker=ev, series_ticker=series, day_start=day_start,
                      temp_true=temp_true, two_min=two_min, h_max=h_max, official_high=official_high,
                      obs_epoch=obs_epoch, obs_temp_f=obs_temp, run_times=run_times, run_error=run_error,
                      smooth_hourly=smooth_hourly, fcst_noise=fcst_noise, brackets=brackets,
                      listing_run=max(listing_run, 0), open_time=open_time,
                      close_time=close_time, expected_expiration=expected_exp, settlement_ts=settlement_ts,
                      rng_state=rng.bit_generator.state)


def _simulate_quotes(rng, w: WeatherDay, agents: Agents, params: np.ndarray, model_rng: np.random.Generator,
                     yesterday: pd.DataFrame | None = None):
    """Bid and ask per 15 s: the agents' fundamental, seen through lag and logit noise."""
    t = np.arange(w.open_time, w.close_time + 1, SUBSTEP_S)
    p_inf = np.clip(_fundamental(w, t, agents, params, model_rng, yesterday), 1e-4, 1 - 1e-4)
    remaining_h = np.clip((w.day_start + 86400 - t) / 3600.0, 0, 24)
    alpha = 1 - 0.5 ** (1 / (max(agents.lag_half_life_min, 0.25) * SUBSTEPS_PER_MIN))
    lagged = lfilter([alpha], [1, -(1 - alpha)], logit(p_inf), axis=0, zi=(1 - alpha) * logit(p_inf[:1]))[0]
    phi = 0.998
    noise = lfilter([np.sqrt(1 - phi**2)], [1, -phi], rng.normal(0, agents.noise_logit_sd, p_inf.shape), axis=0)
    noise *= (0.25 + 0.75 * remaining_h / 24)[:, None]  # disagreement fades as the day runs out
    mid = expit(lagged + noise)
    half_spread = 0.006 + 0.03 * 4 * mid * (1 - mid) * rng.uniform(0.6, 1.4, (1, len(w.brackets)))
    bid = np.clip(np.floor((mid - half_spread) * 100 + 1e-9) / 100, 0.0, 0.99)
    ask = np.clip(np.ceil((mid + half_spread) * 100 - 1e-9) / 100, 0.01, 1.0)
    ask = np.maximum(ask, bid + 0.01)
    return bid, ask, mid


def _fundamental(w: WeatherDay, t: np.ndarray, agents: Agents, params: np.ndarray,
                 model_rng: np.random.Generator, yesterday: pd.DataFrame | None = None) -> np.ndarray:
    """The agents' bracket probabilities at each instant of ``t`` (substeps x brackets): the weather
    Monte Carlo every 5 minutes on what has been published (the runs, the obs they have seen), held
    until the next decision; uniform before they know anything."""
    day_start = pd.Timestamp(w.day_start, unit="s", tz="UTC")
    decisions = decision_times(day_start, pd.Timestamp(w.open_time, unit="s", tz="UTC") - pd.Timedelta(minutes=5))
    issued, valid, temp = w.forecast_rows(agents.forecast_insight)
    if agents.ignore_forecast_drift:
        keep = issued <= w.run_times[w.listing_run]
        issued, valid, temp = issued[keep], valid[keep], temp[keep]
    forecasts = pd.DataFrame({"issued_at": utc_stamps(issued, "s"),
                              "valid_time": utc_stamps(valid, "s"), "temp_f": temp})
    # the traders watch the station's 1-minute feed: each 2-minute mean (minutes i and i+1), to 0.1 F,
    # stamped when it completes, at the end of minute i+1
    done = w.day_start + 60 * (np.arange(w.two_min.size) + 2)
    obs = pd.DataFrame({"valid_time": utc_stamps(done, "s"), "temp_f": np.round(w.two_min, 1)})
    lows = np.array([b.low for b in w.brackets])
    highs = np.array([b.high for b in w.brackets])
    cfg = WeatherModelConfig(n_paths=agents.n_paths, gap_mean=0.0, gap_sd=0.05,  # they see the 2-minute means
                             shared_residuals=False)  # each day's market its own draws: the simulated world as before
    out = simulate_weather_pmf(day_start, decisions, obs, forecasts, lows, highs, model_rng, cfg, params,
                               pd.Timedelta(minutes=agents.obs_delay_min), yesterday=yesterday)
    dec_s = decisions.asi8 // 10**9
    pmf = np.where(out["valid"][:, None], out["pmf"], np.nan)
    pmf = pd.DataFrame(pmf).ffill().fillna(1 / len(w.brackets)).to_numpy()
    at = np.searchsorted(dec_s, t, side="right") - 1
    return np.where((at >= 0)[:, None], pmf[np.maximum(at, 0)], 1 / len(w.brackets))


def _uuid_strings(raw: bytes) -> list[str]:
    """str(uuid.UUID(bytes=...)) of each 16-byte block, as one array operation."""
    n = len(raw) // 16
    hexed = np.frombuffer(raw.hex().encode(), dtype="S1").reshape(n, 32)
    out = np.full((n, 36), b"-", dtype="S1")
    for a, b, shift in ((0, 8, 0), (8, 12, 1), (12, 16, 2), (16, 20, 3), (20, 32, 4)):
        out[:, a + shift:b + shift] = hexed[:, a:b]
    return out.view("S36").ravel().astype(str).tolist()


def _simulate_trades(rng, mid, bid, ask, open_time, liquidity):
    """Poisson prints per bracket-minute, busier when prices move; takers lift the ask or hit the bid."""
    n_sub, n_br = mid.shape
    n_min = n_sub // SUBSTEPS_PER_MIN
    m = mid[: n_min * SUBSTEPS_PER_MIN].reshape(n_min, SUBSTEPS_PER_MIN, n_br)
    move = m[:, -1, :] - m[:, 0, :]
    lam = liquidity * (1 + 400 * np.abs(move)) * (0.3 + 4 * m[:, -1, :] * (1 - m[:, -1, :]))
    counts = rng.poisson(lam)
    mi, bi = np.nonzero(counts)
    reps = counts[mi, bi]
    mi, bi = np.repeat(mi, reps), np.repeat(bi, reps)
    n = mi.size
    offset_us = rng.integers(0, 60_000_000, n)
    sub = mi * SUBSTEPS_PER_MIN + offset_us // (SUBSTEP_S * 1_000_000)
    yes = rng.random(n) < expit(move[mi, bi] * 300)
    price = np.where(yes, ask[sub, bi], bid[sub, bi])
    block = rng.random(n) < 0.004
    count = np.round(np.exp(rng.normal(np.log(8), 1.1, n)), 2).clip(1.0)
    count = np.where(block, np.round(count * 25, 2), count)
    price = np.where(block, np.round(mid[sub, bi], 2), price)
    ok = (price > 0) & (price < 1)
    ts = (open_time * 1_000_000 + mi.astype("int64") * 60_000_000 + offset_us)[ok]
    order = np.argsort(ts, kind="stable")
    ids_raw = rng.bytes(16 * int(ok.sum()))
    ids = _uuid_strings(ids_raw)
    return {
        "trade_ts": ts[order], "trade_bracket": bi[ok][order], "trade_price": price[ok][order],
        "trade_count": count[ok][order], "trade_yes": yes[ok][order], "trade_block": block[ok][order],
        "trade_id": [ids[i] for i in order],
    }
