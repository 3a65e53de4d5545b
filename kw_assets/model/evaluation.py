"""Scoring tables over many partitions: each model's PMFs against the settled bracket, overall, by city
and by hour of the climate day (LST), plus a walk-forward climatology baseline."""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.stats import norm

from kw_assets.model.embargo import last_known_day
from kw_assets.model.scores import ECE_BINS, ece_from_reliability, reliability_from_sums, row_statistics

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


class ScoreSums:
    """The scores as sums over forecasts (count, Brier, log loss, RPS, and per-bin counts, probabilities and
    hits for ECE and reliability) by model and group, so a year of rows can be scored a chunk at a time in
    bounded memory. Only events with ``n_brackets`` brackets are scored (default: the most in the first chunk)."""

    def __init__(self, n_brackets: int | None = None):
        self.n_brackets = n_brackets
        self.sums: dict[tuple[str, str, str], np.ndarray] = {}

    def add(self, rows: pd.DataFrame, markets: pd.DataFrame, settled: pd.DataFrame,
            day_starts: dict[str, pd.Timedelta]) -> None:
        rows = rows.sort_values(["city", "climate_day", "minute_ts", "bracket_index"])
        n_br = rows.groupby(["city", "climate_day", "minute_ts"])["bracket_index"].transform("size")
        if self.n_brackets is None and len(n_br):
            self.n_brackets = int(n_br.max())
        b = self.n_brackets or 0
        rows = rows[n_br == b]
        if rows.empty:
            return
        keys = rows[["city", "climate_day", "minute_ts", "winner"]].iloc[::b].reset_index(drop=True)
        offset = keys["city"].map(day_starts)
        hour = ((keys["minute_ts"] - (pd.to_datetime(keys["climate_day"]).dt.tz_localize("UTC") + offset))
                / pd.Timedelta(hours=1)).apply(np.floor).astype(int)
        mats = {name: rows[col].to_numpy(float).reshape(-1, b) for name, col in MODELS.items()}
        clim = np.full((len(keys), b), np.nan)  # climatology: one vector per event, repeated over its minutes
        for (city, day), idx in keys.groupby(["city", "climate_day"]).indices.items():
            m = markets[(markets["city"] == city) & (markets["climate_day"] == day)].sort_values("bracket_index")
            if len(m) == b:
                p = climatology_pmf(settled, city, day, m["bracket_low_f"].to_numpy(float), m["bracket_high_f"].to_numpy(float))
                if p is not None:
                    clim[idx] = p
        mats["climatology"] = clim
        winner = keys["winner"].to_numpy(int)
        groups = [("all", np.full(len(keys), "all", dtype=object)), ("city", keys["city"].to_numpy(object)),
                  ("hour_lst", hour.astype(str).to_numpy(object))]
        for name, p in mats.items():
            ok = ~np.isnan(p).any(axis=1)
            if name == "market":
                p = p / np.where(ok, p.sum(axis=1), 1)[:, None]
            if not ok.any():
                continue
            per_row = row_statistics(p[ok], winner[ok])
            for group_by, labels in groups:
                for value, idx in pd.Series(np.arange(int(ok.sum()))).groupby(labels[ok]).indices.items():
                    key = (name, group_by, str(value))
                    self.sums[key] = self.sums.get(key, 0) + per_row[idx].sum(axis=0)

    def tables(self) -> tuple[pd.DataFrame, dict[str, pd.DataFrame]]:
        """(scores by model and group, reliability by model) from everything added."""
        out, rel = [], {}
        order = {**{m: i for i, m in enumerate([*MODELS, "climatology"])}, "all": 0, "city": 1, "hour_lst": 2}
        for (name, group_by, value), s in sorted(self.sums.items(), key=lambda kv: (order[kv[0][0]], order[kv[0][1]], kv[0][2])):
            n, count, sum_p, hits = s[0], s[4:4 + ECE_BINS], s[4 + ECE_BINS:4 + 2 * ECE_BINS], s[4 + 2 * ECE_BINS:]
            table = reliability_from_sums(count, sum_p, hits)
            if group_by == "all":
                rel[name] = table
            out.append({"model": name, "group_by": group_by, "group_value": value, "n": int(n),
                        "brier": s[1] / n, "log_loss": s[2] / n, "rps": s[3] / n, "ece": ece_from_reliability(table)})
        return pd.DataFrame(out), rel
