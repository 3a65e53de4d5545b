"""Proper scores for ordered multi-bracket forecasts.

Brier: sum over brackets of (p - y)^2, averaged over forecasts. Log loss: -log p(winner) (sklearn,
probabilities clipped at 1e-15). RPS: squared distance of the cumulative distributions, summed over the
first B-1 thresholds and divided by B-1 (so 0 is perfect, 1 is the worst), averaged. ECE: bracket-level
probabilities in 10 equal-width bins on [0, 1]; sum over bins of (bin share) x |mean p - hit rate|.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.metrics import log_loss

ECE_BINS = 10


def one_hot(winner: np.ndarray, n_brackets: int) -> np.ndarray:
    y = np.zeros((len(winner), n_brackets))
    y[np.arange(len(winner)), winner] = 1.0
    return y


def brier(p: np.ndarray, winner: np.ndarray) -> float:
    return float(((p - one_hot(winner, p.shape[1])) ** 2).sum(axis=1).mean())


def logloss(p: np.ndarray, winner: np.ndarray) -> float:
    return float(log_loss(winner, np.clip(p, 1e-15, 1), labels=np.arange(p.shape[1])))


def rps(p: np.ndarray, winner: np.ndarray) -> float:
    b = p.shape[1]
    cdf_p = np.cumsum(p, axis=1)[:, :-1]
    cdf_y = np.cumsum(one_hot(winner, b), axis=1)[:, :-1]
    return float(((cdf_p - cdf_y) ** 2).sum(axis=1).mean() / (b - 1))


def reliability(p: np.ndarray, winner: np.ndarray, bins: int = ECE_BINS) -> pd.DataFrame:
    probs = p.ravel()
    hits = one_hot(winner, p.shape[1]).ravel()
    idx = np.minimum((probs * bins).astype(int), bins - 1)
    count = np.bincount(idx, minlength=bins)
    mean_p = np.bincount(idx, weights=probs, minlength=bins) / np.maximum(count, 1)
    freq = np.bincount(idx, weights=hits, minlength=bins) / np.maximum(count, 1)
    edges = np.linspace(0, 1, bins + 1)
    return pd.DataFrame({"bin_low": edges[:-1], "bin_high": edges[1:], "count": count,
                         "mean_p": np.where(count > 0, mean_p, np.nan), "hit_rate": np.where(count > 0, freq, np.nan)})


def ece(p: np.ndarray, winner: np.ndarray, bins: int = ECE_BINS) -> float:
    t = reliability(p, winner, bins)
    used = t["count"] > 0
    return float((t.loc[used, "count"] / t["count"].sum() * (t.loc[used, "mean_p"] - t.loc[used, "hit_rate"]).abs()).sum())


def score_all(p: np.ndarray, winner: np.ndarray) -> dict[str, float]:
    return {"n": int(len(p)), "brier": brier(p, winner), "log_loss": logloss(p, winner), "rps": rps(p, winner),
            "ece": ece(p, winner)}
