"""The scores and the report sum a year of settled PMFs a month at a time, the months split over forked
workers: the totals must be the ones a single process gets adding month after month, to the bit."""

import datetime as dt
import os

import numpy as np
import pandas as pd
import pytest

from kw_assets.model.evaluation import ScoreSums
from kw_assets.model.report import report_contents
from kw_assets.queries import over_settled_months, settled_calibrated, settled_months
from kw_assets.warehouse import Warehouse

OFFSETS = {"ny": pd.Timedelta(hours=5), "chi": pd.Timedelta(hours=6)}
NO_MARKETS = pd.DataFrame(columns=["city", "climate_day", "bracket_index", "bracket_low_f", "bracket_high_f"])


@pytest.fixture
def three_months(any_warehouse) -> Warehouse:
    """Calibrated PMFs of two cities from 30 Jan to 3 Mar 2025 (5 brackets, every 5 minutes for 2 hours), settled."""
    wh = any_warehouse
    rng = np.random.default_rng(11)
    b, minutes = 5, 24
    days = pd.date_range("2025-01-30", "2025-03-03")
    for city in ("ny", "chi"):
        cal, settled = [], []
        for day in days:
            p = rng.dirichlet(np.ones(b), size=minutes)
            ts = day.tz_localize("UTC") + pd.Timedelta(hours=12) + pd.to_timedelta(np.repeat(np.arange(minutes) * 5, b), "min")
            cal.append(pd.DataFrame({
                "city": city, "climate_day": day, "source": "simulated", "minute_ts": ts,
                "market_ticker": [f"T{k}" for k in range(b)] * minutes, "bracket_index": np.tile(np.arange(b), minutes),
                "p_market": p.ravel(), "p_weather": rng.dirichlet(np.ones(b), size=minutes).ravel(), "w_market": 0.6,
                "p_fused": p.ravel(), "hazard": 0.1, "p_calibrated": rng.dirichlet(np.ones(b), size=minutes).ravel(),
                "calibration_method": "none", "calibration_requested": "temperature", "fit_start": pd.NaT,
                "fit_end": pd.NaT, "fit_days": 0, "fit_samples": 0, "temperature": np.nan}))
            settled.append({"city": city, "climate_day": day, "source": "simulated", "event_ticker": f"E{day:%y%m%d}",
                            "official_high_f": 40.0, "winning_market_ticker": "T0",
                            "winning_bracket_index": int(rng.integers(0, b)), "settlement_source": "test", "obs_max_f": 39.8})
        keys = [(city, d.date()) for d in days]
        wh.replace_partitions("calibrated_pmf", pd.concat(cal, ignore_index=True), keys)
        wh.replace_partitions("settlement", pd.DataFrame(settled), keys)
    return wh


def test_scores_summed_a_month_per_worker_equal_one_process_adding_month_after_month(three_months):
    wh = three_months
    n_brackets, months = settled_months(wh)
    assert n_brackets == 5 and months == [(dt.date(2025, 1, 1), dt.date(2025, 1, 31)),
                                          (dt.date(2025, 2, 1), dt.date(2025, 2, 28)),
                                          (dt.date(2025, 3, 1), dt.date(2025, 3, 31))]
    one = ScoreSums(n_brackets)
    for first, last in months:
        one.add(settled_calibrated(wh, 10, first, last), NO_MARKETS, pd.DataFrame(), OFFSETS)

    def month(rows):
        return os.getpid(), ScoreSums(n_brackets).chunk_sums(rows, NO_MARKETS, pd.DataFrame(), OFFSETS)

    done = over_settled_months(wh, 10, months, month, workers=2)
    assert len({pid for pid, _ in done}) == 2 and os.getpid() not in {pid for pid, _ in done}  # two forked workers
    split = ScoreSums(n_brackets)
    for _, sums in done:
        split.merge(sums)
    (want, want_rel), (got, got_rel) = one.tables(), split.tables()
    pd.testing.assert_frame_equal(got, want, check_exact=True)
    assert want.loc[want["group_by"] == "all", "n"].tolist() == [2 * 33 * 12] * 4  # climatology: no markets, no rows
    for model in want_rel:
        pd.testing.assert_frame_equal(got_rel[model], want_rel[model], check_exact=True)


def test_the_reports_reliability_and_migration_a_month_per_worker_equal_one_process(three_months):
    wh = three_months
    n_brackets, months = settled_months(wh)
    rows = []
    for k, (city, day) in enumerate([("ny", "2025-01-30"), ("chi", "2025-02-14"), ("ny", "2025-03-02")]):
        at = pd.Timestamp(day, tz="UTC") + pd.Timedelta(hours=13)
        for action, contracts, cash in (("buy", 10, -4.0), ("settle", 10, 10.0 * (k % 2))):
            rows.append({"city": city, "climate_day": pd.Timestamp(day), "order_id": "o00000", "action": action,
                         "contracts": contracts, "cash_flow": cash, "fee": 0.07 if action == "buy" else 0.0,
                         "price": 0.4, "liquidity": "taker" if action == "buy" else "settlement", "edge": 0.05,
                         "decided_ts": at, "fill_ts": at + pd.Timedelta(minutes=1), "market_ticker": "T2",
                         "bracket_index": 2, "side": "yes", "source": "simulated"})
    fills = pd.DataFrame(rows)
    mids = pd.DataFrame(columns=["side", "mid_0", "mid_1", "mid_5", "mid_15"])
    scores = pd.DataFrame(columns=["source", "model", "group_by", "group_value", "n", "brier", "log_loss", "rps", "ece"])
    chunks = [settled_calibrated(wh, 10, first, last) for first, last in months]
    pids = set()

    def a_month_per_worker(fn):
        def tagged(rows):
            return os.getpid(), fn(rows)
        done = over_settled_months(wh, 10, months, tagged, workers=2)
        pids.update(pid for pid, _ in done)
        return [part for _, part in done]

    want = report_contents(fills, scores, chunks, pd.DataFrame(NO_MARKETS), pd.DataFrame(), mids, OFFSETS, n_brackets)
    got = report_contents(fills, scores, a_month_per_worker, pd.DataFrame(NO_MARKETS), pd.DataFrame(), mids, OFFSETS,
                          n_brackets)
    assert len(pids) == 2 and os.getpid() not in pids
    assert set(got[2]) == {"fused", "calibrated"}
    for model in got[2]:
        pd.testing.assert_frame_equal(got[2][model], want[2][model], check_exact=True)
    title = "Bracket migration (centre of mass of the calibrated PMF, in brackets)"
    pd.testing.assert_frame_equal(got[1][title], want[1][title], check_exact=True)
    assert len(want[1][title]) == 3  # one row per traded city-day, from each of the three months
    assert got[0]["migration_mean_abs_drift"] == want[0]["migration_mean_abs_drift"]
