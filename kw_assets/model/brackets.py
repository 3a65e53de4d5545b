"""Bracket semantics: which whole-degree-F daily highs make a Kalshi market resolve YES.

Read from the strike fields, never from ticker suffixes: ``between`` floor 79 cap 80 is 79 or 80 (both
inclusive); ``greater`` floor 86 is >= 87 (strict); ``less`` cap 79 is <= 78 (strict). Bounds are
whole degrees with -inf/+inf for the tails.
"""

from __future__ import annotations

import math
import re

import numpy as np
import pandas as pd

STRIKE_TYPES = ("between", "greater", "greater_or_equal", "less", "less_or_equal")


class BracketError(ValueError):
    """A bracket definition that cannot settle a whole-degree high unambiguously."""


def bracket_bounds(strike_type: str, floor_strike: float | None, cap_strike: float | None) -> tuple[float, float]:
    """Inclusive whole-degree [low, high] of highs that resolve YES."""
    f = None if floor_strike is None or (isinstance(floor_strike, float) and math.isnan(floor_strike)) else float(floor_strike)
    c = None if cap_strike is None or (isinstance(cap_strike, float) and math.isnan(cap_strike)) else float(cap_strike)
    if strike_type == "between":
        if f is None or c is None:
            raise BracketError("strike_type 'between' needs floor_strike and cap_strike")
        lo, hi = float(math.ceil(f)), float(math.floor(c))
    elif strike_type == "greater":
        if f is None:
            raise BracketError("strike_type 'greater' needs floor_strike")
        lo, hi = float(math.floor(f) + 1), math.inf
    elif strike_type == "greater_or_equal":
        if f is None:
            raise BracketError("strike_type 'greater_or_equal' needs floor_strike")
        lo, hi = float(math.ceil(f)), math.inf
    elif strike_type == "less":
        if c is None:
            raise BracketError("strike_type 'less' needs cap_strike")
        lo, hi = -math.inf, float(math.ceil(c) - 1)
    elif strike_type == "less_or_equal":
        if c is None:
            raise BracketError("strike_type 'less_or_equal' needs cap_strike")
        lo, hi = -math.inf, float(math.floor(c))
    else:
        raise BracketError(f"unknown strike_type {strike_type!r} (expected one of {', '.join(STRIKE_TYPES)})")
    if lo > hi:
        raise BracketError(f"empty bracket: {strike_type} floor={floor_strike} cap={cap_strike}")
    return lo, hi


def bracket_of(high_f: np.ndarray | float, lows: np.ndarray, highs: np.ndarray) -> np.ndarray:
    """Index of the bracket holding each whole-degree high (-1 where none does)."""
    h = np.atleast_1d(np.asarray(high_f, dtype=float))
    inside = (h[:, None] >= lows[None, :]) & (h[:, None] <= highs[None, :])
    idx = np.where(inside.any(axis=1), inside.argmax(axis=1), -1)
    return idx


def tiling_problems(lows: np.ndarray, highs: np.ndarray) -> list[str]:
    """Why brackets (in any order) fail to tile the whole line exactly once, or [] when they do."""
    order = np.argsort(lows, kind="stable")
    lo, hi = np.asarray(lows, float)[order], np.asarray(highs, float)[order]
    problems = []
    if len(lo) == 0:
        return ["no brackets"]
    if lo[0] != -math.inf:
        problems.append(f"lowest bracket starts at {lo[0]:g}, not at -inf (no lower tail)")
    if hi[-1] != math.inf:
        problems.append(f"highest bracket ends at {hi[-1]:g}, not at +inf (no upper tail)")
    for i in range(1, len(lo)):
        if lo[i] > hi[i - 1] + 1:
            problems.append(f"gap between {hi[i - 1]:g} and {lo[i]:g}")
        elif lo[i] <= hi[i - 1]:
            problems.append(f"overlap: [{lo[i - 1]:g}, {hi[i - 1]:g}] and [{lo[i]:g}, {hi[i]:g}]")
    return problems


_LABEL_BETWEEN = re.compile(r"^\s*(-?\d+)\s*°?\s*(?:to|-|–)\s*(-?\d+)\s*°?\s*$")
_LABEL_BELOW = re.compile(r"^\s*(-?\d+)\s*°?\s*or\s+(?:below|less|lower)\s*$", re.I)
_LABEL_ABOVE = re.compile(r"^\s*(-?\d+)\s*°?\s*or\s+(?:above|more|higher)\s*$", re.I)
_LABEL_LT = re.compile(r"^\s*<\s*(-?\d+)\s*°?\s*$")
_LABEL_GT = re.compile(r"^\s*>\s*(-?\d+)\s*°?\s*$")


def parse_bracket_label(label: str) -> tuple[str, float | None, float | None]:
    """A website label ("79° to 80°", "78° or below", "87° or above") -> (strike_type, floor, cap).

    The strike fields are what the API would send for the same market, so labels and API rows
    go through one ``bracket_bounds``.
    """
    if m := _LABEL_BETWEEN.match(label):
        lo, hi = int(m[1]), int(m[2])
        if lo > hi:
            raise BracketError(f"bracket label {label!r}: low end above high end")
        return "between", float(lo), float(hi)
    if m := _LABEL_BELOW.match(label):
        return "less", None, float(int(m[1]) + 1)
    if m := _LABEL_ABOVE.match(label):
        return "greater", float(int(m[1]) - 1), None
    if m := _LABEL_LT.match(label):
        return "less", None, float(m[1])
    if m := _LABEL_GT.match(label):
        return "greater", float(m[1]), None
    raise BracketError(f"cannot read a bracket from label {label!r}")


def add_bracket_columns(markets: pd.DataFrame) -> pd.DataFrame:
    """Add bracket_low_f / bracket_high_f / bracket_index (0 = coldest) to a markets frame."""
    bounds = [
        bracket_bounds(st, fl, cp)
        for st, fl, cp in zip(markets["strike_type"], markets["floor_strike"], markets["cap_strike"])
    ]
    out = markets.copy()
    out["bracket_low_f"] = [b[0] for b in bounds]
    out["bracket_high_f"] = [b[1] for b in bounds]
    out["bracket_index"] = out.groupby("event_ticker")["bracket_low_f"].rank(method="first").astype("int64") - 1
    return out
