import datetime as dt

import dagster as dg
import numpy as np
import pandas as pd
import pytest

from kw_assets.definitions import defs
from kw_assets.partitions import partition_key
from kw_assets.warehouse import Warehouse

RUN_CONFIG = {"ops": {"weather_pmf": {"config": {"n_paths": 400}},
                      "calibrated_pmf": {"config": {"method": "temperature", "min_samples": 100}}}}


@pytest.mark.slow
def test_the_whole_graph_runs_walk_forward_scores_and_reports(resources, warehouse_path, instance, tmp_path, monkeypatch):
    job = defs.resolve_job_def("all_assets_job")
    run_config = {"ops": {**RUN_CONFIG["ops"], "backtest_report": {"config": {"folder": str(tmp_path / "reports")}}}}
    tags = {"dagster/asset_partition_range_start": str(partition_key("ny", dt.date(2025, 6, 1))),
            "dagster/asset_partition_range_end": str(partition_key("ny", dt.date(2025, 6, 4)))}
    result = job.execute_in_process(instance=instance, resources=resources, tags=tags, run_config=run_config)
    assert result.success
    wh = Warehouse(warehouse_path)
    page = (tmp_path / "reports" / "backtest_report.html").read_text()
    assert "Data source: <b>simulated</b>" in page and "not evidence of edge" in page
    assert {"equity.png", "drawdown.png", "pnl_by_hour.png", "reliability.png"} <= {p.name for p in (tmp_path / "reports").iterdir()}
    fills, pnl = wh.read("backtest_fills"), wh.read("backtest_pnl")
    assert len(fills) and set(fills["source"]) == {"simulated"}
    final = pnl.sort_values("minute_ts").groupby("climate_day")["equity"].last()
    assert np.allclose(final, fills.groupby("climate_day")["cash_flow"].sum().reindex(final.index), atol=1e-9)
    cal = wh.read("calibrated_pmf")
    lineage = cal.groupby("climate_day")[["calibration_method", "fit_end", "fit_days"]].first()
    # nothing known yet: D-1 and D-2 settle only after D's market opens
    assert (lineage.loc["2025-06-01":"2025-06-03", "calibration_method"] == "none").all()
    assert lineage.loc["2025-06-04", "calibration_method"] == "temperature"
    assert lineage.loc["2025-06-04", "fit_end"] == pd.Timestamp("2025-06-01")  # days <= D-3 only
    for table, col, t in [("weather_pmf", "p_weather", "decision_ts"), ("fused_pmf", "p_fused", "minute_ts"),
                          ("calibrated_pmf", "p_calibrated", "minute_ts")]:
        f = wh.read(table)
        assert len(f) and np.allclose(f.groupby(["climate_day", t])[col].sum(), 1.0, atol=1e-9), table
    scores = wh.read("forecast_scores")
    overall = scores[scores["group_by"] == "all"].set_index("model")
    assert {"market", "weather", "fused", "calibrated"} <= set(overall.index)
    assert (overall["rps"] < 0.5).all() and set(scores["source"]) == {"simulated"}
    hours = scores[(scores["group_by"] == "hour_lst") & (scores["model"] == "weather")]
    late = hours[hours["group_value"].astype(int) >= 20]["brier"].mean()
    early = hours[hours["group_value"].astype(int) < 0]["brier"].mean()
    assert late < early  # the weather model sharpens as the day is observed
    check_yesterdays_error_is_read_point_in_time(wh)
    check_bad_scores_fail_their_check_and_are_not_written(resources, instance, wh, monkeypatch)
    check_the_sweep_books_what_the_backtest_booked(resources, instance, wh, fills)
    check_a_recorded_day_queues_its_maker_orders(resources, instance, wh, tmp_path)
    check_the_paper_book_replays_the_backtest_resumes_and_holds_on_stale_inputs(wh, resources, instance, tmp_path)


def check_the_paper_book_replays_the_backtest_resumes_and_holds_on_stale_inputs(wh: Warehouse, resources, instance, tmp_path):
    """The paper loop on a stored day, minute by minute: killed at noon and restarted under another run id,
    it ends with exactly the backtest's orders and fills, none twice; with inputs gone stale it sends nothing."""
    from kw_assets.cities import get_city
    from kw_assets.paper_loop import PaperDay
    day = dt.date(2025, 6, 3)
    backtest = wh.read("backtest_fills", [("ny", day)])
    minutes = pd.DatetimeIndex(wh.read("minute_panel", [("ny", day)], ["minute_ts"])["minute_ts"].unique()).sort_values()
    first = PaperDay(wh, get_city("ny"), day, "run-a").tick(pd.Timestamp(f"{day} 17:00", tz="UTC"))
    assert first.stale is None and first.new_rows > 0
    restarted = PaperDay(wh, get_city("ny"), day, "run-b")
    again = restarted.tick(pd.Timestamp(f"{day} 17:00", tz="UTC"))
    assert again.new_rows == 0  # nothing is sent twice
    for now in [*minutes[::97], minutes[-1]]:
        restarted.tick(now)
    paper = wh.read("paper_fills", [("ny", day)])
    assert set(paper["run_id"]) == {"run-a", "run-b"}
    key = ["order_id", "action", "fill_ts"]
    pd.testing.assert_frame_equal(paper[backtest.columns].sort_values(key).reset_index(drop=True),
                                  backtest.sort_values(key).reset_index(drop=True))
    orders = wh.read("paper_orders", [("ny", day)])
    assert set(orders["order_id"]) == set(backtest.loc[backtest["action"] == "buy", "order_id"])
    # paper_report: the day's page, and the paper book next to the backtest, identical
    report = dg.materialize([defs.get_assets_def("paper_report")], partition_key=str(partition_key("ny", day)),
                            resources=resources, instance=instance,
                            run_config={"ops": {"paper_report": {"config": {"folder": str(tmp_path / "paper")}}}})
    meta = report.asset_materializations_for_node("paper_report")[0].metadata
    assert meta["identical_to_backtest"].value is True and "warning" in meta
    page = (tmp_path / "paper" / f"ny-{day}" / "backtest_report.html").read_text()
    assert "Paper vs backtest" in page and "none: the same orders and fills" in page
    # stale: the calibrated probabilities stop at 15:00; at 15:30 the book holds and sends nothing
    stale_day = dt.date(2025, 6, 2)
    with wh.connect() as con:
        con.execute("DELETE FROM calibrated_pmf WHERE city = 'ny' AND climate_day = ? AND minute_ts > ?",
                    [stale_day, pd.Timestamp(f"{stale_day} 15:00", tz="UTC").to_pydatetime()])
    tick = PaperDay(wh, get_city("ny"), stale_day, "run-c", stale_min=5).tick(pd.Timestamp(f"{stale_day} 15:30", tz="UTC"))
    assert tick.stale and "stale" in tick.stale and tick.new_rows == 0
    assert wh.read("paper_fills", [("ny", stale_day)]).empty


def check_a_recorded_day_queues_its_maker_orders(resources, instance, wh: Warehouse, tmp_path):
    """A day whose whole book was recorded (written as the recorder would): its maker orders queue in the
    book, and the report puts the candle model's maker fills next to the queue model's for that day."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from kw_assets.cities import get_city
    from kw_assets.recorder.segments import SEGMENT_SCHEMA
    from kw_assets.sources.simulator.world import build_world
    from kw_assets_tests.l2_records import recorded_rows
    day = dt.date(2025, 6, 4)
    w = build_world(get_city("ny"), day)
    folder = tmp_path / "l2" / "ny" / day.isoformat()
    folder.mkdir(parents=True)
    rows = recorded_rows(w, 7, w.open_time + 60, w.close_time)
    pq.write_table(pa.Table.from_pandas(rows, schema=SEGMENT_SCHEMA, preserve_index=False), folder / "20250603T140100-1-000001.parquet")
    key = str(partition_key("ny", day))
    l2 = {"config": {"l2_root": str(tmp_path / "l2")}}
    before = wh.read("backtest_fills", [("ny", day)])
    assert defs.resolve_job_def("orderbook_job").execute_in_process(
        instance=instance, resources=resources, partition_key=key,
        run_config={"ops": {"orderbook_l2": l2, "orderbook_levels": l2}}).success
    assert len(wh.read("orderbook_levels", [("ny", day)])) > 0
    assert dg.materialize([defs.get_assets_def("backtest_fills")], partition_key=key, resources=resources, instance=instance).success
    after = wh.read("backtest_fills", [("ny", day)])
    maker = lambda f: f[(f["liquidity"] == "maker") & (f["action"] == "buy")]  # noqa: E731
    assert len(maker(before)) and len(maker(after))
    fills = lambda f: sorted(zip(f["order_id"], f["fill_ts"], f["contracts"].round(6)))  # noqa: E731
    assert fills(maker(before)) != fills(maker(after))  # filled through the queue now: other minutes or amounts
    report_cfg = {"ops": {"backtest_report": {"config": {"folder": str(tmp_path / "reports2")}}}}
    result = dg.materialize([defs.get_assets_def("backtest_report")], resources=resources, instance=instance, run_config=report_cfg)
    assert result.success
    page = (tmp_path / "reports2" / "backtest_report.html").read_text()
    assert "Maker fills on recorded days: candle model vs queue model" in page
    md = result.asset_materializations_for_node("backtest_report")[0].metadata["report"].value
    table = md.split("Maker fills on recorded days")[1].split("###")[0]
    lines = [line for line in table.splitlines() if line.startswith("| ny")]
    assert len(lines) == 2 and "candle" in lines[0] and "queue" in lines[1] and "2025-06-04" in lines[0]


def check_the_sweep_books_what_the_backtest_booked(resources, instance, wh: Warehouse, fills: pd.DataFrame):
    """The grid point with the backtest's own parameters nets what backtest_fills booked, to the cent; every
    point is reported for the one month stored, which (with no earlier month) chooses nothing."""
    grid = {"grid_slippage_cushion": [0.02, 0.05], "grid_taker_extra_edge": [0.03], "grid_allow_maker": [True, False]}
    result = dg.materialize([defs.get_assets_def("strategy_sweep")], resources=resources, instance=instance,
                            run_config={"ops": {"strategy_sweep": {"config": grid}}})
    assert result.success
    sweep = wh.read("strategy_sweep")
    assert len(sweep) == 4 and set(sweep["month"]) == {"2025-06"} and not sweep["chosen"].any()
    assert set(sweep["source"]) == {"simulated"} and (sweep["city_days"] == 4).all()
    default = sweep[(sweep["slippage_cushion"] == 0.02) & sweep["allow_maker"]].iloc[0]
    assert default["net_pnl"] == pytest.approx(fills["cash_flow"].sum(), abs=1e-6)
    assert default["fees"] == pytest.approx(fills["fee"].sum(), abs=1e-6)
    meta = result.asset_materializations_for_node("strategy_sweep")[0].metadata
    assert meta["out_of_sample_months"].value == 0 and "warning" in meta


def check_bad_scores_fail_their_check_and_are_not_written(resources, instance, wh: Warehouse, monkeypatch):
    import kw_assets.defs.evaluation as evaluation
    before = wh.read("forecast_scores")
    real = evaluation.ScoreSums.tables

    def corrupt(self):
        scores, rel = real(self)
        return scores.assign(rps=np.where(np.arange(len(scores)) == 2, -0.5, scores["rps"])), rel

    monkeypatch.setattr(evaluation.ScoreSums, "tables", corrupt)
    result = dg.materialize([defs.get_assets_def("forecast_scores")], resources=resources, instance=instance,
                            raise_on_error=False)
    assert not result.success
    checks = [e.event_specific_data for e in result.all_events if e.event_type_value == "ASSET_CHECK_EVALUATION"]
    assert [(c.check_name, c.passed) for c in checks] == [("forecast_scores_schema", False)]
    assert checks[0].metadata["failing_rows"].value == 1 and "-0.5" in checks[0].metadata["failure_cases"].value
    pd.testing.assert_frame_equal(wh.read("forecast_scores"), before)  # nothing half-written


def check_yesterdays_error_is_read_point_in_time(wh: Warehouse):
    """The lag input: each day's obs max through 18:00 LST (by hand here), and every sample of a day whose
    previous day is stored carries yesterday's error at its lead."""
    from kw_assets.cities import get_city
    from kw_assets.queries import day_runs, emos_samples
    runs = day_runs(wh, dt.date(2025, 6, 1), dt.date(2025, 6, 4))
    obs = wh.read("weather_obs")
    for day, got in runs.groupby("climate_day")["obs_max_f"].first().items():
        start, _ = get_city("ny").climate_day_window(day)
        o = obs[(pd.to_datetime(obs["climate_day"]).dt.date == day) & (obs["valid_time"] <= pd.Timestamp(start) + pd.Timedelta(hours=18))]
        assert len(o) and got == o["temp_f"].max() and got <= obs.loc[pd.to_datetime(obs["climate_day"]).dt.date == day, "temp_f"].max()
    samples = emos_samples(wh, dt.date(2025, 6, 5))
    known = samples.groupby("climate_day")["lag_error_f"].apply(lambda x: x.notna().mean())
    assert known.loc[dt.date(2025, 6, 1)] == 0.0  # 31 May is not stored
    assert (known.loc[dt.date(2025, 6, 2):] > 0.5).all()


def test_a_partition_without_weather_falls_back_to_the_market(tmp_path, instance):
    from kw_assets.defs.resources import MarketDataResource, WarehouseResource
    from kw_assets_tests.conftest import SIM_NOW
    res = {"market_data": MarketDataResource(simulated_now=SIM_NOW, weather_source="none"),
           "warehouse": WarehouseResource(path=str(tmp_path / "w.duckdb"))}
    job = defs.resolve_job_def("all_assets_job")
    sel = [k for k in job.asset_layer.executable_asset_keys if k.to_user_string() not in ("forecast_scores", "backtest_report")]
    result = dg.materialize([defs.get_assets_def(k) for k in sel], partition_key="chi|2025-06-05", resources=res,
                            instance=instance, run_config=RUN_CONFIG)
    assert result.success
    wh = Warehouse(tmp_path / "w.duckdb")
    assert wh.read("weather_pmf").empty
    fused = wh.read("fused_pmf")
    assert (fused["w_market"] == 1.0).all() and np.allclose(fused["p_fused"], fused["p_market"].clip(1e-4, 1 - 1e-4) /
                                                            fused.groupby("minute_ts")["p_market"].transform(lambda s: s.clip(1e-4, 1 - 1e-4).sum()))


def test_the_paper_command_stops_cleanly_on_sigterm(tmp_path):
    """``python -m kw_assets paper`` on a warehouse without the day's data: it says so each tick, and SIGTERM
    ends it between ticks with exit 0."""
    import signal
    import subprocess
    import sys
    import time
    from pathlib import Path
    root = Path(__file__).resolve().parents[2]
    proc = subprocess.Popen([sys.executable, "-m", "kw_assets", "paper", "--city", "ny", "--day", "2025-06-03",
                             "--warehouse", str(tmp_path / "empty.duckdb"), "--start", "2025-06-03T15:00Z"],
                            cwd=root, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines, deadline = [], time.monotonic() + 60
    while time.monotonic() < deadline:
        lines.append(proc.stdout.readline())
        if "no market data stored" in lines[-1]:
            break
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(30) == 0
    rest = proc.stdout.read()
    assert any("no market data stored for ny 2025-06-03" in line for line in lines)
    assert "never to an exchange" in "".join(lines) and "paper: stopped" in rest
