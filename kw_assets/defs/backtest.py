"""Backtest layer (group ``backtest``): fills and the equity path per partition, and the report."""

import datetime as dt
from pathlib import Path
from typing import Optional

import dagster as dg
import pandas as pd
from pydantic import Field

from kw_assets.cities import all_cities
from kw_assets.defs.config import build, run_config_from
from kw_assets.defs.resources import WAREHOUSE_KIND, WAREHOUSE_POOL, WarehouseResource
from kw_assets.defs.tables import derived_table
from kw_assets.model.backtest import MARK_COLUMNS, ExecutionConfig, Marks, equity_path, run_backtest
from kw_assets.model.fills import FillConfig, Tape
from kw_assets.model.report import entry_orders
from kw_assets.model.strategy import StrategyConfig, signal_intents
from kw_assets import parallel, reporting
from kw_assets.queries import entry_mids, over_settled_months, settled_months, spread_observations
from kw_assets.model.sweep import SWEPT, day_half_spreads, fill_model_comparison, grid_points, prepare_day, summary, walk_forward
from kw_assets.defs.materialize import reject, schema_check, table_metadata
from kw_assets.schemas import TableInvalid, validate
from kw_assets.sources import SIMULATED_BANNER
from kw_assets.strategy_sweep import BACKTEST_INPUTS, settled_days, sweep_results


BacktestConfig = run_config_from("BacktestConfig", StrategyConfig, FillConfig, ExecutionConfig,
                                 exclude=("fee_type", "fee_multiplier"))  # fees come from the series


@derived_table("backtest_fills", group="backtest", time_column="fill_ts", config=BacktestConfig,
               inputs=BACKTEST_INPUTS, deps=("orderbook_samples",),
               description="Every order and fill of the strategy on the minute clock (price, contracts, maker/taker, "
                           "exact fee, cash flow, edge at entry), exits and settlement. Latency >= 1 minute; "
                           "conservative fills; maker orders queue in the recorded book where the L2 recorder ran.")
def backtest_fills(context, wh, config):
    strategy, fills_cfg = build(StrategyConfig, config), build(FillConfig, config)
    spreads = spread_observations(wh)  # the books observed so far: each day prices its taker from those before it

    def produce(city, day, data):
        s, markets, panel = data["settlement"], data["kalshi_markets"], data["minute_panel"]
        if s.empty or int(s["winning_bracket_index"].iloc[0]) < 0 or panel.empty:
            return pd.DataFrame()  # not settled (or no market data): nothing to account yet
        exec_cfg = build(ExecutionConfig, config, fee_type=markets["fee_type"].iloc[0],
                         fee_multiplier=float(markets["fee_multiplier"].iloc[0]))
        tape = Tape.build(panel, data["kalshi_trades"], data["kalshi_candles"], day_half_spreads(spreads, city.key, markets),
                          levels=data["orderbook_levels"], known=data["orderbook_l2"])
        intents, opposite = signal_intents(panel, data["calibrated_pmf"], strategy, exec_cfg.fee_type, exec_cfg.fee_multiplier)
        return run_backtest(tape, intents, int(s["winning_bracket_index"].iloc[0]), opposite, fills_cfg, exec_cfg)
    return produce


@derived_table("backtest_pnl", group="backtest", time_column="minute_ts",
               inputs={"backtest_fills": None, "minute_panel": MARK_COLUMNS},
               description="Per minute: cash, open contracts, positions marked at mid, equity and cumulative fees; "
                           "a last row after settlement, where equity equals the day's net P&L.")
def backtest_pnl(context, wh, config):
    def produce(city, day, data):
        fills, panel = data["backtest_fills"], data["minute_panel"]
        if fills.empty or panel.empty:
            return pd.DataFrame()
        return equity_path(fills, Marks.of(panel))
    return produce

class ReportConfig(dg.Config):
    folder: str = "data/reports"
    sample_every_min: int = 5
    first_day: Optional[str] = None  # YYYY-MM-DD; default: every materialized partition
    last_day: Optional[str] = None
    cities: Optional[list[str]] = None


@dg.asset(group_name="backtest", pool=WAREHOUSE_POOL, owners=["team:kw-quant"], kinds={"python", WAREHOUSE_KIND, "html"},
          deps=["backtest_fills", "backtest_pnl", "forecast_scores", "calibrated_pmf"],
          description="Net P&L after fees by city and month, trades, hit rate, edge at entry vs realized, fees, "
                      "maker/taker split, daily Sharpe (x sqrt(365)), max drawdown, turnover; scores before and after "
                      "calibration; plots. Written to data/reports/backtest_report.html and shown here.")
def backtest_report(context: dg.AssetExecutionContext, config: ReportConfig, warehouse: WarehouseResource):
    with parallel.collecting_only_new_objects():
        yield from _backtest_report(context, config, warehouse)


def _backtest_report(context: dg.AssetExecutionContext, config: ReportConfig, warehouse: WarehouseResource):
    wh = warehouse.get()
    fills = wh.read("backtest_fills")
    keep = ((fills["climate_day"] >= pd.Timestamp(config.first_day or fills["climate_day"].min()))
            & (fills["climate_day"] <= pd.Timestamp(config.last_day or fills["climate_day"].max()))
            & (fills["city"].isin(config.cities) if config.cities else True))
    fills = fills[keep] if len(fills) else fills
    if fills.empty:
        raise dg.Failure("backtest_report: no backtest_fills in the warehouse for the selected range")
    fill_models = _fill_model_comparison(context, wh, fills)
    n_brackets, months = settled_months(wh)
    report = reporting.write_report(  # the months' scores and migration are worked out a month per worker
        Path(config.folder), fills, wh.read("forecast_scores"),
        (n_brackets, lambda fn: over_settled_months(wh, config.sample_every_min, months, fn)),
        wh.read("kalshi_markets"), wh.read("settlement"), entry_mids(wh, entry_orders(fills)),
        {c.key: pd.Timedelta(hours=c.lst_utc_offset_hours) for c in all_cities()},
        extra_tables={"Maker fills on recorded days: candle model vs queue model": fill_models} if len(fill_models) else None)
    yield dg.MaterializeResult(metadata={
        "report": dg.MetadataValue.md(report.markdown()),
        "plots": dg.MetadataValue.md(reporting.markdown_plots(report.images)),
        "html": dg.MetadataValue.path(str(report.page.resolve())),
        **{f"plot_{p.stem}": dg.MetadataValue.path(str(p.resolve())) for p in report.images},
        "net_pnl": dg.MetadataValue.float(report.stats["net_pnl"]), "fees": dg.MetadataValue.float(report.stats["fees"]),
        "source": dg.MetadataValue.text(report.source),
    })


def _backtest_settings(context: dg.AssetExecutionContext) -> tuple[StrategyConfig, FillConfig, ExecutionConfig]:
    """The strategy, fill and execution settings of the run that last materialized ``backtest_fills`` (the
    defaults if none did), so the report's comparison trades what the backtest traded."""
    event = context.instance.get_latest_materialization_event(dg.AssetKey("backtest_fills"))
    run = context.instance.get_run_by_id(event.run_id) if event is not None else None
    values = (((run.run_config or {}).get("ops") or {}).get("backtest_fills") or {}).get("config") or {} if run else {}
    cfg = BacktestConfig(**values)
    return build(StrategyConfig, cfg), build(FillConfig, cfg), build(ExecutionConfig, cfg)


def _fill_model_comparison(context: dg.AssetExecutionContext, wh, fills: pd.DataFrame) -> pd.DataFrame:
    """Each reported city-day that has a recorded book, traded under both maker fill models."""
    recorded = {(c, pd.Timestamp(d)) for c, d in wh.partitions("orderbook_l2")}
    days = sorted(recorded & set(zip(fills["city"], pd.to_datetime(fills["climate_day"]))))
    if not days:
        return pd.DataFrame()
    strategy, fill_cfg, execution = _backtest_settings(context)
    spreads = spread_observations(wh)
    out = []
    for city, day in days:
        data = {t: wh.read(t, [(city, day.date())], cols) for t, cols in BACKTEST_INPUTS.items()}
        prepared = prepare_day(city, day, data, execution, spreads)
        if prepared is not None:
            out.append(fill_model_comparison(prepared, strategy, fill_cfg))
    context.log.info(f"backtest_report: {len(out)} recorded city-day(s) traded under both maker fill models")
    return pd.concat(out, ignore_index=True) if out else pd.DataFrame()


SweepConfig = run_config_from(
    "SweepConfig", StrategyConfig, FillConfig, ExecutionConfig, exclude=("fee_type", "fee_multiplier", *SWEPT),
    grid_slippage_cushion=(list[float], Field([0.01, 0.02, 0.04], description="entry cushion over fees, dollars")),
    grid_taker_extra_edge=(list[float], Field([0.0, 0.03, 0.06], description="extra edge a taker entry needs")),
    grid_allow_maker=(list[bool], Field([True, False], description="maker entries allowed (else taker only)")),
    grid_contracts=(list[float], Field([10.0], description="contracts per order")),
    window_months=(Optional[int], Field(None, description="months of history a choice looks at (None: all)")),
    first_day=(Optional[str], Field(None, description="YYYY-MM-DD; default: the first settled day")),
    last_day=(Optional[str], Field(None, description="YYYY-MM-DD; default: the last settled day")),
    cities=(Optional[list[str]], Field(None, description="city keys; default: all")))


@dg.asset(group_name="backtest", pool=WAREHOUSE_POOL, owners=["team:kw-quant"], kinds={"python", WAREHOUSE_KIND},
          deps=[*BACKTEST_INPUTS, "orderbook_samples"], check_specs=[schema_check("strategy_sweep")],
          description="The strategy re-run over the stored probabilities for every point of a grid (entry cushion, "
                      "taker edge, maker or taker, size), per month; each month trades the point that did best on "
                      "the days settled before its first market opened (walk-forward), and only those months count "
                      "out of sample.")
def strategy_sweep(context: dg.AssetExecutionContext, config: SweepConfig, warehouse: WarehouseResource):
    wh = warehouse.get()
    points = grid_points({k: getattr(config, f"grid_{k}") for k in SWEPT})
    day = lambda v: dt.date.fromisoformat(v) if v else None  # noqa: E731
    days = settled_days(wh, day(config.first_day), day(config.last_day), config.cities)
    if not days:
        raise dg.Failure("strategy_sweep: no settled city-days with calibrated PMFs in the selected range")
    results, sources, spent = sweep_results(wh, days, points, build(StrategyConfig, config), build(FillConfig, config),
                                            build(ExecutionConfig, config), warehouse.workers, context.log.info)
    monthly = walk_forward(results, points, config.window_months).assign(source=", ".join(sorted(sources)))
    try:
        monthly = validate("strategy_sweep", monthly)
    except TableInvalid as exc:
        yield from reject("strategy_sweep", exc.failures, f"{exc}; nothing was written")
    wh.replace_table("strategy_sweep", monthly)
    s = summary(monthly, results)
    totals = monthly.groupby(["point", *SWEPT], as_index=False)[["net_pnl", "fees", "orders_filled"]].sum()
    path = monthly.loc[monthly["chosen"], ["month", "point", *SWEPT, "city_days", "orders_filled", "net_pnl", "fees"]]
    meta = {**table_metadata("strategy_sweep"), "dagster/row_count": dg.MetadataValue.int(len(monthly)),
            "city_days": dg.MetadataValue.int(len(days)), "points": dg.MetadataValue.int(len(points)),
            "source": dg.MetadataValue.text(", ".join(sorted(sources))),
            **{k: dg.MetadataValue.float(float(v)) if isinstance(v, float) else dg.MetadataValue.int(int(v))
               for k, v in s.items()},
            "walk_forward_path": dg.MetadataValue.md(reporting.markdown_table(path)),
            "points_in_sample": dg.MetadataValue.md(reporting.markdown_table(totals)),
            "seconds": dg.MetadataValue.float(round(spent["wall"], 1))}
    if "simulated" in sources:
        meta["warning"] = dg.MetadataValue.text(SIMULATED_BANNER)
    context.log.info(f"strategy_sweep: {len(days)} city-days x {len(points)} points; out of sample "
                     f"{s['out_of_sample_net_pnl']:.2f} [{s['out_of_sample_ci_low']:.2f}, {s['out_of_sample_ci_high']:.2f}] "
                     f"over {s['out_of_sample_months']} month(s); hindsight best point {s['hindsight_best_point']}: "
                     f"{s['hindsight_best_net_pnl']:.2f}")
    yield dg.MaterializeResult(metadata=meta)
    yield dg.AssetCheckResult(check_name="strategy_sweep_schema", passed=True,
                              metadata={"rows_checked": dg.MetadataValue.int(len(monthly))})


backtest_assets = [backtest_fills, backtest_pnl, backtest_report, strategy_sweep]
