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
    s = row_statistics(p, winner, bins).sum(axis=0)
    return reliability_from_sums(s[4:4 + bins], s[4 + bins:4 + 2 * bins], s[4 + 2 * bins:])


def reliability_from_sums(count: np.ndarray, sum_p: np.ndarray, hits: np.ndarray) -> pd.DataFrame:
    """The reliability table from per-bin counts, summed probabilities and hits."""
    count = np.asarray(count, float)
    edges = np.linspace(0, 1, len(count) + 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_p, freq = sum_p / count, hits / count
    return pd.DataFrame({"bin_low": edges[:-1], "bin_high": edges[1:], "count": count.astype(int),
                         "mean_p": np.where(count > 0, mean_p, np.nan), "hit_rate": np.where(count > 0, freq, np.nan)})


def row_statistics(p: np.ndarray, winner: np.ndarray, bins: int = ECE_BINS) -> np.ndarray:
    """Per forecast, what the scores sum: [1, Brier, log loss, RPS, then per bin of its bracket probabilities
    the count, the summed probability and the hits]. Log loss as sklearn's ``log_loss`` after our clip."""
    n, b = p.shape
    y = one_hot(winner, b)
    cdf = np.cumsum(p, axis=1)[:, :-1] - np.cumsum(y, axis=1)[:, :-1]
    eps = np.finfo(float).eps
    first = np.column_stack([np.ones(n), ((p - y) ** 2).sum(axis=1),
                             -np.log(np.clip(p[np.arange(n), winner], max(1e-15, eps), 1 - eps)),
                             (cdf ** 2).sum(axis=1) / (b - 1)])
    cell = (np.arange(n)[:, None] * bins + np.minimum((p * bins).astype(int), bins - 1)).ravel()
    per_bin = [np.bincount(cell, weights=w, minlength=n * bins).reshape(n, bins) for w in (None, p.ravel(), y.ravel())]
    return np.hstack([first, *per_bin])


def ece(p: np.ndarray, winner: np.ndarray, bins: int = ECE_BINS) -> float:
    return ece_from_reliability(reliability(p, winner, bins))


def ece_from_reliability(t: pd.DataFrame) -> float:
    """Expected calibration error from a reliability table: |mean_p - hit_rate| weighted by the bins' counts."""
    used = t["count"] > 0
    return float((t.loc[used, "count"] / t["count"].sum() * (t.loc[used, "mean_p"] - t.loc[used, "hit_rate"]).abs()).sum())
