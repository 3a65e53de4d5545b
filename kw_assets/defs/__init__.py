"""The Dagster shell: resources, one module per layer of assets, automation. Thin: load, call, validate, write."""
