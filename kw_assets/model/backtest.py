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

import numpy as np
import pandas as pd

from kw_assets.model.fees import fee_cents
from kw_assets.model.fills import FillConfig, Tape, maker_fill, taker_fill
from kw_assets.model.stamps import utc_stamps

FILL_COLUMNS = ["order_id", "decided_ts", "fill_ts", "market_ticker", "bracket_index", "side", "action", "liquidity",
                "price", "contracts", "fee", "cash_flow", "edge", "reason"]


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


def _fill(order_id, tape, decided, row, b, side, action, liquidity, price, qty, cfg, edge, reason):
    no_fee = liquidity == "settlement" or qty <= 0
    fee = 0.0 if no_fee else fee_cents(price, qty, liquidity == "maker", cfg.fee_type, cfg.fee_multiplier) / 100
    notional = round(price * qty, 6) if qty > 0 else 0.0
    cash = (-notional - fee) if action == "buy" else (notional - fee)
    return {"order_id": order_id, "decided_ts": decided,  # minute rows: stamped once, by run_backtest
            "fill_ts": min(row, tape.n_minutes - 1), "market_ticker": tape.tickers[b], "bracket_index": b,
            "side": side, "action": action, "liquidity": liquidity, "price": price, "contracts": qty, "fee": fee,
            "cash_flow": round(cash, 6), "edge": edge, "reason": reason}


def run_backtest(tape: Tape, intents: pd.DataFrame, winner: int, opposite: np.ndarray | None = None,
                 fill_cfg: FillConfig = FillConfig(), cfg: ExecutionConfig = ExecutionConfig()) -> pd.DataFrame:
    """Every order and fill of one event (unfilled orders appear with 0 contracts and a reason)."""
    fills: list[dict] = []
    positions: list[dict] = []  # b, size, qty, decided, done, exit_row, pnl (realized by exit_row)
    n = tape.n_minutes
    square_up = max(n - 1 - cfg.square_up_min, 0)
    for k, it in enumerate(intents.to_dict("records")):
        t, b, side = int(it["row"]), int(it["bracket"]), it["side"]
        oid = f"o{k:05d}"
        realized = sum(p["pnl"] for p in positions if p["exit_row"] <= t)
        open_b = sum(_exposure(p, t) for p in positions if p["b"] == b)
        open_e = sum(_exposure(p, t) for p in positions)
        # contracts come in hundredths: round away the float dust of the limits (60 - 59.99999999999999)
        size = round(min(float(it["size"]), cfg.max_contracts_bracket - open_b, cfg.max_contracts_event - open_e), 2)
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
            fills.append(_fill(oid, tape, t, t, b, side, "buy", it["liquidity"], np.nan, 0.0, cfg, it["edge"], reason))
            continue
        if it["liquidity"] == "taker":
            row, price, qty = taker_fill(tape, t, b, side, "buy", size, fill_cfg)
            entries = [(row, price, qty)] if qty > 0 else []
        else:
            rows, qtys = maker_fill(tape, t, b, side, float(it["limit"]), size, fill_cfg)
            entries = [(int(r), float(it["limit"]), float(q)) for r, q in zip(rows, qtys)]
        if not entries:
            fills.append(_fill(oid, tape, t, t, b, side, "buy", it["liquidity"], np.nan, 0.0, cfg, it["edge"], "not filled"))
            done = t + fill_cfg.latency_min if it["liquidity"] == "taker" else min(t + fill_cfg.maker_ttl_min, n - 1)
            positions.append({"b": b, "size": size, "qty": 0.0, "decided": t, "done": done, "exit_row": done, "pnl": 0.0})
            continue
        held = 0.0
        cost = 0.0
        for row, price, qty in entries:
            f = _fill(oid, tape, t, row, b, side, "buy", it["liquidity"], price, qty, cfg, it["edge"], "entry")
            fills.append(f)
            held += qty
            cost += -f["cash_flow"]
        # exits are considered once the entry order is done: filled, or (a resting order) expired;
        # starting at the last fill would use the knowledge that no more fills were coming
        entry_row = entries[-1][0]
        if it["liquidity"] != "taker" and held < size - 1e-9:
            entry_row = max(entry_row, min(t + fill_cfg.maker_ttl_min, n - 1))
        avg = sum(p * q for _, p, q in entries) / held
        pnl = -cost
        exit_row = n
        if cfg.exit_mode == "rules" and entry_row < n - 1:
            decided = _exit_row(tape, b, side, entry_row, avg, square_up, opposite, cfg)
            r = decided
            while held > 0 and r < n - 1:
                row, price, qty = taker_fill(tape, r, b, side, "sell", held, fill_cfg)
                if qty > 0:
                    f = _fill(oid, tape, decided, row, b, side, "sell", "taker", price, qty, cfg, it["edge"], "exit")
                    fills.append(f)
                    held -= qty
                    pnl += f["cash_flow"]
                    exit_row = row
                r += 1
        if held > 0:
            pays = 1.0 if (side == "yes") == (b == winner) else 0.0
            f = _fill(oid, tape, n - 1, n - 1, b, side, "settle", "settlement", pays, held, cfg, it["edge"], "settlement")
            fills.append(f)
            pnl += f["cash_flow"]
            exit_row = n
        positions.append({"b": b, "size": size, "qty": float(sum(q for _, _, q in entries)), "decided": t,
                          "done": entry_row, "exit_row": exit_row, "pnl": pnl})
    out = pd.DataFrame(fills, columns=FILL_COLUMNS)
    for column in ("fill_ts", "decided_ts"):
        out[column] = utc_stamps(tape.minutes.asi8[out[column].to_numpy(int)]) if len(out) else \
            pd.Series(dtype="datetime64[ns, UTC]")
    return out


def _exposure(p: dict, t: int) -> float:
    """Contracts a position ties up at minute t, known at t: the whole order while it works (its fills
    are not known in advance), then what was filled, until it is closed."""
    if not p["decided"] <= t < p["exit_row"]:
        return 0.0
    return p["size"] if t < p["done"] else p["qty"]


def _exit_row(tape: Tape, b: int, side: str, entry_row: int, avg: float, square_up: int,
              opposite: np.ndarray | None, cfg: ExecutionConfig) -> int:
    """First minute after entry at which an exit is decided (vectorized scan)."""
    rows = np.arange(entry_row + 1, tape.n_minutes)
    if side == "yes":
        mark = np.where(np.isfinite(tape.yes_bid[rows, b]) & (tape.yes_bid[rows, b] > 0), tape.yes_bid[rows, b],
                        tape.last[rows, b] - tape.half_spreads(rows, b))
    else:
        mark = np.where(np.isfinite(tape.yes_ask[rows, b]) & (tape.yes_ask[rows, b] < 1), 1 - tape.yes_ask[rows, b],
                        1 - tape.last[rows, b] - tape.half_spreads(rows, b))
    hit = (mark - avg >= cfg.take_profit) | (avg - mark >= cfg.stop_loss) | (rows >= square_up)
    if opposite is not None:
        hit |= opposite[rows, b, 0 if side == "yes" else 1]
    hit = np.nan_to_num(hit, nan=0).astype(bool)
    return int(rows[np.argmax(hit)]) if hit.any() else tape.n_minutes - 1


def equity_path(fills: pd.DataFrame, tape: Tape) -> pd.DataFrame:
    """Per minute: cash, open contracts, positions marked at mid (NO at 1 - mid), equity; settled at the end."""
    n, nb = tape.n_minutes, len(tape.tickers)
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
