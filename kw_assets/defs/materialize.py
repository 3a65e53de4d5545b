"""How every partitioned asset writes: for each partition key of the run (one or a whole backfill
range spanning cities and dates), produce the frame, conform it to the table's schema, validate it,
and replace that partition's rows. Invalid partitions write nothing; the run reports a failed
blocking check that lists them, with the offending rows, and then fails.
"""

from __future__ import annotations

import datetime as dt
import time
from typing import Callable, Iterable, Iterator

import dagster as dg
import pandas as pd

from kw_assets.cities import City, get_city
from kw_assets.errors import DataError
from kw_assets.partition_batch import Inputs, Outcome, Produce, produced
from kw_assets.partitions import split_key
from kw_assets.reporting import markdown_table
from kw_assets.schemas import TableInvalid, schema
from kw_assets.sources import SIMULATED_BANNER
from kw_assets.sources.http import ApiError
from kw_assets.warehouse import Warehouse

WRITE_BATCH = 48
PROGRESS_EVERY_S = 10.0
PREVIEW_ROWS = 5


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
    return [(get_city(city), day, str(k)) for k in context.partition_keys for city, day in [split_key(k)]]


def partition_days(context: dg.AssetExecutionContext) -> list[dt.date]:
    """The climate days of this run's partitions, in order."""
    return sorted({day for _, day, _ in partition_pairs(context)})


def write_partitions(context: dg.AssetExecutionContext, warehouse: Warehouse, table: str, time_column: str | None,
                     produce: Produce, inputs: Inputs = (), required: tuple[str, ...] = (), source: str | None = None,
                     workers: int = 1, counters: Callable[[], dict[str, int]] | None = None
                     ) -> Iterable[dg.MaterializeResult | dg.AssetCheckResult]:
    """The loop of every partitioned asset: ``partition_batch.produced`` computes the run's partitions; each
    valid one is written (in batches, each one transaction) with its own metadata event, each invalid one
    is logged; then the run's totals, and a failed blocking check if any partition was rejected."""
    pairs = partition_pairs(context)
    rows, done, failures, failure_rows, seen, totals = 0, 0, {}, [], set(), {}
    batch: list[tuple[Outcome, pd.DataFrame]] = []
    spent = {"read": 0.0, "wait for workers": 0.0, "write": 0.0}
    started = last_log = time.monotonic()
    with warehouse.held():  # one connection for the step's reads and writes
        for outcomes, counted in produced(warehouse, table, pairs, produce, inputs, required, source, workers, counters,
                                          lambda level, message: context.log.log(level, message), spent):
            t0 = time.perf_counter()
            for k, v in counted.items():
                totals[k] = totals.get(k, 0) + v
            for o in outcomes:
                if o.error is not None:
                    failures[o.key] = _failure(context, table, o, failure_rows)
                    continue
                batch.append((o, o.frame))
                seen.update(o.frame["source"].dropna().unique().tolist())
                context.add_asset_metadata(_partition_metadata(o.frame, time_column), asset_key=table, partition_key=o.key)
            done += len(outcomes)
            if len(batch) >= WRITE_BATCH or done == len(pairs):
                rows += _write(warehouse, table, batch)
                batch = []
            spent["write"] += time.perf_counter() - t0
            now = time.monotonic()
            if len(pairs) > 1 and (now - last_log > PROGRESS_EVERY_S or done == len(pairs)):
                rate = done / max(now - started, 1e-9)
                context.log.info(f"{table}: {done}/{len(pairs)} partitions, {rate:.1f}/s, ETA {(len(pairs) - done) / rate:.0f}s")
                last_log = now
        rows += _write(warehouse, table, batch)
    context.log.info(f"{table}: {len(pairs)} partitions with {workers} worker(s); "
                     + ", ".join(f"{k} {v:.1f} s" for k, v in spent.items()))
    if failures:
        cases = pd.concat(failure_rows, ignore_index=True) if failure_rows else pd.DataFrame()
        yield from reject(table, cases, f"{table}: {len(failures)} of {len(pairs)} partition(s) rejected; nothing was "
                                        f"written for them. " + " | ".join(list(failures.values())[:3]),
                          {"failed_partitions": dg.MetadataValue.json(failures)})
    # on every partition's event: what is true of each; the run's totals say "run_" (and go to the log)
    meta: dict = {**table_metadata(table), "source": dg.MetadataValue.text(", ".join(sorted(seen)) or source or "-"),
                  "run_rows": dg.MetadataValue.int(rows), "run_partitions": dg.MetadataValue.int(len(pairs)),
                  **{f"run_{k}": dg.MetadataValue.int(v) for k, v in totals.items()}}
    if "simulated" in seen or source == "simulated":
        meta["warning"] = dg.MetadataValue.text(SIMULATED_BANNER)
    context.log.info(f"{table}: wrote {rows} rows in {len(pairs)} partition(s)" + "".join(f", {k} {v}" for k, v in totals.items()))
    yield dg.MaterializeResult(asset_key=table, metadata=meta)
    yield dg.AssetCheckResult(check_name=f"{table}_schema", asset_key=table, passed=True,
                              metadata={"rows_checked": dg.MetadataValue.int(rows)})


def _write(warehouse: Warehouse, table: str, batch: list[tuple[Outcome, pd.DataFrame]]) -> int:
    if not batch:
        return 0
    frame = pd.concat([f for _, f in batch], ignore_index=True)
    return warehouse.replace_partitions(table, frame, [(o.city.key, o.day) for o, _ in batch])


def _partition_metadata(frame: pd.DataFrame, time_column: str | None) -> dict:
    """This partition's own row count, time span and first rows (its event in the UI, not the run's)."""
    meta = {"dagster/row_count": dg.MetadataValue.int(len(frame)),
            "preview": dg.MetadataValue.md(markdown_table(frame.head(PREVIEW_ROWS)) if len(frame) else "(no rows)")}
    if time_column and len(frame):
        meta["time_span"] = dg.MetadataValue.text(f"{frame[time_column].min()} .. {frame[time_column].max()}")
    return meta


def _failure(context, table: str, o: Outcome, failure_rows: list[pd.DataFrame]) -> str:
    """The log line of a rejected partition; its failing rows (or unreadable field) go to ``failure_rows``."""
    exc, key = o.error, o.key
    if isinstance(exc, ApiError):  # the response itself was unusable: say which table it was for
        message = f"partition {key}: table {table}, field <response>: {exc}"
    else:
        message = str(exc) if f"partition {key}" in str(exc) else f"partition {key}: {exc}"
    context.log.error(message)
    if isinstance(exc, TableInvalid):
        failure_rows.append(exc.failures.head(20).assign(partition=key))
    elif isinstance(exc, DataError):  # unreadable before it became a table: the field and what was wrong
        failure_rows.append(pd.DataFrame({"column": [exc.field], "check": ["readable value"],
                                          "failure_case": [exc.detail], "partition": [key]}))
    return message


def reject(table: str, cases: pd.DataFrame, description: str, metadata: dict | None = None) -> Iterator[dg.AssetCheckResult]:
    """Fail the table's blocking schema check (with the failing rows' count and a sample) and the run:
    called before anything is written, so the rejected rows never land and nothing downstream runs."""
    meta = {**(metadata or {}), "failing_rows": dg.MetadataValue.int(len(cases)),
            "failure_cases": dg.MetadataValue.md(markdown_table(cases.astype(str)) if len(cases) else "-")}
    yield dg.AssetCheckResult(check_name=f"{table}_schema", asset_key=table, passed=False,
                              severity=dg.AssetCheckSeverity.ERROR, metadata=meta)
    raise dg.Failure(description=description, metadata=metadata or {})
