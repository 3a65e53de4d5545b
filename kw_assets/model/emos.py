"""EMOS for the daily high: a Gaussian predictive distribution of the official high whose centre and
spread are learned walk-forward from past (forecast, settled high) pairs, per city with shrinkage to a
pooled fit.

    mean     = f + b + a * (f - 65) / 10 + c1 * r1 + c2 * r2 + c3 * e1 / 3 + c4 * (18 - range) / 10 + c5 * j / 10
    log(sd)  = s0 + s1 * log1p|r1| + s2 * log1p|r2| + s3 * (18 - range) / 10 + s4 * lead / 24
               + s5 * (log1p|j| - 1.5)

f is the forecast high of one run, r1 its revision against the run before, r2 the revision before
that, range the forecast's own diurnal range (f minus its low, clipped to [0, 40] F; a flat forecast
day is a less certain one), lead the hours from issue to the climatological peak, and e1 yesterday's
error at the same lead: the previous climate day's observed high minus the high of its run issued 24 h
before this one (``lag_errors``; 0 while unknown); j the jump, the forecast minus yesterday's observed high
(clipped to +-30 F; 0 while unknown, and its spread term then at its typical 1.5). On real NWS forecasts
(~160 US cities, 2021) a large revision widens the error SD from ~2.6 to ~4 F, the mean reverts about a
fifth of the way toward the older forecast, and about a fifth of a day's error carries into the next
day's (errors correlate ~0.2 day to day: air masses, snow cover and marine layers outlast one forecast);
a forecast far from yesterday's high (a front) is less certain and slightly understates the change; all
are learned here, not assumed. Either yesterday term can be switched off (``EmosConfig.use_lag_error``,
``use_jump``: False holds its coefficients at 0).

The fit minimizes the CRPS of the Gaussian (closed form, analytic gradient, L-BFGS) with sample weights
that halve every ``half_life_days`` (the season moves; recent days speak for it better than a seasonal
curve fitted on months that are not this one), a penalty ``city_shrinkage`` on each city's deviation
from the pooled coefficients, and a penalty ``prior_weight`` pulling the pooled coefficients toward the
prior. Parameters for climate day D use only days <= D - 1 - ``embargo_days``: the days whose
settlement was public before D's market opened (the calibrators' rule).

The prior is the pooled fit on the NWS forecasts of the 153 US cities of the reference data
(2021-01-30..2021-09-30) that Kalshi does not list: it matters only while a city has few settled days,
and it has never seen a Kalshi city's errors.

**The error shape.** Real errors are not Gaussian: standardized by the fit's mean and SD they are skewed
(a cold bust is likelier than a warm one) with heavy tails, so a Gaussian's 90% interval misses low more
often than high. Each fit therefore also carries a shape: the quantiles ``g`` of its standardized in-sample
residuals (y - mean) / SD at the normal quantiles ``SHAPE_Z`` (weighted like the fit): pooled over cities
and averaged with ``PRIOR_SHAPE`` (the same quantiles of the 153 other cities under ``PRIOR``) in proportion
of effective city-days (``shape_prior_days`` for the prior), then each city's own averaged with that pooled
shape (``city_shape_days`` for the pool): a marine-layer city's busts widen its own tail only. The counts are of
city-days, not samples: a day's runs share most of their error, and a source with hourly runs must not count 24
samples where the NWS file has two. The high is then mean + SD x g(Z) with Z standard normal (``shape_quantile``;
``shape_cdf`` its CDF); g the identity is the Gaussian (``use_shape=False``).

**The long-run bias.** The mean then moves ``long_bias_weight`` of the way to the run's forecast plus the city's
long-run bias at its lead: the plain mean of (observed - forecast high) over every settled day of the fit in the lead's
bucket (``LONG_BIAS_LEADS``; ``blend_long_bias``). The fit's own city bias is recency-weighted and shrunk to the pool;
the plain mean is steadier where a city's bias lasts (a held-out file scored cold loses to a per-city Gaussian in fewer
cities).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy.optimize import minimize
from scipy.special import ndtr

from kw_assets.model.embargo import EMBARGO_DAYS, last_known_day

# slope: per 10 F above 65 F; bias: at 65 F; lag_error: per 3 F of yesterday's error; narrow_range as in the
# spread; jump: per 10 F of forecast above yesterday's observed high
MEAN_TERMS = ("slope", "bias", "revision", "prior_revision", "lag_error", "narrow_range", "jump")
SPREAD_TERMS = ("intercept", "abs_revision", "abs_prior_revision", "narrow_range", "lead", "abs_jump")
PARAM_COLUMNS = tuple(f"mean_{t}" for t in MEAN_TERMS) + tuple(f"log_sd_{t}" for t in SPREAD_TERMS)
# ``fit_pooled`` on the 153 non-Kalshi cities of the reference NWS file (2021-01-30..2021-09-30, two leads a
# day, 74,409 samples): ``python bench/weather_skill.py --nws-csv FILE --fit-prior`` prints it again
PRIOR = np.array([-0.1064, 0.3372, -0.2080, -0.0125, 0.7401, -0.1531, 0.2127, 0.5933, 0.1467, 0.1145, 0.1181, 0.1879, 0.1579])
SAMPLE_COLUMNS = ("city", "climate_day", "lead_h", "forecast_high_f", "previous_high_f", "before_previous_high_f",
                  "forecast_low_f", "lag_error_f", "yesterday_high_f", "observed_high_f")
_FEATURES = SAMPLE_COLUMNS[2:]  # a sample's numbers, after its city and day
LAG_KNOWN_HOURS_BEFORE_DAY = 6  # yesterday's max is taken through 18:00 LST (the high is nearly always set by then)
_NM, _NS = len(MEAN_TERMS), len(SPREAD_TERMS)
_LAG = MEAN_TERMS.index("lag_error")
_YESTERDAY = (_LAG, MEAN_TERMS.index("jump"), _NM + SPREAD_TERMS.index("abs_jump"))  # the terms that need D-1's obs
_TYPICAL_LOG_JUMP = 1.5  # mean log1p|forecast - yesterday's high| of the non-Kalshi cities of the NWS file (1.49, as PRIOR)
_INV_SQRT_PI = 1 / np.sqrt(np.pi)
# the error shape: g(z) at these normal quantiles (piecewise linear between, its end slopes beyond)
SHAPE_Z = np.linspace(-2.5, 2.5, 11)
SHAPE_COLUMNS = tuple(f"shape_{'m' if z < 0 else 'p'}{abs(z):.1f}".replace(".", "_") for z in SHAPE_Z)
# the long-run bias: a city's plain mean error (observed - forecast high) per lead bucket (hours before the peak,
# these lower edges), over every settled day of the fit
LONG_BIAS_LEADS = np.array([0.0, 12.0, 24.0, 36.0])
LONG_BIAS_COLUMNS = tuple(f"long_bias_lead_{int(h)}" for h in LONG_BIAS_LEADS)
# ``pooled_shape`` of the 153 non-Kalshi cities' samples under PRIOR (printed with it by ``--fit-prior``)
PRIOR_SHAPE = np.array([-3.5872, -2.4894, -1.6365, -0.9897, -0.4680, 0.0118, 0.4758, 0.9676, 1.4910, 2.0921, 2.8593])


@dataclass(frozen=True)
class EmosConfig:
    half_life_days: float = 25.0
    city_shrinkage: float = 30.0
    # the pull of the pooled coefficients toward PRIOR: 50 since session 27 (5 before; chosen on the validation
    # cities, README "How the model was chosen": ~0.3% RPS, most in the first weeks of a fit)
    prior_weight: float = 50.0
    embargo_days: int = EMBARGO_DAYS
    # yesterday's error in the mean (README: RPS 2% lower on real forecasts); False holds its coefficient at 0
    use_lag_error: bool = True
    # the jump from yesterday's observed high in the mean and the spread; False holds both at 0
    use_jump: bool = True
    # the error shape learned with the fit (README: 90% intervals cover ~91% instead of ~89% on real forecasts);
    # False: Gaussian
    use_shape: bool = True
    # the prior shape's weight against the pooled residuals', in effective city-days (7 cities at half-life 25 d:
    # ~500)
    shape_prior_days: float = 1000.0
    # the pooled shape's weight against a city's own residuals', in effective city-days (a city's: ~72)
    city_shape_days: float = 500.0
    # the mean moved this share of the way to the run's forecast plus the city's long-run bias at its lead (README:
    # a held-out file of a few months loses to a per-city Gaussian in fewer cities); 0: the EMOS mean alone
    long_bias_weight: float = 0.2
    long_bias_min_days: int = 10  # settled days of the city at the lead before its long-run bias counts


def design(forecast_high: np.ndarray, previous_high: np.ndarray, before_previous_high: np.ndarray,
           forecast_low: np.ndarray, lead_h: np.ndarray, lag_error: np.ndarray | float = np.nan,
           yesterday_high: np.ndarray | float = np.nan) -> tuple[np.ndarray, np.ndarray]:
    """Mean (as a correction to the forecast) and log-SD design matrices. Every column is O(1), so the
    shrinkage weighs a city's slope and its bias alike. A missing earlier run counts as no revision; a
    missing low as a typical 18 F range; an unknown lag error as none (clipped to +-15 F); an unknown
    yesterday's high as no jump in the mean and a typical one in the spread."""
    f = np.asarray(forecast_high, float)
    p1, p2 = np.asarray(previous_high, float), np.asarray(before_previous_high, float)
    r1 = np.nan_to_num(f - p1)
    r2 = np.nan_to_num(p1 - p2)
    narrow = (18 - np.clip(np.nan_to_num(f - np.asarray(forecast_low, float), nan=18.0), 0, 40)) / 10
    one = np.ones_like(f)
    lag = np.clip(np.nan_to_num(np.asarray(lag_error, float) * one), -15, 15) / 3
    jump = np.clip(f - np.asarray(yesterday_high, float) * one, -30, 30)
    known = np.isfinite(jump)
    xm = np.column_stack([(f - 65) / 10, one, r1, r2, lag, narrow, np.where(known, jump, 0.0) / 10])
    xs = np.column_stack([one, np.log1p(np.abs(r1)), np.log1p(np.abs(r2)), narrow,
                          np.clip(np.asarray(lead_h, float) * one, 0, 96) / 24,
                          np.where(known, np.log1p(np.abs(np.where(known, jump, 0.0))) - _TYPICAL_LOG_JUMP, 0.0)])
    return xm, xs


def lag_errors(runs: pd.DataFrame, yesterday: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Yesterday's error at the same lead and yesterday's observed high, per run: for a run of climate day D
    issued at t, the observed max of D-1 minus the high of D-1's latest run issued at or before t - 24 h, and
    that observed max (both NaN where D-1 has no such run or no observed max). ``runs``: city, climate_day
    (date), issued_at; ``yesterday``: city, climate_day (the earlier day), issued_at, forecast_high_f,
    obs_max_f. The same rule for training and prediction."""
    if runs.empty or yesterday.empty:
        return np.full(len(runs), np.nan), np.full(len(runs), np.nan)
    left = pd.DataFrame({"city": runs["city"].astype(str).to_numpy(),
                         "day": (pd.to_datetime(runs["climate_day"]) - pd.Timedelta(days=1)).to_numpy("datetime64[ns]"),
                         "t": (pd.to_datetime(runs["issued_at"], utc=True) - pd.Timedelta(hours=24)).to_numpy("datetime64[ns]"),
                         "row": np.arange(len(runs))}).sort_values("t", kind="stable")
    right = pd.DataFrame({"city": yesterday["city"].astype(str).to_numpy(),
                          "day": pd.to_datetime(yesterday["climate_day"]).to_numpy("datetime64[ns]"),
                          "t": pd.to_datetime(yesterday["issued_at"], utc=True).to_numpy("datetime64[ns]"),
                          "high": yesterday["obs_max_f"].to_numpy(float),
                          "forecast": yesterday["forecast_high_f"].to_numpy(float)}).sort_values("t", kind="stable")
    merged = pd.merge_asof(left, right, on="t", by=["city", "day"], direction="backward")
    lag, high = np.full(len(runs), np.nan), np.full(len(runs), np.nan)
    rows, merged_high = merged["row"].to_numpy(), merged["high"].to_numpy(float)
    lag[rows], high[rows] = merged_high - merged["forecast"].to_numpy(float), merged_high
    return lag, high


def day_lag_errors(issued_at, yesterday: pd.DataFrame | None) -> tuple[np.ndarray, np.ndarray]:
    """``lag_errors`` for runs of one city and one day, with ``yesterday`` (issued_at, forecast_high_f,
    obs_max_f) the previous day's runs; all NaN when it is None or empty. (One sorted search: the
    simulator calls it for every simulated day's runs.)"""
    if yesterday is None or yesterday.empty or not len(issued_at):
        return np.full(len(issued_at), np.nan), np.full(len(issued_at), np.nan)
    y = yesterday.sort_values("issued_at", kind="stable")
    return lag_at(pd.to_datetime(np.asarray(issued_at), utc=True).to_numpy("datetime64[ns]").astype(np.int64),
                  pd.to_datetime(y["issued_at"], utc=True).to_numpy("datetime64[ns]").astype(np.int64),
                  y["forecast_high_f"].to_numpy(float), y["obs_max_f"].to_numpy(float), 24 * 3600 * 10**9)


def lag_at(issued: np.ndarray, known: np.ndarray, forecast_high: np.ndarray, obs_max: np.ndarray,
           day: int) -> tuple[np.ndarray, np.ndarray]:
    """``day_lag_errors`` on numbers: ``issued`` the runs' issue times and ``known`` (sorted) those of D-1's
    runs, in one unit whose day is ``day`` long (ns, or s for the simulator); all NaN when D-1 has no run."""
    if not len(known):
        return np.full(len(issued), np.nan), np.full(len(issued), np.nan)
    i = np.searchsorted(known, np.asarray(issued) - day, side="right") - 1  # D-1's latest run issued <= t - 24 h
    j = np.maximum(i, 0)
    lag = obs_max - forecast_high
    return np.where(i >= 0, lag[j], np.nan), np.where(i >= 0, obs_max[j], np.nan)


def uses_yesterday(params: np.ndarray | None) -> bool:
    """Whether ``params`` (None: the prior) give yesterday's error or jump any weight: if not, knowing
    yesterday changes nothing."""
    return bool(np.any((PRIOR if params is None else np.asarray(params, float))[list(_YESTERDAY)] != 0))


def _crps(mu, sd, y):
    """CRPS of N(mu, sd) at y, and its derivatives in mu and sd."""
    z = (y - mu) / sd
    cdf = ndtr(z)
    pdf = np.exp(-0.5 * z * z) / np.sqrt(2 * np.pi)
    return sd * (z * (2 * cdf - 1) + 2 * pdf - _INV_SQRT_PI), -(2 * cdf - 1), 2 * pdf - _INV_SQRT_PI


def shape_quantiles(z: np.ndarray, w: np.ndarray | None = None) -> np.ndarray:
    """The shape of standardized errors ``z``: their quantiles at ``ndtr(SHAPE_Z)``, weighted by ``w`` (each
    sample at the middle of its weight)."""
    order = np.argsort(z, kind="stable")
    z = np.asarray(z, float)[order]
    w = np.ones(len(z)) if w is None else np.asarray(w, float)[order]
    return np.interp(ndtr(SHAPE_Z), (np.cumsum(w) - 0.5 * w) / w.sum(), z)


def effective_days(w: np.ndarray, group: np.ndarray) -> float:
    """(sum W)^2 / sum W^2 over the groups' summed weights W: how many equally weighted city-days the samples are
    worth when ``group`` numbers their city-days."""
    _, inverse = np.unique(group, return_inverse=True)
    per_day = np.bincount(inverse, weights=w)
    return float(per_day.sum() ** 2 / (per_day**2).sum())


def shape_quantile(shape: np.ndarray, z: np.ndarray) -> np.ndarray:
    """g(z): the shape's standardized error at the normal quantile z (piecewise linear through the knots,
    continued with the end segments' slopes)."""
    z = np.asarray(z)
    lo = (shape[1] - shape[0]) / (SHAPE_Z[1] - SHAPE_Z[0])
    hi = (shape[-1] - shape[-2]) / (SHAPE_Z[-1] - SHAPE_Z[-2])
    g = np.interp(z, SHAPE_Z, shape)
    g = np.where(z < SHAPE_Z[0], shape[0] + (z - SHAPE_Z[0]) * lo, g)
    return np.where(z > SHAPE_Z[-1], shape[-1] + (z - SHAPE_Z[-1]) * hi, g)


def shape_cdf(shape: np.ndarray, u: np.ndarray) -> np.ndarray:
    """P(g(Z) <= u), Z standard normal: the inverse of ``shape_quantile`` through ndtr."""
    u = np.asarray(u, float)
    lo = (SHAPE_Z[1] - SHAPE_Z[0]) / (shape[1] - shape[0])
    hi = (SHAPE_Z[-1] - SHAPE_Z[-2]) / (shape[-1] - shape[-2])
    z = np.interp(u, shape, SHAPE_Z)
    z = np.where(u < shape[0], SHAPE_Z[0] + (u - shape[0]) * lo, z)
    return ndtr(np.where(u > shape[-1], SHAPE_Z[-1] + (u - shape[-1]) * hi, z))


def is_gaussian(shape: np.ndarray | None) -> bool:
    """Whether ``shape`` (None: no shape) is the identity, the Gaussian."""
    return shape is None or bool(np.array_equal(np.asarray(shape, float), SHAPE_Z))


def stored_shape(params: pd.DataFrame) -> np.ndarray | None:
    """The error shape of a ``weather_model_params`` row (its first); None, the Gaussian, for a row stored before
    the shape was learned (no shape columns, or nulls)."""
    shape = params.reindex(columns=list(SHAPE_COLUMNS)).to_numpy(float)[0]
    return shape if np.isfinite(shape).all() else None


def _strictly_increasing(g: np.ndarray) -> np.ndarray:
    """``g`` with each knot at least 1e-3 above the one before (a shape must be invertible)."""
    return np.maximum.accumulate(g - 1e-3 * np.arange(len(g))) + 1e-3 * np.arange(len(g))


@dataclass(frozen=True)
class EmosFit:
    """Coefficients per city (pooled plus the city's shrunk deviation), the error shape (pooled) and the fit's
    lineage."""

    pooled: np.ndarray
    by_city: dict[str, np.ndarray]
    fit_start: dt.date | None
    fit_end: dt.date | None
    fit_days: int
    samples: dict[str, int]
    shape: np.ndarray = field(default_factory=SHAPE_Z.copy)  # pooled: a city with no samples of its own
    city_shapes: dict[str, np.ndarray] = field(default_factory=dict)
    shape_days: dict[str, float] = field(default_factory=dict)  # each city's own, effective (0: none, or Gaussian)
    long_bias: dict[str, np.ndarray] = field(default_factory=dict)  # per LONG_BIAS_LEADS bucket; NaN: too few days
    long_bias_weight: float = 0.0

    def coefficients(self, city: str) -> np.ndarray:
        return self.by_city.get(city, self.pooled)

    def shape_of(self, city: str) -> np.ndarray:
        return self.city_shapes.get(city, self.shape)

    def long_bias_of(self, city: str) -> np.ndarray:
        return self.long_bias.get(city, np.full(len(LONG_BIAS_LEADS), np.nan))

    def describe(self, city: str) -> dict:
        """One row of lineage and coefficients for ``city``: what ``weather_model_params`` stores."""
        row = {"fit_start": self.fit_start, "fit_end": self.fit_end, "fit_days": self.fit_days,
               "fit_samples": int(self.samples.get(city, 0)), "pooled_samples": int(sum(self.samples.values()))}
        row.update(dict(zip(PARAM_COLUMNS, map(float, self.coefficients(city)))))
        row.update(dict(zip(SHAPE_COLUMNS, map(float, self.shape_of(city)))),
                   shape_days=float(self.shape_days.get(city, 0.0)))
        row.update(dict(zip(LONG_BIAS_COLUMNS, map(float, self.long_bias_of(city)))),
                   long_bias_weight=float(self.long_bias_weight))
        return row


def predict(theta: np.ndarray, xm: np.ndarray, xs: np.ndarray, min_sd: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    """Mean and SD of the official high (integer F, so the SD includes rounding's 1/12 F^2)."""
    theta = np.asarray(theta, float)
    return xm_forecast(xm) + xm @ theta[:_NM], np.maximum(np.exp(np.clip(xs @ theta[_NM:], -3, 3)), min_sd)


def xm_forecast(xm: np.ndarray) -> np.ndarray:
    """The forecast high itself, recovered from the design's slope column."""
    return xm[:, 0] * 10 + 65


def lead_bucket(lead_h: np.ndarray) -> np.ndarray:
    """The ``LONG_BIAS_LEADS`` bucket of each lead (hours before the peak; below 0 counts as the first)."""
    return np.clip(np.searchsorted(LONG_BIAS_LEADS, np.asarray(lead_h, float), side="right") - 1, 0, len(LONG_BIAS_LEADS) - 1)


def blend_long_bias(mu: np.ndarray, forecast_high: np.ndarray, lead_h: np.ndarray, long_bias: np.ndarray | None,
                    weight: float) -> np.ndarray:
    """The EMOS mean moved ``weight`` of the way to the forecast plus the city's long-run bias at the run's lead
    (``LONG_BIAS_LEADS`` buckets); unchanged where that bias is unknown. The EMOS learns a city's bias recency-weighted
    and shrunk to the pool; a plain mean over every settled day is the steadier estimate where a city's bias lasts, and
    a forecaster hedges between the two."""
    mu = np.asarray(mu, float)
    if long_bias is None or weight == 0:
        return mu
    b = np.asarray(long_bias, float)[lead_bucket(lead_h)]
    return np.where(np.isfinite(b), mu + weight * (np.asarray(forecast_high, float) + b - mu), mu)


def stored_long_bias(params: pd.DataFrame) -> tuple[np.ndarray | None, float]:
    """The long-run biases and their weight of a ``weather_model_params`` row (its first); (None, 0) for a row stored
    before they were learned."""
    if "long_bias_weight" not in params or not np.isfinite(params["long_bias_weight"].to_numpy(float)[0]):
        return None, 0.0
    return params.reindex(columns=list(LONG_BIAS_COLUMNS)).to_numpy(float)[0], float(params["long_bias_weight"].iloc[0])


def empty_samples() -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype=object if c in ("city", "climate_day") else float) for c in SAMPLE_COLUMNS})


class WalkForward:
    """Fits for climate days over one sample table. Every fit starts from the prior, so a day's coefficients
    depend on its samples alone, not on which days a run fitted before it: starting from the previous day's
    optimum, a day fitted in a year's run and the same day fitted alone differed by up to 1e-3 (the optimizer's
    tolerance), and so did every table downstream. The fits are independent, so a run computes them in parallel."""

    def __init__(self, samples: pd.DataFrame, cfg: EmosConfig = EmosConfig(), prior: np.ndarray = PRIOR,
                 prior_shape: np.ndarray = PRIOR_SHAPE):
        s = samples.dropna(subset=["forecast_high_f", "observed_high_f"]).reset_index(drop=True)
        cities = sorted(s["city"].unique().tolist())
        city_index = pd.Index(cities).get_indexer(s["city"]) if len(s) else np.zeros(0, int)
        day = pd.to_datetime(s["climate_day"]).to_numpy("datetime64[D]") if len(s) else np.zeros(0, "datetime64[D]")
        if "yesterday_high_f" not in s:
            s = s.assign(yesterday_high_f=np.nan)
        self._learn_from(cities, city_index, day, {c: s[c].to_numpy(float) for c in _FEATURES}, cfg, prior, prior_shape)

    @classmethod
    def of_one_city(cls, city: str, day: np.ndarray, columns: dict[str, np.ndarray], cfg: EmosConfig = EmosConfig(),
                    prior: np.ndarray = PRIOR) -> "WalkForward":
        """The fits of one city's samples given as arrays (``day`` datetime64[D] per sample, ``columns`` the
        ``SAMPLE_COLUMNS`` after city and day): what the frame constructor gives them, without the frame (a
        simulated world fits its traders' EMOS on 90 days every city-day)."""
        keep = ~(np.isnan(columns["forecast_high_f"]) | np.isnan(columns["observed_high_f"]))
        self = cls.__new__(cls)
        self._learn_from([city], np.zeros(int(keep.sum()), np.intp), day[keep],
                         {c: np.asarray(columns[c], float)[keep] for c in _FEATURES}, cfg, prior, PRIOR_SHAPE)
        return self

    def _learn_from(self, cities: list[str], city_index: np.ndarray, day: np.ndarray, col: dict[str, np.ndarray],
                    cfg: EmosConfig, prior: np.ndarray, prior_shape: np.ndarray) -> None:
        held = []  # terms held at 0: no column, no prior pull away from 0
        if not cfg.use_lag_error:
            col, held = col | {"lag_error_f": np.full(len(day), np.nan)}, held + [_LAG]
        if not cfg.use_jump:
            col, held = col | {"yesterday_high_f": np.full(len(day), np.nan)}, held + list(_YESTERDAY[1:])
        prior = np.where(np.isin(np.arange(len(PARAM_COLUMNS)), held), 0.0, prior)
        self.cfg, self.prior = cfg, np.asarray(prior, float)
        self.prior_shape = np.asarray(prior_shape, float) if cfg.use_shape else SHAPE_Z
        self.cities, self.city_index, self.day = cities, city_index, day
        self.y, self.forecast, self.lead = col["observed_high_f"], col["forecast_high_f"], col["lead_h"]
        self.xm, self.xs = design(col["forecast_high_f"], col["previous_high_f"], col["before_previous_high_f"],
                                  col["forecast_low_f"], col["lead_h"], col["lag_error_f"], col["yesterday_high_f"])

    def fit(self, day: dt.date) -> EmosFit:
        """Coefficients for climate day ``day`` from samples of days <= day - 1 - embargo."""
        end = np.datetime64(last_known_day(day, self.cfg.embargo_days), "D")
        use = self.day <= end
        n_city = len(self.cities)
        if not use.any():
            return EmosFit(self.prior.copy(), {}, None, None, 0, {}, self.prior_shape.copy(),
                           long_bias_weight=self.cfg.long_bias_weight)
        ci, y, xm, xs = self.city_index[use], self.y[use], self.xm[use], self.xs[use]
        age = (end - self.day[use]).astype(float)
        w = 0.5 ** (age / self.cfg.half_life_days)
        x0 = np.concatenate([self.prior, np.zeros(n_city * len(self.prior))])
        x = _fit(xm, xs, ci, y, w, n_city, self.prior, self.cfg, x0)
        p = len(self.prior)
        pooled, delta = x[:p], x[p:].reshape(n_city, p)
        days = self.day[use]
        counts = np.bincount(ci, minlength=n_city)
        pooled_shape, city_shapes, shape_days = self._shapes(pooled + delta, ci, days, y, xm, xs, w)
        return EmosFit(pooled, {c: pooled + delta[k] for k, c in enumerate(self.cities)},
                       pd.Timestamp(days.min()).date(), pd.Timestamp(days.max()).date(), int(len(np.unique(days))),
                       {c: int(counts[k]) for k, c in enumerate(self.cities)}, pooled_shape, city_shapes, shape_days,
                       self._long_bias(use), self.cfg.long_bias_weight)

    def _long_bias(self, use: np.ndarray) -> dict[str, np.ndarray]:
        """Per city and lead bucket, the plain mean of (observed - forecast high) over the fit's samples, where the
        city has ``long_bias_min_days`` settled days at that lead (NaN otherwise). Unweighted: every day counts alike."""
        if self.cfg.long_bias_weight == 0:
            return {}
        nb = len(LONG_BIAS_LEADS)
        key = self.city_index[use] * nb + lead_bucket(self.lead[use])
        err = self.y[use] - self.forecast[use]
        n = len(self.cities) * nb
        total, count = np.bincount(key, err, minlength=n), np.bincount(key, minlength=n)
        pairs = np.unique(key * (1 << 20) + (self.day[use] - self.day[use].min()).astype(np.int64))
        days = np.bincount(pairs >> 20, minlength=n)
        mean = np.where(days >= self.cfg.long_bias_min_days, total / np.maximum(count, 1), np.nan).reshape(-1, nb)
        return {c: mean[k] for k, c in enumerate(self.cities)}

    def _shapes(self, theta, ci, days, y, xm, xs, w) -> tuple[np.ndarray, dict[str, np.ndarray], dict[str, float]]:
        """The fit's error shapes: its samples' standardized residuals under their city's coefficients, weighted like
        the fit; pooled and averaged with the prior shape (``shape_prior_days``), then per city averaged with that
        (``city_shape_days``); with each city's effective city-days."""
        if not self.cfg.use_shape:
            return SHAPE_Z.copy(), {}, {}
        rows = theta[ci]
        mu = xm_forecast(xm) + np.einsum("ij,ij->i", xm, rows[:, :_NM])
        sd = np.maximum(np.exp(np.clip(np.einsum("ij,ij->i", xs, rows[:, _NM:]), -3, 3)), 0.5)
        z = (y - mu) / sd
        city_day = ci.astype(np.int64) * (1 << 32) + days.astype(np.int64)
        n = effective_days(w, city_day)
        n0, m = self.cfg.shape_prior_days, self.cfg.city_shape_days
        pooled = _strictly_increasing((n * shape_quantiles(z, w) + n0 * self.prior_shape) / (n + n0))
        city_shapes, counts = {}, {}
        for k, city in enumerate(self.cities):  # a handful of cities: one weighted quantile each
            own = ci == k
            if own.any():
                n_city = effective_days(w[own], city_day[own])
                g = shape_quantiles(z[own], w[own])
                city_shapes[city], counts[city] = _strictly_increasing((n_city * g + m * pooled) / (n_city + m)), n_city
        return pooled, city_shapes, counts


def _known_design(samples: pd.DataFrame) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    """The samples with a forecast and an observed high, and their design matrices."""
    s = samples.dropna(subset=["forecast_high_f", "observed_high_f"])
    return s, *design(s["forecast_high_f"], s["previous_high_f"], s["before_previous_high_f"], s["forecast_low_f"],
                      s["lead_h"], s["lag_error_f"], s.get("yesterday_high_f", np.nan))


def fit_pooled(samples: pd.DataFrame) -> np.ndarray:
    """One set of coefficients for all of ``samples`` (no recency weighting, no prior): how ``PRIOR`` is made."""
    s, xm, xs = _known_design(samples)
    x0 = np.zeros(len(PARAM_COLUMNS))
    x0[_NM] = 1.0  # log-SD intercept: e^1 = 2.7 F, a typical day-ahead error
    cfg = EmosConfig(city_shrinkage=0.0, prior_weight=0.0)
    x = _fit(xm, xs, np.zeros(len(s), int), s["observed_high_f"].to_numpy(float), np.ones(len(s)), 1, x0, cfg,
             np.concatenate([x0, np.zeros(len(x0))]))
    return x[: len(x0)] + x[len(x0):]  # unpenalized: only the sum of pooled and the one city's part is defined


def pooled_shape(samples: pd.DataFrame, coefficients: np.ndarray) -> np.ndarray:
    """The error shape of all of ``samples`` under one set of coefficients (unweighted): how ``PRIOR_SHAPE`` is
    made, from ``fit_pooled``'s coefficients."""
    s, xm, xs = _known_design(samples)
    mu, sd = predict(coefficients, xm, xs)
    return _strictly_increasing(shape_quantiles((s["observed_high_f"].to_numpy(float) - mu) / sd))


def _fit(xm, xs, ci, y, w, n_city, prior, cfg: EmosConfig, x0) -> np.ndarray:
    """The penalized, weighted CRPS minimized over the pooled coefficients and each city's deviation. The rows are
    taken city by city: within a city every row has the same coefficients, so its moments and its gradient are
    matrix-vector products (a year's fit: ~1 ms a loss where gathering each row's coefficients took ~7)."""
    p = len(prior)
    order = np.argsort(ci, kind="stable")
    xm, xs, y, w = xm[order], xs[order], np.asarray(y, float)[order], np.asarray(w, float)[order]
    bounds = np.searchsorted(np.asarray(ci)[order], np.arange(n_city + 1))
    cities = [(k, slice(bounds[k], bounds[k + 1])) for k in range(n_city) if bounds[k + 1] > bounds[k]]
    base = xm_forecast(xm)

    def loss(x):
        pooled, delta = x[:p], x[p:].reshape(n_city, p)
        theta = pooled[None, :] + delta
        lin_m, lin_s = np.empty(len(y)), np.empty(len(y))
        for k, rows in cities:
            lin_m[rows] = xm[rows] @ theta[k, :_NM]
            lin_s[rows] = xs[rows] @ theta[k, _NM:]
        mu = base + lin_m
        sd = np.exp(np.clip(lin_s, -3, 3))
        c, d_mu, d_sd = _crps(mu, sd, y)
        g_mean, g_spread = w * d_mu, w * d_sd * sd
        g_delta = np.zeros((n_city, p))
        for k, rows in cities:
            g_delta[k, :_NM] = g_mean[rows] @ xm[rows]
            g_delta[k, _NM:] = g_spread[rows] @ xs[rows]
        g_pooled = g_delta.sum(axis=0) + 2 * cfg.prior_weight * (pooled - prior)
        g_delta += 2 * cfg.city_shrinkage * delta
        value = (w * c).sum() + cfg.prior_weight * ((pooled - prior) ** 2).sum() + cfg.city_shrinkage * (delta ** 2).sum()
        return value, np.concatenate([g_pooled, g_delta.ravel()])

    return minimize(loss, x0, jac=True, method="L-BFGS-B").x
