"""Settlement of one city-day from its markets: the official high and the winning bracket.

Kalshi settles a climate day the next morning: the settled whole-degree high is every market's
``expiration_value`` and the winning bracket has ``result == "yes"``. Events dated up to 2026-08-13
settled on the NWS Daily Climatological Report, later ones on The Weather Company (Kalshi's market
rules; the two agreed on 447 of 448 city-days around the switch).
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd

from kw_assets.errors import DataError

LAST_NWS_SETTLED_DAY = dt.date(2026, 8, 13)


def settlement_source_name(source: str, day: dt.date) -> str:
    """Who published the official high this row settles on."""
    if source == "simulated":
        return "simulated (CLI semantics)"
    if source == "file":
        return "inferred from final website prices"
    return "NWS Daily Climate Report" if day <= LAST_NWS_SETTLED_DAY else "The Weather Company"


def settlement_row(markets: pd.DataFrame, obs: pd.DataFrame, source: str, day) -> pd.DataFrame:
    """The official high and the winning bracket once the event has settled (no row before)."""
    winners = markets[markets["result"] == "yes"]
    values = markets["expiration_value"].dropna().unique()
    if len(values) > 1:
        raise DataError("kalshi_markets", "expiration_value", f"markets disagree on the settled value: {sorted(values)}")
    if winners.empty and len(values) == 0:
        return pd.DataFrame()
    high = float(values[0]) if len(values) else np.nan
    if len(winners) == 1 and np.isfinite(high):
        w = winners.iloc[0]
        if not w["bracket_low_f"] <= high <= w["bracket_high_f"]:
            raise DataError("settlement", "official_high_f", f"settled high {high:g} is outside the winning bracket "
                                                              f"{w['market_ticker']} [{w['bracket_low_f']:g}, {w['bracket_high_f']:g}]")
    return pd.DataFrame({
        "event_ticker": [markets["event_ticker"].iloc[0]],
        "official_high_f": [high],
        "winning_market_ticker": [winners["market_ticker"].iloc[0] if len(winners) else None],
        "winning_bracket_index": [int(winners["bracket_index"].iloc[0]) if len(winners) else -1],
        "settlement_source": [settlement_source_name(source, day)],
        "obs_max_f": [float(obs["temp_f"].max()) if len(obs) else np.nan],
    })
