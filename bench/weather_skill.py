"""Skill of the project's weather model on real forecasts, walk-forward.

    python bench/weather_skill.py --nws-csv FILE [--score-from YYYY-MM-DD] [--json OUT] [--cities all]
    python bench/weather_skill.py --nws-csv FILE --validate 6 [--seed 0] [--no-shape]   # 6 groups of 7 non-Kalshi cities
    python bench/weather_skill.py --nws-csv FILE --validate 6 --cold-windows 2           # each window scored alone

FILE has the columns of the NWS forecast-vs-observed CSVs (``date``, ``city``, ``forecast_hi_2_prev_PM``,
``forecast_hi_prev_AM``, ``forecast_lo_prev_PM``, ``forecast_hi_prev_PM``, ``forecast_lo_current_AM``,
``forecast_hi_current_AM``, ``actual_hi_current_PM``). For every day D of the file, in order, the EMOS of
``kw_assets.model.emos`` is fitted on the days <= D - 3 (the pipeline's embargo) and the project's weather
model (``kw_assets.model.weather.simulate_weather_pmf``: the same code the ``weather_pmf`` asset runs) is
given D's forecast runs as hourly paths (a diurnal curve from each run's high and low), the previous day's
runs and observed high (for yesterday's error at the same lead; the file has the whole day's high where
the pipeline takes the obs max through 18:00 LST), no obs of D, and asked for the PMF of the high at two
horizons:

- prev_evening: 21:00 LST the day before, knowing the runs up to ``forecast_hi_prev_PM``;
- morning_of: 07:00 LST, knowing ``forecast_hi_current_AM`` too (but no obs: a conservative test).

Scored on six categories around c = round(forecast_hi_prev_PM): <= c-5, [c-4, c-3], [c-2, c-1], [c, c+1],
[c+2, c+3], >= c+4; RPS = mean over the 5 cumulative thresholds of (P(high <= t) - 1[observed <= t])^2.
Baselines: a Gaussian of SD 2.6 F around the horizon's forecast; a per-city Gaussian whose bias and SD are
fitted on the same walk-forward days; the uniform PMF. Interval coverage uses the mid-PIT of the project's
integer PMF ((F(y-1) + F(y)) / 2 inside [0.25, 0.75] or [0.05, 0.95]). Rows missing the forecast or the
observed high are skipped and counted.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.special import ndtr

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from kw_assets.model import emos  # noqa: E402
from kw_assets.model.weather import WeatherModelConfig, simulate_weather_pmf  # noqa: E402

KALSHI_CITIES = ("AUSTIN", "CHICAGO", "DENVER", "LOS_ANGELES", "MIAMI_BEACH", "NEW_YORK_CITY", "PHILADELPHIA")
HORIZONS = ("prev_evening", "morning_of")
THRESHOLDS = np.array([-5, -3, -1, 1, 3])  # upper ends of the first five categories, relative to c
SPAN = 25  # integer highs c-25..c+25 get their own probability; the tails beyond are lumped
PEAK_HOUR = 14.0  # the synthetic curves peak on the hour, so a run's hourly max is its forecast high
# (column of the high, column of the low, issue hour relative to D's LST midnight)
RUNS = (("forecast_hi_2_prev_PM", None, -32.0), ("forecast_hi_prev_AM", "forecast_lo_prev_AM", -19.0),
        ("forecast_hi_prev_PM", "forecast_lo_prev_PM", -8.0), ("forecast_hi_current_AM", "forecast_lo_current_AM", 5.0))
DECISION_HOUR = {"prev_evening": -3.0, "morning_of": 7.0}
ISSUE_H = {"prev_evening": RUNS[2][2], "morning_of": RUNS[3][2]}  # the horizon's latest run
# the lead the weather model computes for the horizon's latest run (issue hour -> its peak_hour_lst)
LEAD_H = {"prev_evening": WeatherModelConfig().peak_hour_lst - RUNS[2][2],
          "morning_of": WeatherModelConfig().peak_hour_lst - RUNS[3][2]}
KEYS = ("n", "project", "gauss_2_6", "per_city_gauss", "uniform", "mae", "cover_50", "cover_90")


def category_rps(cdf_at_thresholds: np.ndarray, observed: np.ndarray, c: np.ndarray) -> np.ndarray:
    """RPS per row from P(high <= c + t) at the five thresholds."""
    t = c[:, None] + THRESHOLDS[None, :]
    return ((cdf_at_thresholds - (observed[:, None] <= t)) ** 2).mean(axis=1)


def gaussian_cdf_at_thresholds(mu, sd, c) -> np.ndarray:
    """P(round(X) <= c + t) for X ~ N(mu, sd)."""
    t = c[:, None] + THRESHOLDS[None, :]
    return ndtr((t + 0.5 - np.asarray(mu)[:, None]) / np.asarray(sd)[:, None])


def load(path: str, cities: tuple[str, ...] | None) -> tuple[pd.DataFrame, dict[str, int]]:
    df = pd.read_csv(path)
    if cities:
        df = df[df["city"].isin(cities)]
    df = df.assign(day=pd.to_datetime(df["date"]).dt.date).sort_values(["day", "city"]).reset_index(drop=True)
    skipped = {h: int((df[["forecast_hi_prev_PM", "actual_hi_current_PM"] +
                          (["forecast_hi_current_AM"] if h == "morning_of" else [])].isna().any(axis=1)).sum())
               for h in HORIZONS}
    return df, skipped


def run_table(df: pd.DataFrame) -> pd.DataFrame:
    """Every run of every row on one clock (day D's runs at D 00:00 UTC + their issue hour), with the day's
    observed high: the ``yesterday`` input of ``emos.lag_errors``."""
    day0 = pd.to_datetime(df["day"]).dt.tz_localize("UTC")
    frames = [pd.DataFrame({"city": df["city"], "climate_day": df["day"], "issued_at": day0 + pd.Timedelta(hours=h),
                            "forecast_high_f": df[hi], "obs_max_f": df["actual_hi_current_PM"]}) for hi, _, h in RUNS]
    return pd.concat(frames, ignore_index=True).dropna(subset=["forecast_high_f"])


def training_samples(df: pd.DataFrame) -> pd.DataFrame:
    """The EMOS samples of each row: one per horizon, as the pipeline would see them (lead, revisions, low,
    yesterday's error at the same lead)."""
    runs = run_table(df)
    day0 = pd.to_datetime(df["day"]).dt.tz_localize("UTC")
    frames = []
    for h, (f, p1, p2, lo) in {"prev_evening": ("forecast_hi_prev_PM", "forecast_hi_prev_AM", "forecast_hi_2_prev_PM",
                                                "forecast_lo_prev_PM"),
                               "morning_of": ("forecast_hi_current_AM", "forecast_hi_prev_PM", "forecast_hi_prev_AM",
                                              "forecast_lo_current_AM")}.items():
        issued = day0 + pd.Timedelta(hours=ISSUE_H[h])
        lag, yesterday_high = emos.lag_errors(pd.DataFrame({"city": df["city"], "climate_day": df["day"],
                                                            "issued_at": issued}), runs)
        frames.append(pd.DataFrame({"city": df["city"], "climate_day": df["day"], "lead_h": LEAD_H[h],
                                    "forecast_high_f": df[f], "previous_high_f": df[p1],
                                    "before_previous_high_f": df[p2], "forecast_low_f": df[lo], "lag_error_f": lag,
                                    "yesterday_high_f": yesterday_high,
                                    "observed_high_f": df["actual_hi_current_PM"]}))
    return pd.concat(frames, ignore_index=True)


def diurnal_run(high: float, low: float, issued_h: float, day_start: pd.Timestamp) -> pd.DataFrame:
    """An hourly forecast path over the climate day: cosine from the low at 06 LST to the high at 14 LST."""
    low = high - 18.0 if not np.isfinite(low) else min(low, high)
    hours = np.arange(24.0)
    rise = (hours >= 6) & (hours <= PEAK_HOUR)
    fall = np.where(hours > PEAK_HOUR, hours - PEAK_HOUR, hours + 24 - PEAK_HOUR) / (30 - PEAK_HOUR)
    shape = np.where(rise, 0.5 - 0.5 * np.cos(np.pi * (hours - 6) / (PEAK_HOUR - 6)), 0.5 + 0.5 * np.cos(np.pi * np.clip(fall, 0, 1)))
    issued = day_start + pd.Timedelta(hours=issued_h)
    valid = day_start + pd.to_timedelta(hours, unit="h")
    keep = valid >= issued
    return pd.DataFrame({"issued_at": issued, "valid_time": valid[keep], "temp_f": (low + (high - low) * shape)[keep]})


def project_pmfs(df: pd.DataFrame, cfg: WeatherModelConfig, emos_cfg: emos.EmosConfig, seed: int = 0):
    """Integer-high CDFs (rows x horizons x 2 SPAN + 1, at c-SPAN..c+SPAN) from the weather model, walk-forward."""
    walk = emos.WalkForward(training_samples(df), emos_cfg)
    day_start = pd.Timestamp("2021-06-01", tz="UTC")  # any: only hours relative to it matter
    out = np.full((len(df), len(HORIZONS), 2 * SPAN + 1), np.nan)
    rng = np.random.default_rng(seed)
    empty_obs = pd.DataFrame({"valid_time": pd.to_datetime([], utc=True), "temp_f": []})
    row_of = {(c, d): i for i, (c, d) in enumerate(zip(df["city"], df["day"]))}
    fit = None
    for day, rows in df.groupby("day", sort=True).indices.items():
        fit = walk.fit(day)
        for i in rows:
            r = df.iloc[i]
            if not (np.isfinite(r["forecast_hi_prev_PM"]) and np.isfinite(r["actual_hi_current_PM"])):
                continue
            c = int(np.floor(r["forecast_hi_prev_PM"] + 0.5))
            lows = np.concatenate([[-np.inf], np.arange(c - SPAN + 1, c + SPAN + 1)]).astype(float)
            highs = np.concatenate([np.arange(c - SPAN, c + SPAN), [np.inf]]).astype(float)
            runs = [diurnal_run(r[hi], r[lo] if lo else np.nan, h, day_start) for hi, lo, h in RUNS if np.isfinite(r[hi])]
            forecasts = pd.concat(runs, ignore_index=True)
            y = row_of.get((r["city"], r["day"] - dt.timedelta(days=1)))
            yesterday = None if y is None else pd.DataFrame(
                [{"issued_at": day_start + pd.Timedelta(hours=h - 24), "forecast_high_f": df.at[y, hi],
                  "obs_max_f": df.at[y, "actual_hi_current_PM"]} for hi, _, h in RUNS if np.isfinite(df.at[y, hi])])
            decisions = pd.DatetimeIndex([day_start + pd.Timedelta(hours=DECISION_HOUR[h]) for h in HORIZONS])
            res = simulate_weather_pmf(day_start, decisions, empty_obs, forecasts, lows, highs, rng, cfg,
                                       params=fit.coefficients(r["city"]), yesterday=yesterday,
                                       shape=fit.shape_of(r["city"]), long_bias=fit.long_bias_of(r["city"]),
                                       long_bias_weight=fit.long_bias_weight)
            for k, h in enumerate(HORIZONS):
                if h == "morning_of" and not np.isfinite(r["forecast_hi_current_AM"]):
                    continue
                out[i, k] = np.cumsum(res["pmf"][k])[:-1].tolist() + [1.0]
    return out, walk.cities


def gaussian_pmfs(df: pd.DataFrame, emos_cfg: emos.EmosConfig, prior: np.ndarray = emos.PRIOR,
                  prior_shape: np.ndarray = emos.PRIOR_SHAPE) -> np.ndarray:
    """``project_pmfs`` from the EMOS's closed form instead of the Monte Carlo: P(round(X) <= c + j) with
    X = mean + SD' g(Z), the mean moved toward the city's long-run bias, SD' the fit's SD less rounding's 1/12 F^2 and
    g its error shape (the Monte Carlo's PMF
    before any obs, to ~1e-4 RPS). Fast enough to score dozens of cities: what ``--validate`` uses."""
    samples = training_samples(df)  # the prev_evening rows, then the morning_of rows, each in df's order
    walk = emos.WalkForward(samples, emos_cfg, prior, prior_shape)
    xm, xs = emos.design(samples["forecast_high_f"], samples["previous_high_f"], samples["before_previous_high_f"],
                         samples["forecast_low_f"], samples["lead_h"], samples["lag_error_f"], samples["yesterday_high_f"])
    c = np.floor(df["forecast_hi_prev_PM"].to_numpy(float) + 0.5)
    known = np.isfinite(c) & np.isfinite(df["actual_hi_current_PM"].to_numpy(float))
    ks = np.arange(-SPAN, SPAN + 1)
    out = np.full((len(df), len(HORIZONS), 2 * SPAN + 1), np.nan)
    for day, rows in df.groupby("day", sort=True).indices.items():
        fit = walk.fit(day)
        for k, h in enumerate(HORIZONS):
            for i in rows[known[rows]]:
                j = i + k * len(df)
                if not np.isfinite(samples["forecast_high_f"].iat[j]):
                    continue
                city = df["city"].iat[i]
                mu, sd = emos.predict(fit.coefficients(city), xm[j:j + 1], xs[j:j + 1])
                mu = emos.blend_long_bias(mu, samples["forecast_high_f"].iat[j], samples["lead_h"].iat[j],
                                          fit.long_bias_of(city), fit.long_bias_weight)
                sd_c = np.sqrt(np.maximum(sd**2 - 1 / 12, 1e-6))
                out[i, k] = emos.shape_cdf(fit.shape_of(city), (c[i] + ks + 0.5 - mu) / sd_c)
    out[:, :, -1] = np.where(np.isfinite(out[:, :, -1]), 1.0, np.nan)
    return out


def scored_rows(df: pd.DataFrame, cdf: np.ndarray, k: int, score_from: dt.date | None) -> np.ndarray:
    """The rows horizon ``k`` scores: a PMF, the horizon's forecast and the observed high, on or after ``score_from``."""
    f = df["forecast_hi_prev_PM" if HORIZONS[k] == "prev_evening" else "forecast_hi_current_AM"].to_numpy(float)
    ok = np.isfinite(cdf[:, k, 0]) & np.isfinite(f) & np.isfinite(df["actual_hi_current_PM"].to_numpy(float))
    if score_from is not None:
        ok &= (df["day"] >= score_from).to_numpy()
    return np.nonzero(ok)[0]


def mid_pit(full: np.ndarray, observed: np.ndarray, c: np.ndarray) -> np.ndarray:
    """(F(y - 1) + F(y)) / 2 of each row's integer-high CDF ``full`` (at c-SPAN..c+SPAN) at its observed high y."""
    rel = np.clip(observed - c, -SPAN, SPAN).astype(int) + SPAN
    rows = np.arange(len(full))
    below = np.where(rel > 0, full[rows, np.maximum(rel - 1, 0)], 0.0)
    return (below + full[rows, rel]) / 2


def pit_misses(df: pd.DataFrame, cdf: np.ndarray, score_from: dt.date | None) -> dict[str, tuple[float, float]]:
    """Per horizon, the share of the rows ``score`` scores whose mid-PIT falls below 0.05 and above 0.95 (a 90%
    interval's misses, low and high)."""
    c = np.floor(df["forecast_hi_prev_PM"].to_numpy(float) + 0.5)
    y = df["actual_hi_current_PM"].to_numpy(float)
    out = {}
    for k, h in enumerate(HORIZONS):
        idx = scored_rows(df, cdf, k, score_from)
        pit = mid_pit(cdf[idx, k], y[idx], c[idx])
        out[h] = (float((pit < 0.05).mean()), float((pit > 0.95).mean()))
    return out


def validation(df: pd.DataFrame, groups: int, seed: int, emos_cfg: emos.EmosConfig,
               score_from: dt.date | None, cold_windows: int = 0) -> pd.DataFrame:
    """How the model is chosen without the Kalshi cities: ``groups`` groups of 7 of the file's other cities
    (drawn with ``seed``), each scored walk-forward like the Kalshi table (``gaussian_pmfs``), with the prior
    and its error shape refitted on the other cities that are in no group. Per group and horizon: the RPS, its ratio to the
    per-city Gaussian's, and the cities better than both Gaussians.

    ``cold_windows`` N > 0: what a held-out file of a few months scored alone meets. The file's days are cut into N
    consecutive windows; each group's rows of a window are scored alone, walk-forward from the prior (no earlier day of
    the file), with the prior and its shape refitted on the other cities' days outside the window (another season)."""
    others = sorted(set(df["city"]) - set(KALSHI_CITIES))
    picked = [str(c) for c in np.random.default_rng(seed).permutation(others)[: 7 * groups]]
    if len(picked) < 7 * groups:
        raise SystemExit(f"--validate {groups} needs {7 * groups} cities besides the Kalshi ones; the file has {len(others)}")
    rest = df["city"].isin(set(others) - set(picked))
    if cold_windows:
        days = np.array(sorted(set(df["day"])))
        windows = [(w[0], w[-1]) for w in np.array_split(days, cold_windows) if len(w)]
    else:
        windows = [(None, None)]
    rows = []
    for first, last in windows:
        inside = (df["day"] >= first) & (df["day"] <= last) if first is not None else pd.Series(True, index=df.index)
        prior_rows = rest & ~inside if first is not None else rest
        prior_samples = training_samples(df[prior_rows].reset_index(drop=True))
        prior = emos.fit_pooled(prior_samples)
        prior_shape = emos.pooled_shape(prior_samples, prior)
        for g in range(groups):
            part = df[df["city"].isin(picked[7 * g: 7 * g + 7]) & inside].reset_index(drop=True)
            cdf = gaussian_pmfs(part, emos_cfg, prior, prior_shape)
            scored_from = None if first is not None else score_from
            result, misses = score(part, cdf, scored_from, emos_cfg.embargo_days), pit_misses(part, cdf, scored_from)
            for h, block in result.items():
                o = block["overall"]
                better = sum(s["project"] < min(s["gauss_2_6"], s["per_city_gauss"]) for s in block["cities"].values())
                rows.append({"group": g + 1, **({"window": f"{first}..{last}"} if first is not None else {}),
                             "cities": ",".join(sorted(block["cities"])), "horizon": h, "n": o["n"],
                             "project": o["project"],
                             "per_city_gauss": o["per_city_gauss"], "ratio": o["project"] / o["per_city_gauss"],
                             "cities_better_than_both": better, "cover_90": o["cover_90"], "cover_50": o["cover_50"],
                             "miss_low_90": misses[h][0], "miss_high_90": misses[h][1]})
    return pd.DataFrame(rows)


def six_of_seven_at_both(table: pd.DataFrame) -> tuple[int, int]:
    """How many of the table's (group, window) files have >= 6 of their 7 cities better than both Gaussians at
    both horizons (the issue's per-city criterion), of how many."""
    keys = [k for k in ("group", "window") if k in table]
    met = table.groupby(keys)["cities_better_than_both"].min() >= 6
    return int(met.sum()), int(len(met))


def per_city_gaussian(df: pd.DataFrame, forecast: np.ndarray, embargo_days: int) -> tuple[np.ndarray, np.ndarray]:
    """Bias and SD of (observed - forecast) per city over the days <= D - 1 - embargo (2.6 F, no bias, until 10 days)."""
    mu, sd = forecast.copy(), np.full(len(df), 2.6)
    err = df["actual_hi_current_PM"].to_numpy(float) - forecast
    days = pd.to_datetime(df["day"]).to_numpy("datetime64[D]")
    for city, idx in df.groupby("city").indices.items():
        d, e = days[idx], err[idx]
        ok = np.isfinite(e)
        for day in np.unique(d):
            past = ok & (d <= day - np.timedelta64(embargo_days + 1, "D"))
            if past.sum() >= 10:
                here = idx[d == day]
                mu[here] = forecast[here] + e[past].mean()
                sd[here] = max(e[past].std(ddof=1), 1.0)
    return mu, np.sqrt(np.maximum(sd**2 - 1 / 12, 0.25))


def score(df: pd.DataFrame, cdf: np.ndarray, score_from: dt.date | None, embargo_days: int) -> dict:
    c = np.floor(df["forecast_hi_prev_PM"].to_numpy(float) + 0.5)
    y = df["actual_hi_current_PM"].to_numpy(float)
    ks = np.arange(-SPAN, SPAN + 1)
    result = {}
    for k, h in enumerate(HORIZONS):
        f = df["forecast_hi_prev_PM" if h == "prev_evening" else "forecast_hi_current_AM"].to_numpy(float)
        mu_g, sd_g = per_city_gaussian(df, f, embargo_days)
        idx = scored_rows(df, cdf, k, score_from)
        cc, yy = c[idx], y[idx]
        full = cdf[idx, k]  # P(high <= c + j) for j in ks
        at_t = full[:, THRESHOLDS + SPAN]
        pmf = np.diff(np.concatenate([np.zeros((len(idx), 1)), full], axis=1), axis=1)
        pit = mid_pit(full, yy, cc)
        expected = (pmf * (cc[:, None] + ks[None, :])).sum(axis=1)
        rows = pd.DataFrame({
            "city": df["city"].to_numpy()[idx],
            "project": category_rps(at_t, yy, cc),
            "gauss_2_6": category_rps(gaussian_cdf_at_thresholds(f[idx], np.full(len(idx), 2.6), cc), yy, cc),
            "per_city_gauss": category_rps(gaussian_cdf_at_thresholds(mu_g[idx], sd_g[idx], cc), yy, cc),
            "uniform": category_rps(np.tile(np.arange(1, 6) / 6, (len(idx), 1)), yy, cc),
            "mae": np.abs(expected - yy),
            "cover_50": (pit >= 0.25) & (pit <= 0.75),
            "cover_90": (pit >= 0.05) & (pit <= 0.95),
        })
        summary = lambda g: {"n": int(len(g)), **{key: float(g[key].mean()) for key in KEYS[1:]}}  # noqa: E731
        result[h] = {"overall": summary(rows), "cities": {city: summary(g) for city, g in rows.groupby("city")}}
    return result


def render(result: dict, skipped: dict[str, int]) -> str:
    lines = []
    for h, block in result.items():
        lines.append(f"\n{h}  (skipped rows missing a forecast or the observed high: {skipped.get(h, 0)})")
        lines.append(f"{'city':<16}" + "".join(f"{k:>15}" for k in KEYS))
        for name, s in list(block["cities"].items()) + [("OVERALL", block["overall"])]:
            lines.append(f"{name:<16}" + "".join(f"{s[k]:>15d}" if k == "n" else f"{s[k]:>15.4f}" for k in KEYS))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nws-csv", required=True)
    ap.add_argument("--score-from", type=dt.date.fromisoformat, default=None)
    ap.add_argument("--json", default=None)
    ap.add_argument("--cities", default="kalshi", help="'kalshi' (the 7 Kalshi cities) or 'all'")
    ap.add_argument("--n-paths", type=int, default=4000)
    ap.add_argument("--no-lag-error", dest="lag_error", action="store_false",
                    help="EmosConfig(use_lag_error=False): without yesterday's error in the mean (the pipeline's "
                         "default has it)")
    ap.add_argument("--no-jump", dest="jump", action="store_false",
                    help="EmosConfig(use_jump=False): without the jump from yesterday's observed high in the mean and "
                         "the spread (the pipeline's default has it)")
    ap.add_argument("--validate", type=int, default=0, metavar="GROUPS",
                    help="score GROUPS groups of 7 cities Kalshi does not list instead (the EMOS closed form, prior refitted "
                         "on the rest): how model changes are chosen without looking at the Kalshi cities")
    ap.add_argument("--seed", type=int, default=0, help="the draw of the --validate groups")
    ap.add_argument("--cold-windows", type=int, default=0, metavar="N",
                    help="with --validate: cut the file's days into N windows and score each group's window alone, from "
                         "a prior fitted outside it (what a held-out file of a few months meets; --score-from ignored)")
    ap.add_argument("--no-shape", dest="shape", action="store_false",
                    help="EmosConfig(use_shape=False): Gaussian errors instead of the learned error shape (the "
                         "pipeline's default learns it)")
    ap.add_argument("--fit-prior", action="store_true",
                    help="print emos.PRIOR refitted on the file's cities that Kalshi does not list, and stop")
    a = ap.parse_args(argv)
    if a.fit_prior:
        df, _ = load(a.nws_csv, None)
        samples = training_samples(df[~df["city"].isin(KALSHI_CITIES)].reset_index(drop=True))
        prior = emos.fit_pooled(samples)
        shape = emos.pooled_shape(samples, prior)
        print(f"{len(samples.dropna(subset=['forecast_high_f', 'observed_high_f']))} samples")
        print("PRIOR = np.array([" + ", ".join(f"{v:.4f}" for v in prior) + "])")
        print("PRIOR_SHAPE = np.array([" + ", ".join(f"{v:.4f}" for v in shape) + "])")
        return {"prior": prior.tolist(), "prior_shape": shape.tolist()}
    if a.cold_windows and (not a.validate or a.score_from):
        ap.error("--cold-windows goes with --validate and without --score-from (each window is scored whole, cold)")
    emos_cfg = emos.EmosConfig(use_lag_error=a.lag_error, use_jump=a.jump, use_shape=a.shape)
    if a.validate:
        table = validation(load(a.nws_csv, None)[0], a.validate, a.seed, emos_cfg, a.score_from, a.cold_windows)
        print(table.drop(columns="cities").to_string(index=False, float_format=lambda v: f"{v:.4f}"))
        for g, cities in table.groupby("group", sort=True)["cities"].first().items():
            print(f"group {g}: {cities}")
        mean = table.groupby("horizon", sort=False)[["project", "per_city_gauss", "ratio", "cities_better_than_both",
                                                      "cover_90", "cover_50", "miss_low_90", "miss_high_90"]].mean()
        print("\nmean over the groups:\n" + mean.to_string(float_format=lambda v: f"{v:.4f}"))
        met, files = six_of_seven_at_both(table)
        print(f"files with >= 6 of 7 cities better than both Gaussians at both horizons: {met} of {files}")
        return {"validation": table.to_dict("records")}
    df, skipped = load(a.nws_csv, KALSHI_CITIES if a.cities == "kalshi" else None)
    cdf, _ = project_pmfs(df, WeatherModelConfig(n_paths=a.n_paths), emos_cfg)
    result = score(df, cdf, a.score_from, emos_cfg.embargo_days)
    print(render(result, skipped))
    if a.json:
        Path(a.json).write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
