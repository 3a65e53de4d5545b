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
from dagster._core.execution.context.metadata_logging import AssetMetadataHandle, OutputMetadataAccumulator
import pandas as pd
import pyarrow as pa

from kw_assets.cities import City, get_city
from kw_assets.errors import DataError
from kw_assets.partition_batch import Inputs, Outcome, Produce, Summary, produced
from kw_assets.partitions import split_key
from kw_assets.reporting import markdown_table
from kw_assets.schemas import TableInvalid, schema
from kw_assets.sources import SIMULATED_BANNER
from kw_assets.sources.http import ApiError
from kw_assets.warehouse import Warehouse, WriteBehind

WRITE_BATCH = 48
PROGRESS_EVERY_S = 10.0


def column_schema(table: str) -> dg.TableSchema:
    """``dagster/column_schema`` from the table's Pandera model: name, dtype, nullability, uniqueness and checks."""
    cols = []
    for name, col in schema(table).columns.items():
        checks = "; ".join(str(getattr(c, "error", None) or c.name) for c in col.checks)
        cols.append(dg.TableColumn(name, str(col.dtype), description=col.description or checks or None,
                                   constraints=dg.TableColumnConstraints(nullable=bool(col.nullable), unique=bool(col.unique))))
    return dg.TableSchema(columns=cols)


def table_metadata(table: str) -> dict:
    """What the UI shows of a table on its definition, and on an unpartitioned table's materialization."""
    return {"dagster/column_schema": column_schema(table), "dagster/table_name": table_name(table)}


def table_name(table: str) -> dg.MetadataValue:
    return dg.MetadataValue.text(f"warehouse.main.{table}")


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
    rows, done, failures, failure_rows, seen, totals, per_partition = 0, 0, {}, [], set(), {}, {}
    batch: list[tuple[Outcome, pa.Table]] = []
    spent = {"read": 0.0, "wait for workers": 0.0, "write": 0.0}
    started = last_log = time.monotonic()
    # one connection for the step's reads, opened by ``produced`` once its workers are forked; the writes go
    # on behind on another, while the next chunks are read and computed
    with warehouse.written_behind() as behind:
        for outcomes, counted in produced(warehouse, table, pairs, produce, inputs, required, source, workers, counters,
                                          lambda level, message: context.log.log(level, message), spent, time_column):
            t0 = time.perf_counter()
            for k, v in counted.items():
                totals[k] = totals.get(k, 0) + v
            for o in outcomes:
                if o.error is not None:
                    failures[o.key] = _failure(context, table, o, failure_rows)
                    continue
                batch.append((o, o.frame))
                seen.update(o.summary.sources)
                per_partition[o.key] = _partition_metadata(o.summary)
            done += len(outcomes)
            if len(batch) >= WRITE_BATCH or done == len(pairs):
                rows += _write_behind(behind, table, batch)
                batch = []
            spent["write"] += time.perf_counter() - t0
            now = time.monotonic()
            if len(pairs) > 1 and (now - last_log > PROGRESS_EVERY_S or done == len(pairs)):
                rate = done / max(now - started, 1e-9)
                context.log.info(f"{table}: {done}/{len(pairs)} partitions, {rate:.1f}/s, ETA {(len(pairs) - done) / rate:.0f}s")
                last_log = now
        rows += _write_behind(behind, table, batch)  # nothing left, unless a partition went missing on the way
        t0 = time.perf_counter()
        behind.wait()
        spent["write"] += time.perf_counter() - t0
    spent["written behind"] = behind.seconds
    add_partition_metadata(context, table, per_partition)
    context.log.info(f"{table}: {len(pairs)} partitions with {workers} worker(s); "
                     + ", ".join(f"{k} {v:.1f} s" for k, v in spent.items()))
    if failures:
        cases = pd.concat(failure_rows, ignore_index=True) if failure_rows else pd.DataFrame()
        yield from reject(table, cases, f"{table}: {len(failures)} of {len(pairs)} partition(s) rejected; nothing was "
                                        f"written for them. " + " | ".join(list(failures.values())[:3]),
                          {"failed_partitions": dg.MetadataValue.json(failures)})
    # on every partition's event: what is true of each; the run's totals say "run_" (and go to the log). The
    # column schema is the definition's (``definitions.py``), not repeated on each event: with it an event took
    # 0.44 ms to serialize, without it 0.07, and a year x 7 run stores ~33,000 of them
    meta: dict = {"dagster/table_name": table_name(table), "source": dg.MetadataValue.text(", ".join(sorted(seen)) or source or "-"),
                  "run_rows": dg.MetadataValue.int(rows), "run_partitions": dg.MetadataValue.int(len(pairs)),
                  **{f"run_{k}": dg.MetadataValue.int(v) for k, v in totals.items()}}
    if "simulated" in seen or source == "simulated":
        meta["warning"] = dg.MetadataValue.text(SIMULATED_BANNER)
    context.log.info(f"{table}: wrote {rows} rows in {len(pairs)} partition(s)" + "".join(f", {k} {v}" for k, v in totals.items()))
    yield dg.MaterializeResult(asset_key=table, metadata=meta)
    yield dg.AssetCheckResult(check_name=f"{table}_schema", asset_key=table, passed=True,
                              metadata={"rows_checked": dg.MetadataValue.int(rows)})


def add_partition_metadata(context: dg.AssetExecutionContext, table: str, per_partition: dict[str, dict]) -> None:
    """Each partition's own metadata, for its materialization event. Dagster's ``add_asset_metadata`` rebuilds
    and re-checks everything added before on each call: quadratic in a run's partitions, ~2 s a step at a year
    x 7. Where the step's accumulator is the one Dagster 1.13 keeps, all partitions go in with one rebuild
    (the keys are the run's own, which that call checks); otherwise one call each."""
    step = getattr(context, "_step_execution_context", None)
    kept = getattr(step, "_metadata_accumulator", None)
    if not isinstance(kept, OutputMetadataAccumulator):
        for key, meta in per_partition.items():
            context.add_asset_metadata(meta, asset_key=table, partition_key=key)
        return
    merged = dict(kept.per_output_metadata)
    for key, meta in per_partition.items():
        handle = AssetMetadataHandle(asset_key=dg.AssetKey(table), partition_key=key)
        merged[handle] = {**merged.get(handle, {}), **meta}
    step._metadata_accumulator = OutputMetadataAccumulator(per_output_metadata=merged)


def _write_behind(behind: WriteBehind, table: str, batch: list[tuple[Outcome, pa.Table]]) -> int:
    """Hands a batch of partitions to the writer (one transaction); the rows it will write."""
    if not batch:
        return 0
    rows = pa.concat_tables([f for _, f in batch], promote_options="permissive")
    partitions = [(o.city.key, o.day) for o, _ in batch]
    behind.submit(lambda wh: wh.replace_partitions(table, rows, partitions))
    return rows.num_rows


def _partition_metadata(summary: Summary) -> dict:
    """This partition's own row count, time span and first rows (its event in the UI, not the run's)."""
    meta = {"dagster/row_count": dg.MetadataValue.int(summary.rows), "preview": dg.MetadataValue.md(summary.preview)}
    if summary.span:
        meta["time_span"] = dg.MetadataValue.text(f"{summary.span[0]} .. {summary.span[1]}")
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
