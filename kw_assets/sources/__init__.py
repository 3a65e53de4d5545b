"""The outside world: HTTP clients, the simulated exchange and weather feed, file readers. No Dagster."""
