"""Evaluation (group ``evaluation``): proper scores of every probability source across all
materialized partitions, before and after calibration, against the settled bracket."""

import dagster as dg
import pandas as pd

from kw_assets import parallel
from kw_assets.cities import all_cities
from kw_assets.defs.materialize import reject, schema_check, table_metadata
from kw_assets.reporting import markdown_table
from kw_assets.defs.resources import WAREHOUSE_KIND, WAREHOUSE_POOL, WarehouseResource
from kw_assets.model.evaluation import ScoreSums
from kw_assets.model.scores import ECE_BINS
from kw_assets.sources import SIMULATED_BANNER
from kw_assets.queries import over_settled_months, settled_months
from kw_assets.schemas import TableInvalid, validate


class ScoresConfig(dg.Config):
    sample_every_min: int = 5


@dg.asset(group_name="evaluation", pool=WAREHOUSE_POOL, owners=["team:kw-quant"], kinds={"python", WAREHOUSE_KIND},
          deps=["calibrated_pmf", "settlement", "kalshi_markets"],
          check_specs=[schema_check("forecast_scores")],
          description="Brier, log loss, RPS and ECE (10 equal-width bins on bracket probabilities) for the market, "
                      "weather, fused and calibrated PMFs and a walk-forward climatology, overall, by city and by "
                      "hour of the climate day (LST), over every settled partition in the warehouse.")
def forecast_scores(context: dg.AssetExecutionContext, config: ScoresConfig, warehouse: WarehouseResource):
    with parallel.collecting_only_new_objects():  # as every step: full collections skip what it began with
        yield from _forecast_scores(context, config, warehouse)


def _forecast_scores(context: dg.AssetExecutionContext, config: ScoresConfig, warehouse: WarehouseResource):
    wh = warehouse.get()
    n_brackets, months = settled_months(wh)
    if not n_brackets:
        raise dg.Failure("forecast_scores: no settled partitions with calibrated PMFs in the warehouse yet")
    markets, settled = wh.read("kalshi_markets"), wh.read("settlement")
    offsets = {c.key: pd.Timedelta(hours=-c.lst_utc_offset_hours) for c in all_cities()}

    def month(rows: pd.DataFrame) -> tuple[dict, set[str], int]:
        return (ScoreSums(n_brackets).chunk_sums(rows, markets, settled, offsets), set(rows["source"].unique()),
                rows[["city", "climate_day"]].drop_duplicates().shape[0])

    sums, sources, partitions = ScoreSums(n_brackets), set(), 0
    for month_sums, month_sources, month_partitions in over_settled_months(wh, config.sample_every_min, months, month):
        sums.merge(month_sums)  # in month order: the sums of one process adding month after month, to the bit
        sources |= month_sources
        partitions += month_partitions
    scores, rel = sums.tables()
    scores.insert(0, "source", ", ".join(sorted(sources)))
    try:
        scores = validate("forecast_scores", scores)
    except TableInvalid as exc:
        yield from reject("forecast_scores", exc.failures, f"{exc}; nothing was written")
    wh.replace_table("forecast_scores", scores)
    overall = scores[scores["group_by"] == "all"].drop(columns=["group_by", "group_value"])
    meta = {**table_metadata("forecast_scores"), "dagster/row_count": dg.MetadataValue.int(len(scores)), "partitions": dg.MetadataValue.int(partitions),
            "source": dg.MetadataValue.text(", ".join(sorted(sources))),
            "ece_bins": dg.MetadataValue.text(f"{ECE_BINS} equal-width bins on [0, 1], bracket-level probabilities"),
            "scores": dg.MetadataValue.md(markdown_table(overall)),
            **{f"reliability_{k}": dg.MetadataValue.md(markdown_table(v)) for k, v in rel.items()}}
    if "simulated" in sources:
        meta["warning"] = dg.MetadataValue.text(SIMULATED_BANNER)
    yield dg.MaterializeResult(metadata=meta)
    yield dg.AssetCheckResult(check_name="forecast_scores_schema", passed=True,
                              metadata={"rows_checked": dg.MetadataValue.int(len(scores))})


evaluation_assets = [forecast_scores]
