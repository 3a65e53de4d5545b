"""Scoring tables over many partitions: each model's PMFs against the settled bracket, overall, by city
and by hour of the climate day (LST), plus a walk-forward climatology baseline."""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.stats import norm

from kw_assets.model.embargo import last_known_day
from kw_assets.model.scores import reliability, score_all

MODELS = {"market": "p_market", "weather": "p_weather", "fused": "p_fused", "calibrated": "p_calibrated"}
CLIMATOLOGY_MIN_DAYS = 5


def climatology_pmf(settled: pd.DataFrame, city: str, day, lows: np.ndarray, highs: np.ndarray) -> np.ndarray | None:
    """Normal fit to the city's settled highs known before ``day``'s market opened, on its brackets; None if too few."""
    known = settled[(settled["city"] == city) & (settled["climate_day"] <= last_known_day(pd.Timestamp(day)))]
    prior = known["official_high_f"].dropna()
    if len(prior) < CLIMATOLOGY_MIN_DAYS:
        return None
    mu, sd = prior.mean(), max(prior.std(ddof=1), 1.0)
    p = norm.cdf((highs + 0.5 - mu) / sd) - norm.cdf((lows - 0.5 - mu) / sd)
    return p / p.sum()


def score_tables(rows: pd.DataFrame, markets: pd.DataFrame, settled: pd.DataFrame,
                 day_starts: dict[str, pd.Timedelta]) -> tuple[pd.DataFrame, dict[str, pd.DataFrame]]:
    """``rows``: calibrated_pmf rows (any sampling) with a ``winner`` column. Returns (scores, reliability by model)."""
    rows = rows.sort_values(["city", "climate_day", "minute_ts", "bracket_index"])
    n_br = rows.groupby(["city", "climate_day", "minute_ts"])["bracket_index"].transform("size")
    rows = rows[n_br == n_br.max()]
    b = int(n_br.max()) if len(n_br) else 0
    keys = rows[["city", "climate_day", "minute_ts", "winner"]].iloc[::b].reset_index(drop=True) if b else rows
    offset = keys["city"].map(day_starts)
    hour = ((keys["minute_ts"] - (pd.to_datetime(keys["climate_day"]).dt.tz_localize("UTC") + offset))
            / pd.Timedelta(hours=1)).apply(np.floor).astype(int)
    keys["hour_lst"] = hour
    mats = {name: rows[col].to_numpy(float).reshape(-1, b) for name, col in MODELS.items()}
    # climatology: one vector per event, repeated over its minutes
    clim = np.full((len(keys), b), np.nan)
    for (city, day), idx in keys.groupby(["city", "climate_day"]).indices.items():
        m = markets[(markets["city"] == city) & (markets["climate_day"] == day)].sort_values("bracket_index")
        if len(m) == b:
            p = climatology_pmf(settled, city, day, m["bracket_low_f"].to_numpy(float), m["bracket_high_f"].to_numpy(float))
            if p is not None:
                clim[idx] = p
    mats["climatology"] = clim
    winner = keys["winner"].to_numpy(int)
    out, rel = [], {}
    for name, p in mats.items():
        ok = ~np.isnan(p).any(axis=1)
        if name == "market":
            p = p / np.where(ok, p.sum(axis=1), 1)[:, None]
        if not ok.any():
            continue
        rel[name] = reliability(p[ok], winner[ok])
        groups = [("all", pd.Series("all", index=keys.index)), ("city", keys["city"]), ("hour_lst", keys["hour_lst"].astype(str))]
        for group_by, labels in groups:
            for value, idx in pd.Series(np.arange(len(keys)))[ok].groupby(labels[ok]).groups.items():
                sel = np.asarray(list(idx))
                out.append({"model": name, "group_by": group_by, "group_value": str(value),
                            **score_all(p[sel], winner[sel])})
    return pd.DataFrame(out), rel
