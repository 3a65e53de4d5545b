"""Walk-forward calibration of bracket PMFs: Platt (sigmoid on logit p), isotonic, temperature
scaling (one T on the multi-bracket log-probabilities), or none.

Calibrators for climate day D are fit only on days whose outcome was public before D's market opened
(``model/embargo.py``: days <= D - 1 - ``embargo_days``), expanding or in a rolling window of
``window_days``; below ``min_samples`` rows the identity is used. Calibrated vectors are renormalized to
sum to 1. ``describe()`` is the lineage kept on every calibrated row.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression

from kw_assets.model.embargo import EMBARGO_DAYS, last_known_day

METHODS = ("none", "platt", "isotonic", "temperature")
EPS = 1e-6


@dataclass(frozen=True)
class CalibrationConfig:
    method: str = "temperature"
    window_days: int | None = None  # None: expanding
    embargo_days: int = EMBARGO_DAYS
    min_samples: int = 500  # training rows (minute x event, sampled) below which the identity is used
    sample_every_min: int = 15


@dataclass
class Calibrator:
    method: str
    fit_start: dt.date | None = None
    fit_end: dt.date | None = None
    fit_days: int = 0
    fit_samples: int = 0
    model: object = None
    temperature: float = 1.0

    def apply(self, p: np.ndarray) -> np.ndarray:
        p = np.clip(np.asarray(p, float), EPS, 1 - EPS)
        if self.model is None:
            q = p
        elif self.method == "temperature":
            z = np.log(p) / self.temperature
            z -= z.max(axis=1, keepdims=True)
            q = np.exp(z)
        elif self.method == "platt":
            logit = np.log(p / (1 - p)).reshape(-1, 1)
            q = self.model.predict_proba(logit)[:, 1].reshape(p.shape)
        else:
            q = self.model.predict(p.ravel()).reshape(p.shape)
        q = np.clip(q, 0, None)
        total = q.sum(axis=1, keepdims=True)
        return np.where(total > 0, q / np.where(total > 0, total, 1), p / p.sum(axis=1, keepdims=True))

    def describe(self) -> dict:
        effective = self.method if self.model is not None else "none"
        return {"calibration_method": effective, "calibration_requested": self.method,
                "fit_start": _stamp(self.fit_start), "fit_end": _stamp(self.fit_end), "fit_days": self.fit_days,
                "fit_samples": self.fit_samples, "temperature": self.temperature if effective == "temperature" else np.nan}


def _stamp(day: dt.date | None) -> pd.Timestamp:
    """A day as a timestamp (NaT for None): a column of dates would be parsed value by value when written."""
    return pd.Timestamp(day or pd.NaT).as_unit("ns")


def fit_calibrator(method: str, p: np.ndarray, winner: np.ndarray, min_samples: int = 500) -> Calibrator:
    """Fit on (rows x brackets) PMFs and the winning bracket index of each row."""
    if method not in METHODS:
        raise ValueError(f"calibration method must be one of {METHODS}, got {method!r}")
    cal = Calibrator(method, fit_samples=int(len(p)))
    if method == "none" or len(p) < min_samples:
        return cal  # no fitted model: the identity
    p = np.clip(np.asarray(p, float), EPS, 1 - EPS)
    y = np.zeros_like(p)
    y[np.arange(len(p)), winner] = 1
    if method == "temperature":
        cal.temperature = fit_temperature(np.log(p), np.asarray(winner, int))
        cal.model = "temperature"
    elif method == "platt":
        x = np.log(p / (1 - p)).reshape(-1, 1)
        cal.model = LogisticRegression(C=1e4, max_iter=500).fit(x, y.ravel())
    else:
        cal.model = IsotonicRegression(y_min=0, y_max=1, out_of_bounds="clip").fit(p.ravel(), y.ravel())
    return cal


def fit_temperature(logp: np.ndarray, winner: np.ndarray, bounds: tuple[float, float] = (np.exp(-3), np.exp(3)),
                    tol: float = 1e-10) -> float:
    """The T minimizing the mean log loss of softmax(logp / T) at ``winner``, within ``bounds``. The loss is
    convex in b = 1/T (its second derivative is the mean variance of logp under the tempered PMF), so Newton
    steps on b, bisecting when one would leave the bracket of the derivative's root, converge in a handful
    of passes over the rows (a bounded Brent search on log T took ~25)."""
    logp = logp - logp.max(axis=1, keepdims=True)  # the max's share cancels in the softmax
    squared = logp * logp
    picked = logp[np.arange(len(logp)), winner]

    def derivatives(b: float) -> tuple[float, float]:
        q = np.exp(b * logp)
        total = q.sum(axis=1)
        mean = np.einsum("ij,ij->i", q, logp) / total
        return float((mean - picked).mean()), float((np.einsum("ij,ij->i", q, squared) / total - mean * mean).mean())

    lo, hi = 1 / bounds[1], 1 / bounds[0]  # b's bracket; a root outside it ends at the bound it lies beyond
    b = min(max(1.0, lo), hi)
    for _ in range(200):
        g, curvature = derivatives(b)
        if g > 0:
            hi = b
        else:
            lo = b
        nxt = b - g / curvature if curvature > 0 else np.nan
        if not lo < nxt < hi:
            nxt = (lo + hi) / 2
        if abs(nxt - b) <= tol * b:
            return float(1 / nxt)
        b = nxt
    return float(1 / b)


@dataclass(frozen=True)
class History:
    """Settled, sampled PMFs as arrays sorted by climate day: ``p`` is (rows x widest event), NaN-padded."""

    days: np.ndarray  # datetime64[D]
    p: np.ndarray
    winner: np.ndarray
    n_brackets: np.ndarray

    @classmethod
    def from_frame(cls, frame: pd.DataFrame) -> "History":
        """From rows of (climate_day, p: list of bracket probabilities, winner, n_brackets)."""
        if frame.empty:
            return cls(np.empty(0, "datetime64[D]"), np.empty((0, 1)), np.empty(0, int), np.empty(0, int))
        days = pd.to_datetime(frame["climate_day"]).to_numpy("datetime64[D]")
        order = np.argsort(days, kind="stable")
        width = frame["n_brackets"].to_numpy(int)
        p = np.full((len(frame), int(width.max())), np.nan)
        rows = np.repeat(np.arange(len(frame)), width)
        cols = np.arange(len(rows)) - np.repeat(np.cumsum(width) - width, width)
        p[rows, cols] = np.concatenate(frame["p"].to_numpy())
        return cls(days[order], p[order], frame["winner"].to_numpy(int)[order], width[order])


def training_slice(days: np.ndarray, target: dt.date, window_days: int | None, embargo_days: int = EMBARGO_DAYS) -> slice:
    """Rows (of day-sorted ``days``) known before ``target``'s market opened, within the rolling window if any."""
    end = np.datetime64(last_known_day(target, embargo_days), "D")
    lo = 0 if window_days is None else int(np.searchsorted(days, np.datetime64(target - dt.timedelta(days=window_days), "D")))
    return slice(lo, int(np.searchsorted(days, end, side="right")))


def walk_forward_fit(history: pd.DataFrame | History, target: dt.date, cfg: CalibrationConfig) -> Calibrator:
    """Fit on settled rows from days before ``target`` (days <= target - 1 - embargo)."""
    h = history if isinstance(history, History) else History.from_frame(history)
    window = training_slice(h.days, target, cfg.window_days, cfg.embargo_days)
    if window.stop <= window.start:
        return fit_calibrator(cfg.method, np.empty((0, 1)), np.empty(0, int), cfg.min_samples)
    width = int(h.n_brackets[window].max())
    keep = h.n_brackets[window] == width
    days = h.days[window][keep]
    cal = fit_calibrator(cfg.method, h.p[window][keep, :width], h.winner[window][keep], cfg.min_samples)
    cal.fit_start, cal.fit_end = days[0].astype(object), days[-1].astype(object)
    cal.fit_days = int(len(np.unique(days)))
    cal.fit_samples = int(len(days))
    return cal
