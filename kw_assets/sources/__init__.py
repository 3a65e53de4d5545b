"""The outside world: HTTP clients, the simulated exchange and weather feed, file readers. No Dagster."""

SOURCES = ("simulated", "live", "file")  # where a row came from: the `source` column of every table
SIMULATED_BANNER = "SIMULATED DATA: a demonstration of the pipeline, not evidence of edge."

