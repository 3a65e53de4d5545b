"""Backtest layer (group ``backtest``): fills and the equity path per partition, and the report."""

from pathlib import Path
from typing import Optional

import dagster as dg
import pandas as pd

from kw_assets.cities import all_cities
from kw_assets.defs.config import build, run_config_from
from kw_assets.defs.resources import WarehouseResource
from kw_assets.defs.tables import derived_table
from kw_assets.model.backtest import ExecutionConfig, equity_path, run_backtest
from kw_assets.model.fills import FillConfig, Tape
from kw_assets.model.report import entry_orders
from kw_assets.model.strategy import StrategyConfig, signal_intents
from kw_assets import reporting
from kw_assets.queries import entry_mids, settled_calibrated_by_month


TAPE_COLUMNS = ("minute_ts", "market_ticker", "bracket_index", "yes_bid", "yes_ask", "last_price", "mid", "volume")
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
        return run_backtest(tape, intents, int(s["winning_bracket_index"].iloc[0]), opposite, fills_cfg, exec_cfg)
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
        return equity_path(fills, tape)
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
    keep = ((fills["climate_day"] >= pd.Timestamp(config.first_day or fills["climate_day"].min()))
            & (fills["climate_day"] <= pd.Timestamp(config.last_day or fills["climate_day"].max()))
            & (fills["city"].isin(config.cities) if config.cities else True))
    fills = fills[keep] if len(fills) else fills
    if fills.empty:
        raise dg.Failure("backtest_report: no backtest_fills in the warehouse for the selected range")
    report = reporting.write_report(
        Path(config.folder), fills, wh.read("forecast_scores"), settled_calibrated_by_month(wh, config.sample_every_min),
        wh.read("kalshi_markets"), wh.read("settlement"), entry_mids(wh, entry_orders(fills)),
        {c.key: pd.Timedelta(hours=c.lst_utc_offset_hours) for c in all_cities()})
    yield dg.MaterializeResult(metadata={
        "report": dg.MetadataValue.md(report.markdown()),
        "plots": dg.MetadataValue.md(reporting.markdown_plots(report.images)),
        "html": dg.MetadataValue.path(str(report.page.resolve())),
        **{f"plot_{p.stem}": dg.MetadataValue.path(str(p.resolve())) for p in report.images},
        "net_pnl": dg.MetadataValue.float(report.stats["net_pnl"]), "fees": dg.MetadataValue.float(report.stats["fees"]),
        "source": dg.MetadataValue.text(report.source),
    })


backtest_assets = [backtest_fills, backtest_pnl, backtest_report]
