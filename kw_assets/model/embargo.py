"""When a settled day becomes training data, for every walk-forward fit (calibrators, the weather EMOS,
the climatology baseline) and the schema checks that guard them.

D's market opens at 14:00 UTC the day before, and a climate day settles the next morning, so when D's
market opens the outcomes of D-1 and D-2 are still unknown: a fit for D uses days <= D - 1 - embargo."""

from __future__ import annotations

import datetime as dt

import pandas as pd

EMBARGO_DAYS = 2


def last_known_day(day, embargo_days: int = EMBARGO_DAYS):
    """The last climate day whose outcome was public when ``day``'s market opened (a date, a Timestamp
    or a Series of them)."""
    if isinstance(day, dt.date) and not isinstance(day, dt.datetime):
        return day - dt.timedelta(days=embargo_days + 1)
    return day - pd.Timedelta(days=embargo_days + 1)
