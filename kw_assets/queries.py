"""What the fits and the reports read from the warehouse, as frames, in SQL that DuckDB and PostgreSQL both
run (``?`` placeholders; no ``any_value``, ``epoch()`` or ``GROUP BY ALL``). For the walk-forward fits, each day's
forecast runs with the day's obs max through 18:00 LST (yesterday's error), the EMOS training samples and
the calibration history: point in time by construction, every query bounded by the day being fitted. For
the scores and the report, the settled calibrated rows (sampled) and each entry's mid after its fill."""

from __future__ import annotations

import datetime as dt
from typing import Callable, TypeVar

import numpy as np
import pandas as pd

from kw_assets import parallel
from kw_assets.cities import get_city
from kw_assets.model.report import NEXT_BAR_MINUTES
from kw_assets.model import emos
from kw_assets.model.weather import WeatherModelConfig
from kw_assets.warehouse import Warehouse

T = TypeVar("T")

PEAK_HOUR_LST = WeatherModelConfig().peak_hour_lst


def day_runs(wh: Warehouse, first: dt.date, last: dt.date) -> pd.DataFrame:
    """Per stored forecast run of the climate days first..last: its high and low over the day, and the day's
    obs max through 18:00 LST (``emos.LAG_KNOWN_HOURS_BEFORE_DAY`` before the day ends; NaN without obs):
    what ``emos.lag_errors`` reads as "yesterday"."""
    runs = wh.query(
        "SELECT city, climate_day, issued_at, max(temp_f) AS forecast_high_f, min(temp_f) AS forecast_low_f "
        "FROM weather_forecasts WHERE climate_day BETWEEN CAST(? AS DATE) AND CAST(? AS DATE) "
        "GROUP BY city, climate_day, issued_at ORDER BY city, climate_day, issued_at",
        [first.isoformat(), last.isoformat()], needs=("weather_forecasts",))
    if runs.empty:
        return pd.DataFrame(columns=["city", "climate_day", "issued_at", "forecast_high_f", "forecast_low_f", "obs_max_f"])
    cities = runs["city"].astype(str).unique().tolist()
    offsets = ", ".join("(?, ?)" for _ in cities)
    cutoff_h = 24 - emos.LAG_KNOWN_HOURS_BEFORE_DAY
    obs = wh.query(
        f"SELECT o.city, o.climate_day, max(o.temp_f) AS obs_max_f FROM weather_obs o "
        f"JOIN (VALUES {offsets}) AS z(city, offset_h) ON o.city = z.city "
        "WHERE o.climate_day BETWEEN CAST(? AS DATE) AND CAST(? AS DATE) "
        f"AND extract(epoch FROM o.valid_time) <= extract(epoch FROM CAST(o.climate_day AS TIMESTAMP)) + ({cutoff_h} - z.offset_h) * 3600 "
        "GROUP BY o.city, o.climate_day",
        [v for c in cities for v in (c, get_city(c).lst_utc_offset_hours)] + [first.isoformat(), last.isoformat()],
        needs=("weather_obs",))
    runs["city"] = runs["city"].astype(str)
    runs["climate_day"] = pd.to_datetime(runs["climate_day"]).dt.date
    if obs.empty:
        return runs.assign(obs_max_f=np.nan)
    obs = obs.assign(city=obs["city"].astype(str), climate_day=pd.to_datetime(obs["climate_day"]).dt.date)
    return runs.merge(obs, on=["city", "climate_day"], how="left")


def emos_samples(wh: Warehouse, before: dt.date) -> pd.DataFrame:
    """One sample per stored forecast run issued before the climatological peak of a settled climate day
    before ``before``: the run's high and low over the day, the two runs before it, yesterday's error at the
    run's lead and yesterday's observed high (through 18:00 LST), and the official high."""
    settled = wh.query("SELECT city, climate_day, min(official_high_f) AS observed_high_f FROM settlement "
                       "WHERE climate_day < CAST(? AS DATE) AND official_high_f IS NOT NULL GROUP BY city, climate_day",
                       [before.isoformat()], needs=("settlement",))
    if settled.empty:
        return emos.empty_samples()
    settled = settled.assign(city=settled["city"].astype(str), climate_day=pd.to_datetime(settled["climate_day"]).dt.date)
    every = day_runs(wh, min(settled["climate_day"]) - dt.timedelta(days=1), before - dt.timedelta(days=1))
    runs = every.merge(settled, on=["city", "climate_day"])
    if runs.empty:
        return emos.empty_samples()
    runs = runs.sort_values(["city", "climate_day", "issued_at"], kind="stable").reset_index(drop=True)
    runs["lag_error_f"], runs["yesterday_high_f"] = emos.lag_errors(runs, every)
    by_day = runs.groupby(["city", "climate_day"], sort=False)["forecast_high_f"]
    runs["previous_high_f"] = by_day.shift(1)
    runs["before_previous_high_f"] = by_day.shift(2)
    offset_h = runs["city"].map({c: get_city(c).lst_utc_offset_hours for c in runs["city"].unique()}).astype(float)
    day_start = pd.to_datetime(runs["climate_day"]).dt.tz_localize("UTC") - pd.to_timedelta(offset_h, unit="h")
    runs["lead_h"] = (day_start + pd.Timedelta(hours=PEAK_HOUR_LST) - runs["issued_at"]) / pd.Timedelta(hours=1)
    return runs.loc[runs["lead_h"] > 0, list(emos.SAMPLE_COLUMNS)].reset_index(drop=True)


def calibration_history(wh: Warehouse, before: dt.date, every_min: int) -> pd.DataFrame:
    """Fused PMFs of settled partitions before ``before``, sampled every ``every_min`` minutes, with winners."""
    rows = wh.query(
        "SELECT f.city, f.climate_day, f.minute_ts, f.bracket_index, f.p_fused, s.winning_bracket_index AS winner "
        "FROM fused_pmf f JOIN settlement s ON f.city = s.city AND f.climate_day = s.climate_day "
        "WHERE f.climate_day < CAST(? AS DATE) AND s.winning_bracket_index >= 0 "
        "AND (CAST(extract(epoch FROM f.minute_ts) AS BIGINT) / 60) % ? = 0 "
        "ORDER BY f.city, f.climate_day, f.minute_ts, f.bracket_index",
        [before.isoformat(), every_min], needs=("fused_pmf", "settlement"))
    if rows.empty:
        return pd.DataFrame(columns=["climate_day", "p", "winner", "n_brackets"])
    keys = ["city", "climate_day", "minute_ts"]
    grouped = rows.groupby(keys, sort=False)
    out = grouped.agg(winner=("winner", "first"), n_brackets=("p_fused", "size")).reset_index()
    sizes = out["n_brackets"].to_numpy()
    out["p"] = np.split(rows["p_fused"].to_numpy(float), np.cumsum(sizes)[:-1])
    out["climate_day"] = pd.to_datetime(out["climate_day"]).dt.date
    return out


def settled_calibrated(wh: Warehouse, every_min: int, first: dt.date | None = None,
                       last: dt.date | None = None) -> pd.DataFrame:
    """Calibrated PMF rows of every settled partition (climate days in [first, last] if given), one minute in
    ``every_min``, with the winner: what the scores and the report's reliability read (only the columns
    they use: a year of rows is large)."""
    rows = wh.query(
        "SELECT c.city, c.climate_day, c.source, c.minute_ts, c.bracket_index, c.p_market, c.p_weather, c.p_fused, "
        "c.p_calibrated, s.winning_bracket_index AS winner FROM calibrated_pmf c JOIN settlement s "
        "ON c.city = s.city AND c.climate_day = s.climate_day "
        "WHERE s.winning_bracket_index >= 0 AND (CAST(extract(epoch FROM c.minute_ts) AS BIGINT) / 60) % ? = 0 "
        "AND c.climate_day BETWEEN ? AND ?",
        [every_min, first or dt.date(1900, 1, 1), last or dt.date(2999, 12, 31)], needs=("calibrated_pmf", "settlement"))
    if len(rows):
        rows["minute_ts"] = pd.to_datetime(rows["minute_ts"], utc=True)
        rows["climate_day"] = pd.to_datetime(rows["climate_day"])
    return rows


def settled_months(wh: Warehouse) -> tuple[int, list[tuple[dt.date, dt.date]]]:
    """The first and last day of each month with a settled event that has calibrated PMFs, in order, with the
    most brackets of any of those events (the events the scores compare); (0, []) before any event settled."""
    events = wh.query("SELECT c.city, c.climate_day, count(DISTINCT c.bracket_index) AS n FROM calibrated_pmf c "
                      "JOIN settlement s ON c.city = s.city AND c.climate_day = s.climate_day "
                      "WHERE s.winning_bracket_index >= 0 GROUP BY c.city, c.climate_day", needs=("calibrated_pmf", "settlement"))
    if events.empty:
        return 0, []
    months = pd.to_datetime(events["climate_day"]).dt.to_period("M").drop_duplicates().sort_values()
    return int(events["n"].max()), [(m.start_time.date(), m.end_time.date()) for m in months]


def over_settled_months(wh: Warehouse, every_min: int, months: list[tuple[dt.date, dt.date]],
                        fn: Callable[[pd.DataFrame], T], workers: int | None = None) -> list[T]:
    """``fn`` of each month's ``settled_calibrated`` rows, in month order, the months split over ``workers``
    forked processes (default one per core), each reading with its own connection and its share of the
    warehouse's threads: a year's scores were one process reading and summing month after month on two cores."""
    workers = max(1, min(workers or parallel.default_workers(), len(months)))
    reader = wh.for_workers(workers)
    return parallel.map_items(lambda month: fn(settled_calibrated(reader, every_min, *month)), months, workers)


def entry_mids(wh: Warehouse, entries: pd.DataFrame) -> pd.DataFrame:
    """Each entry's side and its bracket's mid at the fill minute and ``NEXT_BAR_MINUTES`` later."""
    cols = ["city", "climate_day", "order_id", "side"] + [f"mid_{h}" for h in (0, *NEXT_BAR_MINUTES)]
    if entries.empty:
        return pd.DataFrame(columns=cols)
    offsets = (0, *NEXT_BAR_MINUTES)
    joins = " ".join(f"LEFT JOIN minute_panel p{h} ON p{h}.city = e.city AND p{h}.climate_day = e.climate_day AND "
                     f"p{h}.bracket_index = e.bracket_index AND p{h}.minute_ts = e.fill_ts + INTERVAL '{h} minutes'"
                     for h in offsets)
    sql = (f"SELECT e.city, e.climate_day, e.order_id, e.side, {', '.join(f'p{h}.mid AS mid_{h}' for h in offsets)} "
           f"FROM (SELECT city, climate_day, order_id, min(bracket_index) AS bracket_index, min(side) AS side, "
           f"min(fill_ts) AS fill_ts FROM backtest_fills WHERE action = 'buy' AND contracts > 0 "
           f"GROUP BY city, climate_day, order_id) e {joins}")
    mids = wh.query(sql, needs=("backtest_fills", "minute_panel"))
    if mids.empty:
        return pd.DataFrame(columns=cols)
    mids["climate_day"] = pd.to_datetime(mids["climate_day"])
    keep = entries[["city", "climate_day", "order_id"]].assign(climate_day=lambda d: pd.to_datetime(d["climate_day"]))
    return keep.merge(mids, on=["city", "climate_day", "order_id"], how="left")[cols]


def spread_observations(wh: Warehouse) -> pd.DataFrame:
    """Every book observed, with its city, time and source: sampled through REST (``samples``) and the
    recorded L2 minutes (``l2``); empty where neither exists."""
    samples = wh.read("orderbook_samples", columns=["source", "sampled_at", "yes_bid", "yes_ask"])
    recorded = wh.read("orderbook_l2", columns=["source", "minute_ts", "yes_bid", "yes_ask"])
    return pd.concat([samples.rename(columns={"sampled_at": "observed_at"}).assign(observed_by="samples"),
                      recorded.rename(columns={"minute_ts": "observed_at"}).assign(observed_by="l2")], ignore_index=True)
