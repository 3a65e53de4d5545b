"""Paper trading in the graph (group ``paper``): the tables the paper loop writes (``python -m kw_assets
paper``, outside Dagster) as external assets, so their lineage shows, and ``paper_report`` per city x day:
the paper day's report and, once the day has settled, the paper book next to the backtest, order by order."""

import sys
from pathlib import Path

import dagster as dg
import pandas as pd

from kw_assets.defs.resources import WAREHOUSE_KIND, WAREHOUSE_POOL, WarehouseResource
from kw_assets.model.paper import compare_with_backtest
from kw_assets.model.report import order_outcomes, summary
from kw_assets.partitions import city_day_partitions, split_key
from kw_assets.reporting import markdown_table, write_html
from kw_assets.sources import SIMULATED_BANNER

_HERE = dg.CodeReferencesMetadataValue(code_references=[dg.LocalFileCodeReference(file_path=__file__, line_number=sys._getframe().f_lineno)])
paper_tables = [dg.AssetSpec(name, group_name="paper", owners=["team:kw-quant"], kinds={WAREHOUSE_KIND},
                             metadata={"dagster/code_references": _HERE},
                             description=f"{what} Written by `python -m kw_assets paper` as it trades, not by a Dagster run.")
                for name, what in (("paper_fills", "Every order the paper book sent and every fill it got, as it happened, with the run that recorded it."),
                                   ("paper_orders", "Each paper order's state as last seen."),
                                   ("paper_positions", "The paper book's positions, cash and marks per minute it ticked."))]


class PaperReportConfig(dg.Config):
    folder: str = "data/reports/paper"


@dg.asset(group_name="paper", pool=WAREHOUSE_POOL, owners=["team:kw-quant"], kinds={"python", "html"},
          partitions_def=city_day_partitions, backfill_policy=dg.BackfillPolicy.single_run(),
          deps=["paper_fills", "backtest_fills"],
          description="The paper day's report (P&L after fees, maker/taker split, orders) and, once the day has settled "
                      "and been backtested, the paper book next to the backtest: the same orders and fills, or each "
                      "difference listed (a lookahead in one of them, or diverging code). HTML under data/reports/paper.")
def paper_report(context: dg.AssetExecutionContext, config: PaperReportConfig, warehouse: WarehouseResource):
    wh = warehouse.get()
    for key in context.partition_keys:
        city, day = split_key(key)
        paper = wh.read("paper_fills", [(city, day)])
        meta: dict = {"paper_rows": dg.MetadataValue.int(len(paper))}
        if paper.empty:
            meta["note"] = dg.MetadataValue.text("no paper trading recorded for this day")
            context.add_asset_metadata(meta, partition_key=key)
            continue
        backtest = wh.read("backtest_fills", [(city, day)])
        settled = (paper["action"] == "settle").any()
        tables = {"Orders": order_outcomes(paper)}
        if settled and len(backtest):
            table, differences = compare_with_backtest(paper, backtest)
            tables["Paper vs backtest"] = table
            tables["Differences"] = pd.DataFrame({"difference": differences or ["none: the same orders and fills"]})
            meta["identical_to_backtest"] = dg.MetadataValue.bool(not differences)
            meta["comparison"] = dg.MetadataValue.md(markdown_table(table))
        sources = sorted(set(paper["source"]))
        warning = SIMULATED_BANNER if "simulated" in sources else None
        folder = Path(config.folder) / f"{city}-{day}"
        folder.mkdir(parents=True, exist_ok=True)
        stats = {k: v for k, v in summary(paper).items() if not k.startswith("daily_sharpe")}
        page = write_html(folder, ", ".join(sources), warning, stats, tables, [])
        meta.update({"html": dg.MetadataValue.path(str(page.resolve())), "net_pnl": dg.MetadataValue.float(stats["net_pnl"]),
                     "runs": dg.MetadataValue.text(", ".join(sorted(set(paper["run_id"]))))})
        if warning:
            meta["warning"] = dg.MetadataValue.text(warning)
        context.add_asset_metadata(meta, partition_key=key)
    return dg.MaterializeResult()


paper_assets = [paper_report]
