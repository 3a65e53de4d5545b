import numpy as np
import pandas as pd

from kw_assets.model.strategy import StrategyConfig, migration, signal_intents

N_MIN, N_BR = 120, 6


def frames(p: np.ndarray) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A panel quoted exactly at ``p`` (no edge for the edge rules) and the calibrated PMF ``p``."""
    minutes = pd.date_range("2025-06-03T12:00Z", periods=len(p), freq="min")
    ts = np.repeat(minutes, N_BR)
    b = np.tile(np.arange(N_BR), len(p))
    flat = p.ravel()
    panel = pd.DataFrame({"minute_ts": ts, "bracket_index": b, "yes_bid": np.round(flat, 2), "yes_ask": np.round(flat, 2) + 0.01,
                          "ras": 0.0, "acceleration": 0.0, "clv": 0.5})
    cal = pd.DataFrame({"minute_ts": ts, "bracket_index": b, "p_calibrated": flat, "hazard": 0.0})
    return panel, cal


def migrating(start: int = 60, over: float = 40.0, frm: int = 2, to: int = 3) -> np.ndarray:
    """All mass on ``frm``, then moving to ``to`` with constant acceleration from minute ``start``."""
    x = np.clip((np.arange(N_MIN) - start) / over, 0, 1) ** 2
    x[: start] = 0
    p = np.full((N_MIN, N_BR), 1e-3)
    p[:, frm] += 1 - x
    p[:, to] += x
    return p / p.sum(axis=1, keepdims=True)


def test_the_centre_of_mass_and_its_acceleration_are_causal():
    p = migrating()
    com, vel, acc = migration(p, 10)
    assert np.isnan(vel[:10]).all() and np.isnan(acc[:20]).all()
    assert abs(com[0] - 2.0) < 0.01 and abs(com[-1] - 3.0) < 0.01
    # from minute 80 on both windows sit inside the quadratic: acceleration 2 * (10/40)^2 (times the moving mass)
    assert np.allclose(acc[80:100], 0.125 * (1 - 6e-3), atol=2e-3)
    later = p.copy()
    later[90:] = p[0]
    assert np.array_equal(migration(later, 10)[2][:90], acc[:90], equal_nan=True)


def test_bleed_moves_exposure_to_the_bracket_the_mass_accelerates_into():
    p = migrating()
    panel, cal = frames(p)
    off, _ = signal_intents(panel, cal, StrategyConfig(use_ras=False, use_clv=False))
    assert off.empty  # quoted at the model's own probabilities: no edge, and the rule is off by default
    cfg = StrategyConfig(use_ras=False, use_clv=False, use_bleed=True, bleed_window_min=10, bleed_accel=0.1)
    on, opposite = signal_intents(panel, cal, cfg)
    assert len(on) == 1
    row = on.iloc[0]
    assert (row["bracket"], row["side"], row["liquidity"]) == (3, "yes", "taker")
    assert 70 <= row["row"] <= 80  # once the acceleration shows, never before the move starts
    assert opposite[row["row"], 2, 0] and not opposite[row["row"] - 1, 2, 0]  # exit YES on the bracket it leaves
    # the mirror image: mass accelerating down from 3 to 2
    down, opp_down = signal_intents(*frames(migrating(frm=3, to=2)), cfg)
    assert len(down) == 1 and down.iloc[0]["bracket"] == 2 and opp_down[down.iloc[0]["row"], 3, 0]
    # no lookahead: what happens after the signal does not move it
    after = p.copy()
    after[int(row["row"]) + 1:] = p[0]
    again, _ = signal_intents(*frames(after), cfg)
    assert again[again["row"] <= row["row"]].equals(on)


def test_the_order_flow_gate_needs_buying_pressure_for_yes_and_leaves_unrecorded_minutes_alone():
    p = np.full((N_MIN, N_BR), 1 / N_BR)
    panel, cal = frames(p)
    cal.loc[cal["bracket_index"] == 2, "p_calibrated"] = 0.45  # a YES edge on bracket 2 from the start
    cal.loc[cal["bracket_index"] == 4, "p_calibrated"] = 0.01  # a NO edge on bracket 4
    cfg = dict(use_ras=False, use_clv=False, cooldown_min=1000)
    base, _ = signal_intents(panel, cal, StrategyConfig(**cfg))
    assert sorted(zip(base["bracket"], base["side"], base["row"])) == [(2, "yes", 0), (4, "no", 0)]
    minute = panel["minute_ts"].rank(method="dense").astype(int) - 1
    # no recorded book at all: the flag changes nothing
    unrecorded, _ = signal_intents(panel.assign(ofi=np.nan), cal, StrategyConfig(**cfg, use_order_flow=True))
    pd.testing.assert_frame_equal(unrecorded, base)
    # selling pressure on bracket 2 until minute 30, buying pressure on bracket 4 until minute 50
    ofi = np.where((panel["bracket_index"] == 2) & (minute < 30), -40.0, np.nan)
    ofi = np.where((panel["bracket_index"] == 4) & (minute < 50), 25.0, ofi)
    gated, _ = signal_intents(panel.assign(ofi=ofi), cal, StrategyConfig(**cfg, use_order_flow=True, ofi_min=10.0))
    assert sorted(zip(gated["bracket"], gated["side"], gated["row"])) == [(2, "yes", 30), (4, "no", 50)]
