"""The backtest engine and its accounting, for one event.

Orders come from a strategy (or a test) as intents decided at minute rows. Each passes the risk limits
(contracts per bracket and per event, counting a working order at its full size until it is done; no
entry into an empty book; a daily loss limit on realized P&L) and enters through the fill model. Once
the entry order is done (filled, or expired while resting), it exits by the first of: take-profit or
stop-loss in dollars against the entry price (marked at what a taker would get), the opposite signal, or
a square-up ``square_up_min`` before the close; exits are taker orders, minute by minute until filled. Whatever is
still held at the close settles at 1 or 0 per contract from the market's result. With
``exit_mode='settlement'`` every position is held to settlement.

Cash flows: a buy pays price x contracts + fee, a sell receives price x contracts - fee, settlement
pays 1 per winning contract. Net P&L is the sum of cash flows; every position ends flat.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import pandas as pd

from kw_assets.model.fees import fee_cents
from kw_assets.model.fills import FillConfig, Tape, maker_fill, taker_fill
from kw_assets.model.panel import by_minute_and_bracket, grid_minutes
from kw_assets.model.stamps import utc_stamps

FILL_COLUMNS = ["order_id", "decided_ts", "fill_ts", "market_ticker", "bracket_index", "side", "action", "liquidity",
                "price", "contracts", "fee", "cash_flow", "edge", "reason"]
_CASH = FILL_COLUMNS.index("cash_flow")


@dataclass(frozen=True)
class ExecutionConfig:
    exit_mode: str = "rules"  # rules | settlement
    take_profit: float = 0.08
    stop_loss: float = 0.08
    square_up_min: int = 30
    max_contracts_bracket: float = 30.0
    max_contracts_event: float = 60.0
    daily_loss_limit: float = 25.0
    fee_type: str = "quadratic"
    fee_multiplier: float = 1.0


def run_backtest(tape: Tape, intents: pd.DataFrame, winner: int, opposite: np.ndarray | None = None,
                 fill_cfg: FillConfig = FillConfig(), cfg: ExecutionConfig = ExecutionConfig()) -> pd.DataFrame:
    """Every order and fill of one event (unfilled orders appear with 0 contracts and a reason)."""
    return fills_frame(backtest_records(tape, intents, winner, opposite, fill_cfg, cfg), tape)


def fills_frame(records: list[tuple], tape: Tape) -> pd.DataFrame:
    """``backtest_records`` as the fills table, its minute rows stamped with the tape's minutes."""
    out = pd.DataFrame(records, columns=FILL_COLUMNS)
    for column in ("fill_ts", "decided_ts"):
        out[column] = utc_stamps(tape.minutes.asi8[out[column].to_numpy(int)]) if len(out) else \
            pd.Series(dtype="datetime64[ns, UTC]")
    return out


def backtest_records(tape: Tape, intents: pd.DataFrame, winner: int, opposite: np.ndarray | None = None,
                     fill_cfg: FillConfig = FillConfig(), cfg: ExecutionConfig = ExecutionConfig()) -> list[tuple]:
    """``run_backtest``'s rows as tuples in ``FILL_COLUMNS`` order, with minute rows where the table has
    times: what the sweep summarises without building a frame per grid point."""
    fills: list[tuple] = []
    positions: list[_Position] = []
    n = tape.n_minutes
    square_up = max(n - 1 - cfg.square_up_min, 0)
    columns = [intents[c].tolist() for c in ("row", "bracket", "side", "size", "liquidity", "limit", "edge")]
    for k, (t, b, side, want, liquidity, limit, edge) in enumerate(zip(*columns)):
        t, b = int(t), int(b)
        oid = f"o{k:05d}"
        realized = sum(p.pnl for p in positions if p.exit_row <= t)
        open_b = sum(_exposure(p, t) for p in positions if p.bracket == b)
        open_e = sum(_exposure(p, t) for p in positions)
        # contracts come in hundredths: round away the float dust of the limits (60 - 59.99999999999999)
        size = round(min(float(want), cfg.max_contracts_bracket - open_b, cfg.max_contracts_event - open_e), 2)
        bid, ask = tape.yes_bid[t, b], tape.yes_ask[t, b]
        reason = None
        if realized <= -cfg.daily_loss_limit:
            reason = "daily loss limit"
        elif size <= 0:
            reason = "position limit"
        elif not (np.isfinite(bid) and np.isfinite(ask)) or (bid <= 0 and ask >= 1):
            reason = "empty book"
        elif t >= square_up:
            reason = "too close to the close"
        if reason:
            fills.append(_fill(oid, tape, t, t, b, side, "buy", liquidity, np.nan, 0.0, cfg, edge, reason))
            continue
        if liquidity == "taker":
            row, price, qty = taker_fill(tape, t, b, side, "buy", size, fill_cfg)
            entries = [(row, price, qty)] if qty > 0 else []
        else:
            rows, qtys = maker_fill(tape, t, b, side, float(limit), size, fill_cfg)
            entries = [(r, float(limit), q) for r, q in zip(rows.tolist(), qtys.tolist())]
        if not entries:
            fills.append(_fill(oid, tape, t, t, b, side, "buy", liquidity, np.nan, 0.0, cfg, edge, "not filled"))
            done = t + fill_cfg.latency_min if liquidity == "taker" else min(t + fill_cfg.maker_ttl_min, n - 1)
            positions.append(_Position(b, size, 0.0, t, done, done, 0.0))
            continue
        held = 0.0
        cost = 0.0
        for row, price, qty in entries:
            f = _fill(oid, tape, t, row, b, side, "buy", liquidity, price, qty, cfg, edge, "entry")
            fills.append(f)
            held += qty
            cost += -f[_CASH]
        # exits are considered once the entry order is done: filled, or (a resting order) expired;
        # starting at the last fill would use the knowledge that no more fills were coming
        entry_row = entries[-1][0]
        if liquidity != "taker" and held < size - 1e-9:
            entry_row = max(entry_row, min(t + fill_cfg.maker_ttl_min, n - 1))
        avg = sum(p * q for _, p, q in entries) / held
        pnl = -cost
        exit_row = n
        if cfg.exit_mode == "rules" and entry_row < n - 1:
            decided = _exit_row(tape, b, side, entry_row, avg, square_up, opposite, cfg)
            # a taker exit fills only at a minute with volume: the others are skipped, not tried
            for r in _traded_rows(tape, b, decided, n - 1, fill_cfg.latency_min):
                row, price, qty = taker_fill(tape, r, b, side, "sell", held, fill_cfg)
                if qty > 0:
                    f = _fill(oid, tape, decided, row, b, side, "sell", "taker", price, qty, cfg, edge, "exit")
                    fills.append(f)
                    held -= qty
                    pnl += f[_CASH]
                    exit_row = row
                    if held <= 0:
                        break
        if held > 0:
            pays = 1.0 if (side == "yes") == (b == winner) else 0.0
            f = _fill(oid, tape, n - 1, n - 1, b, side, "settle", "settlement", pays, held, cfg, edge, "settlement")
            fills.append(f)
            pnl += f[_CASH]
            exit_row = n
        positions.append(_Position(b, size, float(sum(q for _, _, q in entries)), t, entry_row, exit_row, pnl))
    return fills


def _fill(order_id, tape, decided, row, b, side, action, liquidity, price, qty, cfg, edge, reason) -> tuple:
    no_fee = liquidity == "settlement" or qty <= 0
    fee = 0.0 if no_fee else fee_cents(price, qty, liquidity == "maker", cfg.fee_type, cfg.fee_multiplier) / 100
    notional = round(price * qty, 6) if qty > 0 else 0.0
    cash = (-notional - fee) if action == "buy" else (notional - fee)
    # minute rows: stamped once, by fills_frame
    return (order_id, decided, min(row, tape.n_minutes - 1), tape.tickers[b], b, side, action, liquidity, price, qty,
            fee, round(cash, 6), edge, reason)


def _traded_rows(tape: Tape, b: int, first: int, stop: int, latency: int) -> list[int]:
    """Decision rows in [first, stop) whose fill minute (``latency`` later) is on the tape and traded."""
    lo, hi = first + latency, min(stop + latency, tape.n_minutes)
    if lo >= hi:
        return []
    return (np.flatnonzero(tape.traded[lo:hi, b]) + first).tolist()


class _Position(NamedTuple):
    """An order and what became of it, in minute rows: working from ``decided`` until ``done``, held until
    ``exit_row``; ``pnl`` is realized by then."""

    bracket: int
    size: float
    qty: float
    decided: int
    done: int
    exit_row: int
    pnl: float


def _exposure(p: _Position, t: int) -> float:
    """Contracts a position ties up at minute t, known at t: the whole order while it works (its fills
    are not known in advance), then what was filled, until it is closed."""
    if not p.decided <= t < p.exit_row:
        return 0.0
    return p.size if t < p.done else p.qty


def _exit_row(tape: Tape, b: int, side: str, entry_row: int, avg: float, square_up: int,
              opposite: np.ndarray | None, cfg: ExecutionConfig) -> int:
    """First minute after entry at which an exit is decided (vectorized scan)."""
    s = 0 if side == "yes" else 1
    lo = entry_row + 1
    mark = tape.exit_marks[lo:, b, s]
    hit = (mark - avg >= cfg.take_profit) | (avg - mark >= cfg.stop_loss)
    hit[max(square_up - lo, 0):] = True
    if opposite is not None:
        hit |= opposite[lo:, b, s]
    return lo + int(np.argmax(hit)) if hit.any() else tape.n_minutes - 1


@dataclass(frozen=True)
class Marks:
    """A day's mids on its minute grid (minutes x brackets): all ``equity_path`` reads of a tape, from the panel's
    ``MARK_COLUMNS`` alone (a third of what a tape is built from, and no text)."""
    minutes: pd.DatetimeIndex
    mid: np.ndarray

    @classmethod
    def of(cls, panel: pd.DataFrame) -> "Marks":
        panel = by_minute_and_bracket(panel)
        minutes = grid_minutes(panel)
        return cls(minutes, panel["mid"].to_numpy(float).reshape(len(minutes), -1) if len(minutes) else np.zeros((0, 0)))


MARK_COLUMNS = ("minute_ts", "bracket_index", "mid")


def equity_path(fills: pd.DataFrame, tape: Tape | Marks) -> pd.DataFrame:
    """Per minute: cash, open contracts, positions marked at mid (NO at 1 - mid), equity; settled at the end."""
    n, nb = tape.mid.shape
    f = fills[fills["contracts"] > 0]
    row = np.clip(((f["fill_ts"].astype("int64").to_numpy() - tape.minutes[0].value) // 60_000_000_000).astype(int), 0, n - 1)
    signed = np.where(f["action"].to_numpy() == "buy", 1.0, -1.0) * f["contracts"].to_numpy(float)
    is_settle = f["action"].to_numpy() == "settle"
    yes, no = np.zeros((n, nb)), np.zeros((n, nb))
    side_yes = f["side"].to_numpy() == "yes"
    b = f["bracket_index"].to_numpy(int)
    np.add.at(yes, (row[side_yes & ~is_settle], b[side_yes & ~is_settle]), signed[side_yes & ~is_settle])
    np.add.at(no, (row[~side_yes & ~is_settle], b[~side_yes & ~is_settle]), signed[~side_yes & ~is_settle])
    yes, no = np.cumsum(yes, axis=0), np.cumsum(no, axis=0)
    cash = np.zeros(n)
    np.add.at(cash, row[~is_settle], f["cash_flow"].to_numpy(float)[~is_settle])
    cash = np.cumsum(cash)
    mid = np.nan_to_num(tape.mid, nan=0.5)
    value = (yes * mid).sum(axis=1) + (no * (1 - mid)).sum(axis=1)
    fees = np.zeros(n)
    np.add.at(fees, row, f["fee"].to_numpy(float))
    out = pd.DataFrame({"minute_ts": tape.minutes, "cash": cash, "open_contracts": (yes + no).sum(axis=1),
                        "position_value": value, "equity": cash + value, "fees_cum": np.cumsum(fees)})
    settle_cash = float(f.loc[is_settle, "cash_flow"].sum())
    final = pd.DataFrame({"minute_ts": [tape.minutes[-1] + pd.Timedelta(minutes=1)], "cash": [cash[-1] + settle_cash],
                          "open_contracts": [0.0], "position_value": [0.0], "equity": [cash[-1] + settle_cash],
                          "fees_cum": [out["fees_cum"].iloc[-1]]})
    return pd.concat([out, final], ignore_index=True)
