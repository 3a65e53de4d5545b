"""Backtest report tables (pure): P&L after fees by city and month, trade statistics, maker/taker split,
daily Sharpe (annualized with sqrt(365): the markets trade every calendar day), max drawdown, turnover,
a bootstrap 95% interval of net P&L over city-days, orders sent and filled per city-day, the hit rate of
"next-bar winners" and bracket migration (did the strategy follow the PMF's centre of mass)."""

from __future__ import annotations

from typing import Any, Callable, Iterable, Union

import numpy as np
import pandas as pd

from kw_assets.model.evaluation import ScoreSums

ANNUALIZATION_DAYS = 365


def order_outcomes(fills: pd.DataFrame) -> pd.DataFrame:
    """One row per filled order: contracts bought, entry edge per contract, net P&L, fees, liquidity."""
    f = fills[fills["contracts"] > 0]
    entries = f[f["action"] == "buy"]
    entries = entries.assign(notional=entries["price"] * entries["contracts"])
    g = f.groupby(["city", "climate_day", "order_id"])
    out = g.agg(net=("cash_flow", "sum"), fees=("fee", "sum")).join(
        entries.groupby(["city", "climate_day", "order_id"]).agg(
            contracts=("contracts", "sum"), edge=("edge", "first"), liquidity=("liquidity", "first"),
            entry_ts=("fill_ts", "min"), notional=("notional", "sum")))
    out = out.dropna(subset=["contracts"]).reset_index()
    out["realized_per_contract"] = out["net"] / out["contracts"]
    settled = f[f["action"] == "settle"].groupby(["city", "climate_day", "order_id"]).size()
    keys = pd.MultiIndex.from_frame(out[["city", "climate_day", "order_id"]])
    out["held_to_settlement"] = keys.isin(settled.index)
    return out


def daily_pnl(fills: pd.DataFrame) -> pd.Series:
    f = fills[fills["contracts"] > 0]
    return f.groupby("climate_day")["cash_flow"].sum().sort_index()


def drawdown(equity: pd.Series) -> pd.Series:
    """Distance below the running peak of cumulative P&L (the peak starts at 0: losing from day one is a drawdown)."""
    return equity - equity.cummax().clip(lower=0)


def summary(fills: pd.DataFrame) -> dict:
    orders = order_outcomes(fills)
    daily = daily_pnl(fills)
    equity = daily.cumsum()
    below_peak = drawdown(equity)
    sd = daily.std(ddof=1) if len(daily) > 1 else np.nan
    f = fills[fills["contracts"] > 0]
    traded = f[f["action"] != "settle"]
    return {
        "net_pnl": float(f["cash_flow"].sum()),
        "gross_pnl": float((f["cash_flow"] + f["fee"]).sum()),
        "fees": float(f["fee"].sum()),
        "realized_pnl": float(orders.loc[~orders["held_to_settlement"], "net"].sum()) if len(orders) else 0.0,
        "settlement_pnl": float(orders.loc[orders["held_to_settlement"], "net"].sum()) if len(orders) else 0.0,
        "orders_sent": int(orders_per_city_day(fills)["orders_sent"].sum()),
        "orders_filled": int(len(orders)),
        "hit_rate": float((orders["net"] > 0).mean()) if len(orders) else np.nan,
        "avg_edge_at_entry": float(orders["edge"].mean()) if len(orders) else np.nan,
        "avg_realized_per_contract": float(orders["net"].sum() / orders["contracts"].sum()) if len(orders) else np.nan,
        "daily_sharpe_annualized": float(daily.mean() / sd * np.sqrt(ANNUALIZATION_DAYS)) if sd and sd > 0 else np.nan,
        "max_drawdown": float(below_peak.min()) if len(below_peak) else 0.0,
        "days": int(len(daily)),
        "turnover_contracts": float(traded["contracts"].sum()),
        "turnover_notional": float((traded["contracts"] * traded["price"]).sum()),
        "maker_contracts": float(traded.loc[traded["liquidity"] == "maker", "contracts"].sum()),
        "taker_contracts": float(traded.loc[traded["liquidity"] == "taker", "contracts"].sum()),
        "maker_fees": float(traded.loc[traded["liquidity"] == "maker", "fee"].sum()),
        "taker_fees": float(traded.loc[traded["liquidity"] == "taker", "fee"].sum()),
        **{f"net_pnl_{k}": v for k, v in bootstrap_daily_ci(fills).items() if k in ("ci_low", "ci_high")},
    }


def bootstrap_daily_ci(fills: pd.DataFrame, n_boot: int = 10_000, level: float = 0.95, seed: int = 0) -> dict:
    """Net P&L per city-day that sent orders, its total and a bootstrap interval for the total (city-days
    resampled with replacement): the test of whether a profit is more than luck."""
    # every city-day the strategy sent an order on counts, filled or not (its P&L is then 0)
    per_day = fills.groupby(["city", "climate_day"])["cash_flow"].sum().to_numpy(float)
    if len(per_day) == 0:
        return {"city_days": 0, "net_pnl": 0.0, "ci_low": np.nan, "ci_high": np.nan}
    rng = np.random.default_rng(seed)
    block = max(1, 2_000_000 // len(per_day))  # resamples per block: ~16 MB of indices whatever the span
    totals = np.concatenate([per_day[rng.integers(0, len(per_day), (min(block, n_boot - i), len(per_day)))].sum(axis=1)
                             for i in range(0, n_boot, block)])
    lo, hi = np.quantile(totals, [(1 - level) / 2, (1 + level) / 2])
    return {"city_days": int(len(per_day)), "net_pnl": float(per_day.sum()), "ci_low": float(lo), "ci_high": float(hi)}


def orders_per_city_day(fills: pd.DataFrame) -> pd.DataFrame:
    """Orders sent and filled per city x climate day (order ids are unique only within their city-day)."""
    sent = fills[fills["action"] != "settle"].drop_duplicates(["city", "climate_day", "order_id"])
    filled = order_outcomes(fills)
    out = pd.DataFrame({"orders_sent": sent.groupby(["city", "climate_day"]).size(),
                        "orders_filled": filled.groupby(["city", "climate_day"]).size()})
    return out.fillna(0).astype(int).reset_index()


def month_of(days) -> np.ndarray:
    """"YYYY-MM" of each climate day (numpy's month unit: a Python strftime call per row took ~2% of a backfill)."""
    return pd.to_datetime(pd.Series(days)).to_numpy("datetime64[M]").astype(str)


def by_city_month(fills: pd.DataFrame) -> pd.DataFrame:
    f = fills[fills["contracts"] > 0].assign(month=lambda d: month_of(d["climate_day"]))
    orders = order_outcomes(fills).assign(month=lambda d: month_of(d["climate_day"]))
    pnl = f.groupby(["city", "month"]).agg(net_pnl=("cash_flow", "sum"), fees=("fee", "sum"))
    trades = orders.groupby(["city", "month"]).agg(trades=("order_id", "size"), hit_rate=("net", lambda s: (s > 0).mean()))
    return pnl.join(trades).fillna({"trades": 0}).reset_index()


def pnl_by_entry_hour(fills: pd.DataFrame, lst_offsets: dict[str, pd.Timedelta]) -> pd.Series:
    """Net P&L of orders by the local-standard-time hour they entered."""
    o = order_outcomes(fills)
    if o.empty:
        return pd.Series(dtype=float)
    hour = (o["entry_ts"] + o["city"].map(lst_offsets)).dt.hour
    return o.groupby(hour)["net"].sum().reindex(range(24), fill_value=0.0)


NEXT_BAR_MINUTES = (1, 5, 15)


def entry_orders(fills: pd.DataFrame) -> pd.DataFrame:
    """One row per filled entry order: city, climate_day, order_id, bracket_index, side, decided_ts, and the
    minute of its first fill (``fill_ts``)."""
    e = fills[(fills["action"] == "buy") & (fills["contracts"] > 0)]
    return (e.groupby(["city", "climate_day", "order_id"], as_index=False)
            .agg(bracket_index=("bracket_index", "first"), side=("side", "first"), decided_ts=("decided_ts", "first"),
                 fill_ts=("fill_ts", "min")))


def next_bar_winners(moves: pd.DataFrame, horizons=NEXT_BAR_MINUTES) -> pd.DataFrame:
    """Did the bracket we bought move our way (YES: its mid rose; NO: it fell) over the next minutes?
    ``moves``: one row per entry with ``side``, ``mid_0`` (mid at the fill minute) and ``mid_<h>`` for each
    horizon. Per horizon: entries with both mids known, the share that moved our way, the share flat, and
    the mean move in our favour in cents."""
    rows = []
    sign = np.where(moves["side"].to_numpy() == "yes", 1.0, -1.0)
    for h in horizons:
        move = sign * (moves[f"mid_{h}"].to_numpy(float) - moves["mid_0"].to_numpy(float))
        known = np.isfinite(move)
        m = move[known]
        rows.append({"minutes_after_fill": h, "entries": int(known.sum()),
                     "hit_rate": float((m > 1e-9).mean()) if len(m) else np.nan,
                     "flat_share": float((np.abs(m) <= 1e-9).mean()) if len(m) else np.nan,
                     "mean_move_cents": float(m.mean() * 100) if len(m) else np.nan})
    return pd.DataFrame(rows)


def bracket_migration(pmf: pd.DataFrame, entries: pd.DataFrame, window_min: int = 15) -> pd.DataFrame:
    """The calibrated PMF's centre of mass (expected bracket index) per city-day: at the first and last
    minute, its total path, and whether entries followed it. ``pmf``: city, climate_day, minute_ts,
    bracket_index, p (any regular sampling); an entry follows the migration when, with the centre moving
    (by >= 0.05 brackets over the ``window_min`` minutes before its decision), it buys YES on a bracket on the
    side the centre moves to, or NO on one on the side it leaves."""
    if pmf.empty:
        return pd.DataFrame(columns=["city", "climate_day", "com_first", "com_last", "com_path", "entries_in_move",
                                     "entries_followed", "followed_share"])
    pmf = pmf.assign(climate_day=pd.to_datetime(pmf["climate_day"]).astype("datetime64[ns]"),
                     minute_ts=pd.to_datetime(pmf["minute_ts"], utc=True).astype("datetime64[ns, UTC]"))
    entries = entries.assign(climate_day=pd.to_datetime(entries["climate_day"]).astype("datetime64[ns]"),
                             decided_ts=pd.to_datetime(entries["decided_ts"], utc=True).astype("datetime64[ns, UTC]"))
    wide = pmf.pivot_table(index=["city", "climate_day", "minute_ts"], columns="bracket_index", values="p").sort_index()
    com = pd.Series(wide.to_numpy(float) @ wide.columns.to_numpy(float), index=wide.index, name="com").dropna()
    days = com.groupby(level=["city", "climate_day"])
    out = pd.DataFrame({"com_first": days.first(), "com_last": days.last(),
                        "com_path": days.apply(lambda s: float(np.abs(np.diff(s.to_numpy())).sum()))})
    table = com.reset_index().sort_values("minute_ts")
    e = entries.assign(before_ts=entries["decided_ts"] - pd.Timedelta(minutes=window_min)).reset_index(drop=True)
    e["_row"] = np.arange(len(e))
    for col, at in (("com_now", "decided_ts"), ("com_before", "before_ts")):
        asof = pd.merge_asof(e[["_row", "city", "climate_day", at]].sort_values(at), table, left_on=at,
                             right_on="minute_ts", by=["city", "climate_day"], direction="backward")
        e[col] = asof.set_index("_row")["com"].reindex(e["_row"]).to_numpy()
    vel = e["com_now"] - e["com_before"]
    moving = vel.abs() >= 0.05
    toward = np.sign(e["bracket_index"] - e["com_before"]) == np.sign(vel)
    followed = np.where(e["side"] == "yes", toward, ~toward)
    e["moving"], e["followed"] = moving, moving & followed
    per_day = e.groupby(["city", "climate_day"]).agg(entries_in_move=("moving", "sum"), entries_followed=("followed", "sum"))
    out = out.join(per_day).fillna({"entries_in_move": 0, "entries_followed": 0})
    out = out.astype({"entries_in_move": int, "entries_followed": int})
    out["followed_share"] = out["entries_followed"] / out["entries_in_move"].where(out["entries_in_move"] > 0)
    return out.reset_index()


Chunks = Union[pd.DataFrame, Iterable[pd.DataFrame], Callable[[Callable[[pd.DataFrame], Any]], list]]


def over_chunks(sampled: Chunks, fn: Callable[[pd.DataFrame], Any]) -> list:
    """``fn`` of each chunk of ``sampled``, in order: a frame (one chunk), frames, or a function that applies
    ``fn`` to each chunk itself (where the chunks are read and worked on elsewhere, e.g. a month per process)."""
    if callable(sampled):
        return sampled(fn)
    return [fn(chunk) for chunk in ([sampled] if isinstance(sampled, pd.DataFrame) else sampled)]


def report_contents(fills: pd.DataFrame, scores: pd.DataFrame, sampled: Chunks,
                    markets: pd.DataFrame, settled: pd.DataFrame, mids: pd.DataFrame, offsets: dict[str, pd.Timedelta],
                    n_brackets: int | None = None) -> tuple[dict, dict[str, pd.DataFrame], dict[str, pd.DataFrame]]:
    """The report from stored frames: the summary (with next-bar hit rates and bracket migration), its tables
    by title, and the reliability of the fused and calibrated PMFs. ``sampled``: settled calibrated rows with
    a ``winner``, in chunks of whole city-days (``over_chunks``; their events scored if they have ``n_brackets``
    brackets, default the most in the first chunk); ``mids``: each entry's mid at the fill and later
    (``next_bar_winners``); ``offsets``: each city's LST offset from UTC."""
    stats = summary(fills)
    before_after = scores[scores["group_by"].isin(["all", "city"]) & scores["model"].isin(["fused", "calibrated"])]
    entries = entry_orders(fills)
    next_bar = next_bar_winners(mids)
    traded = fills[["city", "climate_day"]].drop_duplicates().assign(climate_day=lambda d: pd.to_datetime(d["climate_day"]))
    sums = ScoreSums(n_brackets, models=("fused", "calibrated"))
    day_starts = {k: -v for k, v in offsets.items()}

    def chunk_parts(chunk: pd.DataFrame) -> tuple[dict, pd.DataFrame | None]:
        if not len(chunk):
            return {}, None
        return (sums.chunk_sums(chunk, markets, settled, day_starts),  # sets n_brackets from the first chunk if not given
                bracket_migration(chunk.rename(columns={"p_calibrated": "p"}).merge(traded), entries))

    parts = []
    for chunk_sums, migration_part in over_chunks(sampled, chunk_parts):
        sums.merge(chunk_sums)  # in chunk order: the same sums as adding the chunks one after the other
        if migration_part is not None and len(migration_part):
            parts.append(migration_part)
    reliability = sums.tables()[1]
    migration = (pd.concat(parts, ignore_index=True).sort_values(["city", "climate_day"], ignore_index=True) if parts
                 else bracket_migration(pd.DataFrame(), entries))
    in_move = int(migration["entries_in_move"].sum()) if len(migration) else 0
    stats.update({f"next_bar_hit_rate_{h}m": float(v) for h, v in zip(next_bar["minutes_after_fill"], next_bar["hit_rate"])})
    stats.update({"migration_entries_in_move": in_move,
                  "migration_followed_share": float(migration["entries_followed"].sum() / in_move) if in_move else np.nan,
                  "migration_mean_abs_drift": float((migration["com_last"] - migration["com_first"]).abs().mean())
                  if len(migration) else np.nan})
    tables = {"Net P&L by city and month": by_city_month(fills),
              "Orders per city-day": orders_per_city_day(fills),
              "Next-bar winners (the bought side's mid after the fill)": next_bar,
              "Bracket migration (centre of mass of the calibrated PMF, in brackets)": migration,
              "Scores before (fused) and after (calibrated) calibration": before_after.drop(columns=["source"])}
    return stats, tables, reliability
