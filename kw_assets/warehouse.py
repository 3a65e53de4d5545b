"""The DuckDB warehouse: one file, one table per asset, partition columns (city, climate_day).

``replace_partitions`` deletes exactly the named partitions' rows and inserts the new ones in one
transaction, so a re-materialization is idempotent, other partitions are untouched, and a crash
leaves either the old rows or the new ones. DuckDB admits one writing process per file: opening
waits (bounded) while another process holds the lock instead of failing the run.
"""

from __future__ import annotations

import contextlib
import copy
import os
import queue
import threading
import datetime as dt
import time
from pathlib import Path
from typing import Callable, Iterable, Iterator

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from kw_assets.errors import DataError
from kw_assets.parallel import opened
from kw_assets.schemas import PARTITION_COLUMNS, TABLES, conform, schema, sql_columns

Partition = tuple[str, dt.date]
UNIQUE_TEXT = {"trade_id", "order_id"}  # text columns with a value per row: read as plain strings
SMALL_READ_ROWS = 5_000  # reads up to this many rows take text columns as plain strings, not coded
_NAT = np.iinfo(np.int64).min


Rows = pd.DataFrame | pa.Table


def checked_writes(frames: dict[str, Rows], partitions: Iterable[Partition],
                   after: dict[str, tuple[str, pd.Timestamp]] | None = None) -> tuple[dict[str, Rows], pd.DataFrame]:
    """The frames of a partition swap in their tables' schemas, and the partitions' keys; refuses rows of
    other partitions, and rows not after the cut of a write that replaces only the rows after it. An Arrow
    table (a step's conformed and validated partitions, ``partition_batch.handed_over``) must have the
    table's columns in order."""
    keys = pd.DataFrame(sorted(set(partitions)), columns=["city", "climate_day"])
    keys["climate_day"] = pd.to_datetime(keys["climate_day"])
    wanted = pd.MultiIndex.from_frame(keys)
    conformed = {}
    for table, frame in frames.items():
        if isinstance(frame, pa.Table):
            names = [n for n, _ in sql_columns(table)]
            if frame.column_names != names or (after and table in after):
                raise ValueError(f"{table}: an Arrow table to write needs the columns {names} in order "
                                 f"(has {frame.column_names}), and no cut")
            stray = _stray_rows(frame, {(c, d.date()) for c, d in zip(keys["city"], keys["climate_day"])})
        else:
            frame = conform(table, frame)
            stray = int((~pd.MultiIndex.from_arrays([frame["city"], frame["climate_day"]]).isin(wanted)).sum())
        if stray:
            raise ValueError(f"{table}: {stray} row(s) belong to partitions not being replaced")
        if after and table in after and (frame[after[table][0]] <= after[table][1]).any():
            raise ValueError(f"{table}: rows at or before {after[table][1]} in a write of the rows after it")
        conformed[table] = frame
    return conformed, keys


def _stray_rows(rows: pa.Table, wanted: set[tuple[str, dt.date]]) -> int:
    """Rows of an Arrow table whose (city, climate_day) is not in ``wanted``. A step's rows come partition by
    partition, so each run of equal keys is looked up once (a frame of every row's keys cost 8x more)."""
    n = rows.num_rows
    if n == 0:
        return 0
    city, day = (rows.column(c).combine_chunks() for c in PARTITION_COLUMNS)
    change = pc.or_(pc.not_equal(city.slice(1), city.slice(0, n - 1)), pc.not_equal(day.slice(1), day.slice(0, n - 1)))
    starts = np.concatenate([[0], np.flatnonzero(change.fill_null(True).to_numpy(zero_copy_only=False)) + 1])
    sizes = np.diff(np.append(starts, n))
    days = pd.DatetimeIndex(day.take(pa.array(starts)).to_numpy())
    return int(sum(size for c, d, size in zip(city.take(pa.array(starts)).to_pylist(), days, sizes)
                   if d is pd.NaT or (c, d.date()) not in wanted))


def partition_filter(partitions: Iterable[Partition]) -> tuple[str, list]:
    """A WHERE condition on ``t.city`` / ``t.climate_day`` selecting exactly ``partitions`` (each city's days
    as runs of consecutive dates, which DuckDB prunes by its zone maps), with its parameters (the cities)."""
    by_city: dict[str, list[dt.date]] = {}
    for city, day in partitions:
        by_city.setdefault(str(city), []).append(pd.Timestamp(day).date())
    clauses, params = [], []
    for city in sorted(by_city):
        days = sorted(set(by_city[city]))
        ordinals = np.array([d.toordinal() for d in days])
        starts = np.flatnonzero(np.diff(ordinals, prepend=ordinals[0] - 2) != 1)
        ends = np.append(starts[1:], len(days)) - 1
        runs = [f"t.climate_day = DATE '{days[a]}'" if a == b else f"t.climate_day BETWEEN DATE '{days[a]}' AND DATE '{days[b]}'"
                for a, b in zip(starts, ends)]
        clauses.append(f"(t.city = ? AND ({' OR '.join(runs)}))")
        params.append(city)
    return (" OR ".join(clauses) or "FALSE"), params


def _arrow_table(relation: duckdb.DuckDBPyRelation) -> pa.Table:
    fetch = getattr(relation, "to_arrow_table", None) or relation.fetch_arrow_table  # older DuckDB releases' name
    return fetch()


def arrow_frame(table: str, rows: pa.Table, only: list[str] | None, absent: frozenset[str] = frozenset(),
                text_codes: bool = False) -> pd.DataFrame:
    """A read's Arrow rows (``Warehouse._select_arrow``) as pandas holds them before ``conform``, each column without
    a Python call per row: repetitive text (city, ticker, side, ...) as one Python string per distinct value (or
    codes), timestamps and dates as nanoseconds (NULL: NaT) localized at once; integers and booleans with NULLs as
    pandas' nullable arrays. DuckDB's own pandas conversion (with a count and a query for the distinct values) cost
    up to 1.7x as much (a minute table's read; 1.2x a fills chunk's reads). ``absent``: columns an older version
    did not write, NULL throughout."""
    wanted = [(n, t) for n, t in sql_columns(table) if only is None or n in only]
    coded = rows.num_rows > SMALL_READ_ROWS  # a few rows: plain strings (their distinct values save nothing)
    out = {n: _pandas_column(rows.column(n), t, coded and n not in UNIQUE_TEXT and n not in absent, text_codes)
           for n, t in wanted}
    return pd.DataFrame(out, index=pd.RangeIndex(rows.num_rows), columns=[n for n, _ in wanted])


class RowsRead:
    """A read of ``table``'s rows, to become its frame where it is used: the frame itself, an Arrow table of the
    query (``arrow_frame`` makes the frame), or an Arrow table a step's process left in shared memory for its
    worker (``parallel.shared_with_workers``); None: the table was never written."""

    def __init__(self, table: str, only: list[str] | None, rows, absent: frozenset[str] = frozenset()):
        self.table, self.only, self.rows, self.absent = table, only, rows, absent

    def frame(self, text_codes: bool = True) -> pd.DataFrame:
        """As ``read(table, ..., text_codes=text_codes)`` gives it (a frame read elsewhere: as it came)."""
        if isinstance(self.rows, pd.DataFrame):
            return self.rows
        rows = opened(self.rows)
        if rows is None:
            return conform(self.table, pd.DataFrame(), self.only)
        return conform(self.table, arrow_frame(self.table, rows, self.only, self.absent, text_codes), self.only)


def _pandas_column(column: pa.ChunkedArray, sql_type: str, coded: bool, text_codes: bool):
    """One column of an Arrow read as pandas holds it after ``conform``: see ``Warehouse._select_arrow``."""
    column = column.combine_chunks() if column.num_chunks != 1 else column.chunk(0)
    if sql_type == "VARCHAR":
        if not coded:
            return column.to_numpy(zero_copy_only=False)  # None for NULL
        encoded = pc.dictionary_encode(column)
        codes = encoded.indices.fill_null(-1).to_numpy(zero_copy_only=False).astype(np.int64)
        values = np.array(encoded.dictionary.to_pylist(), dtype=object)
        if text_codes:
            return pd.Categorical.from_codes(codes, categories=pd.Index(values, dtype=object))
        return np.append(values, None)[codes]  # code -1 (NULL): the last
    if sql_type in ("TIMESTAMPTZ", "DATE"):
        if sql_type == "DATE":  # Arrow's date32: days since the epoch; its timestamps: microseconds
            ns = column.view(pa.int32()).fill_null(0).to_numpy().astype(np.int64) * 86_400_000_000_000
        else:
            ns = column.cast(pa.timestamp("us", tz="UTC")).view(pa.int64()).fill_null(0).to_numpy() * 1000
        if column.null_count:
            ns = np.where(column.is_null().to_numpy(zero_copy_only=False), _NAT, ns)
        stamps = pd.Series(ns.view("datetime64[ns]"))
        return stamps.dt.tz_localize("UTC").array if sql_type == "TIMESTAMPTZ" else stamps.array
    if column.null_count and sql_type in ("BIGINT", "BOOLEAN"):  # what DuckDB's own conversion gave: nullable arrays
        values = column.fill_null(0 if sql_type == "BIGINT" else False).to_numpy(zero_copy_only=False)
        missing = column.is_null().to_numpy(zero_copy_only=False)
        return pd.arrays.IntegerArray(values, missing) if sql_type == "BIGINT" else pd.arrays.BooleanArray(values, missing)
    return column.to_numpy(zero_copy_only=False)


def schema_difference(table: str, have: set[str]) -> list[str]:
    """The schema's columns a stored table lacks, when all are nullable (added since an older version wrote
    it: they are added, NULL on the old rows); any other difference is refused with a ``DataError``."""
    want = dict(sql_columns(table))
    missing, extra = sorted(set(want) - have), sorted(have - set(want))
    fields = schema(table).columns
    if missing and not extra and all(fields[n].nullable for n in missing):
        return missing
    if missing or extra:
        raise DataError(table, ", ".join(missing or extra),
                        f"the warehouse's table has another schema (missing {missing}, not in the schema {extra}), "
                        f"written by an older version; nothing was written. Re-materialize it into a fresh "
                        f"table: DROP TABLE {table} (or delete the warehouse file)")
    return []


def open_warehouse(target: str | Path, **duckdb_settings) -> "Warehouse":
    """The warehouse at ``target``: a ``postgresql://`` URL (``PostgresWarehouse``), else a DuckDB file."""
    if str(target).startswith(("postgresql://", "postgres://")):
        from kw_assets.warehouse_postgres import PostgresWarehouse
        return PostgresWarehouse(str(target))
    return Warehouse(target, **duckdb_settings)


class HeldConnection:
    """``held()``: one connection for every read and write inside the block (a step's many chunks, a tick):
    opening one costs ~40 ms (DuckDB's file; a PostgreSQL session) and closing a DuckDB file checkpoints.
    ``read_only``: for DuckDB readers in several processes at once. A forked worker inherits the object,
    never the connection: it opens its own."""

    _held = None
    _held_pid = 0
    _held_columns: dict[str, set[str]] | None = None  # a held connection's answers of ``_columns``, per table

    @contextlib.contextmanager
    def held(self, read_only: bool = False):
        if self._holding():
            yield self
            return
        with self.connect(read_only) as con:
            self._held, self._held_pid, self._held_columns = con, os.getpid(), {}
            try:
                yield self
            finally:
                self._held = None

    def _holding(self) -> bool:
        return self._held is not None and self._held_pid == os.getpid()

    @contextlib.contextmanager
    def written_behind(self) -> Iterator[WriteBehind]:
        """A thread that does this process's writes one after another, each its own transaction, on its own
        connection to the same database, while the caller goes on reading and computing (a step's process
        spent half its time writing while its workers waited). The block ends once every write is done; a
        failed write's error is raised by the next ``submit`` or at the end, and no later write starts."""
        behind = WriteBehind(self)
        try:
            yield behind
        except BaseException:
            behind.close(raise_error=False)  # the block's own error is the one to see
            raise
        else:
            behind.close()
        finally:
            if self._holding():
                self._held_columns.clear()  # the writes may have created tables or added columns

    def for_workers(self, workers: int) -> "HeldConnection":
        """The warehouse as each of ``workers`` concurrent processes should open it (here: unchanged)."""
        return self

    def beside_workers(self, workers: int) -> None:
        """While ``held``, ``workers`` processes compute beside this one (a step's pool): here nothing changes."""

    def read_rows(self, table: str, partitions: Iterable[Partition], columns: Iterable[str] | None = None) -> "RowsRead":
        """``read(..., text_codes=True)`` to be turned into its frame where it is used (``RowsRead.frame``), e.g.
        in a step's worker. Here the frame itself; DuckDB's warehouse hands over the query's Arrow table."""
        return RowsRead(table, None, self.read(table, partitions, columns, text_codes=True))


class WriteBehind:
    """``HeldConnection.written_behind``: at most one write waits behind the one being done, so besides the batch
    the caller is gathering, two batches' rows at most are held for writing. The thread starts with the first
    write: a step's workers are forked by then, and a fork must not copy a connection another thread uses."""

    def __init__(self, wh: HeldConnection):
        self._twin = copy.copy(wh)
        self._twin._held, self._twin._held_pid, self._twin._held_columns = None, 0, None
        self._todo: queue.Queue = queue.Queue(maxsize=1)
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None
        self._failed = self._stopped = False
        self.seconds = 0.0  # spent writing, in the thread

    def _run(self) -> None:
        try:
            with self._twin.held():
                self._drain()
        except BaseException as exc:  # no connection (or closing it failed): handed to the caller's thread
            if not self._failed:
                self._error, self._failed = exc, True
            if not self._stopped:
                self._drain()  # every write left is skipped, so the caller never waits on a dead thread

    def _drain(self) -> None:
        while True:
            job = self._todo.get()
            try:
                if job is None:
                    self._stopped = True
                    return
                if not self._failed:  # after a failed write, no later one starts
                    t0 = time.perf_counter()
                    try:
                        job(self._twin)
                    except BaseException as exc:  # handed to the caller's thread
                        self._error, self._failed = exc, True
                    finally:
                        self.seconds += time.perf_counter() - t0
            finally:
                self._todo.task_done()

    def submit(self, write: Callable[[HeldConnection], object]) -> None:
        """``write(warehouse)`` in the thread, after the writes before it."""
        self._raise()
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="kw-write-behind", daemon=True)
            self._thread.start()
        self._todo.put(write)

    def wait(self) -> None:
        """Until every write submitted is done; raises a failed write's error."""
        if self._thread is not None:
            self._todo.join()
        self._raise()

    def close(self, raise_error: bool = True) -> None:
        if self._thread is not None:
            self._todo.put(None)
            self._thread.join()
            self._thread = None
        if raise_error:
            self._raise()

    def _raise(self) -> None:
        if self._error is not None:
            error, self._error = self._error, None
            raise error


class Warehouse(HeldConnection):
    """``memory_limit`` and ``threads`` bound DuckDB's own buffer and worker threads per connection (None:
    DuckDB's defaults, 80% of RAM and one thread per core)."""

    def __init__(self, path: str | Path, lock_timeout_s: float = 300.0, memory_limit: str | None = None,
                 threads: int | None = None):
        self.path = Path(path)
        self.lock_timeout_s = lock_timeout_s
        self.config = {k: v for k, v in (("memory_limit", memory_limit), ("threads", threads)) if v is not None}

    def for_workers(self, workers: int) -> "Warehouse":
        """Each of ``workers`` processes reading at once gets its share of the cores as DuckDB threads (unless
        ``threads`` is set). With one per core each, two sweep workers on two cores ran 4 threads, and their reads
        took half as long again as with one thread each."""
        if "threads" in self.config:
            return self
        return Warehouse(self.path, self.lock_timeout_s, self.config.get("memory_limit"),
                         max(1, (os.cpu_count() or 1) // max(1, workers)))

    def beside_workers(self, workers: int) -> None:
        """The held connection's database runs the cores the workers leave (at least one thread; unless ``threads``
        is set) until it closes: its queries and the write-behind thread's inserts (one database in this process,
        whose threads setting is the database's) otherwise ran a thread per core beside workers that use every core.
        An insert of a minute table took 15-22% more CPU that way (a 230k-row ``minute_panel`` batch: 857 ns a
        row, 669 with one thread, in no less time); a year's minute_panel step 62-65 -> 53 s."""
        if workers > 0 and "threads" not in self.config and self._holding():
            self._held.execute(f"SET threads = {max(1, (os.cpu_count() or 1) - workers)}")

    @contextlib.contextmanager
    def connect(self, read_only: bool = False) -> Iterator[duckdb.DuckDBPyConnection]:
        if self._holding():
            yield self._held
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if read_only and not self.path.exists():
            read_only = False
        deadline = time.monotonic() + self.lock_timeout_s
        delay = 0.05
        while True:
            try:
                con = duckdb.connect(str(self.path), read_only=read_only, config=self.config)
                break
            except duckdb.IOException as exc:
                if "lock" not in str(exc).lower() or time.monotonic() > deadline:
                    raise
                time.sleep(delay)
                delay = min(delay * 2, 1.0)
        try:
            con.execute("SET TimeZone='UTC'")
            yield con
        finally:
            con.close()

    @staticmethod
    def _columns(con: duckdb.DuckDBPyConnection, table: str) -> set[str]:
        """The stored table's columns; empty if there is no such table. DuckDB's own catalog function costs a
        third of the information-schema view over it, and a year's steps read ~10,000 times."""
        return {r[0] for r in con.execute("SELECT column_name FROM duckdb_columns() WHERE table_name = ?",
                                          [table]).fetchall()}

    def _stored_columns(self, con: duckdb.DuckDBPyConnection, table: str) -> set[str]:
        """``_columns``, asked once per table while a connection is held: only this process writes the file then,
        and its writes forget what they may change. A step reads a handful of tables ~50 times each, and the
        catalog query was a tenth of a minute table's read (~2 s of a 60-day run's steps)."""
        if not self._holding():
            return self._columns(con, table)
        if table not in self._held_columns:
            self._held_columns[table] = self._columns(con, table)
        return self._held_columns[table]

    @staticmethod
    def _exists(con: duckdb.DuckDBPyConnection, table: str) -> bool:
        return con.execute("SELECT count(*) FROM duckdb_tables() WHERE table_name = ?", [table]).fetchall()[0][0] > 0

    @staticmethod
    def _ensure(con: duckdb.DuckDBPyConnection, table: str) -> None:
        """Create ``table`` if missing. A table an older version wrote gets the schema's new nullable columns
        (NULL on its old rows: e.g. no order-flow features where no book was recorded); any other difference
        is refused."""
        cols = ", ".join(f'"{n}" {t}' for n, t in sql_columns(table))
        con.execute(f"CREATE TABLE IF NOT EXISTS {table} ({cols})")
        want = dict(sql_columns(table))
        for n in schema_difference(table, Warehouse._columns(con, table)):
            con.execute(f'ALTER TABLE {table} ADD COLUMN "{n}" {want[n]}')

    def replace_partitions(self, table: str, frame: Rows, partitions: Iterable[Partition]) -> int:
        """Make ``frame`` the whole content of ``partitions`` in ``table``; returns rows written."""
        return self.replace_partitions_of({table: frame}, partitions)[table]

    def replace_partitions_of(self, frames: dict[str, Rows], partitions: Iterable[Partition],
                              after: dict[str, tuple[str, pd.Timestamp]] | None = None) -> dict[str, int]:
        """Make each frame the whole content of ``partitions`` in its table, all tables in one transaction
        (the live tail's tick and its settled swap land whole or not at all); rows written per table.
        ``after`` {table: (column, t)}: replace only that table's rows with ``column`` later than ``t`` (the
        live tail's new minutes; every row of the frame must be later)."""
        conformed, keys = checked_writes(frames, partitions, after)
        # the partitions' own condition, not a join on their keys: DuckDB skips the row groups its zone maps rule
        # out, where a join read every row's city and day (3 ms of a 3-million-row table for each write, 30 a year's)
        where, params = partition_filter(zip(keys["city"], keys["climate_day"]))
        deletes = {}
        for table in conformed:
            deletes[table] = (f"DELETE FROM {table} t WHERE ({where})", params)
            if after and table in after:
                column, t = after[table]
                deletes[table] = (deletes[table][0] + f" AND t.{column} > TIMESTAMPTZ '{pd.Timestamp(t).isoformat()}'", params)
        return self._swap(conformed, deletes)

    def _swap(self, frames: dict[str, Rows], deletes: dict[str, tuple[str, list]]) -> dict[str, int]:
        """Delete and insert in one transaction: readers see the old rows or the new ones, never a mix."""
        with self.connect() as con:
            for table in frames:
                if self._holding():
                    self._held_columns.pop(table, None)  # created or given new columns, maybe
                self._ensure(con, table)
            con.execute("BEGIN TRANSACTION")
            try:
                for table, frame in frames.items():
                    names = ", ".join(f'"{n}"' for n, _ in sql_columns(table))
                    con.register("incoming_rows", frame)
                    con.execute(*deletes[table])
                    con.execute(f"INSERT INTO {table} ({names}) SELECT {names} FROM incoming_rows")
                    con.unregister("incoming_rows")
                con.execute("COMMIT")
            except BaseException:
                # the rollback first: any other statement in a failed transaction (an unregister too) raises
                # "Current transaction is aborted" and hides the error that aborted it; the rollback also undoes
                # the registration made inside the transaction
                with contextlib.suppress(duckdb.Error):  # a failed COMMIT has rolled back already
                    con.execute("ROLLBACK")
                raise
        return {t: len(f) for t, f in frames.items()}

    def read(self, table: str, partitions: Iterable[Partition] | None = None,
             columns: Iterable[str] | None = None, text_codes: bool = False) -> pd.DataFrame:
        """Rows of ``table`` (for ``partitions`` if given), in the schema's dtypes; empty if never written.
        ``columns`` picks a subset (the partition columns always come along). ``text_codes``: repetitive text
        columns of a large read come as pandas categoricals (what a step sends its workers: pickling a column
        of strings costs a Python call per row, its codes one copy); ``partition_batch.object_text`` turns
        them back."""
        return self._arrow_read(table, partitions, columns).frame(text_codes)

    def read_rows(self, table: str, partitions: Iterable[Partition], columns: Iterable[str] | None = None) -> "RowsRead":
        """The query's Arrow table: the step's process only runs the query, and its worker builds the frame (the
        conversion and the pickling of the frame were ~60% of a step's reading, on the process the step waits for)."""
        return self._arrow_read(table, partitions, columns)

    def _arrow_read(self, table: str, partitions: Iterable[Partition] | None, columns: Iterable[str] | None) -> "RowsRead":
        only = None if columns is None else [*PARTITION_COLUMNS, *(c for c in columns if c not in PARTITION_COLUMNS)]
        if table not in TABLES:
            raise KeyError(f"unknown table {table!r}")
        with self.connect(read_only=True) as con:
            have = self._stored_columns(con, table)
            if not have:
                return RowsRead(table, only, None)
            source, params = f"FROM {table} t", []
            if partitions is not None:
                where, params = partition_filter(partitions)
                source += f" WHERE {where}"
            rows, absent = self._select_arrow(con, table, source, only, params, have)
        return RowsRead(table, only, rows, absent)

    @staticmethod
    def _select_arrow(con: duckdb.DuckDBPyConnection, table: str, source: str, only: list[str] | None = None,
                      params: list | None = None, have: set[str] | None = None) -> tuple[pa.Table, frozenset[str]]:
        """SELECT every column in insertion order: ``source`` is one table and a WHERE at most, which DuckDB
        guarantees to keep in the table's order (a join would not, and sorting on rowid afterwards was half
        of a minute table's read). The rows come as Arrow (``arrow_frame`` makes them a frame), with the columns an
        older version did not write (``absent``) as NULL."""
        wanted = [(n, t) for n, t in sql_columns(table) if only is None or n in only]
        unknown = set(only or ()) - {n for n, _ in wanted}
        if unknown:
            raise KeyError(f"{table} has no column(s) {sorted(unknown)}")
        have, fields = have or Warehouse._columns(con, table), schema(table).columns
        absent = {n for n, _ in wanted if n not in have and fields[n].nullable}  # added since an older version wrote it
        cols = [f"NULL::{t} AS {n}" if n in absent else f"t.{n}" for n, t in wanted]
        return _arrow_table(con.sql(f"SELECT {', '.join(cols)} {source}", params=list(params or []))), frozenset(absent)

    def replace_table(self, table: str, frame: pd.DataFrame) -> int:
        """Replace every row of an unpartitioned table (one transaction)."""
        return self._swap({table: conform(table, frame)}, {table: (f"DELETE FROM {table}", [])})[table]

    def query(self, sql: str, params: list | None = None, needs: Iterable[str] = ()) -> pd.DataFrame:
        """A read-only query; empty if any table in ``needs`` was never written."""
        with self.connect(read_only=True) as con:
            for table in needs:
                if not self._exists(con, table):
                    return pd.DataFrame()
            return con.execute(sql, params or []).df()

    def partitions(self, table: str) -> set[Partition]:
        with self.connect(read_only=True) as con:
            if not self._exists(con, table):
                return set()
            rows = con.execute(f"SELECT DISTINCT city, climate_day FROM {table}").fetchall()
        return {(c, d) for c, d in rows}
