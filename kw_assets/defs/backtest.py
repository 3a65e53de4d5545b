"""Backtest layer (group ``backtest``): fills and the equity path per partition, and the report."""

import base64
from pathlib import Path
from typing import Optional

import dagster as dg
import pandas as pd

from kw_assets.cities import all_cities
from kw_assets.defs.config import build, run_config_from
from kw_assets.defs.materialize import markdown_table
from kw_assets.defs.resources import WarehouseResource
from kw_assets.defs.tables import derived_table
from kw_assets.sources import SIMULATED_BANNER
from kw_assets.model.backtest import ExecutionConfig, equity_path, run_backtest
from kw_assets.model.evaluation import score_tables
from kw_assets.model.fills import FillConfig, Tape
from kw_assets.model.report import (NEXT_BAR_MINUTES, bracket_migration, by_city_month, daily_pnl, entry_orders,
                                    next_bar_winners, orders_per_city_day, pnl_by_entry_hour, summary)
from kw_assets.model.strategy import StrategyConfig, signal_intents
from kw_assets import reporting


TAPE_COLUMNS = ("source", "minute_ts", "market_ticker", "bracket_index", "yes_bid", "yes_ask", "last_price", "mid", "volume")
BacktestConfig = run_config_from("BacktestConfig", StrategyConfig, FillConfig, ExecutionConfig,
                                 exclude=("fee_type", "fee_multiplier"))  # fees come from the series


@derived_table("backtest_fills", group="backtest", time_column="fill_ts", config=BacktestConfig,
               inputs={"settlement": None, "kalshi_markets": None,
                       "minute_panel": TAPE_COLUMNS + ("acceleration", "ras", "clv"),
                       "calibrated_pmf": ("minute_ts", "bracket_index", "p_calibrated", "hazard"),
                       "kalshi_trades": ("market_ticker", "created_time", "yes_price", "count", "is_block_trade"),
                       "kalshi_candles": ("market_ticker", "end_period_ts", "price_low", "price_high")},
               description="Every order and fill of the strategy on the minute clock (price, contracts, maker/taker, "
                           "exact fee, cash flow, edge at entry), exits and settlement. Latency >= 1 minute; "
                           "conservative fills.")
def backtest_fills(context, wh, config):
    strategy, fills_cfg = build(StrategyConfig, config), build(FillConfig, config)

    def produce(city, day, data):
        s, markets, panel = data["settlement"], data["kalshi_markets"], data["minute_panel"]
        if s.empty or int(s["winning_bracket_index"].iloc[0]) < 0 or panel.empty:
            return pd.DataFrame()  # not settled (or no market data): nothing to account yet
        exec_cfg = build(ExecutionConfig, config, fee_type=markets["fee_type"].iloc[0],
                         fee_multiplier=float(markets["fee_multiplier"].iloc[0]))
        tape = Tape.build(panel, data["kalshi_trades"], data["kalshi_candles"])
        intents, opposite = signal_intents(panel, data["calibrated_pmf"], strategy, exec_cfg.fee_type, exec_cfg.fee_multiplier)
        out = run_backtest(tape, intents, int(s["winning_bracket_index"].iloc[0]), opposite, fills_cfg, exec_cfg)
        return out.assign(source=panel["source"].iloc[0])
    return produce


@derived_table("backtest_pnl", group="backtest", time_column="minute_ts",
               inputs={"backtest_fills": None, "minute_panel": TAPE_COLUMNS},
               description="Per minute: cash, open contracts, positions marked at mid, equity and cumulative fees; "
                           "a last row after settlement, where equity equals the day's net P&L.")
def backtest_pnl(context, wh, config):
    def produce(city, day, data):
        fills, panel = data["backtest_fills"], data["minute_panel"]
        if fills.empty or panel.empty:
            return pd.DataFrame()
        tape = Tape.build(panel, pd.DataFrame())  # marks only: no prints needed
        return equity_path(fills, tape).assign(source=panel["source"].iloc[0])
    return produce

class ReportConfig(dg.Config):
    folder: str = "data/reports"
    sample_every_min: int = 5
    first_day: Optional[str] = None  # YYYY-MM-DD; default: every materialized partition
    last_day: Optional[str] = None
    cities: Optional[list[str]] = None


@dg.asset(group_name="backtest", pool="duckdb", owners=["team:kw-quant"], kinds={"python", "duckdb", "html"},
          deps=["backtest_fills", "backtest_pnl", "forecast_scores", "calibrated_pmf"],
          description="Net P&L after fees by city and month, trades, hit rate, edge at entry vs realized, fees, "
                      "maker/taker split, daily Sharpe (x sqrt(365)), max drawdown, turnover; scores before and after "
                      "calibration; plots. Written to data/reports/backtest_report.html and shown here.")
def backtest_report(context: dg.AssetExecutionContext, config: ReportConfig, warehouse: WarehouseResource):
    wh = warehouse.get()
    fills = wh.read("backtest_fills")
    if config.first_day:
        fills = fills[fills["climate_day"] >= pd.Timestamp(config.first_day)]
    if config.last_day:
        fills = fills[fills["climate_day"] <= pd.Timestamp(config.last_day)]
    if config.cities:
        fills = fills[fills["city"].isin(config.cities)]
    if fills.empty:
        raise dg.Failure("backtest_report: no backtest_fills in the warehouse for the selected range")
    sources = sorted(fills["source"].unique())
    source = ", ".join(sources)
    warning = SIMULATED_BANNER if "simulated" in sources else None
    banner = " [SIMULATED]" if warning else ""
    folder = Path(config.folder)
    folder.mkdir(parents=True, exist_ok=True)
    stats = summary(fills)
    city_month = by_city_month(fills)
    offsets = {c.key: pd.Timedelta(hours=c.lst_utc_offset_hours) for c in all_cities()}
    scores = wh.read("forecast_scores")
    before_after = scores[(scores["group_by"].isin(["all", "city"])) & (scores["model"].isin(["fused", "calibrated"]))]
    rows = wh.query("SELECT c.*, s.winning_bracket_index AS winner FROM calibrated_pmf c JOIN settlement s "
                    "ON c.city = s.city AND c.climate_day = s.climate_day WHERE s.winning_bracket_index >= 0 "
                    "AND (epoch(c.minute_ts)::BIGINT / 60) % ? = 0", [config.sample_every_min],
                    needs=("calibrated_pmf", "settlement"))
    reliability = {}
    if len(rows):
        rows["minute_ts"] = pd.to_datetime(rows["minute_ts"], utc=True)
        rows["climate_day"] = pd.to_datetime(rows["climate_day"])
        _, rel = score_tables(rows, wh.read("kalshi_markets"), wh.read("settlement"),
                              {k: -v for k, v in offsets.items()})
        reliability = {k: v for k, v in rel.items() if k in ("fused", "calibrated")}
    entries = entry_orders(fills)
    next_bar = next_bar_winners(entry_mids(wh, entries))
    traded_days = fills[["city", "climate_day"]].drop_duplicates().assign(climate_day=lambda d: pd.to_datetime(d["climate_day"]))
    pmf = rows.rename(columns={"p_calibrated": "p"}).merge(traded_days) if len(rows) else pd.DataFrame()
    migration = bracket_migration(pmf, entries)
    in_move = int(migration["entries_in_move"].sum()) if len(migration) else 0
    followed = float(migration["entries_followed"].sum() / in_move) if in_move else float("nan")
    stats.update({f"next_bar_hit_rate_{h}m": float(v) for h, v in zip(next_bar["minutes_after_fill"], next_bar["hit_rate"])})
    stats.update({"migration_entries_in_move": in_move, "migration_followed_share": followed,
                  "migration_mean_abs_drift": float((migration["com_last"] - migration["com_first"]).abs().mean())
                  if len(migration) else float("nan")})
    images = [*reporting.plot_equity(daily_pnl(fills), folder, banner),
              reporting.plot_pnl_by_hour(pnl_by_entry_hour(fills, offsets), folder, banner)]
    if reliability:
        images.append(reporting.plot_reliability(reliability, folder, banner))
    page = reporting.write_html(folder, source, warning, stats,
                                {"Net P&L by city and month": city_month,
                                 "Orders per city-day": orders_per_city_day(fills),
                                 "Next-bar winners (the bought side's mid after the fill)": next_bar,
                                 "Bracket migration (centre of mass of the calibrated PMF, in brackets)": migration,
                                 "Scores before (fused) and after (calibrated) calibration": before_after.drop(columns=["source"])},
                                images)
    md = [f"**Source: {source}**" + (f"\n\n> **{warning}**" if warning else ""),
          "| metric | value |\n|---|---|\n" + "\n".join(f"| {k} | {v:,.4g} |" if isinstance(v, float) else f"| {k} | {v} |"
                                                  for k, v in stats.items()),
          "### By city and month\n" + markdown_table(city_month, 24),
          "### Next-bar winners\n" + markdown_table(next_bar, 8),
          "### Scores before/after calibration\n" + markdown_table(before_after.drop(columns=["source"]), 24)]
    plots = "\n\n".join(f"**{p.stem}**\n\n![{p.stem}](data:image/png;base64,{base64.b64encode(p.read_bytes()).decode()})"
                          for p in images)
    yield dg.MaterializeResult(metadata={
        "report": dg.MetadataValue.md("\n\n".join(md)),
        "plots": dg.MetadataValue.md(plots),
        "html": dg.MetadataValue.path(str(page.resolve())),
        **{f"plot_{p.stem}": dg.MetadataValue.path(str(p.resolve())) for p in images},
        "net_pnl": dg.MetadataValue.float(stats["net_pnl"]), "fees": dg.MetadataValue.float(stats["fees"]),
        "source": dg.MetadataValue.text(source),
    })


def entry_mids(wh, entries: pd.DataFrame) -> pd.DataFrame:
    """Each entry's side and its bracket's mid at the fill minute and ``NEXT_BAR_MINUTES`` later."""
    cols = ["city", "climate_day", "order_id", "side"] + [f"mid_{h}" for h in (0, *NEXT_BAR_MINUTES)]
    if entries.empty:
        return pd.DataFrame(columns=cols)
    offsets = (0, *NEXT_BAR_MINUTES)
    joins = " ".join(f"LEFT JOIN minute_panel p{h} ON p{h}.city = e.city AND p{h}.climate_day = e.climate_day AND "
                     f"p{h}.bracket_index = e.bracket_index AND p{h}.minute_ts = e.fill_ts + INTERVAL {h} MINUTE"
                     for h in offsets)
    sql = (f"SELECT e.city, e.climate_day, e.order_id, e.side, {', '.join(f'p{h}.mid AS mid_{h}' for h in offsets)} "
           f"FROM (SELECT city, climate_day, order_id, any_value(bracket_index) AS bracket_index, any_value(side) AS side, "
           f"min(fill_ts) AS fill_ts FROM backtest_fills WHERE action = 'buy' AND contracts > 0 GROUP BY ALL) e {joins}")
    mids = wh.query(sql, needs=("backtest_fills", "minute_panel"))
    if mids.empty:
        return pd.DataFrame(columns=cols)
    mids["climate_day"] = pd.to_datetime(mids["climate_day"])
    keep = entries[["city", "climate_day", "order_id"]].assign(climate_day=lambda d: pd.to_datetime(d["climate_day"]))
    return keep.merge(mids, on=["city", "climate_day", "order_id"], how="left")[cols]


backtest_assets = [backtest_fills, backtest_pnl, backtest_report]
