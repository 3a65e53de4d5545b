"""The relative-acceleration strategy: which bracket to trade, which side, and how, at minute t only.

Entry on a bracket (all gates configurable, each can be switched off):
- RAS: its relative acceleration leads its strike neighbours (> ras_min) while the neighbours decelerate
  (< 0), for YES; mirrored for NO;
- close-location pressure: an EWM of CLV above ``clv_buy`` (YES) or below ``clv_sell`` (NO);
- edge: calibrated probability minus the price paid, above the fee plus a slippage cushion; a high
  new-high hazard (>= ``hazard_high``) lowers the cushion by ``hazard_cushion_discount``;
- execution: taker (lift the ask) when the taker edge beats fee + cushion + ``taker_extra_edge``,
  else maker (post at the bid) when the maker edge beats its fee + cushion;
- only signal onsets (and at most one per ``cooldown_min`` per bracket and side) become orders.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from kw_assets.model.fees import MAKER_FEE_TYPES
from kw_assets.model.panel import neighbour_mean


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
    cooldown_min: int = 20


def fee_per_contract(price: np.ndarray, contracts: float, rate: float) -> np.ndarray:
    """Approximate per-contract fee for thresholds (exact fees are charged at the fill)."""
    p = np.clip(np.nan_to_num(price, nan=0.5), 0, 1)
    return np.ceil(rate * contracts * p * (1 - p) * 100 - 1e-9) / 100 / max(contracts, 1e-9)


def _wide(frame: pd.DataFrame, col: str, shape) -> np.ndarray:
    return frame[col].to_numpy(float).reshape(shape)


def signal_intents(panel: pd.DataFrame, calibrated: pd.DataFrame, cfg: StrategyConfig = StrategyConfig(),
                   fee_type: str = "quadratic", fee_multiplier: float = 1.0) -> tuple[pd.DataFrame, np.ndarray]:
    """Entry intents (row, bracket, side, size, liquidity, limit, edge) and the opposite-signal array
    (minutes x brackets x {yes, no}) used for exits."""
    panel = panel.sort_values(["minute_ts", "bracket_index"]).reset_index(drop=True)
    minutes = panel["minute_ts"].drop_duplicates().reset_index(drop=True)
    n_br = panel["bracket_index"].nunique()
    shape = (len(minutes), n_br)
    cal = calibrated.pivot(index="minute_ts", columns="bracket_index", values="p_calibrated").reindex(minutes.to_numpy())
    p = cal.to_numpy(float).reshape(shape) if len(calibrated) else np.full(shape, np.nan)
    haz = (calibrated.groupby("minute_ts")["hazard"].first().reindex(minutes.to_numpy()).to_numpy(float)
           if len(calibrated) else np.full(len(minutes), np.nan))
    bid, ask = _wide(panel, "yes_bid", shape), _wide(panel, "yes_ask", shape)
    ras, acc = _wide(panel, "ras", shape), _wide(panel, "acceleration", shape)
    clv = pd.DataFrame(_wide(panel, "clv", shape)).ewm(span=cfg.clv_span_min, adjust=False, ignore_na=True).mean().to_numpy()
    book_ok = np.isfinite(bid) & np.isfinite(ask) & ~((bid <= 0) & (ask >= 1))
    maker_rate = 0.0175 * fee_multiplier if fee_type in MAKER_FEE_TYPES else 0.0
    taker_rate = 0.07 * fee_multiplier
    cushion = cfg.slippage_cushion * np.where(np.nan_to_num(haz) >= cfg.hazard_high, 1 - cfg.hazard_cushion_discount, 1.0)[:, None]
    nbr = neighbour_mean(acc)
    with np.errstate(invalid="ignore"):
        ras_yes = (not cfg.use_ras) | ((ras > cfg.ras_min) & (nbr < 0))
        ras_no = (not cfg.use_ras) | ((ras < -cfg.ras_min) & (nbr > 0))
        clv_yes = (not cfg.use_clv) | (clv > cfg.clv_buy)
        clv_no = (not cfg.use_clv) | (clv < cfg.clv_sell)
        # YES pays ask (taker) or bid (maker); NO pays 1 - bid (taker) or 1 - ask (maker)
        taker_yes = p - ask - fee_per_contract(ask, cfg.contracts, taker_rate)
        maker_yes = p - bid - fee_per_contract(bid, cfg.contracts, maker_rate)
        taker_no = (1 - p) - (1 - bid) - fee_per_contract(1 - bid, cfg.contracts, taker_rate)
        maker_no = (1 - p) - (1 - ask) - fee_per_contract(1 - ask, cfg.contracts, maker_rate)
        yes_sig = book_ok & ras_yes & clv_yes & (maker_yes > cushion)
        no_sig = book_ok & ras_no & clv_no & (maker_no > cushion)
    opposite = np.stack([no_sig, yes_sig], axis=2)  # exit a YES on a NO signal and vice versa
    rows = []
    for side, sig, t_edge, m_edge in (("yes", yes_sig, taker_yes, maker_yes), ("no", no_sig, taker_no, maker_no)):
        onset = sig & ~np.vstack([np.zeros((1, n_br), bool), sig[:-1]])
        r, b = np.nonzero(onset)
        taker = t_edge[r, b] > cushion[r, 0] + cfg.taker_extra_edge
        limit = np.where(side == "yes", bid[r, b], 1 - ask[r, b])
        rows.append(pd.DataFrame({"row": r, "bracket": b, "side": side, "size": cfg.contracts,
                                  "liquidity": np.where(taker, "taker", "maker"), "limit": limit,
                                  "edge": np.where(taker, t_edge[r, b], m_edge[r, b])}))
    intents = pd.concat(rows, ignore_index=True).sort_values(["row", "bracket", "side"], kind="stable")
    keep = _cooldown(intents, cfg.cooldown_min)
    return intents[keep].reset_index(drop=True), opposite


def _cooldown(intents: pd.DataFrame, minutes: int) -> np.ndarray:
    """Keep an intent only if the same bracket and side had none in the previous ``minutes``."""
    keep = np.ones(len(intents), bool)
    last: dict[tuple[int, str], int] = {}
    for i, (r, b, s) in enumerate(zip(intents["row"].to_numpy(), intents["bracket"].to_numpy(), intents["side"].to_numpy())):
        k = (int(b), s)
        if k in last and r - last[k] < minutes:
            keep[i] = False
        else:
            last[k] = int(r)
    return keep
