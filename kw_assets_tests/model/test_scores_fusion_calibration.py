import datetime as dt

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import brier_score_loss

from kw_assets.model.calibration import EPS, CalibrationConfig, walk_forward_fit
from kw_assets.model.fusion import FusionConfig, log_pool, market_weight
from kw_assets.model.scores import brier, ece, logloss, reliability, rps


def test_rps_and_ece_against_hand_computed_values():
    p = np.array([[0.1, 0.2, 0.7], [0.5, 0.3, 0.2]])
    winner = np.array([2, 1])
    # forecast 1: CDFs (0.1, 0.3) vs (0, 0): 0.01 + 0.09 = 0.10; forecast 2: (0.5, 0.8) vs (0, 1): 0.25 + 0.04 = 0.29
    assert rps(p, winner) == pytest.approx((0.10 + 0.29) / 2 / 2)
    # six bracket-level (p, hit) pairs: (0.1,0) (0.2,0) (0.7,1) (0.5,0) (0.3,1) (0.2,0); each bin adds share x |p - hit|:
    # 0.1 -> 0.1; two at 0.2 -> 2 x 0.2; 0.3 hit -> 0.7; 0.5 -> 0.5; 0.7 hit -> 0.3
    expected = (0.1 + 2 * 0.2 + 0.7 + 0.5 + 0.3) / 6
    assert ece(p, winner) == pytest.approx(expected)
    assert reliability(p, winner)["count"].sum() == 6


def test_brier_and_log_loss_agree_with_scikit_learn():
    rng = np.random.default_rng(0)
    p = rng.dirichlet(np.ones(6), 200)
    w = rng.integers(0, 6, 200)
    y = np.zeros_like(p)
    y[np.arange(200), w] = 1
    assert brier(p, w) == pytest.approx(sum(brier_score_loss(y[:, k], p[:, k]) for k in range(6)))
    assert logloss(p, w) == pytest.approx(-np.log(p[np.arange(200), w]).mean())


def test_pool_weights_one_and_zero_return_each_side():
    rng = np.random.default_rng(1)
    pm, pw = rng.dirichlet(np.ones(6), 5), rng.dirichlet(np.ones(6), 5)
    assert np.allclose(log_pool(pm, pw, np.ones(5)), np.clip(pm, 1e-4, 1) / np.clip(pm, 1e-4, 1).sum(1, keepdims=True))
    assert np.allclose(log_pool(pm, pw, np.ones(5)), pm, atol=1e-3)
    assert np.allclose(log_pool(pm, pw, np.zeros(5)), pw, atol=1e-3)
    mixed = log_pool(pm, pw, np.full(5, 0.5))
    assert np.allclose(mixed.sum(1), 1) and np.allclose(mixed, np.sqrt(pm * pw) / np.sqrt(pm * pw).sum(1, keepdims=True), atol=1e-3)


def test_adaptive_weight_leans_on_a_busy_market_and_on_weather_when_quiet():
    cfg = FusionConfig()
    quiet = market_weight(np.zeros((60, 6)), np.zeros((60, 6)), cfg)
    busy = market_weight(np.full((60, 6), 30.0), np.full((60, 6), 0.01), cfg)
    assert quiet[-1] < cfg.w_base < busy[-1]
    assert quiet.min() >= cfg.w_min and busy.max() <= cfg.w_max


def _history(n_days=30, per_day=40, seed=0):
    """Overconfident forecasts: the calibrator should soften them."""
    rng = np.random.default_rng(seed)
    rows = []
    for d in range(n_days):
        day = dt.date(2025, 6, 1) + dt.timedelta(days=d)
        for _ in range(per_day):
            truth = rng.dirichlet(np.ones(6) * 2)
            winner = rng.choice(6, p=truth)
            sharp = truth**3 / (truth**3).sum()
            rows.append({"climate_day": day, "p": sharp, "winner": winner, "n_brackets": 6})
    return pd.DataFrame(rows)


@pytest.mark.parametrize("method", ["platt", "isotonic", "temperature"])
def test_calibration_improves_overconfident_forecasts_out_of_sample(method):
    h = _history()
    cal = walk_forward_fit(h, dt.date(2025, 6, 21), CalibrationConfig(method=method, min_samples=100))
    # D-1 and D-2 settle after D's market opens: the fit ends at D-3
    assert cal.fit_end == dt.date(2025, 6, 18) and cal.fit_days == 18 and cal.describe()["calibration_method"] == method
    test = h[pd.to_datetime(h["climate_day"]).dt.date >= dt.date(2025, 6, 21)]
    p, w = np.vstack(test["p"]), test["winner"].to_numpy()
    q = cal.apply(p)
    assert np.allclose(q.sum(1), 1)
    assert logloss(q, w) < logloss(p, w)
    if method == "temperature":
        assert cal.temperature > 1.5  # softens sharpened forecasts


def test_the_temperature_is_the_log_loss_minimum_and_stops_at_its_bounds():
    """Newton on 1/T lands where the loss is lowest (checked against a fine grid around it), and at the
    bound e^3 (or e^-3) when the loss keeps falling beyond it: forecasts that say nothing about the winner
    (T -> infinity), or whose favourite always wins (T -> 0)."""
    from kw_assets.model.calibration import fit_temperature
    rng = np.random.default_rng(5)
    truth = rng.dirichlet(np.ones(6) * 2, size=20_000)
    winner = (rng.random(len(truth))[:, None] > np.cumsum(truth, axis=1)).sum(axis=1)
    sharp = np.clip(truth**3 / (truth**3).sum(axis=1, keepdims=True), EPS, 1 - EPS)
    logp = np.log(sharp)

    def loss(t):
        z = logp / t
        z -= z.max(axis=1, keepdims=True)
        return -(z[np.arange(len(z)), winner] - np.log(np.exp(z).sum(axis=1))).mean()

    t = fit_temperature(logp, winner)
    assert 2.5 < t < 3.5  # undoes the cube
    assert all(loss(t) <= loss(t * f) for f in (0.999, 0.9999, 1.0001, 1.001))
    assert fit_temperature(logp, rng.integers(0, 6, len(logp))) == pytest.approx(np.exp(3), rel=1e-9)
    assert fit_temperature(logp, logp.argmax(axis=1)) == pytest.approx(np.exp(-3), rel=1e-9)


def test_below_the_minimum_sample_the_identity_is_used():
    h = _history(n_days=3, per_day=10)
    cal = walk_forward_fit(h, dt.date(2025, 6, 4), CalibrationConfig(method="isotonic", min_samples=500))
    p = np.vstack(h["p"])
    assert np.allclose(cal.apply(p), p, atol=1e-5) and cal.describe()["calibration_method"] == "none"


def test_walk_forward_changing_day_d_outcomes_changes_nothing_up_to_day_d():
    h = _history()
    target = dt.date(2025, 6, 15)
    changed = h.copy()
    on_or_after = pd.to_datetime(changed["climate_day"]).dt.date >= target
    changed.loc[on_or_after, "winner"] = (changed.loc[on_or_after, "winner"] + 3) % 6
    p = np.vstack(h["p"].iloc[:50])
    for d in [dt.date(2025, 6, 10), target]:
        for method in ("platt", "isotonic", "temperature"):
            cfg = CalibrationConfig(method=method, min_samples=50)
            assert np.array_equal(walk_forward_fit(h, d, cfg).apply(p), walk_forward_fit(changed, d, cfg).apply(p))
    cfg = CalibrationConfig(method="temperature", min_samples=50)
    later = dt.date(2025, 6, 20)
    assert not np.array_equal(walk_forward_fit(h, later, cfg).apply(p), walk_forward_fit(changed, later, cfg).apply(p))


def test_scores_summed_a_chunk_at_a_time_equal_the_scores_of_everything_at_once():
    """forecast_scores and the report add a month at a time; the totals are the one-pass scores."""
    from kw_assets.model.evaluation import ScoreSums
    rng = np.random.default_rng(3)
    n_days, minutes, b = 6, 20, 5
    p = rng.dirichlet(np.ones(b), size=n_days * minutes)
    winner = np.repeat(rng.integers(0, b, n_days), minutes)
    days = np.repeat(pd.date_range("2025-06-01", periods=n_days), minutes)
    ts = pd.Timestamp("2025-06-01 05:00", tz="UTC") + pd.to_timedelta(np.tile(np.arange(minutes) * 5, n_days), "min")
    rows = pd.DataFrame({"city": np.repeat(np.where(np.arange(n_days) % 2, "ny", "chi"), minutes),
                         "climate_day": days, "minute_ts": ts + (days - days[0]), "winner": winner})
    rows = rows.loc[rows.index.repeat(b)].assign(bracket_index=np.tile(np.arange(b), len(rows)))
    for col in ("p_market", "p_weather", "p_fused", "p_calibrated"):
        rows[col] = p.ravel()
    offsets = {"ny": pd.Timedelta(hours=5), "chi": pd.Timedelta(hours=6)}
    sums = ScoreSums(b)
    for _, chunk in rows.groupby(rows["climate_day"].dt.day // 3):
        sums.add(chunk, pd.DataFrame(columns=["city", "climate_day", "bracket_index"]), pd.DataFrame(), offsets)
    scores, rel = sums.tables()
    overall = scores[(scores["group_by"] == "all") & (scores["model"] == "calibrated")].iloc[0]
    assert overall["n"] == n_days * minutes
    assert overall["brier"] == pytest.approx(brier(p, winner), rel=1e-12)
    assert overall["log_loss"] == pytest.approx(logloss(p, winner), rel=1e-12)
    assert overall["rps"] == pytest.approx(rps(p, winner), rel=1e-12)
    assert overall["ece"] == pytest.approx(ece(p, winner), rel=1e-12)
    pd.testing.assert_frame_equal(rel["calibrated"], reliability(p, winner))
    ny = scores[(scores["group_by"] == "city") & (scores["group_value"] == "ny") & (scores["model"] == "fused")].iloc[0]
    mask = np.repeat(np.arange(n_days) % 2 == 1, minutes)
    assert ny["brier"] == pytest.approx(brier(p[mask], winner[mask]), rel=1e-12)


def test_the_climatology_baseline_fits_only_the_highs_public_when_the_market_opened():
    """A Normal fit to the city's settled highs up to D-3 (the embargo), on the event's brackets; none where fewer
    than five highs are known or the event has another number of brackets."""
    from scipy.stats import norm

    from kw_assets.model.evaluation import event_climatologies
    days = pd.date_range("2025-05-01", periods=10)
    settled = pd.DataFrame({"city": ["ny"] * 10 + ["chi"] * 10, "climate_day": list(days) * 2,
                            "official_high_f": [70, 72, np.nan, 74, 77, 78, 81, 82, 84, 90] + [60] * 10})
    brackets = {"low": [-np.inf, 74, 76], "high": [73, 75, np.inf]}
    markets = pd.DataFrame({"city": "ny", "climate_day": np.repeat(pd.to_datetime(["2025-05-08", "2025-05-12", "2025-05-13"]), 3),
                            "bracket_index": [2, 1, 0] * 3, "bracket_low_f": brackets["low"][::-1] * 3,
                            "bracket_high_f": brackets["high"][::-1] * 3}).iloc[:-1]  # the 13th lists two brackets only
    events = [("ny", pd.Timestamp("2025-05-12")), ("ny", pd.Timestamp("2025-05-08")), ("ny", pd.Timestamp("2025-05-13")),
              ("chi", pd.Timestamp("2025-05-12"))]
    got = event_climatologies(events, markets, settled, 3)
    known = pd.Series([70, 72, 74, 77, 78, 81, 82, 84])  # D-3 is 05-09: 05-01 .. 05-09, the blank 05-03 left out
    mu, sd = known.mean(), known.std(ddof=1)
    p = norm.cdf((np.array(brackets["high"]) + 0.5 - mu) / sd) - norm.cdf((np.array(brackets["low"]) - 0.5 - mu) / sd)
    assert np.array_equal(got[0], p / p.sum())  # brackets in their index order, the same numbers to the bit
    assert got[0] == pytest.approx([0.2257, 0.1369, 0.6374], abs=1e-4)  # mean 77.25 F, SD 4.98 F
    assert np.isnan(got[1]).all()  # 05-08 knows 05-01 .. 05-05: four highs
    assert np.isnan(got[2]).all() and np.isnan(got[3]).all()  # two brackets; chi lists no market
