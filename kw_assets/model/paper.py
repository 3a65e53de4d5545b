"""Paper trading on the backtest's own code: at minute t, the engine runs on what is known at t.

The day's minute grid is known in advance (the markets' open and close), so the engine keeps its shape;
every row after t is unknown: no quotes, no volume, no prints, no recorded book, no signal. The orders
and fills the engine then produces with a decision and a fill at or before t are what a paper book would
have sent and been filled by t. Because the engine and the strategy only use the past, these never
change as t advances, and at the close they are exactly the backtest's: the parity a trader checks
before trusting the paper book (and, later, money) with it.

Orders and fills carry the engine's deterministic ids, so a paper loop that restarts recomputes the same
ones and only appends those it has not stored: nothing is sent twice and positions continue.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd

from kw_assets.model.backtest import ExecutionConfig, run_backtest
from kw_assets.model.fills import FillConfig, Tape
from kw_assets.model.panel import minute_grid

UNKNOWN_WINNER = -1


def known_at(tape: Tape, t: int) -> Tape:
    """The tape as it stands at the end of minute row ``t``: every later row unknown."""
    later = slice(t + 1, None)

    def cut(a: np.ndarray | None, fill=np.nan) -> np.ndarray | None:
        if a is None:
            return None
        out = a.copy()
        out[later] = fill
        return out

    keep = tape.print_row <= t
    return dataclasses.replace(
        tape, yes_bid=cut(tape.yes_bid), yes_ask=cut(tape.yes_ask), last=cut(tape.last), mid=cut(tape.mid),
        volume=cut(tape.volume, 0.0), price_low=cut(tape.price_low), price_high=cut(tape.price_high),
        price_open=cut(tape.price_open), price_close=cut(tape.price_close), book=cut(tape.book),
        l2_half_spread=cut(tape.l2_half_spread), print_row=tape.print_row[keep], print_bracket=tape.print_bracket[keep],
        print_price=tape.print_price[keep], print_count=tape.print_count[keep],
        print_yes_taker=tape.print_yes_taker[keep] if tape.print_yes_taker is not None else None)


def on_day_grid(frame: pd.DataFrame, markets: pd.DataFrame) -> pd.DataFrame:
    """A minute x bracket table of a day still being written (the live tail's panel or PMF, up to its last
    complete minute) on the day's whole grid: the minutes not stored yet are rows of NaN, so the engine has
    the day's shape and ``known_at`` sees them as unknown."""
    grid = minute_grid(markets)
    brackets = markets.sort_values("bracket_index")
    full = pd.MultiIndex.from_product([grid, brackets["bracket_index"].to_numpy()], names=["minute_ts", "bracket_index"])
    if len(frame) == len(full):
        return frame
    out = frame.set_index(["minute_ts", "bracket_index"]).reindex(full).reset_index()
    out["market_ticker"] = brackets["market_ticker"].to_numpy()[np.tile(np.arange(len(brackets)), len(grid))]
    for c in ("city", "climate_day", "source"):
        if c in frame.columns and len(frame):
            out[c] = frame[c].iloc[0]
    return out[[c for c in frame.columns]]


def paper_fills(tape: Tape, intents: pd.DataFrame, opposite: np.ndarray | None, t: int, winner: int = UNKNOWN_WINNER,
                fills: FillConfig = FillConfig(), execution: ExecutionConfig = ExecutionConfig()) -> pd.DataFrame:
    """Every order decided and every fill done by the end of row ``t``, on what is known then (the
    settlement only once ``winner`` is known and ``t`` is the last row)."""
    seen = known_at(tape, t)
    decided = intents[intents["row"] <= t]
    opp = None
    if opposite is not None:
        opp = opposite.copy()
        opp[t + 1:] = False
    out = run_backtest(seen, decided, winner, opp, fills, execution)
    last = tape.minutes[t]
    done = (out["decided_ts"] <= last) & (out["fill_ts"] <= last)
    # an order that got nothing is known not to have filled only once it is over: a taker's minute, a
    # resting order's expiry (the engine stamps the record at the decision)
    row_of = pd.Series(np.arange(tape.n_minutes), index=tape.minutes)
    decided_row = row_of.reindex(out["decided_ts"]).to_numpy()
    over = np.minimum(decided_row + np.where(out["liquidity"] == "taker", fills.latency_min, fills.maker_ttl_min),
                      tape.n_minutes - 1)
    done &= (out["reason"] != "not filled") | (over <= t)
    if winner == UNKNOWN_WINNER or t < tape.n_minutes - 1:
        done &= out["action"] != "settle"
    return out[done].reset_index(drop=True)


def not_yet_stored(known: pd.DataFrame, stored: pd.DataFrame) -> pd.DataFrame:
    """The known orders and fills a paper book has not recorded yet (keyed by order, action, fill minute)."""
    if stored is None or stored.empty:
        return known
    key = ["order_id", "action", "fill_ts"]
    have = pd.MultiIndex.from_frame(stored[key])
    return known[~pd.MultiIndex.from_frame(known[key]).isin(have)].reset_index(drop=True)


def compare_with_backtest(paper: pd.DataFrame, backtest: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """The paper day next to the backtest's: orders, fills, contracts by liquidity, net P&L and fees, and
    the differences order by order (empty when the paper book did exactly what the backtest did)."""
    key = ["order_id", "action", "fill_ts"]
    cols = ["price", "contracts", "fee", "cash_flow"]

    def numbers(f: pd.DataFrame, name: str) -> dict:
        traded = f[(f["contracts"] > 0) & (f["action"] != "settle")]
        return {"book": name, "orders": int(f.loc[f["action"] == "buy", "order_id"].nunique()),
                "rows": len(f), "maker_contracts": float(traded.loc[traded["liquidity"] == "maker", "contracts"].sum()),
                "taker_contracts": float(traded.loc[traded["liquidity"] == "taker", "contracts"].sum()),
                "net_pnl": float(f["cash_flow"].sum()), "fees": float(f["fee"].sum())}

    table = pd.DataFrame([numbers(paper, "paper"), numbers(backtest, "backtest")])
    both = paper[key + cols].merge(backtest[key + cols], on=key, how="outer", suffixes=("_paper", "_backtest"), indicator="side")
    where = both["order_id"] + " " + both["action"] + " at " + both["fill_ts"].astype(str) + ": "
    alone = both["side"] != "both"
    differences = list(where[alone] + "only in the " + np.where(both.loc[alone, "side"] == "left_only", "paper book", "backtest"))
    matched = both[~alone]
    for c in cols:
        off = ~np.isclose(matched[f"{c}_paper"], matched[f"{c}_backtest"], atol=1e-9, equal_nan=True)
        differences += list(where[~alone][off] + f"{c} " + matched.loc[off, f"{c}_paper"].astype(str) + " vs "
                            + matched.loc[off, f"{c}_backtest"].astype(str))
    return table, differences
