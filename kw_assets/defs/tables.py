"""One way to write a city x climate-day table: ``derived_table`` for a table computed from stored
tables, ``fetched_table`` for a raw table fetched from a source.

    @derived_table("fused_pmf", group="probabilities", time_column="minute_ts", config=FusionRunConfig,
                   inputs={"minute_panel": (...columns...), "weather_pmf": None}, description="...")
    def fused_pmf(context, warehouse, config):
        cfg = build(FusionConfig, config)          # once per run: settings, fits, shared reads
        return lambda city, day, data: fuse_panel(data["minute_panel"], data["weather_pmf"], cfg)

The decorated function prepares a run and returns ``produce(city, day, inputs) -> frame``, the work of one
partition (a call into ``model/``). The factory owns the rest: the partitions, single-run backfills, the
``duckdb`` pool, the upstream assets (``inputs`` plus ``deps`` read by the preparation), the blocking
schema check, the table's metadata, and reading, validating and writing every partition of the run
(``materialize.write_partitions``).
"""

import inspect
from dataclasses import dataclass
from typing import Callable, Iterable

import dagster as dg

from kw_assets import parallel
from kw_assets.defs.materialize import schema_check, write_partitions
from kw_assets.partition_batch import Inputs
from kw_assets.defs.resources import MarketDataResource, WAREHOUSE_KIND, WAREHOUSE_POOL, WarehouseResource
from kw_assets.partitions import city_day_partitions
from kw_assets.sources.http import ClientPerProcess
from kw_assets.warehouse import Warehouse

Prepare = Callable[[dg.AssetExecutionContext, Warehouse, dg.Config | None], Callable]


def derived_table(table: str, *, group: str, inputs: Inputs, description: str, time_column: str | None,
                  config: type[dg.Config] | None = None, deps: Iterable[str] = (), required: tuple[str, ...] = (),
                  owners: tuple[str, ...] = ("team:kw-quant",)) -> Callable[[Prepare], dg.AssetsDefinition]:
    """A table computed from stored tables: ``inputs`` are read per chunk of partitions (tables, or tables ->
    the columns used), of which ``required`` must have rows; ``config`` is the asset's run config class
    (None: no run config). Rows carry the ``source`` of the partition's first non-empty input."""
    def make(prepare: Prepare) -> dg.AssetsDefinition:
        def run(context, warehouse: WarehouseResource, run_config):
            wh = warehouse.get()
            with parallel.collecting_only_new_objects():
                with parallel.reusing_freed_memory():  # the run's fits allocate and free the same arrays per iteration
                    produce = prepare(context, wh, run_config)
                yield from write_partitions(context, wh, table, time_column, produce, inputs, required,
                                            workers=warehouse.workers)

        if config is None:
            def compute(context: dg.AssetExecutionContext, warehouse: WarehouseResource):
                yield from run(context, warehouse, None)
        else:
            def compute(context: dg.AssetExecutionContext, config, warehouse: WarehouseResource):
                yield from run(context, warehouse, config)
            compute.__annotations__["config"] = config  # Dagster reads the run config's schema from it
        return _table_asset(table, group, sorted(set(inputs) | set(deps)), description, owners, prepare, compute)

    return make


@dataclass
class Fetch:
    """How a raw table's partitions are fetched in one run: the source written on every row (``simulated``,
    ``live``, ``file`` or ``none``), ``produce(city, day, inputs)``, and the per-process client whose request
    counts reach the metadata (None for files and for no source)."""

    source: str
    produce: Callable
    client: ClientPerProcess | None = None


def fetched_table(table: str, *, time_column: str, description: str, inputs: tuple[str, ...] = (),
                  required: tuple[str, ...] = (), owners: tuple[str, ...] = ("team:kw-data",)
                  ) -> Callable[[Callable[[MarketDataResource], Fetch]], dg.AssetsDefinition]:
    """A raw table: the decorated function turns the ``market_data`` resource into a ``Fetch``. Live
    sources fetch in one process (one token bucket for the rate limit); the others in the step's workers."""
    def make(plan: Callable[[MarketDataResource], Fetch]) -> dg.AssetsDefinition:
        def compute(context: dg.AssetExecutionContext, market_data: MarketDataResource, warehouse: WarehouseResource):
            fetch = plan(market_data)
            workers = 1 if fetch.source == "live" else warehouse.workers
            try:
                with parallel.collecting_only_new_objects():
                    yield from write_partitions(context, warehouse.get(), table, time_column, fetch.produce, inputs,
                                                required, source=fetch.source, workers=workers,
                                                counters=fetch.client.stats if fetch.client else None)
            finally:
                if fetch.client is not None:
                    fetch.client.close()

        return _table_asset(table, "raw", list(inputs), description, owners, plan, compute)

    return make


def _table_asset(table: str, group: str, deps: list[str], description: str, owners: tuple[str, ...],
                 defined: Callable, compute: Callable) -> dg.AssetsDefinition:
    compute.__name__ = table
    where = dg.LocalFileCodeReference(file_path=inspect.getsourcefile(defined),
                                      line_number=inspect.getsourcelines(defined)[1])
    return dg.asset(
        name=table, partitions_def=city_day_partitions, backfill_policy=dg.BackfillPolicy.single_run(),
        group_name=group, pool=WAREHOUSE_POOL, owners=list(owners), kinds={"python", WAREHOUSE_KIND}, deps=deps,
        check_specs=[schema_check(table)], description=description,
        metadata={"dagster/code_references": dg.CodeReferencesMetadataValue(code_references=[where])},
    )(compute)
