"""How every partitioned asset writes: for each partition key of the run (one or a whole backfill
range spanning cities and dates), produce the frame, conform it to the table's schema, validate it,
and replace that partition's rows. Invalid partitions write nothing; the run reports a failed
blocking check that lists them, with the offending rows, and then fails.
"""

from __future__ import annotations

import datetime as dt
import functools
import time
from dataclasses import dataclass, field
from typing import Callable, Iterable, Iterator, NamedTuple

import dagster as dg
import pandas as pd

from kw_assets.cities import City, get_city
from kw_assets import parallel
from kw_assets.errors import DataError
from kw_assets.partitions import split_key
from kw_assets.reporting import markdown_table
from kw_assets.schemas import TableInvalid, conform, schema, validate
from kw_assets.sources import SIMULATED_BANNER
from kw_assets.sources.http import ApiError
from kw_assets.warehouse import Warehouse

WRITE_BATCH = 48
PROGRESS_EVERY_S = 10.0
BAD_INPUT = (DataError, TableInvalid, ApiError)


def column_schema(table: str) -> dg.TableSchema:
    """``dagster/column_schema`` from the table's Pandera model: name, dtype, nullability, uniqueness and checks."""
    cols = []
    for name, col in schema(table).columns.items():
        checks = "; ".join(str(getattr(c, "error", None) or c.name) for c in col.checks)
        cols.append(dg.TableColumn(name, str(col.dtype), description=col.description or checks or None,
                                   constraints=dg.TableColumnConstraints(nullable=bool(col.nullable), unique=bool(col.unique))))
    return dg.TableSchema(columns=cols)


def table_metadata(table: str) -> dict:
    """What the UI shows of a table on its definition and on every materialization."""
    return {"dagster/column_schema": column_schema(table), "dagster/table_name": f"warehouse.main.{table}"}


def schema_check(table: str) -> dg.AssetCheckSpec:
    return dg.AssetCheckSpec(name=f"{table}_schema", asset=table, blocking=True,
                             description=f"every row of {table} passes its Pandera model before it is written")


def partition_pairs(context: dg.AssetExecutionContext) -> list[tuple[City, dt.date, str]]:
    """(city, climate_day, key) for every partition this run materializes."""
    out = []
    for key in context.partition_keys:
        city, day = split_key(key)
        out.append((get_city(city), day, str(key)))
    return out


class Outcome(NamedTuple):
    """One partition, produced and validated: its frame, or the error that rejected it."""

    city: City
    day: dt.date
    key: str
    frame: pd.DataFrame | None
    error: Exception | None


def check_partitions(table: str, source: str, work: list[tuple[City, dt.date, str, Callable[[], pd.DataFrame]]]) -> list[Outcome]:
    """Produce, conform and validate partitions: the pure part of a write, safe to run in a worker.
    The batch is validated in one Pandera pass; only when it fails is each partition validated alone,
    so the failures name their partitions."""
    produced, out = [], []
    for city, day, key, produce in work:
        try:
            frame = produce()
            frame = frame.assign(city=city.key, climate_day=pd.Timestamp(day))
            if "source" not in frame.columns:
                frame["source"] = source
            produced.append(Outcome(city, day, key, conform(table, frame), None))
        except BAD_INPUT as exc:
            produced.append(Outcome(city, day, key, None, exc))
    frames = [o.frame for o in produced if o.frame is not None]
    try:
        if frames:
            validate(table, pd.concat(frames, ignore_index=True))
        return produced
    except TableInvalid:
        pass
    for o in produced:
        if o.frame is not None:
            try:
                validate(table, o.frame, partition=o.key)
            except TableInvalid as exc:
                o = o._replace(frame=None, error=exc)
        out.append(o)
    return out


@dataclass
class PartitionWriter:
    """Takes validated partitions (or their failures) and writes them in batches, each one transaction."""

    context: dg.AssetExecutionContext
    warehouse: Warehouse
    table: str
    source: str
    total: int
    time_column: str | None = None
    rows: int = 0
    done: int = 0
    failures: dict[str, str] = field(default_factory=dict)
    failure_rows: list[pd.DataFrame] = field(default_factory=list)
    _batch: list[pd.DataFrame] = field(default_factory=list)
    _keys: list[tuple[str, dt.date]] = field(default_factory=list)
    _started: float = field(default_factory=time.monotonic)
    _last_log: float = field(default_factory=time.monotonic)
    sources_seen: set = field(default_factory=set)

    def accept(self, outcomes: Iterable[Outcome]) -> None:
        for city, day, key, frame, error in outcomes:
            if error is not None:
                self._fail(key, error)
            else:
                self._batch.append(frame)
                self._keys.append((city.key, day))
                self.sources_seen.update(frame["source"].dropna().unique().tolist())
                self.context.add_asset_metadata(self._partition_metadata(frame), asset_key=self.table, partition_key=key)
            self.done += 1
            if len(self._keys) >= WRITE_BATCH:
                self.flush()
            self._progress()

    def _partition_metadata(self, frame: pd.DataFrame) -> dict:
        """This partition's own row count, time span and first rows (its event in the UI, not the run's)."""
        meta = {"dagster/row_count": dg.MetadataValue.int(len(frame)),
                "preview": dg.MetadataValue.md(markdown_table(frame.head(PREVIEW_ROWS)) if len(frame) else "(no rows)")}
        if self.time_column and len(frame):
            meta["time_span"] = dg.MetadataValue.text(f"{frame[self.time_column].min()} .. {frame[self.time_column].max()}")
        return meta

    def _fail(self, key: str, exc: Exception) -> None:
        if isinstance(exc, ApiError):  # the response itself was unusable: say which table it was for
            message = f"partition {key}: table {self.table}, field <response>: {exc}"
        else:
            message = str(exc) if f"partition {key}" in str(exc) else f"partition {key}: {exc}"
        self.failures[key] = message
        self.context.log.error(message)
        if isinstance(exc, TableInvalid):
            self.failure_rows.append(exc.failures.head(20).assign(partition=key))
        elif isinstance(exc, DataError):  # unreadable before it became a table: the field and what was wrong
            self.failure_rows.append(pd.DataFrame({"column": [exc.field], "check": ["readable value"],
                                                   "failure_case": [exc.detail], "partition": [key]}))

    def flush(self) -> None:
        if not self._keys:
            return
        frame = pd.concat(self._batch, ignore_index=True)
        self.rows += self.warehouse.replace_partitions(self.table, frame, self._keys)
        self._batch, self._keys = [], []

    def _progress(self) -> None:
        now = time.monotonic()
        if self.total > 1 and (now - self._last_log > PROGRESS_EVERY_S or self.done == self.total):
            rate = self.done / max(now - self._started, 1e-9)
            eta = (self.total - self.done) / rate if rate else float("nan")
            self.context.log.info(f"{self.table}: {self.done}/{self.total} partitions, {rate:.1f}/s, ETA {eta:.0f}s")
            self._last_log = now

    def finish(self, extra: dict | None = None) -> Iterable[dg.MaterializeResult | dg.AssetCheckResult]:
        self.flush()
        check = f"{self.table}_schema"
        if self.failures:
            cases = pd.concat(self.failure_rows, ignore_index=True) if self.failure_rows else pd.DataFrame()
            yield from reject(self.table, cases,
                              f"{self.table}: {len(self.failures)} of {self.total} partition(s) rejected; nothing was "
                              f"written for them. " + " | ".join(list(self.failures.values())[:3]),
                              {"failed_partitions": dg.MetadataValue.json(self.failures)})
        shown = ", ".join(sorted(self.sources_seen)) or self.source
        # on every partition's event: what is true of each; the run's totals say "run_" (and go to the log)
        meta: dict = {**table_metadata(self.table), "source": dg.MetadataValue.text(shown),
                      "run_rows": dg.MetadataValue.int(self.rows), "run_partitions": dg.MetadataValue.int(self.total)}
        if "simulated" in self.sources_seen or self.source == "simulated":
            meta["warning"] = dg.MetadataValue.text(SIMULATED_BANNER)
        meta.update({f"run_{k}": v for k, v in (extra or {}).items()})
        self.context.log.info(f"{self.table}: wrote {self.rows} rows in {self.total} partition(s)"
                              + "".join(f", {k} {v.value}" for k, v in (extra or {}).items()))
        yield dg.MaterializeResult(asset_key=self.table, metadata=meta)
        yield dg.AssetCheckResult(check_name=check, asset_key=self.table, passed=True,
                                  metadata={"rows_checked": dg.MetadataValue.int(self.rows)})


def reject(table: str, cases: pd.DataFrame, description: str, metadata: dict | None = None) -> Iterator[dg.AssetCheckResult]:
    """Fail the table's blocking schema check (with the failing rows' count and a sample) and the run:
    called before anything is written, so the rejected rows never land and nothing downstream runs."""
    meta = {**(metadata or {}), "failing_rows": dg.MetadataValue.int(len(cases)),
            "failure_cases": dg.MetadataValue.md(markdown_table(cases.astype(str)) if len(cases) else "-")}
    yield dg.AssetCheckResult(check_name=f"{table}_schema", asset_key=table, passed=False,
                              severity=dg.AssetCheckSeverity.ERROR, metadata=meta)
    raise dg.Failure(description=description, metadata=metadata or {})


PREFETCH_CHUNK = 32
PREVIEW_ROWS = 5
Inputs = tuple[str, ...] | dict[str, tuple[str, ...] | None]  # upstream tables, or tables -> the columns used


def write_partitions(context: dg.AssetExecutionContext, warehouse: Warehouse, table: str, time_column: str | None,
                     produce: Callable[[City, dt.date, dict[str, pd.DataFrame]], pd.DataFrame],
                     inputs: Inputs = (), source: str = "derived", workers: int = 1,
                     counters: Callable[[], dict[str, int]] | None = None) -> Iterable[dg.MaterializeResult | dg.AssetCheckResult]:
    """The loop of every partitioned asset: partitions city by city in date order, in chunks (a worker's
    slice is then consecutive days of one city, whose history the simulated source builds once). For each
    chunk the parent reads the stored inputs (one query per table), ``workers`` forked processes produce
    and validate the partitions, and the parent writes them while the next chunk computes. ``counters``
    (e.g. a client's requests and retries) are summed over the workers into the asset's metadata."""
    pairs = sorted(partition_pairs(context), key=lambda p: (p[0].key, p[1]))
    writer = PartitionWriter(context, warehouse, table, source, len(pairs), time_column)
    needs = inputs if isinstance(inputs, dict) else {t: None for t in inputs}
    log = lambda level, message: context.log.log(level, message)  # noqa: E731
    pending: parallel.Pending | None = None
    totals: dict[str, int] = {}
    spent = {"read": 0.0, "wait for workers": 0.0, "write": 0.0}

    def collect(p: parallel.Pending) -> None:
        t0 = time.perf_counter()
        results = p.result(log)
        t1 = time.perf_counter()
        for outcomes, counted in results:
            writer.accept(outcomes)
            for k, v in counted.items():
                totals[k] = totals.get(k, 0) + v
        spent["wait for workers"] += t1 - t0
        spent["write"] += time.perf_counter() - t1

    for i in range(0, len(pairs), PREFETCH_CHUNK):
        chunk = pairs[i:i + PREFETCH_CHUNK]
        keys = [(city.key, day) for city, day, _ in chunk]
        t0 = time.perf_counter()
        loaded = {t: warehouse.read(t, keys, columns) for t, columns in needs.items()}
        split = {t: split_by_partition(f) for t, f in loaded.items()}
        spent["read"] += time.perf_counter() - t0
        work = []
        for city, day, key in chunk:
            data = {t: split[t].get((city.key, day), loaded[t].iloc[:0]) for t in needs}
            work.append((city, day, key, functools.partial(produce, city, day, data)))
        started = parallel.start(functools.partial(_checked_slice, table, source, counters), work, workers)
        if pending is not None:
            collect(pending)
        pending = started
    if pending is not None:
        collect(pending)
    t0 = time.perf_counter()
    writer.flush()
    spent["write"] += time.perf_counter() - t0
    context.log.info(f"{table}: {len(pairs)} partitions with {workers} worker(s); "
                     + ", ".join(f"{k} {v:.1f} s" for k, v in spent.items()))
    yield from writer.finish({k: dg.MetadataValue.int(v) for k, v in totals.items()})


def _checked_slice(table: str, source: str, counters, work) -> tuple[list[Outcome], dict[str, int]]:
    before = counters() if counters else {}
    outcomes = check_partitions(table, source, work)
    after = counters() if counters else {}
    return outcomes, {k: after[k] - before.get(k, 0) for k in after}


def derive_partitions(context: dg.AssetExecutionContext, warehouse: Warehouse, table: str, time_column: str | None,
                      produce: Callable[[City, dt.date, dict[str, pd.DataFrame]], pd.DataFrame],
                      inputs: Inputs = (), workers: int = 1) -> Iterable[dg.MaterializeResult | dg.AssetCheckResult]:
    """A derived table: every partition computed from its stored upstream rows."""
    yield from write_partitions(context, warehouse, table, time_column, produce, inputs, "derived", workers)


def split_by_partition(frame: pd.DataFrame) -> dict[tuple[str, dt.date], pd.DataFrame]:
    """Rows of each (city, climate_day), grouped on one integer key (fast on large frames)."""
    if frame.empty:
        return {}
    city_code, cities = pd.factorize(frame["city"])
    day_num = frame["climate_day"].to_numpy("datetime64[D]").astype("int64")
    key = city_code.astype("int64") * 1_000_000 + day_num
    out = {}
    for k, idx in pd.Series(key).groupby(key).indices.items():
        out[(cities[k // 1_000_000], dt.date(1970, 1, 1) + dt.timedelta(days=int(k % 1_000_000)))] = frame.iloc[idx]
    return out


def require_markets(markets: pd.DataFrame, city: City, day: dt.date) -> pd.DataFrame:
    if markets.empty:
        raise DataError("kalshi_markets", "market_ticker", f"no markets stored for {city.key} {day}: materialize kalshi_markets first")
    return markets
