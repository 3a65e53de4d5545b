"""The order-book recorder: Kalshi WebSocket messages to rotated Parquet segments. No Dagster."""
