"""The functional core: pure numpy/pandas, no Dagster, no I/O."""
