"""The relative-acceleration strategy: which bracket to trade, which side, and how, at minute t only.

Entry on a bracket (all gates configurable, each can be switched off):
- RAS: its relative acceleration leads its strike neighbours (> ras_min) while the neighbours decelerate
  (< 0), for YES; mirrored for NO;
- close-location pressure: an EWM of CLV above ``clv_buy`` (YES) or below ``clv_sell`` (NO);
- edge: calibrated probability minus the price paid, above the fee plus a slippage cushion; a high
  new-high hazard (>= ``hazard_high``) lowers the cushion by ``hazard_cushion_discount``;
- execution: taker (lift the ask) when the taker edge beats fee + cushion + ``taker_extra_edge``,
  else maker (post at the bid) when the maker edge beats its fee + cushion; with ``allow_maker`` off,
  only taker orders, entered when the taker edge beats fee + cushion + ``taker_extra_edge``;
- only signal onsets (and at most one per ``cooldown_min`` per bracket and side) become orders.

Optional (``use_order_flow``, off by default): where the book was recorded, a YES entry also needs the
minute's order-flow imbalance above ``ofi_min`` contracts (buying pressure) and a NO entry below
``-ofi_min``; a minute without a recorded book is not gated, so without L2 the flag changes nothing.

Optional (``use_bleed``, off by default), the seed's bracket-migration rule: when the calibrated PMF's
centre of mass (expected bracket index) accelerates toward higher strikes (its change over
``bleed_window_min`` grows by more than ``bleed_accel``), YES held on the bracket it is leaving is exited and
YES is bought, as a taker, on the bracket above; mirrored for a downward acceleration.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import pandas as pd

from kw_assets.model.fees import fee_per_contract, rates
from kw_assets.model.panel import by_minute_and_bracket, grid_minutes, neighbour_mean


@dataclass(frozen=True)
class StrategyConfig:
    contracts: float = 10.0
    use_ras: bool = True
    ras_min: float = 0.0003
    use_clv: bool = True
    clv_span_min: float = 5.0
    clv_buy: float = 0.6
    clv_sell: float = 0.4
    slippage_cushion: float = 0.02
    hazard_high: float = 0.3
    hazard_cushion_discount: float = 0.5
    taker_extra_edge: float = 0.03
    allow_maker: bool = True
    use_order_flow: bool = False
    ofi_min: float = 0.0
    use_bleed: bool = False
    bleed_window_min: int = 10
    bleed_accel: float = 0.15
    cooldown_min: int = 20


def _wide(frame: pd.DataFrame, col: str, shape) -> np.ndarray:
    return frame[col].to_numpy(float).reshape(shape)


class SignalState(NamedTuple):
    """One event's inputs to the entry rules on the minute x bracket grid, before any threshold: computed
    once, then read by every parameter set of a sweep."""

    p: np.ndarray  # calibrated probability
    hazard: np.ndarray  # per minute
    bid: np.ndarray
    ask: np.ndarray
    ras: np.ndarray
    neighbour_acc: np.ndarray  # mean acceleration of the strike neighbours
    clv: np.ndarray
    book_ok: np.ndarray
    ofi: np.ndarray  # order-flow imbalance, NaN where no book was recorded


def signal_state(panel: pd.DataFrame, calibrated: pd.DataFrame) -> SignalState:
    panel = by_minute_and_bracket(panel).reset_index(drop=True)
    minutes = grid_minutes(panel)
    shape = (len(minutes), panel["bracket_index"].nunique())
    if len(calibrated) and len(calibrated) == len(panel):
        calibrated = by_minute_and_bracket(calibrated)
    aligned = len(calibrated) == len(panel) and np.array_equal(
        pd.DatetimeIndex(calibrated["minute_ts"]).asi8, pd.DatetimeIndex(panel["minute_ts"]).asi8) and np.array_equal(
        calibrated["bracket_index"].to_numpy(), panel["bracket_index"].to_numpy())
    if aligned and len(calibrated):  # the same minute x bracket grid, in the same order: reshape, no pivot
        p = calibrated["p_calibrated"].to_numpy(float).reshape(shape)
        h = calibrated["hazard"].to_numpy(float).reshape(shape)
        haz = h[np.arange(shape[0]), np.argmax(~np.isnan(h), axis=1)]  # the first non-missing, as groupby.first
    elif len(calibrated):
        p = calibrated.pivot(index="minute_ts", columns="bracket_index", values="p_calibrated").reindex(minutes)
        p = p.to_numpy(float).reshape(shape)
        haz = calibrated.groupby("minute_ts")["hazard"].first().reindex(minutes).to_numpy(float)
    else:
        p, haz = np.full(shape, np.nan), np.full(len(minutes), np.nan)
    bid, ask = _wide(panel, "yes_bid", shape), _wide(panel, "yes_ask", shape)
    book_ok = np.isfinite(bid) & np.isfinite(ask) & ~((bid <= 0) & (ask >= 1))
    ofi = _wide(panel, "ofi", shape) if "ofi" in panel.columns else np.full(shape, np.nan)
    return SignalState(p, haz, bid, ask, _wide(panel, "ras", shape), neighbour_mean(_wide(panel, "acceleration", shape)),
                       _wide(panel, "clv", shape), book_ok, ofi)


def signal_intents(panel: pd.DataFrame, calibrated: pd.DataFrame, cfg: StrategyConfig = StrategyConfig(),
                   fee_type: str = "quadratic", fee_multiplier: float = 1.0) -> tuple[pd.DataFrame, np.ndarray]:
    """Entry intents (row, bracket, side, size, liquidity, limit, edge) and the opposite-signal array
    (minutes x brackets x {yes, no}) used for exits."""
    return intents_from(signal_state(panel, calibrated), cfg, fee_type, fee_multiplier)


def intents_from(state: SignalState, cfg: StrategyConfig = StrategyConfig(), fee_type: str = "quadratic",
                 fee_multiplier: float = 1.0) -> tuple[pd.DataFrame, np.ndarray]:
    """``signal_intents`` from a prepared ``SignalState``."""
    p, haz, bid, ask, ras, nbr = state.p, state.hazard, state.bid, state.ask, state.ras, state.neighbour_acc
    book_ok, n_br = state.book_ok, state.p.shape[1]
    clv = pd.DataFrame(state.clv).ewm(span=cfg.clv_span_min, adjust=False, ignore_na=True).mean().to_numpy()
    maker_rate, taker_rate = rates(fee_type, fee_multiplier)
    cushion = cfg.slippage_cushion * np.where(np.nan_to_num(haz) >= cfg.hazard_high, 1 - cfg.hazard_cushion_discount, 1.0)[:, None]
    with np.errstate(invalid="ignore"):
        ras_yes = (not cfg.use_ras) | ((ras > cfg.ras_min) & (nbr < 0))
        ras_no = (not cfg.use_ras) | ((ras < -cfg.ras_min) & (nbr > 0))
        clv_yes = (not cfg.use_clv) | (clv > cfg.clv_buy)
        clv_no = (not cfg.use_clv) | (clv < cfg.clv_sell)
        flow_yes = (not cfg.use_order_flow) | ~(state.ofi <= cfg.ofi_min)  # NaN (no book): not gated
        flow_no = (not cfg.use_order_flow) | ~(state.ofi >= -cfg.ofi_min)
        # YES pays ask (taker) or bid (maker); NO pays 1 - bid (taker) or 1 - ask (maker)
        taker_yes = p - ask - fee_per_contract(ask, cfg.contracts, taker_rate)
        maker_yes = p - bid - fee_per_contract(bid, cfg.contracts, maker_rate)
        taker_no = (1 - p) - (1 - bid) - fee_per_contract(1 - bid, cfg.contracts, taker_rate)
        maker_no = (1 - p) - (1 - ask) - fee_per_contract(1 - ask, cfg.contracts, maker_rate)
        entry_yes, entry_no = (maker_yes, maker_no) if cfg.allow_maker else (taker_yes - cfg.taker_extra_edge,
                                                                            taker_no - cfg.taker_extra_edge)
        yes_sig = book_ok & ras_yes & clv_yes & flow_yes & (entry_yes > cushion)
        no_sig = book_ok & ras_no & clv_no & flow_no & (entry_no > cushion)
    opposite = np.stack([no_sig, yes_sig], axis=2)  # exit a YES on a NO signal and vice versa
    parts = []
    if cfg.use_bleed:
        bleed = _bleed_intents(p, book_ok, taker_yes, cfg)
        opposite[bleed["row"].to_numpy(), bleed["leaving"].to_numpy(), 0] = True  # exit YES on the bracket left
        parts.append((bleed["row"].to_numpy(), bleed["bracket"].to_numpy(), np.ones(len(bleed), bool),
                      np.ones(len(bleed), bool), np.full(len(bleed), np.nan), bleed["edge"].to_numpy(float)))
    for yes, sig, t_edge, m_edge in ((True, yes_sig, taker_yes, maker_yes), (False, no_sig, taker_no, maker_no)):
        onset = sig & ~np.vstack([np.zeros((1, n_br), bool), sig[:-1]])
        r, b = np.nonzero(onset)
        taker = (t_edge[r, b] > cushion[r, 0] + cfg.taker_extra_edge) | (not cfg.allow_maker)
        limit = bid[r, b] if yes else 1 - ask[r, b]
        parts.append((r, b, np.full(len(r), yes), taker, limit, np.where(taker, t_edge[r, b], m_edge[r, b])))
    row, bracket, is_yes, taker, limit, edge = (np.concatenate(c) for c in zip(*parts))
    order = np.lexsort((is_yes, bracket, row))  # by row, bracket, then side ("no" before "yes"); stable
    order = order[_cooldown(row[order], bracket[order], is_yes[order], cfg.cooldown_min)]
    intents = pd.DataFrame({"row": row[order], "bracket": bracket[order],
                            "side": np.where(is_yes[order], "yes", "no").astype(object),
                            "size": np.full(len(order), cfg.contracts),
                            "liquidity": np.where(taker[order], "taker", "maker").astype(object),
                            "limit": limit[order], "edge": edge[order]})
    return intents, opposite


def centre_of_mass(p: np.ndarray) -> np.ndarray:
    """Expected bracket index per minute under the PMF ``p`` (minutes x brackets), NaN where unknown."""
    return p @ np.arange(p.shape[1], dtype=float)


def migration(p: np.ndarray, window_min: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Centre of mass, its change over ``window_min`` minutes (velocity) and that velocity's change over
    the same window (acceleration); causal (minute t uses rows <= t), NaN until the windows fill."""
    com = centre_of_mass(p)
    k = max(int(window_min), 1)
    vel = np.full_like(com, np.nan)
    vel[k:] = com[k:] - com[:-k]
    acc = np.full_like(com, np.nan)
    acc[k:] = vel[k:] - vel[:-k]
    return com, vel, acc


def _bleed_intents(p: np.ndarray, book_ok: np.ndarray, taker_yes: np.ndarray, cfg: StrategyConfig) -> pd.DataFrame:
    """Taker YES intents on the bracket the centre of mass accelerates into, with the bracket it leaves."""
    n_br = p.shape[1]
    com, vel, acc = migration(p, cfg.bleed_window_min)
    with np.errstate(invalid="ignore"):
        up = (acc > cfg.bleed_accel) & (vel > 0)
        down = (acc < -cfg.bleed_accel) & (vel < 0)
    frames = []
    for sig, leaving, step in ((up, np.floor(com), 1), (down, np.ceil(com), -1)):
        onset = sig & ~np.concatenate([[False], sig[:-1]])
        r = np.nonzero(onset)[0]
        j = np.nan_to_num(leaving[r]).astype(int)
        target = j + step
        ok = (target >= 0) & (target < n_br)
        r, j, target = r[ok], j[ok], target[ok]
        ok = book_ok[r, target]
        r, j, target = r[ok], j[ok], target[ok]
        frames.append(pd.DataFrame({"row": r, "bracket": target, "side": "yes", "size": cfg.contracts,
                                    "liquidity": "taker", "limit": np.nan, "edge": taker_yes[r, target], "leaving": j}))
    return pd.concat(frames, ignore_index=True)


def _cooldown(row: np.ndarray, bracket: np.ndarray, is_yes: np.ndarray, minutes: int) -> np.ndarray:
    """Indices of the intents (in row order) kept: one only if the same bracket and side had none kept in
    the previous ``minutes``."""
    keep = []
    last: dict[tuple[int, bool], int] = {}
    for i, k in enumerate(zip(row.tolist(), bracket.tolist(), is_yes.tolist())):
        r, key = k[0], k[1:]
        if key in last and r - last[key] < minutes:
            continue
        last[key] = r
        keep.append(i)
    return np.array(keep, dtype=int)
