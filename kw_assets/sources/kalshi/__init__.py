"""Kalshi Trade API v2: client (endpoints), parse (JSON -> canonical frames), fetch (one event's data)."""
