"""Strict conversion of raw values to numbers, shared by every source and by ``schemas.conform``: a
blank (None, NaN, "") stays missing; anything else that is not a number (a word, a boolean) raises a
``DataError`` naming the table, the field, the row and the value, so a corrupt cell never passes a schema
as a missing price."""

from __future__ import annotations

from typing import Any, Iterable

import numpy as np
import pandas as pd

from kw_assets.errors import DataError

# what pandas' C type inference may say of a column that holds only numbers, numeric strings and blanks
_NUMERIC_KINDS = {"empty", "string", "floating", "integer", "mixed-integer-float", "decimal"}


def _number(v: Any) -> bool:
    if isinstance(v, (bool, np.bool_)):
        return False
    try:
        float(v)
        return True
    except (TypeError, ValueError):
        return False


def numbers(values: Iterable[Any], table: str, field: str) -> np.ndarray:
    """Decimal strings, numbers or blanks -> float64 (vectorised; only a failure is explained row by row)."""
    if isinstance(values, (pd.Series, np.ndarray)) and values.dtype.kind in "iuf":
        return np.asarray(values, dtype="float64")
    arr = np.asarray(values if isinstance(values, (list, np.ndarray, pd.Series)) else list(values), dtype=object)
    blank = pd.isna(arr)
    blank[~blank] = arr[~blank] == ""  # compared only where not missing: pd.NA has no truth value
    if pd.api.types.infer_dtype(arr, skipna=True) in _NUMERIC_KINDS:
        try:
            return np.where(blank, "nan", arr).astype("float64") if blank.any() else arr.astype("float64")
        except (TypeError, ValueError):
            pass
    out, bad = np.full(len(arr), np.nan), []
    for i, v in enumerate(arr.tolist()):  # the slow path: whitespace-only blanks, or a value to name
        if blank[i] or (isinstance(v, str) and not v.strip()):
            continue
        if _number(v):
            out[i] = float(v)
        else:
            bad.append(i)
    if bad:
        raise DataError(table, field, f"row {bad[0]}: not a number: {arr[bad[0]]!r} ({len(bad)} value(s))")
    return out
