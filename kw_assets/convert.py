"""Strict conversion of raw values to numbers, shared by every source and by ``schemas.conform``: a
blank (None, NaN, "") stays missing; anything else that is not a number (a word, a boolean) raises a
``DataError`` naming the table, the field, the row and the value, so a corrupt cell never passes a schema
as a missing price."""

from __future__ import annotations

from typing import Any, Iterable

import numpy as np
import pandas as pd

from kw_assets.errors import DataError


def _blank(v: Any) -> bool:
    return v is None or v is pd.NA or v is pd.NaT or (isinstance(v, float) and v != v) or (isinstance(v, str) and not v.strip())


def _number(v: Any) -> bool:
    if isinstance(v, (bool, np.bool_)):
        return False
    try:
        float(v)
        return True
    except (TypeError, ValueError):
        return False


def numbers(values: Iterable[Any], table: str, field: str) -> np.ndarray:
    """Decimal strings, numbers or blanks -> float64."""
    if isinstance(values, (pd.Series, np.ndarray)) and values.dtype.kind in "iuf":
        return np.asarray(values, dtype="float64")
    items = [np.nan if _blank(v) else v for v in values]
    if not any(isinstance(v, (bool, np.bool_)) for v in items):
        try:  # fast path: numpy parses decimal strings in C; the loop below only explains a failure
            return np.asarray(items, dtype=object).astype("float64") if items else np.empty(0)
        except (TypeError, ValueError):
            pass
    bad = [i for i, v in enumerate(items) if not _number(v)]
    raise DataError(table, field, f"row {bad[0]}: not a number: {items[bad[0]]!r} ({len(bad)} value(s))")
