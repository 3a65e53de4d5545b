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


def event_climatologies(events: list[tuple[str, pd.Timestamp]], markets: pd.DataFrame, settled: pd.DataFrame,
                        b: int) -> np.ndarray:
    """The walk-forward climatology of each (city, climate_day) on its ``b`` brackets (events x b): a Normal fit
    to the city's settled highs known before the day's market opened (SD at least 1 F), NaN where the event has
    another number of brackets or fewer than ``CLIMATOLOGY_MIN_DAYS`` known highs. Each city's markets and
    highs are split once, not filtered per event (that was most of a year's scoring)."""
    out = np.full((len(events), b), np.nan)
    if not events or markets.empty or settled.empty:
        return out
    m = markets.sort_values(["city", "climate_day", "bracket_index"], kind="stable")
    brackets = m.groupby(["city", "climate_day"], sort=False).indices
    low, high = m["bracket_low_f"].to_numpy(float), m["bracket_high_f"].to_numpy(float)
    by_city = {c: (s["climate_day"].to_numpy("datetime64[ns]"), s["official_high_f"].to_numpy(float))
               for c, s in settled.groupby("city", sort=False)}
    at, mu, sd, lows, highs = [], [], [], [], []
    for i, (city, day) in enumerate(events):
        idx = brackets.get((city, day))
        days, prior = by_city.get(city, (np.array([], "datetime64[ns]"), np.array([])))
        prior = prior[(days <= np.datetime64(last_known_day(pd.Timestamp(day)), "ns")) & ~np.isnan(prior)]
        if idx is None or len(idx) != b or len(prior) < CLIMATOLOGY_MIN_DAYS:
            continue
        mean = prior.sum() / len(prior)  # summed as pandas' mean and std(ddof=1) sum them: the same bits
        at.append(i), mu.append(mean), lows.append(low[idx]), highs.append(high[idx])
        sd.append(max(np.sqrt(((mean - prior) ** 2).sum() / (len(prior) - 1)), 1.0))
    if at:
        mu, sd = np.array(mu)[:, None], np.array(sd)[:, None]
        p = norm.cdf((np.array(highs) + 0.5 - mu) / sd) - norm.cdf((np.array(lows) - 0.5 - mu) / sd)
        out[at] = p / p.sum(axis=1, keepdims=True)
    return out


class ScoreSums:
    """The scores as sums over forecasts (count, Brier, log loss, RPS, and per-bin counts, probabilities and
    hits for ECE and reliability) by model and group, so a year of rows can be scored a chunk at a time in
    bounded memory. Only events with ``n_brackets`` brackets are scored (default: the most in the first chunk).
    ``models``: the ones to score (default all; e.g. the report needs only the fused and calibrated PMFs')."""

    def __init__(self, n_brackets: int | None = None, models: tuple[str, ...] = (*MODELS, "climatology")):
        self.n_brackets = n_brackets
        self.models = models
        self.sums: dict[tuple[str, str, str], np.ndarray] = {}

    def add(self, rows: pd.DataFrame, markets: pd.DataFrame, settled: pd.DataFrame,
            day_starts: dict[str, pd.Timedelta]) -> None:
        self.merge(self.chunk_sums(rows, markets, settled, day_starts))

    def chunk_sums(self, rows: pd.DataFrame, markets: pd.DataFrame, settled: pd.DataFrame,
                   day_starts: dict[str, pd.Timedelta]) -> dict[tuple[str, str, str], np.ndarray]:
        """One chunk's sums by (model, group_by, group_value), without adding them: chunks summed apart (e.g. a
        month each in its own process) and merged in chunk order give the same numbers to the bit as adding
        them one after the other. Sets ``n_brackets`` from this chunk if it was not given."""
        rows = rows.sort_values(["city", "climate_day", "minute_ts", "bracket_index"])
        n_br = _run_lengths(rows, ["city", "climate_day", "minute_ts"])  # brackets of each row's forecast
        if self.n_brackets is None and len(n_br):
            self.n_brackets = int(n_br.max())
        b = self.n_brackets or 0
        rows = rows[n_br == b]
        if rows.empty:
            return {}
        keys = rows[["city", "climate_day", "minute_ts", "winner"]].iloc[::b].reset_index(drop=True)
        offset = keys["city"].map(day_starts)
        hour = ((keys["minute_ts"] - (pd.to_datetime(keys["climate_day"]).dt.tz_localize("UTC") + offset))
                / pd.Timedelta(hours=1)).apply(np.floor).astype(int)
        mats = {name: rows[col].to_numpy(float).reshape(-1, b) for name, col in MODELS.items() if name in self.models}
        if "climatology" in self.models:
            clim = np.full((len(keys), b), np.nan)  # climatology: one vector per event, repeated over its minutes
            events = keys.groupby(["city", "climate_day"]).indices
            for idx, p in zip(events.values(), event_climatologies(list(events), markets, settled, b)):
                clim[idx] = p
            mats["climatology"] = clim
        winner = keys["winner"].to_numpy(int)
        groups = [("all", np.zeros(len(keys), dtype=np.intp), np.array(["all"], dtype=object)),
                  ("city", *pd.factorize(keys["city"])), ("hour_lst", *pd.factorize(hour.astype(str)))]
        out = {}
        for name, p in mats.items():
            ok = ~np.isnan(p).any(axis=1)
            if name == "market":
                p = p / np.where(ok, p.sum(axis=1), 1)[:, None]
            if not ok.any():
                continue
            per_row = row_statistics(p[ok], winner[ok])
            for group_by, codes, values in groups:
                for code, idx in pd.Series(np.arange(int(ok.sum()))).groupby(codes[ok]).indices.items():
                    out[(name, group_by, str(values[code]))] = per_row[idx].sum(axis=0)
        return out

    def merge(self, sums: dict[tuple[str, str, str], np.ndarray]) -> None:
        """Add one chunk's ``chunk_sums``."""
        for key, value in sums.items():
            self.sums[key] = self.sums.get(key, 0) + value

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


def _run_lengths(rows: pd.DataFrame, keys: list[str]) -> np.ndarray:
    """For rows sorted on ``keys``, the number of rows sharing each row's keys."""
    if rows.empty:
        return np.zeros(0, dtype=np.intp)
    change = np.zeros(len(rows), dtype=bool)
    change[0] = True
    for k in keys:
        v = pd.factorize(rows[k])[0]
        change[1:] |= v[1:] != v[:-1]
    starts = np.flatnonzero(change)
    sizes = np.diff(np.append(starts, len(rows)))
    return np.repeat(sizes, sizes)
