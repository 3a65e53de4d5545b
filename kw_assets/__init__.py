"""kw_assets: Kalshi daily-high bracket markets + station weather as Dagster software-defined assets."""
