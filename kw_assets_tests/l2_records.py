"""What a perfect recorder would have written for a simulated event, built straight from the simulated
book (no sockets): a snapshot of every market at ``start``, every delta after it, a heartbeat every 10 s."""

import json

import numpy as np
import pandas as pd

from kw_assets.recorder.segments import COLUMNS
from kw_assets.sources.simulator.order_book import SIDES, SimulatedBook
from kw_assets.sources.simulator.world import World


def recorded_rows(w: World, seed: int, start: float, end: float) -> pd.DataFrame:
    book = SimulatedBook(w, seed)
    tickers = [b.ticker for b in w.brackets]
    sizes = book.at(start)
    snaps = []
    for i, t in enumerate(tickers):
        msg = {"market_ticker": t, "market_id": t}
        for k, side in enumerate(SIDES):
            prices = np.nonzero(sizes[i, k])[0]
            if prices.size:
                msg[f"{side}_dollars_fp"] = [[f"{p / 100:.4f}", f"{sizes[i, k, p]:.2f}"] for p in prices]
        snaps.append({"clock_ms": int(start * 1000), "kind": "orderbook_snapshot", "market_ticker": t,
                      "raw": json.dumps({"type": "orderbook_snapshot", "msg": msg})})
    d = book.deltas(start, end)
    deltas = pd.DataFrame({"clock_ms": d["ts_ms"], "kind": "orderbook_delta", "market_ticker": np.array(tickers)[d["bracket"]],
                           "side": np.array(SIDES)[d["side"]], "price_cents": d["price"], "quantity": d["delta"],
                           "ts_ms": d["ts_ms"]})
    beats = pd.DataFrame({"clock_ms": np.arange(int(start * 1000) + 10_000, int(end * 1000), 10_000), "kind": "heartbeat"})
    rows = pd.concat([pd.DataFrame(snaps), deltas, beats], ignore_index=True).sort_values("clock_ms", kind="stable")
    rows = rows.reset_index(drop=True)
    out = pd.DataFrame({c: rows[c] if c in rows.columns else None for c in COLUMNS})
    out["recv_ns"] = out["clock_ms"] * 1_000_000
    for c in ("sid", "seq", "price_cents", "ts_ms"):
        out[c] = pd.to_numeric(out[c]).fillna(-1).astype("int64")
    out["connection"] = 1
    out["quantity"] = out["quantity"].astype(float)
    out["raw"] = out["raw"].fillna("")
    return out
