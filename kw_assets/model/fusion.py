"""Logarithmic opinion pooling of the market's and the weather model's bracket PMFs.

p ∝ p_mkt^w · p_wx^(1-w), computed in log space after clipping both away from 0 and 1, then
renormalized. With ``adaptive``, the market weight moves with how much the market is saying:

    w = clip(w_base + g_v·(tanh(V / V0) - 1/2) + g_a·(tanh(A / A0) - 1/2), w_min, w_max)

where V is an EWM (span 30 min) of contracts traded per minute across the event and A is the
largest |acceleration| among its brackets. A quiet market leans on the weather; a busy, moving
market on itself. A minute without a full set of market quotes uses the weather alone (w = 0); a
partition without weather uses the market alone (w = 1).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from kw_assets.model.panel import by_minute_and_bracket
from kw_assets.model.stamps import utc_stamps


@dataclass(frozen=True)
class FusionConfig:
    w_base: float = 0.6
    adaptive: bool = True
    gain_volume: float = 0.2
    gain_accel: float = 0.2
    volume_scale: float = 20.0  # contracts per minute
    accel_scale: float = 0.002  # probability per minute^2
    w_min: float = 0.2
    w_max: float = 0.95
    eps: float = 1e-4


def log_pool(p_mkt: np.ndarray, p_wx: np.ndarray, w: np.ndarray, eps: float = 1e-4) -> np.ndarray:
    """Row-wise pool of two (rows x brackets) PMFs with market weight ``w`` per row."""
    lm = np.log(np.clip(p_mkt, eps, 1 - eps))
    lw = np.log(np.clip(p_wx, eps, 1 - eps))
    w = np.asarray(w, float)[:, None]
    z = np.where(w >= 1, lm, np.where(w <= 0, lw, w * lm + (1 - w) * lw))
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def market_weight(volume: np.ndarray, accel: np.ndarray, cfg: FusionConfig) -> np.ndarray:
    """Per-minute market weight from (minutes x brackets) volume and acceleration (see module doc)."""
    if not cfg.adaptive:
        return np.full(volume.shape[0], cfg.w_base)
    v = pd.Series(np.nansum(volume, axis=1)).ewm(span=30, adjust=False).mean().to_numpy()
    a = np.nanmax(np.abs(np.nan_to_num(accel)), axis=1)
    w = cfg.w_base + cfg.gain_volume * (np.tanh(v / cfg.volume_scale) - 0.5) + cfg.gain_accel * (np.tanh(a / cfg.accel_scale) - 0.5)
    return np.clip(w, cfg.w_min, cfg.w_max)


def fuse_panel(panel: pd.DataFrame, weather: pd.DataFrame, cfg: FusionConfig = FusionConfig()) -> pd.DataFrame:
    """Minute x bracket fused PMF from ``minute_panel`` rows and the latest ``weather_pmf`` at or before each minute."""
    panel = by_minute_and_bracket(panel)
    tickers = panel["market_ticker"].drop_duplicates().to_numpy()
    n_br = panel["bracket_index"].nunique()
    minutes = panel["minute_ts"].drop_duplicates()
    n_min = len(minutes)
    shape = (n_min, n_br)
    p_mkt = panel["p_norm"].to_numpy(float).reshape(shape)
    market_ok = ~np.isnan(p_mkt).any(axis=1)
    w = market_weight(panel["volume"].to_numpy(float).reshape(shape), panel["acceleration"].to_numpy(float).reshape(shape), cfg)

    p_wx = np.full(shape, np.nan)
    hazard = np.full(n_min, np.nan)
    if not weather.empty:
        wx = by_minute_and_bracket(weather, "decision_ts")
        dec = wx["decision_ts"].drop_duplicates()
        wx_p = wx["p_weather"].to_numpy(float).reshape(len(dec), n_br)
        wx_h = wx["hazard"].to_numpy(float).reshape(len(dec), n_br)[:, 0]
        k = np.searchsorted(dec.astype("int64").to_numpy(), minutes.astype("int64").to_numpy(), side="right") - 1
        has = k >= 0
        p_wx[has] = wx_p[k[has]]
        hazard[has] = wx_h[k[has]]
    weather_ok = ~np.isnan(p_wx).any(axis=1)
    w = np.where(~weather_ok, 1.0, np.where(~market_ok, 0.0, w))
    usable = market_ok | weather_ok
    fused = log_pool(np.where(market_ok[:, None], p_mkt, 0.5), np.where(weather_ok[:, None], p_wx, 0.5), w, cfg.eps)
    keep = np.repeat(usable, n_br)
    out = pd.DataFrame({
        "minute_ts": utc_stamps(np.repeat(minutes.to_numpy("datetime64[ns]"), n_br)),
        "market_ticker": np.tile(tickers, n_min),
        "bracket_index": np.tile(np.arange(n_br), n_min),
        "p_market": p_mkt.ravel(), "p_weather": p_wx.ravel(), "w_market": np.repeat(w, n_br),
        "p_fused": fused.ravel(), "hazard": np.repeat(hazard, n_br),
    })[keep].reset_index(drop=True)
    return out
