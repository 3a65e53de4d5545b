"""Kalshi JSON written from the API reference (shapes as of the 2026 fixed-point migration)."""

LIVE_CANDLE = {
    "end_period_ts": 1750000020,
    "yes_bid": {"open_dollars": "0.4100", "low_dollars": "0.4000", "high_dollars": "0.4200", "close_dollars": "0.4200"},
    "yes_ask": {"open_dollars": "0.4400", "low_dollars": "0.4300", "high_dollars": "0.4500", "close_dollars": "0.4400"},
    "price": {"open_dollars": "0.4300", "low_dollars": "0.4200", "high_dollars": "0.4400", "close_dollars": "0.4400",
              "mean_dollars": "0.4325", "previous_dollars": "0.4100"},
    "volume_fp": "57.51",
    "open_interest_fp": "1200.00",
}
# a minute with a quote change but no trade: price carries only previous_dollars
LIVE_QUOTE_ONLY = {
    "end_period_ts": 1750000080,
    "yes_bid": {"open_dollars": "0.4200", "low_dollars": "0.4200", "high_dollars": "0.4300", "close_dollars": "0.4300"},
    "yes_ask": {"open_dollars": "0.4400", "low_dollars": "0.4400", "high_dollars": "0.4400", "close_dollars": "0.4400"},
    "price": {"previous_dollars": "0.4400"},
    "volume_fp": "0.00",
    "open_interest_fp": "1200.00",
}
HISTORICAL_CANDLE = {
    "end_period_ts": 1717250760,
    "open_interest": "0.00",
    "price": {"close": None, "high": None, "low": None, "mean": None, "open": None, "previous": None},
    "volume": "0.00",
    "yes_ask": {"close": "0.9900", "high": "0.9900", "low": "0.9900", "open": "0.9900"},
    "yes_bid": {"close": "0.0000", "high": "0.0000", "low": "0.0000", "open": "0.0000"},
}


def trade(i: int, ticker: str = "KXHIGHNY-25JUN10-B87.5", side: str = "yes") -> dict:
    return {"trade_id": f"t{i}", "ticker": ticker, "created_time": f"2025-06-10T15:{i % 60:02d}:32.701172Z",
            "count_fp": "1.67", "yes_price_dollars": "0.3700", "no_price_dollars": "0.6300",
            "taker_outcome_side": side, "taker_book_side": "bid" if side == "yes" else "ask", "taker_side": side,
            "is_block_trade": False}
