"""Producing a run's partitions of one table, without Dagster: partitions go city by city in date order,
in chunks (a worker's slice is then consecutive days of one city, whose history the simulated source
builds once). For each chunk the inputs are read with one query per upstream table and worker, ``workers``
processes (forked once per run of ``produced``) produce, conform and validate the partitions, and the caller
writes them while the next chunk computes. A derived row carries the ``source`` of its partition's first
non-empty input.
"""

from __future__ import annotations

import datetime as dt
import functools
import time
from typing import Callable, Iterator, NamedTuple

import numpy as np
import pandas as pd
import pyarrow as pa

from kw_assets import parallel
from kw_assets.cities import City
from kw_assets.errors import DataError
from kw_assets.reporting import markdown_table
from kw_assets.schemas import TableInvalid, conform, validate
from kw_assets.sources.http import ApiError
from kw_assets.warehouse import RowsRead, Warehouse

# partitions read at once. A chunk's inputs are in memory twice over, in the step's process and (sent) in its
# workers: 16 rather than 32 keeps a year x 7's processes ~200-370 MiB smaller per step, at most ~3% slower
PREFETCH_CHUNK = 16
BAD_INPUT = (DataError, TableInvalid, ApiError)
Inputs = tuple[str, ...] | dict[str, tuple[str, ...] | None]  # upstream tables, or tables -> the columns used
Produce = Callable[[City, dt.date, dict[str, pd.DataFrame]], pd.DataFrame]


PREVIEW_ROWS = 5


class Summary(NamedTuple):
    """What a step reports of one written partition, worked out where the partition was produced."""

    rows: int
    span: tuple[str, str] | None  # the time column's first and last value
    preview: str  # its first rows, as Markdown
    sources: tuple[str, ...]


class Outcome(NamedTuple):
    """One partition, produced and validated: its frame, or the error that rejected it. From ``produced``, the
    frame is an Arrow table (a slice of its worker's) and ``summary`` says what it holds."""

    city: City
    day: dt.date
    key: str
    frame: pd.DataFrame | pa.Table | None
    error: Exception | None
    summary: Summary | None = None


def produced(warehouse: Warehouse, table: str, pairs: list[tuple[City, dt.date, str]], produce: Produce,
             inputs: Inputs = (), required: tuple[str, ...] = (), source: str | None = None, workers: int = 1,
             counters: Callable[[], dict[str, int]] | None = None, log: Callable[[int, str], None] | None = None,
             spent: dict[str, float] | None = None, time_column: str | None = None
             ) -> Iterator[tuple[list[Outcome], dict[str, int]]]:
    """Each worker's outcomes with the change of ``counters`` (e.g. a client's requests and retries) in it.
    ``source`` is written on every row of a fetched table (None for a derived one); ``required`` tables must
    have rows for a partition; ``spent`` collects seconds of reading and waiting for workers; ``time_column``
    is the one a partition's summary spans."""
    pairs = sorted(pairs, key=lambda p: (p[0].key, p[1]))
    needs = {t: (tuple(dict.fromkeys(("source", *cols))) if cols else None)
             for t, cols in (inputs.items() if isinstance(inputs, dict) else ((t, None) for t in inputs))}
    spent = spent if spent is not None else {}
    job = functools.partial(_checked_slice, table, source, produce, required, counters, time_column)
    pending: parallel.Pending | None = None
    # the workers are forked before the step's connection opens: pages the step's process rewrites later (DuckDB's
    # buffers) would stay in each worker as its own copy
    with parallel.reusing_freed_memory(), parallel.Pool(job, workers if len(pairs) > 1 else 1) as pool, \
            warehouse.held():
        warehouse.beside_workers(len(pool.handles))
        for i in range(0, len(pairs) + PREFETCH_CHUNK, PREFETCH_CHUNK):
            these = pairs[i:i + PREFETCH_CHUNK]
            work = None
            if these:  # read while the workers compute the chunk before
                t0 = time.perf_counter()
                work = read_shares(warehouse, these, needs, pool)
                spent["read"] = spent.get("read", 0.0) + time.perf_counter() - t0
            results = None
            if pending is not None:
                t0 = time.perf_counter()
                results = pending.result(log)
                spent["wait for workers"] = spent.get("wait for workers", 0.0) + time.perf_counter() - t0
            # the next chunk goes out before this one is handed back, so the workers compute while it is written
            pending = pool.submit(work) if work else None
            for outcomes, counted, rows in results or ():
                yield _sliced(outcomes, parallel.opened(rows)), counted


Share = tuple[list[tuple[City, dt.date, str]], dict[str, RowsRead]]  # a worker's partitions and their rows


def read_shares(warehouse: Warehouse, these: list[tuple[City, dt.date, str]], needs: dict[str, tuple[str, ...] | None],
                pool: parallel.Pool) -> list[Share]:
    """A chunk's partitions in one consecutive share per worker, each with its partitions' rows of every input table
    as one read (``Warehouse.read_rows``): the worker builds its frames from the query's Arrow table, mapped from
    shared memory where it is large, so the step's process, which a backfill waits for, only runs the queries (the
    conversion to pandas and the pickling of the frames were ~60% of its reading). One read a table and share, not
    one a partition: a read's fixed costs were most of what a partition's cost."""
    shares = []
    for a, b in parallel.slice_bounds(len(these), max(1, len(pool.handles))):
        keys = [(city.key, day) for city, day, _ in these[a:b]]
        reads = {t: warehouse.read_rows(t, keys, cols) for t, cols in needs.items()}
        for r in reads.values():
            if isinstance(r.rows, pa.Table):
                r.rows = parallel.shared_with_workers(r.rows, pool)
        shares.append((these[a:b], reads))
    return shares


def _checked_slice(table, source, produce, required, counters, time_column, shares: list[Share]
                   ) -> tuple[list[Outcome], dict[str, int], pa.Table | parallel.SharedTable | None]:
    work = []
    for pairs, reads in shares:
        coded = {t: r.frame() for t, r in reads.items()}
        rows = {t: object_text(f) for t, f in coded.items()}
        split = {t: split_by_partition(rows[t], partition_positions(f)) for t, f in coded.items()}  # grouped on the codes
        work += [(city, day, key, {t: split[t].get((city.key, day), rows[t].iloc[:0]) for t in rows})
                 for city, day, key in pairs]
    before = counters() if counters else {}
    outcomes, together, codes = _checked(table, source, produce, required, work)
    after = counters() if counters else {}
    outcomes, rows = handed_over(outcomes, time_column, together, codes)
    return outcomes, {k: after[k] - before.get(k, 0) for k in after}, None if rows is None else parallel.shared(rows)


def object_text(frame: pd.DataFrame) -> pd.DataFrame:
    """A read's categorical text columns (``Warehouse.read(text_codes=True)``) as the strings (None for NULL) a
    plain read gives: what the produce functions and the schemas expect."""
    coded = [c for c in frame.columns if isinstance(frame[c].dtype, pd.CategoricalDtype)]
    if not coded:
        return frame
    out = frame.copy(deep=False)
    for c in coded:
        values = frame[c].array
        out[c] = np.array([*values.categories, None], dtype=object)[values.codes]  # code -1 (NULL): the last
    return out


def handed_over(outcomes: list[Outcome], time_column: str | None, together: pd.DataFrame | None = None,
                text_codes: dict | None = None) -> tuple[list[Outcome], pa.Table | None]:
    """A worker's valid partitions as one Arrow table, in order, each outcome with its summary instead of its
    frame. The table crosses to the step's process as its buffers, where pickled frames were rebuilt object by
    object, and DuckDB inserts from it without reading a Python string per row. ``together``: the valid
    frames already concatenated (as validated), if they were, with ``text_codes`` from their validation."""
    frames = [o.frame for o in outcomes if o.frame is not None]
    if not frames:
        return outcomes, None
    return [o if o.frame is None else o._replace(frame=None, summary=summarize(o.frame, time_column))
            for o in outcomes], arrow_rows(frames) if together is None else arrow_rows([together], text_codes)


def arrow_rows(frames: list[pd.DataFrame], text_codes: dict[str, tuple[np.ndarray, np.ndarray]] | None = None
               ) -> pa.Table:
    """Conformed frames of one table as one Arrow table, in order (missing floats become nulls, as DuckDB reads
    a frame's NaN). ``text_codes``: the factorization ``validate`` made of the one frame's text columns; each
    of those is built from it, its distinct values taken by code: the same strings and nulls ``from_pandas``
    gives, without its Python call per row (~48 ns a row, most of a minute table's conversion)."""
    frame = frames[0] if len(frames) == 1 else pd.concat(frames, ignore_index=True)
    coded = (text_codes or {}) if len(frames) == 1 else {}  # codes describe the one validated frame only
    plain = [c for c in frame.columns if c not in coded]
    rows = pa.Table.from_pandas(frame, columns=plain, preserve_index=False).replace_schema_metadata(None)
    for at, name in enumerate(frame.columns):
        if name in coded:
            codes, values = coded[name]
            taken = pa.array(values, type=pa.string()).take(pa.array(codes, type=pa.int32(), mask=codes < 0))
            rows = rows.add_column(at, pa.field(name, pa.string()), taken)
    return rows


def _sliced(outcomes: list[Outcome], rows: pa.Table | None) -> list[Outcome]:
    """Each valid outcome's rows: its slice of the worker's table (no copy)."""
    out, at = [], 0
    for o in outcomes:
        if o.summary is not None:
            o = o._replace(frame=rows.slice(at, o.summary.rows))
            at += o.summary.rows
        out.append(o)
    return out


def summarize(frame: pd.DataFrame, time_column: str | None) -> Summary:
    span = _span(frame[time_column]) if time_column and len(frame) else None
    sources = _sources(frame["source"].to_numpy()) if "source" in frame.columns and len(frame) else ()
    return Summary(len(frame), span, markdown_table(frame.head(PREVIEW_ROWS)) if len(frame) else "(no rows)", sources)


def _span(column: pd.Series) -> tuple[str, str]:
    """The earliest and latest time of a partition's column, as ``str(column.min())`` and ``str(column.max())`` give
    them (missing times skipped), from the times' integers: pandas' reductions were a third of a summary."""
    if column.dtype.kind != "M" and not isinstance(column.dtype, pd.DatetimeTZDtype):
        return str(column.min()), str(column.max())
    stamps = pd.DatetimeIndex(column)
    i8 = stamps.asi8
    known = np.flatnonzero(i8 != np.iinfo(np.int64).min)
    if not len(known):
        return str(pd.NaT), str(pd.NaT)
    return str(stamps[known[np.argmin(i8[known])]]), str(stamps[known[np.argmax(i8[known])]])


def _sources(values: np.ndarray) -> tuple[str, ...]:
    """The distinct text values, sorted. A partition's source is nearly always one value set on every row, the same
    object on each: the objects' addresses say so without comparing text (else each value is compared to the first)."""
    first = values[0]
    if values.dtype == object and isinstance(first, str) and values.ndim == 1 and values.flags.c_contiguous:
        addresses = np.frombuffer(values, dtype=np.intp)  # read only: the array keeps its objects alive
        if (addresses == addresses[0]).all():
            return (first,)
    try:
        one = isinstance(first, str) and bool((values == first).all())
    except TypeError:  # pd.NA has no truth value: not one source
        one = False
    if one:
        return (first,)
    return tuple(sorted(v for v in pd.unique(values).tolist() if isinstance(v, str)))


def check_partitions(table: str, source: str | None, produce: Produce, required: tuple[str, ...],
                     work: list[tuple[City, dt.date, str, dict[str, pd.DataFrame]]]) -> list[Outcome]:
    """Produce, conform and validate partitions: the pure part of a write, safe to run in a worker.
    The batch is validated in one Pandera pass; only when it fails is each partition validated alone,
    so the failures name their partitions."""
    return _checked(table, source, produce, required, work)[0]


def _checked(table: str, source: str | None, produce: Produce, required: tuple[str, ...],
             work: list[tuple[City, dt.date, str, dict[str, pd.DataFrame]]]
             ) -> tuple[list[Outcome], pd.DataFrame | None, dict]:
    """``check_partitions``, with the valid frames concatenated as they were validated (None unless all of the
    produced ones passed together) and the text codes that validation made of them (``validate``)."""
    out = []
    for city, day, key, data in work:
        try:
            for t in required:
                if data[t].empty:
                    raise DataError(t, "<rows>", f"no {t} stored for {city.key} {day}: materialize {t} first")
            frame = produce(city, day, data).copy(deep=False)  # new columns only: no copy of the produced ones
            keys = {"city": city.key, "climate_day": pd.Timestamp(day).as_unit("ns")}
            if "source" not in frame.columns:
                inherited = [f["source"].iloc[0] for f in data.values() if len(f) and "source" in f.columns]
                keys["source"] = source or (inherited[0] if inherited else None)
            for at, (name, value) in enumerate(keys.items()):  # first, as in every partitioned table: no reordering copy
                if name in frame.columns:
                    frame[name] = value
                else:
                    frame.insert(at, name, value)
            out.append(Outcome(city, day, key, conform(table, frame), None))
        except BAD_INPUT as exc:
            out.append(Outcome(city, day, key, None, exc))
    frames = [o.frame for o in out if o.frame is not None]
    try:
        together = pd.concat(frames, ignore_index=True) if frames else None
        codes: dict = {}
        if frames:
            validate(table, together, text_codes=codes)
        return out, together, codes
    except TableInvalid:
        pass
    for i, o in enumerate(out):
        if o.frame is not None:
            try:
                validate(table, o.frame, partition=o.key)
            except TableInvalid as exc:
                out[i] = o._replace(frame=None, error=exc)
    return out, None, {}


def split_by_partition(frame: pd.DataFrame, positions: dict[tuple[str, dt.date], slice | np.ndarray] | None = None
                       ) -> dict[tuple[str, dt.date], pd.DataFrame]:
    """Rows of each (city, climate_day), in their order: usually a view of the read, not a copy (copying was a
    third of the sweep's reading). No caller reuses the read. ``positions``: ``partition_positions`` of the same
    rows, if already found (e.g. on a coded copy of them, cheaper to group than strings)."""
    return {k: frame.iloc[p] for k, p in (partition_positions(frame) if positions is None else positions).items()}


def partition_positions(frame: pd.DataFrame) -> dict[tuple[str, dt.date], slice | np.ndarray]:
    """Where each (city, climate_day)'s rows are, grouped on one integer key. A warehouse read keeps each
    partition's rows together (they were written together), so the usual case is one slice each."""
    if frame.empty:
        return {}
    city_code, cities = pd.factorize(frame["city"])
    day_num = frame["climate_day"].to_numpy("datetime64[D]").astype("int64")
    key = city_code.astype("int64") * 1_000_000 + day_num
    starts = np.flatnonzero(np.diff(key, prepend=key[0] - 1))
    if len(np.unique(key[starts])) == len(starts):  # one contiguous run per partition
        ranges = zip(key[starts], starts, np.append(starts[1:], len(key)))
        parts = ((k, slice(int(a), int(b))) for k, a, b in ranges)
    else:  # e.g. a partition whose later minutes were rewritten (the live tail) after other partitions
        parts = pd.Series(key).groupby(key).indices.items()
    return {(cities[k // 1_000_000], dt.date(1970, 1, 1) + dt.timedelta(days=int(k % 1_000_000))): p for k, p in parts}
