"""The warehouse on PostgreSQL (``KW_WAREHOUSE=postgresql://...``): the DuckDB ``Warehouse``'s interface and
contract for a desk where several processes and machines write at once.

- Tables come from the same Pandera models as DuckDB's (``schemas.sql_columns``), each with an index on
  (city, climate_day) and a hidden ``_seq`` (identity) that keeps the order rows were written in.
- A partition swap is one transaction: the named partitions' rows deleted (or, for the live tail, only
  their rows after a stamp) and the new ones copied in with ``COPY ... FROM STDIN`` from CSV that Arrow writes;
  readers (MVCC) see the old rows or the new ones, never half. Writers of different partitions do not
  wait for each other; two writers of the same partition are serialised by an advisory lock on it.
- ``query`` takes the DuckDB warehouse's ``?`` placeholders.
"""

from __future__ import annotations

import contextlib
import zlib
from typing import Iterable, Iterator

import pandas as pd
import psycopg
import pyarrow as pa
import pyarrow.csv as pa_csv

from kw_assets.schemas import PARTITION_COLUMNS, TABLES, conform, sql_columns
from kw_assets.warehouse import HeldConnection, Partition, checked_writes, schema_difference

PG_TYPES = {"DOUBLE": "double precision", "BIGINT": "bigint", "BOOLEAN": "boolean", "VARCHAR": "text",
            "DATE": "date", "TIMESTAMPTZ": "timestamptz"}


class PostgresWarehouse(HeldConnection):
    """The warehouse in the PostgreSQL database at ``url``."""

    def __init__(self, url: str):
        self.url = url

    def __repr__(self) -> str:  # the URL may carry a password
        return f"PostgresWarehouse({psycopg.conninfo.conninfo_to_dict(self.url).get('dbname', '?')})"

    @contextlib.contextmanager
    def connect(self, read_only: bool = False) -> Iterator[psycopg.Connection]:
        if self._holding():
            yield self._held
            return
        with psycopg.connect(self.url, autocommit=True) as con:
            con.execute("SET TimeZone = 'UTC'")
            yield con

    # --- tables ------------------------------------------------------------------------------------
    @staticmethod
    def _columns(con: psycopg.Connection, table: str) -> set[str]:
        rows = con.execute("SELECT column_name FROM information_schema.columns WHERE table_schema = current_schema() "
                           "AND table_name = %s", [table]).fetchall()
        return {r[0] for r in rows} - {"_seq"}

    @staticmethod
    def _exists(con: psycopg.Connection, table: str) -> bool:
        return con.execute("SELECT to_regclass(%s) IS NOT NULL", [table]).fetchone()[0]

    @staticmethod
    def _ensure(con: psycopg.Connection, table: str) -> None:
        """Create ``table`` if missing (serialised across processes by an advisory lock: concurrent CREATEs
        of one table collide in the catalog), and add the schema's new nullable columns to an older one."""
        if PostgresWarehouse._exists(con, table):
            missing = schema_difference(table, PostgresWarehouse._columns(con, table))
        else:
            with con.transaction():
                con.execute("SELECT pg_advisory_xact_lock(%s)", [zlib.crc32(table.encode())])
                cols = ", ".join(f'"{n}" {PG_TYPES[t]}' for n, t in sql_columns(table))
                con.execute(f"CREATE TABLE IF NOT EXISTS {table} (_seq bigint GENERATED ALWAYS AS IDENTITY, {cols})")
                if {"city", "climate_day"} <= {n for n, _ in sql_columns(table)}:
                    con.execute(f"CREATE INDEX IF NOT EXISTS {table}_partition ON {table} (city, climate_day)")
            missing = schema_difference(table, PostgresWarehouse._columns(con, table))
        want = dict(sql_columns(table))
        for n in missing:
            con.execute(f'ALTER TABLE {table} ADD COLUMN IF NOT EXISTS "{n}" {PG_TYPES[want[n]]}')

    # --- writes ------------------------------------------------------------------------------------
    def replace_partitions(self, table: str, frame: pd.DataFrame, partitions: Iterable[Partition]) -> int:
        return self.replace_partitions_of({table: frame}, partitions)[table]

    def replace_partitions_of(self, frames: dict[str, pd.DataFrame], partitions: Iterable[Partition],
                              after: dict[str, tuple[str, pd.Timestamp]] | None = None) -> dict[str, int]:
        """As ``Warehouse.replace_partitions_of``: every table's partitions swapped in one transaction."""
        conformed, keys = checked_writes(frames, partitions, after)
        conformed = {t: conform(t, f.to_pandas()) if isinstance(f, pa.Table) else f for t, f in conformed.items()}
        cities = keys["city"].tolist()
        days = [d.date() for d in keys["climate_day"]]
        with self.connect() as con:
            for table in conformed:
                self._ensure(con, table)
            with con.transaction():
                for city, day in sorted(zip(cities, days)):  # the same order in every writer: no deadlock
                    con.execute("SELECT pg_advisory_xact_lock(%s)", [zlib.crc32(f"{city}|{day}".encode())])
                for table, frame in conformed.items():
                    where = ("(city, climate_day) IN (SELECT * FROM unnest(%s::text[], %s::date[]))")
                    params: list = [cities, days]
                    if after and table in after:
                        column, t = after[table]
                        where += f' AND "{column}" > %s'
                        params.append(pd.Timestamp(t).to_pydatetime())
                    con.execute(f"DELETE FROM {table} WHERE {where}", params)
                    _copy(con, table, frame)
        return {t: len(f) for t, f in conformed.items()}

    def replace_table(self, table: str, frame: pd.DataFrame) -> int:
        frame = conform(table, frame)
        with self.connect() as con:
            self._ensure(con, table)
            with con.transaction():
                con.execute(f"DELETE FROM {table}")
                _copy(con, table, frame)
        return len(frame)

    # --- reads -------------------------------------------------------------------------------------
    def read(self, table: str, partitions: Iterable[Partition] | None = None,
             columns: Iterable[str] | None = None, text_codes: bool = False) -> pd.DataFrame:
        """As ``Warehouse.read``: rows in the order written, in the schema's dtypes; empty if never written.
        Text comes as strings whatever ``text_codes`` says (COPY sends it as text)."""
        if table not in TABLES:
            raise KeyError(f"unknown table {table!r}")
        only = None if columns is None else [*PARTITION_COLUMNS, *(c for c in columns if c not in PARTITION_COLUMNS)]
        wanted = [n for n, _ in sql_columns(table) if only is None or n in only]
        unknown = set(only or ()) - set(wanted)
        if unknown:
            raise KeyError(f"{table} has no column(s) {sorted(unknown)}")
        with self.connect(read_only=True) as con:
            if not self._exists(con, table):
                return conform(table, pd.DataFrame(), only)
            have = self._columns(con, table)
            where, params = "", []
            if partitions is not None:
                keys = sorted(set(partitions))
                where = " WHERE (city, climate_day) IN (SELECT * FROM unnest(%s::text[], %s::date[]))"
                params = [[c for c, _ in keys], [pd.Timestamp(d).date() for _, d in keys]]
            types = dict(sql_columns(table))
            cols = ", ".join(_as_text(n, types[n]) if n in have else f"NULL AS {n}" for n in wanted)
            out = _copy_out(con, f"SELECT {cols} FROM {table}{where} ORDER BY _seq", params, wanted, types)
        return conform(table, out, only)

    def query(self, sql: str, params: list | None = None, needs: Iterable[str] = ()) -> pd.DataFrame:
        """A read-only query (``?`` placeholders); empty if any table in ``needs`` was never written."""
        with self.connect(read_only=True) as con:
            if any(not self._exists(con, t) for t in needs):
                return pd.DataFrame()
            with con.cursor() as cur:
                cur.execute(sql.replace("%", "%%").replace("?", "%s"), params or [])
                names = [d.name for d in cur.description]
                return pd.DataFrame(cur.fetchall(), columns=names)

    def partitions(self, table: str) -> set[Partition]:
        with self.connect(read_only=True) as con:
            if not self._exists(con, table):
                return set()
            return {(c, d) for c, d in con.execute(f"SELECT DISTINCT city, climate_day FROM {table}").fetchall()}


def _copy(con: psycopg.Connection, table: str, frame: pd.DataFrame) -> None:
    """``frame`` (in the table's schema) into ``table`` by COPY from CSV that Arrow writes (3x faster than
    pandas' ``to_csv``, whose timestamps are formatted one by one): text quoted, NULL (and NaN) an unquoted
    empty field, floats in their shortest round-trip form, timestamps with nanoseconds and ``Z``."""
    if frame.empty:
        return
    names = [n for n, _ in sql_columns(table)]
    buf = pa.BufferOutputStream()
    pa_csv.write_csv(pa.Table.from_pandas(frame[names], preserve_index=False), buf,
                     pa_csv.WriteOptions(include_header=False, quoting_style="needed"))
    cols = ", ".join(f'"{n}"' for n in names)
    with con.cursor() as cur, cur.copy(f"COPY {table} ({cols}) FROM STDIN (FORMAT csv)") as copy:
        copy.write(buf.getvalue())


_ARROW_TYPES = {"DOUBLE": pa.float64(), "BIGINT": pa.int64(), "BOOLEAN": pa.bool_(), "VARCHAR": pa.string(),
                "DATE": pa.date32(), "TIMESTAMPTZ": pa.timestamp("us", tz="UTC")}


def _as_text(name: str, sql_type: str) -> str:
    """A column as COPY should print it for Arrow: timestamps as ISO 8601 in UTC with ``Z``."""
    if sql_type == "TIMESTAMPTZ":
        return f"to_char(\"{name}\" AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"') AS \"{name}\""
    return f'"{name}"'


def _copy_out(con: psycopg.Connection, select: str, params: list, names: list[str],
              types: dict[str, str]) -> pd.DataFrame:
    """``select``'s rows by ``COPY ... TO STDOUT`` as CSV, parsed by Arrow (about twice as fast as fetching
    tuples): an unquoted empty field is NULL, a quoted one the empty text."""
    with con.cursor() as cur, cur.copy(f"COPY ({select}) TO STDOUT (FORMAT csv)", params or None) as copy:
        data = b"".join(bytes(chunk) for chunk in copy)
    if not data:
        return pd.DataFrame(columns=names)
    table = pa_csv.read_csv(
        pa.py_buffer(data),
        read_options=pa_csv.ReadOptions(column_names=names),
        parse_options=pa_csv.ParseOptions(newlines_in_values=True),  # else a quoted newline desyncs Arrow's blocks
        convert_options=pa_csv.ConvertOptions(
            column_types={n: _ARROW_TYPES[types[n]] for n in names}, null_values=[""], strings_can_be_null=True,
            quoted_strings_can_be_null=False, true_values=["t"], false_values=["f"]))
    return table.to_pandas(date_as_object=False)

