"""One way to write a derived city x climate-day table.

    @derived_table("fused_pmf", group="probabilities", time_column="minute_ts", config=FusionRunConfig,
                   inputs={"minute_panel": (...columns...), "weather_pmf": None}, description="...")
    def fused_pmf(context, warehouse, config):
        cfg = build(FusionConfig, config)          # once per run: settings, fits, shared reads
        return lambda city, day, data: fuse_panel(data["minute_panel"], data["weather_pmf"], cfg)

The decorated function prepares a run and returns ``produce(city, day, inputs) -> frame``, the work of one
partition (a call into ``model/``). The factory owns the rest: the partitions, single-run backfills, the
``duckdb`` pool, the upstream assets (``inputs`` plus ``deps`` read by the preparation), the blocking
schema check, the table's metadata, and reading, validating and writing every partition of the run
(``materialize.derive_partitions``).
"""

import inspect
from typing import Callable, Iterable

import dagster as dg

from kw_assets.defs.materialize import Inputs, derive_partitions, schema_check
from kw_assets.defs.resources import WarehouseResource
from kw_assets.partitions import city_day_partitions
from kw_assets.warehouse import Warehouse

Prepare = Callable[[dg.AssetExecutionContext, Warehouse, dg.Config | None], Callable]


def derived_table(table: str, *, group: str, inputs: Inputs, description: str, time_column: str | None,
                  config: type[dg.Config] | None = None, deps: Iterable[str] = (),
                  owners: tuple[str, ...] = ("team:kw-quant",)) -> Callable[[Prepare], dg.AssetsDefinition]:
    def make(prepare: Prepare) -> dg.AssetsDefinition:
        def run(context, warehouse: WarehouseResource, run_config):
            wh = warehouse.get()
            produce = prepare(context, wh, run_config)
            yield from derive_partitions(context, wh, table, time_column, produce, inputs, workers=warehouse.workers)

        if config is None:
            def compute(context: dg.AssetExecutionContext, warehouse: WarehouseResource):
                yield from run(context, warehouse, None)
        else:
            def compute(context: dg.AssetExecutionContext, config, warehouse: WarehouseResource):
                yield from run(context, warehouse, config)
            compute.__annotations__["config"] = config  # Dagster reads the run config's schema from it
        compute.__name__ = table
        where = dg.LocalFileCodeReference(file_path=inspect.getsourcefile(prepare),
                                          line_number=inspect.getsourcelines(prepare)[1])
        return dg.asset(
            name=table, partitions_def=city_day_partitions, backfill_policy=dg.BackfillPolicy.single_run(),
            group_name=group, pool="duckdb", owners=list(owners), kinds={"python", "duckdb"},
            deps=sorted(set(inputs) | set(deps)), check_specs=[schema_check(table)], description=description,
            metadata={"dagster/code_references": dg.CodeReferencesMetadataValue(code_references=[where])},
        )(compute)

    return make
