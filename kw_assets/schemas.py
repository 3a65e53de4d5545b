"""One Pandera model per warehouse table: types, ranges, unique keys and cross-row rules.

The DuckDB DDL is derived from these models (``sql_columns``), so a column is declared once.
``validate`` runs every check lazily and raises ``TableInvalid`` carrying the failure cases, which
the assets attach to a failed blocking asset check before anything is written.
"""

from __future__ import annotations

import copy
from contextvars import ContextVar
from functools import lru_cache, partial
from typing import Annotated, Iterable

import numpy as np
import pandas as pd
import pandera.pandas as pa
from pandera import dtypes
from pandera.engines import pandas_engine
from pandera.typing import Series

from kw_assets.cities import city_keys
from kw_assets.convert import numbers
from kw_assets.model.brackets import STRIKE_TYPES, tiling_problems
from kw_assets.model import emos
from kw_assets.model.embargo import EMBARGO_DAYS, last_known_day
from kw_assets.sources import SOURCES

UTC = Annotated[pd.DatetimeTZDtype, "ns", "UTC"]
NAT = np.iinfo(np.int64).min  # NaT as int64 nanoseconds


@pandas_engine.Engine.register_dtype
@dtypes.immutable
class Text(pandas_engine.NpString):
    """A str column whose type check is one C-level pass (``infer_dtype``) instead of a Python call per
    value; anything else falls back to Pandera's element-wise check, which reports the offending rows."""

    def check(self, pandera_dtype, data_container=None):
        if isinstance(data_container, pd.Series):
            coded = _text_codes(data_container)  # a column ``validate`` factorizes anyway: its distinct values suffice
            values = data_container if coded is None else coded[1]
            if pd.api.types.infer_dtype(values, skipna=True) in ("string", "empty"):
                return True
        return super().check(pandera_dtype, data_container)


PARTITION_COLUMNS = ["city", "climate_day"]
# a rule over rows. Pandera's default (``ignore_na``) passes a row whose every field is missing, which takes a
# pass over the whole table per rule (a third of validating a minute table) for rows no table here can have
row_check = partial(pa.dataframe_check, ignore_na=False)


class _Partitioned(pa.DataFrameModel):
    city: Series[Text] = pa.Field(isin=city_keys())
    climate_day: Series[pa.typing.DateTime]
    source: Series[Text] = pa.Field(isin=SOURCES)

    class Config:
        strict = True
        coerce = False


class KalshiMarkets(_Partitioned):
    event_ticker: Series[Text]
    market_ticker: Series[Text]
    series_ticker: Series[Text]
    strike_type: Series[Text] = pa.Field(isin=STRIKE_TYPES)
    floor_strike: Series[float] = pa.Field(nullable=True)
    cap_strike: Series[float] = pa.Field(nullable=True)
    bracket_low_f: Series[float]
    bracket_high_f: Series[float]
    bracket_index: Series[int] = pa.Field(ge=0)
    yes_sub_title: Series[Text]
    open_time: Series[UTC]
    close_time: Series[UTC]
    expected_expiration_time: Series[UTC] = pa.Field(nullable=True)
    status: Series[Text]
    result: Series[Text] = pa.Field(isin=["", "yes", "no", "scalar"])
    expiration_value: Series[float] = pa.Field(nullable=True)
    fee_type: Series[Text] = pa.Field(isin=["quadratic", "quadratic_with_maker_fees", "quadratic_with_combo_maker_fees", "flat"])
    fee_multiplier: Series[float] = pa.Field(ge=0)
    tier: Series[Text] = pa.Field(isin=["live", "historical", "file"])

    class Config:
        unique = ["city", "climate_day", "market_ticker"]

    @row_check(error="bracket_low_f/bracket_high_f: brackets of an event must tile the line without gaps or overlaps")
    def brackets_tile(cls, df: pd.DataFrame) -> Series[bool]:
        bad = {ev for ev, g in df.groupby("event_ticker") if tiling_problems(g["bracket_low_f"].to_numpy(), g["bracket_high_f"].to_numpy())}
        return ~df["event_ticker"].isin(bad)

    @row_check(error="open_time must be before close_time")
    def opens_before_close(cls, df: pd.DataFrame) -> Series[bool]:
        return df["open_time"] < df["close_time"]

    @row_check(error="result: at most one bracket of an event resolves yes")
    def one_winner(cls, df: pd.DataFrame) -> Series[bool]:
        yes = df["result"].eq("yes").groupby(df["event_ticker"]).transform("sum")
        return yes <= 1

    @row_check(error="event_ticker: one event per partition")
    def one_event(cls, df: pd.DataFrame) -> Series[bool]:
        return df.groupby(PARTITION_COLUMNS)["event_ticker"].transform("nunique") == 1


_PRICE = dict(ge=0.0, le=1.0, nullable=True)


class KalshiCandles(_Partitioned):
    market_ticker: Series[Text]
    end_period_ts: Series[UTC]
    yes_bid_open: Series[float] = pa.Field(**_PRICE)
    yes_bid_high: Series[float] = pa.Field(**_PRICE)
    yes_bid_low: Series[float] = pa.Field(**_PRICE)
    yes_bid_close: Series[float] = pa.Field(**_PRICE)
    yes_ask_open: Series[float] = pa.Field(**_PRICE)
    yes_ask_high: Series[float] = pa.Field(**_PRICE)
    yes_ask_low: Series[float] = pa.Field(**_PRICE)
    yes_ask_close: Series[float] = pa.Field(**_PRICE)
    price_open: Series[float] = pa.Field(**_PRICE)
    price_high: Series[float] = pa.Field(**_PRICE)
    price_low: Series[float] = pa.Field(**_PRICE)
    price_close: Series[float] = pa.Field(**_PRICE)
    price_mean: Series[float] = pa.Field(**_PRICE)
    price_previous: Series[float] = pa.Field(**_PRICE)
    volume: Series[float] = pa.Field(ge=0, nullable=True)
    open_interest: Series[float] = pa.Field(ge=0, nullable=True)

    class Config:
        unique = ["city", "climate_day", "market_ticker", "end_period_ts"]

    @row_check(error="end_period_ts: candles of a market must arrive in strictly increasing time order")
    def increasing_time(cls, df: pd.DataFrame) -> Series[bool]:
        return _regular(df, "end_period_ts")

    @row_check(error="low <= open, close <= high within every OHLC group")
    def ohlc_consistent(cls, df: pd.DataFrame) -> Series[bool]:
        ok = pd.Series(True, index=df.index)
        for g in ("yes_bid", "yes_ask", "price"):
            lo, hi = df[f"{g}_low"], df[f"{g}_high"]
            for k in ("open", "close"):
                v = df[f"{g}_{k}"]
                ok &= ~((v < lo - 1e-9) | (v > hi + 1e-9))
            ok &= ~(lo > hi + 1e-9)
        return ok


class KalshiTrades(_Partitioned):
    trade_id: Series[Text]
    market_ticker: Series[Text]
    created_time: Series[UTC]
    count: Series[float] = pa.Field(gt=0)
    yes_price: Series[float] = pa.Field(ge=0, le=1)
    no_price: Series[float] = pa.Field(ge=0, le=1)
    taker_outcome_side: Series[Text] = pa.Field(isin=["yes", "no"])
    is_block_trade: Series[bool]

    class Config:
        unique = ["city", "climate_day", "trade_id"]

    @row_check(error="yes_price + no_price must equal 1")
    def prices_complement(cls, df: pd.DataFrame) -> Series[bool]:
        return (df["yes_price"] + df["no_price"] - 1).abs() < 1e-6


class WeatherObs(_Partitioned):
    station: Series[Text]
    valid_time: Series[UTC]
    temp_f: Series[float] = pa.Field(ge=-80, le=140)
    source_kind: Series[Text] = pa.Field(isin=["obs", "comb"])

    class Config:
        unique = ["city", "climate_day", "valid_time"]


class WeatherForecasts(_Partitioned):
    station: Series[Text]
    issued_at: Series[UTC]
    valid_time: Series[UTC]
    temp_f: Series[float] = pa.Field(ge=-80, le=140)

    class Config:
        unique = ["city", "climate_day", "issued_at", "valid_time"]

    @row_check(error="issued_at must not be after valid_time: a forecast comes before what it forecasts")
    def issued_before_valid(cls, df: pd.DataFrame) -> Series[bool]:
        return df["issued_at"] <= df["valid_time"]


class Settlement(_Partitioned):
    event_ticker: Series[Text]
    official_high_f: Series[float] = pa.Field(nullable=True, ge=-80, le=140)
    winning_market_ticker: Series[Text] = pa.Field(nullable=True)
    winning_bracket_index: Series[int] = pa.Field(ge=-1)
    settlement_source: Series[Text]
    obs_max_f: Series[float] = pa.Field(nullable=True)

    class Config:
        unique = ["city", "climate_day"]


_PROB = dict(ge=0.0, le=1.0, nullable=True)


class MinutePanel(_Partitioned):
    minute_ts: Series[UTC]
    market_ticker: Series[Text]
    bracket_index: Series[int] = pa.Field(ge=0)
    yes_bid: Series[float] = pa.Field(**_PROB)
    yes_ask: Series[float] = pa.Field(**_PROB)
    last_price: Series[float] = pa.Field(**_PROB)
    mid: Series[float] = pa.Field(**_PROB)
    spread: Series[float] = pa.Field(ge=-1.0, le=1.0, nullable=True)
    volume: Series[float] = pa.Field(ge=0, nullable=True)
    velocity: Series[float] = pa.Field(nullable=True)
    acceleration: Series[float] = pa.Field(nullable=True)
    clv: Series[float] = pa.Field(**_PROB)
    p_norm: Series[float] = pa.Field(**_PROB)
    mid_sum: Series[float] = pa.Field(ge=0, nullable=True)
    ras: Series[float] = pa.Field(nullable=True)
    vwap: Series[float] = pa.Field(**_PROB)
    signed_volume: Series[float] = pa.Field(nullable=True)
    trade_count: Series[float] = pa.Field(ge=0)
    ofi: Series[float] = pa.Field(nullable=True)
    queue_imbalance: Series[float] = pa.Field(ge=-1.0, le=1.0, nullable=True)

    class Config:
        unique = ["city", "climate_day", "minute_ts", "market_ticker"]

    @row_check(error="p_norm: renormalized bracket probabilities must sum to 1 (within 1e-9) each minute")
    def p_norm_sums_to_one(cls, df: pd.DataFrame) -> Series[bool]:
        total, known = minute_totals(df, "p_norm", "minute_ts")
        return pd.Series((known == 0) | (np.abs(total - 1) <= 1e-9), index=df.index)

    @row_check(error="minute_ts: one regular minute grid, increasing, per bracket")
    def monotone_minutes(cls, df: pd.DataFrame) -> Series[bool]:
        return _regular(df, "minute_ts", pd.Timedelta(minutes=1))


class OrderbookL2(_Partitioned):
    """A market's recorded book at each minute's end, only where the book was known there (no row from
    inside a gap)."""
    minute_ts: Series[UTC]
    market_ticker: Series[Text]
    bracket_index: Series[int] = pa.Field(ge=0)
    yes_bid: Series[float] = pa.Field(gt=0.0, lt=1.0, nullable=True)
    yes_ask: Series[float] = pa.Field(gt=0.0, lt=1.0, nullable=True)
    yes_bid_size: Series[float] = pa.Field(ge=0)
    yes_ask_size: Series[float] = pa.Field(ge=0)
    bid_depth3: Series[float] = pa.Field(ge=0)
    ask_depth3: Series[float] = pa.Field(ge=0)
    spread: Series[float] = pa.Field(gt=0.0, lt=1.0, nullable=True)
    queue_imbalance: Series[float] = pa.Field(ge=-1.0, le=1.0, nullable=True)
    ofi: Series[float]
    book_ok_share: Series[float] = pa.Field(gt=0.0, le=1.0)

    class Config:
        unique = ["city", "climate_day", "minute_ts", "market_ticker"]

    @row_check(error="yes_bid < yes_ask where both exist (a crossed or locked book is a wrong book)")
    def bid_below_ask(cls, df: pd.DataFrame) -> Series[bool]:
        return df["yes_bid"].isna() | df["yes_ask"].isna() | (df["yes_bid"] < df["yes_ask"])

    @row_check(error="yes_bid_size / yes_ask_size: a size only where the side has a best price")
    def sizes_with_prices(cls, df: pd.DataFrame) -> Series[bool]:
        return ((df["yes_bid"].notna() | (df["yes_bid_size"] == 0)) & (df["yes_ask"].notna() | (df["yes_ask_size"] == 0)))

    @row_check(error="minute_ts: increasing per market")
    def increasing_minutes(cls, df: pd.DataFrame) -> Series[bool]:
        return _regular(df, "minute_ts")


class OrderbookLevels(_Partitioned):
    """Every resting level of a market's recorded book at each minute's end where the book was known."""
    minute_ts: Series[UTC]
    market_ticker: Series[Text]
    side: Series[Text] = pa.Field(isin=["yes", "no"])
    price: Series[float] = pa.Field(gt=0.0, lt=1.0)
    size: Series[float] = pa.Field(gt=0)

    class Config:
        unique = ["city", "climate_day", "minute_ts", "market_ticker", "side", "price"]


class OrderbookSamples(_Partitioned):
    """Order books sampled through REST (``GET /markets/orderbooks``) on a schedule: the best bid and ask."""
    sampled_at: Series[UTC]
    market_ticker: Series[Text]
    yes_bid: Series[float] = pa.Field(gt=0.0, lt=1.0, nullable=True)
    yes_bid_size: Series[float] = pa.Field(ge=0)
    yes_ask: Series[float] = pa.Field(gt=0.0, lt=1.0, nullable=True)
    yes_ask_size: Series[float] = pa.Field(ge=0)
    spread: Series[float] = pa.Field(gt=0.0, lt=1.0, nullable=True)

    class Config:
        unique = ["city", "climate_day", "sampled_at", "market_ticker"]


class OrderbookSpreads(pa.DataFrameModel):
    source: Series[Text]
    city: Series[Text] = pa.Field(isin=city_keys())
    regime: Series[Text] = pa.Field(isin=["1-10c", "10-30c", "30-70c", "70-90c", "90-99c"])
    observed_by: Series[Text] = pa.Field(isin=["samples", "l2"])
    n: Series[int] = pa.Field(gt=0)
    half_spread_p25: Series[float] = pa.Field(gt=0.0, lt=0.5)
    half_spread_median: Series[float] = pa.Field(gt=0.0, lt=0.5)
    half_spread_p75: Series[float] = pa.Field(gt=0.0, lt=0.5)
    half_spread_p90: Series[float] = pa.Field(gt=0.0, lt=0.5)
    half_spread_mean: Series[float] = pa.Field(gt=0.0, lt=0.5)

    class Config:
        strict = True
        unique = ["source", "city", "regime", "observed_by"]

    @row_check(error="half_spread quantiles must increase: p25 <= median <= p75 <= p90")
    def ordered(cls, df: pd.DataFrame) -> Series[bool]:
        return ((df["half_spread_p25"] <= df["half_spread_median"]) & (df["half_spread_median"] <= df["half_spread_p75"])
                & (df["half_spread_p75"] <= df["half_spread_p90"]))


def group_codes(df: pd.DataFrame, columns: list[str]) -> np.ndarray:
    """One int64 code per row for its combination of ``columns`` (-1 where any is missing), equal exactly where
    the combinations are: the rules below group with numpy on them, several times cheaper than a pandas groupby
    over text and times. The codes are mixed-radix numbers over each column's factorization, made dense again
    only where they would pass ``_code_bound`` (a ``np.bincount`` over them stays that small). Within one
    ``validate`` each combination is worked out once, however many rules group on it."""
    cache = _GROUPS.get()
    key = (id(df), tuple(columns))
    if cache is not None and key in cache and cache[key][0] is df:
        return cache[key][1]
    bound = _code_bound(len(df))
    codes = np.zeros(len(df), dtype=np.int64)
    missing = np.zeros(len(df), dtype=bool)
    span = 1
    for name in columns:
        own, width = _column_codes(df, name, cache)
        missing |= own < 0
        if span * width > bound:
            codes, dense = pd.factorize(codes)
            span = len(dense)
        codes = codes * width + (own + 1)
        span *= width
    if span > bound:
        codes, _ = pd.factorize(codes)
    out = np.where(missing, -1, codes)
    if cache is not None:
        cache[key] = (df, out)  # the frame is kept with its codes, so its id cannot be reused meanwhile
    return out


def _column_codes(df: pd.DataFrame, name: str, cache: dict | None) -> tuple[np.ndarray, int]:
    """A column's factorization (-1: missing) and its radix (distinct values + 1), once per ``validate``."""
    key = (id(df), name)
    if cache is not None and key in cache and cache[key][0] is df:
        return cache[key][1]
    text = _text_codes(df[name])
    own, uniques = text if text is not None else pd.factorize(df[name])
    if cache is not None:
        cache[key] = (df, (own, len(uniques) + 1))
    return own, len(uniques) + 1


def _code_bound(rows: int) -> int:
    return max(4 * rows, 1 << 16)


_GROUPS: ContextVar[dict | None] = ContextVar("kw_group_codes", default=None)
_CODED: ContextVar[frozenset] = ContextVar("kw_coded_text", default=frozenset())


def _text_codes(column: pd.Series) -> tuple[np.ndarray, np.ndarray] | None:
    """The factorization (codes, -1 where missing; distinct values) of a text column that ``validate`` codes
    (``_CODED``: its not-null and isin checks, its type check and the rules that group on it all use it), once
    per pass; None for any other column, or outside ``validate``. Keyed by the column's memory, which pandas
    shares between the Series handed to each check; the cache holds the array, so no other takes its place."""
    cache = _GROUPS.get()
    if cache is None or column.name not in _CODED.get():
        return None
    values = column.to_numpy()
    if values.dtype != object:
        return None
    key = ("text", values.__array_interface__["data"][0], len(values), values.strides)
    if key not in cache:
        try:
            codes, uniques = factorize_objects(values)
        except TypeError:  # an unhashable value: the element-wise checks report it
            return None
        cache[key] = (values, (codes, np.asarray(uniques, dtype=object)))
    return cache[key][1]


def factorize_objects(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``pd.factorize`` of an object array, the same codes and distinct values, found first on the objects' addresses:
    a column of a few distinct strings repeats the same few objects, whose addresses factorize as integers (~5 ns a
    value), and only one object per address is then compared as text (hashing every string was ~25 ns a value,
    a quarter of validating a minute table). A column of mostly distinct objects goes to ``pd.factorize`` itself."""
    values = np.ascontiguousarray(values)
    if values.dtype != object or values.ndim != 1 or len(values) < 2:
        return pd.factorize(values)
    addresses = np.frombuffer(values, dtype=np.intp)  # the object pointers, read only: the array keeps them alive
    by_address, distinct = pd.factorize(addresses)
    if 2 * len(distinct) > len(values):
        return pd.factorize(values)
    first = np.flatnonzero(by_address > np.maximum.accumulate(np.r_[-1, by_address[:-1]]))  # each address's first row
    codes, uniques = pd.factorize(values[first])  # in order of first appearance, as the addresses are
    return codes[by_address], uniques


def _text_present(column: pd.Series):
    """Not null: Pandera's ``not_nullable`` for a coded text column, from its codes instead of ``Series.hasnans``
    (a Python-level test per value; a third of validating a minute table)."""
    coded = _text_codes(column)
    present = column.notna().to_numpy() if coded is None else coded[0] >= 0
    return True if present.all() else pd.Series(present, index=column.index)


def _text_isin(column: pd.Series, allowed: tuple):
    """Pandera's ``isin`` (a missing value fails) for a coded text column: each distinct value is looked up once."""
    coded = _text_codes(column)
    if coded is None:
        ok = column.isin(allowed).to_numpy()
    else:
        codes, uniques = coded
        ok = np.append(pd.Index(uniques, dtype=object).isin(allowed), False)[codes]  # code -1 (missing): the last
    return True if ok.all() else pd.Series(ok, index=column.index)


def _regular(df: pd.DataFrame, time_column: str, step: pd.Timedelta | None = None) -> pd.Series:
    """Times increase per bracket (by exactly ``step`` when given), row after row of the same bracket in the
    frame's order; a row whose time or predecessor's time is missing passes (its column check fails it)."""
    codes = group_codes(df, ["city", "climate_day", "market_ticker"])
    order = np.argsort(codes, kind="stable")
    stamps = df[time_column].to_numpy("datetime64[ns]").astype("int64")[order]
    sorted_codes = codes[order]
    same = (np.diff(sorted_codes) == 0) & (sorted_codes[1:] >= 0)
    gap = np.diff(stamps)
    ok = (gap == step.value) if step is not None else (gap > 0)
    known = (stamps[1:] != NAT) & (stamps[:-1] != NAT)
    passed = np.ones(len(df), dtype=bool)
    passed[order[1:]] = ~same | ~known | ok
    return pd.Series(passed, index=df.index)


def _unique_rows(df: pd.DataFrame, columns: list[str]) -> pd.Series:
    """Rows whose combination of ``columns`` no other row has: every row of a repeated one fails, as with
    Pandera's ``unique``; a missing value equals only a missing value, as in ``DataFrame.duplicated``."""
    codes = group_codes(df, columns)
    keyed = codes >= 0
    bins = np.where(keyed, codes, 0)
    repeated = (np.bincount(bins, weights=keyed)[bins] > 1) & keyed
    if not keyed.all():  # a row with a missing key can repeat only another with it missing in the same place
        repeated[~keyed] = df.loc[~keyed, columns].duplicated(keep=False).to_numpy()
    return pd.Series(~repeated, index=df.index)


def minute_totals(df: pd.DataFrame, column: str, time_column: str) -> tuple[np.ndarray, np.ndarray]:
    """Per row: the sum of ``column`` over its (city, climate_day, time) and how many of those values are known
    (missing values add nothing, as in a pandas sum); rows with a missing key get NaN and 0."""
    codes = group_codes(df, ["city", "climate_day", time_column])
    keyed = codes >= 0
    values = df[column].to_numpy(float)
    known = ~np.isnan(values) & keyed
    bins = np.where(keyed, codes, 0)
    total = np.bincount(bins, weights=np.where(known, values, 0.0))[bins]
    count = np.bincount(bins, weights=known.astype(float))[bins]
    return np.where(keyed, total, np.nan), np.where(keyed, count, 0.0)


def _sums_to_one(df: pd.DataFrame, column: str, time_column: str) -> pd.Series:
    total, _ = minute_totals(df, column, time_column)
    return pd.Series(np.abs(total - 1) <= 1e-9, index=df.index)


class WeatherPmf(_Partitioned):
    decision_ts: Series[UTC]
    market_ticker: Series[Text]
    bracket_index: Series[int] = pa.Field(ge=0)
    p_weather: Series[float] = pa.Field(ge=0, le=1)
    hazard: Series[float] = pa.Field(ge=0, le=1, nullable=True)
    expected_high_f: Series[float]
    high_sd_f: Series[float] = pa.Field(ge=0)
    obs_max_f: Series[float] = pa.Field(nullable=True)
    forecast_issued_at: Series[UTC] = pa.Field(nullable=True)
    n_paths: Series[int] = pa.Field(gt=0)

    class Config:
        unique = ["city", "climate_day", "decision_ts", "market_ticker"]

    @row_check(error="p_weather: bracket PMF must sum to 1 (within 1e-9) at each decision time")
    def pmf_sums_to_one(cls, df: pd.DataFrame) -> Series[bool]:
        return _sums_to_one(df, "p_weather", "decision_ts")

    @row_check(error="decision_ts: increasing per bracket")
    def monotone_decisions(cls, df: pd.DataFrame) -> Series[bool]:
        return _regular(df, "decision_ts")

    @row_check(error="forecast_issued_at: a decision may only use a forecast issued at or before it")
    def forecast_not_from_the_future(cls, df: pd.DataFrame) -> Series[bool]:
        return df["forecast_issued_at"].isna() | (df["forecast_issued_at"] <= df["decision_ts"])


class WeatherModelParams(_Partitioned):
    fit_start: Series[pa.typing.DateTime] = pa.Field(nullable=True)
    fit_end: Series[pa.typing.DateTime] = pa.Field(nullable=True)
    fit_days: Series[int] = pa.Field(ge=0)
    fit_samples: Series[int] = pa.Field(ge=0)
    pooled_samples: Series[int] = pa.Field(ge=0)
    mean_slope: Series[float]
    mean_bias: Series[float]
    mean_revision: Series[float]
    mean_prior_revision: Series[float]
    mean_lag_error: Series[float]
    mean_narrow_range: Series[float]
    mean_jump: Series[float]
    log_sd_intercept: Series[float]
    log_sd_abs_revision: Series[float]
    log_sd_abs_prior_revision: Series[float]
    log_sd_narrow_range: Series[float]
    log_sd_lead: Series[float]
    log_sd_abs_jump: Series[float]
    # the error shape: the standardized error at the normal quantiles -2.5, -2, ..., 2.5 (emos.SHAPE_COLUMNS);
    # nullable: a table written before the shape was learned (session 28) has none, and its days are Gaussian
    shape_m2_5: Series[float] = pa.Field(nullable=True)
    shape_m2_0: Series[float] = pa.Field(nullable=True)
    shape_m1_5: Series[float] = pa.Field(nullable=True)
    shape_m1_0: Series[float] = pa.Field(nullable=True)
    shape_m0_5: Series[float] = pa.Field(nullable=True)
    shape_p0_0: Series[float] = pa.Field(nullable=True)
    shape_p0_5: Series[float] = pa.Field(nullable=True)
    shape_p1_0: Series[float] = pa.Field(nullable=True)
    shape_p1_5: Series[float] = pa.Field(nullable=True)
    shape_p2_0: Series[float] = pa.Field(nullable=True)
    shape_p2_5: Series[float] = pa.Field(nullable=True)
    shape_days: Series[float] = pa.Field(ge=0, nullable=True)
    # the city's long-run bias per lead bucket (emos.LONG_BIAS_COLUMNS; null: too few settled days at that lead) and
    # the share of the way the mean moves to it; nullable: a table written before them (session 29) has none
    long_bias_lead_0: Series[float] = pa.Field(nullable=True)
    long_bias_lead_12: Series[float] = pa.Field(nullable=True)
    long_bias_lead_24: Series[float] = pa.Field(nullable=True)
    long_bias_lead_36: Series[float] = pa.Field(nullable=True)
    long_bias_weight: Series[float] = pa.Field(ge=0, le=1, nullable=True)

    class Config:
        unique = ["city", "climate_day"]

    @row_check(error="shape_*: the error shape's quantiles must increase from shape_m2_5 to shape_p2_5 (or all be null)")
    def shape_increases(cls, df: pd.DataFrame) -> Series[bool]:
        q = df[list(emos.SHAPE_COLUMNS)].to_numpy(float)
        return pd.Series((np.diff(q, axis=1) > 0).all(axis=1) | np.isnan(q).all(axis=1), index=df.index)

    @row_check(error=f"fit_end: weather model parameters for day D are fit only on days settled before D's "
                              f"market opened (<= D-{EMBARGO_DAYS + 1})")
    def fit_before_the_day(cls, df: pd.DataFrame) -> Series[bool]:
        return df["fit_end"].isna() | (df["fit_end"] <= last_known_day(df["climate_day"]))


class FusedPmf(_Partitioned):
    minute_ts: Series[UTC]
    market_ticker: Series[Text]
    bracket_index: Series[int] = pa.Field(ge=0)
    p_market: Series[float] = pa.Field(**_PROB)
    p_weather: Series[float] = pa.Field(**_PROB)
    w_market: Series[float] = pa.Field(ge=0, le=1)
    p_fused: Series[float] = pa.Field(ge=0, le=1)
    hazard: Series[float] = pa.Field(**_PROB)

    class Config:
        unique = ["city", "climate_day", "minute_ts", "market_ticker"]

    @row_check(error="minute_ts: increasing per bracket")
    def monotone_minutes(cls, df: pd.DataFrame) -> Series[bool]:
        return _regular(df, "minute_ts")

    @row_check(error="p_fused: fused PMF must sum to 1 (within 1e-9) each minute")
    def pmf_sums_to_one(cls, df: pd.DataFrame) -> Series[bool]:
        return _sums_to_one(df, "p_fused", "minute_ts")


class CalibratedPmf(FusedPmf):
    p_calibrated: Series[float] = pa.Field(ge=0, le=1)
    calibration_method: Series[Text] = pa.Field(isin=["none", "platt", "isotonic", "temperature"])
    calibration_requested: Series[Text]
    fit_start: Series[pa.typing.DateTime] = pa.Field(nullable=True)
    fit_end: Series[pa.typing.DateTime] = pa.Field(nullable=True)
    fit_days: Series[int] = pa.Field(ge=0)
    fit_samples: Series[int] = pa.Field(ge=0)
    temperature: Series[float] = pa.Field(nullable=True, gt=0)

    @row_check(error="p_calibrated: calibrated PMF must sum to 1 (within 1e-9) each minute")
    def calibrated_sums_to_one(cls, df: pd.DataFrame) -> Series[bool]:
        return _sums_to_one(df, "p_calibrated", "minute_ts")

    @row_check(error=f"fit_end: a calibrator for day D is fit only on days settled before D's market opened "
                              f"(<= D-{EMBARGO_DAYS + 1})")
    def fit_before_the_day(cls, df: pd.DataFrame) -> Series[bool]:
        return df["fit_end"].isna() | (df["fit_end"] <= last_known_day(df["climate_day"]))


class ForecastScores(pa.DataFrameModel):
    source: Series[Text]
    model: Series[Text] = pa.Field(isin=["market", "weather", "fused", "calibrated", "climatology"])
    group_by: Series[Text] = pa.Field(isin=["all", "city", "hour_lst"])
    group_value: Series[Text]
    n: Series[int] = pa.Field(gt=0)
    brier: Series[float] = pa.Field(ge=0, le=2)
    log_loss: Series[float] = pa.Field(ge=0)
    rps: Series[float] = pa.Field(ge=0, le=1)
    ece: Series[float] = pa.Field(ge=0, le=1)

    class Config:
        strict = True
        unique = ["source", "model", "group_by", "group_value"]


class BacktestFills(_Partitioned):
    order_id: Series[Text]
    decided_ts: Series[UTC]
    fill_ts: Series[UTC]
    market_ticker: Series[Text]
    bracket_index: Series[int] = pa.Field(ge=0)
    side: Series[Text] = pa.Field(isin=["yes", "no"])
    action: Series[Text] = pa.Field(isin=["buy", "sell", "settle"])
    liquidity: Series[Text] = pa.Field(isin=["maker", "taker", "settlement"])
    price: Series[float] = pa.Field(ge=0, le=1, nullable=True)
    contracts: Series[float] = pa.Field(ge=0)
    fee: Series[float] = pa.Field(ge=0)
    cash_flow: Series[float]
    edge: Series[float] = pa.Field(nullable=True)
    reason: Series[Text]

    class Config:
        unique = ["city", "climate_day", "order_id", "action", "fill_ts"]

    @row_check(error="fill_ts: nothing fills on the minute it was decided (latency >= 1 minute)")
    def no_fill_on_the_decision_minute(cls, df: pd.DataFrame) -> Series[bool]:
        traded = (df["contracts"] > 0) & (df["action"] != "settle")
        return ~traded | (df["fill_ts"] > df["decided_ts"])


class PaperFills(BacktestFills):
    """What the paper book sent and was filled, as it happened: the backtest's columns, the process that
    recorded each row (``run_id``) and when (wall clock)."""
    run_id: Series[Text]
    recorded_at: Series[UTC]

    class Config:
        unique = ["city", "climate_day", "order_id", "action", "fill_ts"]


class PaperOrders(_Partitioned):
    """Each paper order's state as last seen: filled so far, or why it was not sent or did not fill."""
    order_id: Series[Text]
    decided_ts: Series[UTC]
    market_ticker: Series[Text]
    bracket_index: Series[int] = pa.Field(ge=0)
    side: Series[Text] = pa.Field(isin=["yes", "no"])
    liquidity: Series[Text] = pa.Field(isin=["maker", "taker"])
    edge: Series[float] = pa.Field(nullable=True)
    status: Series[Text]
    contracts_filled: Series[float] = pa.Field(ge=0)
    run_id: Series[Text]

    class Config:
        unique = ["city", "climate_day", "order_id"]


class PaperPositions(_Partitioned):
    """Per minute the paper book was ticked: each position held, its cash so far and its mark."""
    minute_ts: Series[UTC]
    market_ticker: Series[Text]
    side: Series[Text] = pa.Field(isin=["yes", "no"])
    contracts: Series[float]
    cash_flow: Series[float]
    mark: Series[float] = pa.Field(ge=0, le=1, nullable=True)
    pnl: Series[float] = pa.Field(nullable=True)
    run_id: Series[Text]

    class Config:
        unique = ["city", "climate_day", "minute_ts", "market_ticker", "side"]


class BacktestPnl(_Partitioned):
    minute_ts: Series[UTC]
    cash: Series[float]
    open_contracts: Series[float] = pa.Field(ge=-1e-9)
    position_value: Series[float] = pa.Field(ge=-1e-9)
    equity: Series[float]
    fees_cum: Series[float] = pa.Field(ge=0)

    class Config:
        unique = ["city", "climate_day", "minute_ts"]


class StrategySweep(pa.DataFrameModel):
    """Per grid point and month: the strategy's results with those parameters, and whether the walk-forward
    choice (made on the days settled before the month's first market opened) traded that point that month."""

    source: Series[Text]
    point: Series[int] = pa.Field(ge=0)
    slippage_cushion: Series[float] = pa.Field(ge=0)
    taker_extra_edge: Series[float] = pa.Field(ge=0)
    allow_maker: Series[bool]
    contracts: Series[float] = pa.Field(gt=0)
    month: Series[Text] = pa.Field(str_matches=r"^\d{4}-\d{2}$")
    city_days: Series[int] = pa.Field(gt=0)
    orders_sent: Series[int] = pa.Field(ge=0)
    orders_filled: Series[int] = pa.Field(ge=0)
    net_pnl: Series[float]
    fees: Series[float] = pa.Field(ge=0)
    maker_contracts: Series[float] = pa.Field(ge=0)
    taker_contracts: Series[float] = pa.Field(ge=0)
    chosen: Series[bool]

    class Config:
        strict = True
        unique = ["point", "month"]

    @row_check(error="orders_filled: at most the orders sent")
    def filled_within_sent(cls, df: pd.DataFrame) -> Series[bool]:
        return df["orders_filled"] <= df["orders_sent"]

    @row_check(error="chosen: at most one point a month")
    def one_choice_a_month(cls, df: pd.DataFrame) -> Series[bool]:
        return df.groupby("month")["chosen"].transform("sum") <= 1


TABLES: dict[str, type[pa.DataFrameModel]] = {
    "kalshi_markets": KalshiMarkets,
    "kalshi_candles": KalshiCandles,
    "kalshi_trades": KalshiTrades,
    "weather_obs": WeatherObs,
    "weather_forecasts": WeatherForecasts,
    "settlement": Settlement,
    "minute_panel": MinutePanel,
    "orderbook_l2": OrderbookL2,
    "orderbook_levels": OrderbookLevels,
    "orderbook_samples": OrderbookSamples,
    "orderbook_spreads": OrderbookSpreads,
    "weather_model_params": WeatherModelParams,
    "weather_pmf": WeatherPmf,
    "fused_pmf": FusedPmf,
    "calibrated_pmf": CalibratedPmf,
    "forecast_scores": ForecastScores,
    "backtest_fills": BacktestFills,
    "backtest_pnl": BacktestPnl,
    "paper_fills": PaperFills,
    "paper_orders": PaperOrders,
    "paper_positions": PaperPositions,
    "strategy_sweep": StrategySweep,
}


class TableInvalid(ValueError):
    """A table that failed its schema; ``failures`` has one row per failing value or rule."""

    def __init__(self, table: str, failures: pd.DataFrame, partition: str | None = None):
        self.table, self.failures, self.partition = table, failures, partition
        fields = sorted({str(c) for c in failures.get("column", pd.Series(dtype=str)).dropna()} - {"None"})
        checks = sorted({str(c) for c in failures.get("check", pd.Series(dtype=str)).dropna()})
        where = f"partition {partition}: " if partition else ""
        super().__init__(f"{where}table {table} failed validation in field(s) {fields or ['<rows>']}: "
                         f"{'; '.join(checks[:4])} ({len(failures)} failure(s))")

    def __reduce__(self):  # picklable from worker processes
        return TableInvalid, (self.table, self.failures, self.partition)


@lru_cache(maxsize=None)
def schema(table: str) -> pa.DataFrameSchema:
    """The table's Pandera schema. A non-nullable column's value checks see its missing values too (Pandera's
    default drops them first, a pass over the column, a copy where there are any, per check); its not-null
    check fails them either way."""
    out = copy.deepcopy(TABLES[table].to_schema())  # Pandera's own, which it caches, stays as the model says
    if out.unique:  # Pandera's own ``unique`` factorizes every key column again with DataFrame.duplicated
        columns = list(out.unique)
        out.unique = None
        out.checks.append(pa.Check(partial(_unique_rows, columns=columns), ignore_na=False,
                                   error=f"unique: one row per ({', '.join(columns)})"))
    for col in out.columns.values():
        if not col.nullable:
            for check in col.checks:
                check.ignore_na = False
    return out


def conform(table: str, df: pd.DataFrame, only: Iterable[str] | None = None) -> pd.DataFrame:
    """Put a frame in the table's column order (or just the columns ``only``) with the table's dtypes
    (types are still checked after). A value that is not a number in a float column raises a
    ``DataError`` naming the field, row and value; a blank stays missing."""
    cols = schema(table).columns
    if only is not None:
        keep = set(only)
        cols = {n: c for n, c in cols.items() if n in keep}
    names = list(cols)
    # a frame already in order shares its columns (a reindex would copy and consolidate every block: a tenth
    # of a step's own time when it writes what its workers conformed); a changed column is set on a shallow
    # copy, never on the caller's frame
    out = df.copy(deep=False) if list(df.columns) == names else df.reindex(columns=names)
    types = dict(zip(out.columns, out.dtypes))  # one pass: a column's own Series costs more than its dtype
    for name, col in cols.items():
        dtype, have = str(col.dtype), str(types[name])
        if have == dtype:
            continue
        is_dt = pd.api.types.is_datetime64_any_dtype(out[name])
        if dtype.startswith("datetime64[ns, UTC]"):
            if is_dt and getattr(out[name].dtype, "tz", None) is not None:
                out[name] = out[name].dt.tz_convert("UTC").astype("datetime64[ns, UTC]")
            else:
                out[name] = pd.to_datetime(out[name], utc=True).astype("datetime64[ns, UTC]")
        elif dtype.startswith("datetime64"):
            out[name] = out[name].astype("datetime64[ns]") if is_dt else pd.to_datetime(out[name]).astype("datetime64[ns]")
        elif dtype == "float64":
            out[name] = numbers(out[name], table, name)
        elif dtype == "int64" and out[name].notna().all():
            out[name] = out[name].astype("int64")
        elif dtype == "bool" and out[name].notna().all():
            out[name] = out[name].astype(bool)
    return out


@lru_cache(maxsize=None)
def _validating(table: str) -> tuple[pa.DataFrameSchema, frozenset]:
    """``schema(table)`` as ``validate`` runs it, and the text columns it codes: the required ones that a rule
    groups on or that have an allowed set, whose not-null and isin checks then come from one factorization
    (``_text_present``, ``_text_isin``; the same failures under the same names, listed after the column's type
    check instead of before it). Other text columns keep Pandera's checks: factorizing a column of distinct ids
    costs more than testing it."""
    out = copy.deepcopy(schema(table))
    grouped = set(PARTITION_COLUMNS) | {"market_ticker"} | set(_unique_columns(table))
    coded = set()
    for name, col in out.columns.items():
        has_isin = any(c.name == "isin" for c in col.checks)
        if str(col.dtype) != "str" or col.nullable or not (has_isin or name in grouped):
            continue
        coded.add(name)
        checks = [pa.Check(_text_present, name="not_nullable", error="not_nullable", ignore_na=False)]
        for c in col.checks:
            if c.name == "isin":
                allowed = tuple(c.statistics["allowed_values"])
                c = pa.Check(partial(_text_isin, allowed=allowed), name="isin", error=c.error, ignore_na=False)
            checks.append(c)
        col.checks, col.nullable = checks, True  # the not-null check is the first of its own checks
    return out, frozenset(coded)


def _unique_columns(table: str) -> list[str]:
    unique = TABLES[table].to_schema().unique
    return [unique] if isinstance(unique, str) else list(unique or ())


CODED_TEXT_ROWS = 5_000  # below this, Pandera's own checks cost less than the coded ones' fixed overhead


def validate(table: str, df: pd.DataFrame, partition: str | None = None,
             text_codes: dict[str, tuple[np.ndarray, np.ndarray]] | None = None) -> pd.DataFrame:
    """``df`` if it passes ``table``'s schema, else ``TableInvalid`` naming the fields and rows. ``text_codes``: a
    dict that receives, for a frame that passes, the factorization (codes, distinct values) of each text column
    the pass coded (``_validating``), e.g. to build its Arrow column without a Python call per row."""
    checker, coded = _validating(table) if len(df) >= CODED_TEXT_ROWS else (schema(table), frozenset())
    token = _GROUPS.set({})  # the rules' row groupings and coded text, shared by the checks of this one pass
    coded_token = _CODED.set(coded)
    try:
        out = checker.validate(df, lazy=True, inplace=True)  # nothing is coerced: no copy needed
        if text_codes is not None:
            for name in coded:
                found = _text_codes(df[name])
                if found is not None:
                    text_codes[name] = found
        return out
    except pa.errors.SchemaErrors as exc:
        cases = exc.failure_cases
        row_rules = {c.error for c in schema(table).checks}
        by_rule = cases["check"].isin(row_rules)
        # a row rule's failure lists every field of the failing rows: their missing fields say nothing, and the
        # fields that failed their own checks come first (a report previews the first cases)
        cases = cases[cases["failure_case"].notna() | ~by_rule]
        cases = cases.sort_values("schema_context", key=lambda c: c.ne("Column"), kind="stable").reset_index(drop=True)
        raise TableInvalid(table, cases, partition) from exc
    except pa.errors.SchemaError as exc:
        failures = pd.DataFrame({"column": [getattr(exc, "column_name", None)], "check": [str(exc)], "failure_case": [None]})
        raise TableInvalid(table, failures, partition) from exc
    finally:
        _CODED.reset(coded_token)
        _GROUPS.reset(token)


_SQL = {"float64": "DOUBLE", "int64": "BIGINT", "bool": "BOOLEAN", "str": "VARCHAR", "object": "VARCHAR",
        "datetime64[ns]": "DATE", "datetime64[ns, UTC]": "TIMESTAMPTZ"}


def sql_columns(table: str) -> list[tuple[str, str]]:
    return [(name, _SQL[str(col.dtype)]) for name, col in schema(table).columns.items()]


# Pandera imports and registers its pandas backends on its first validation. Done here, at import, the forked
# workers inherit them instead of importing them again for every chunk they validate (~10 ms a worker).
pa.DataFrameSchema({}).validate(pd.DataFrame())
