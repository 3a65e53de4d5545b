"""Dagster resources: where raw data comes from (one ``source`` setting) and where tables live.

``source`` is ``simulated`` (default, offline), ``live`` (Kalshi + Visual Crossing over the network)
or ``file`` (Kalshi website price-history exports; no weather unless a VC key is set). Secrets come
from environment variables through ``dagster.EnvVar`` and are never logged.
"""

from __future__ import annotations

import os
from typing import Optional

import dagster as dg
from pydantic import Field, PrivateAttr

from kw_assets.defs.config import build, run_config_from
from kw_assets.parallel import default_workers
from kw_assets.sources.clients import SourceSettings, kalshi_client, weather_client
from kw_assets.sources.kalshi.client import KalshiClient
from kw_assets.sources.simulator.world_store import WorldStore
from kw_assets.sources.visual_crossing import VisualCrossingClient
from kw_assets.warehouse import Warehouse, open_warehouse


class MarketDataResource(run_config_from("MarketDataSettings", SourceSettings, base=dg.ConfigurableResource)):
    """Kalshi and Visual Crossing clients for the configured source (fields: ``sources.clients.SourceSettings``)."""

    _world_dir: Optional[str] = PrivateAttr(default=None)

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        """A run on the simulated source builds each city-day's world once, for all of its steps."""
        if self.source == "simulated" and not self.simulated_world_dir and context.run_id:
            self._world_dir = str(WorldStore.for_run(context.run_id).folder)

    def settings(self) -> SourceSettings:
        settings = build(SourceSettings, self)
        if self._world_dir and not settings.simulated_world_dir:
            settings.simulated_world_dir = self._world_dir
        return settings

    def kalshi_client(self) -> KalshiClient:
        return kalshi_client(self.settings())

    def weather_client(self) -> VisualCrossingClient | None:
        return weather_client(self.settings())


def warehouse_kind(env=os.environ) -> str:
    """``postgres`` when ``KW_WAREHOUSE`` is a PostgreSQL URL, else ``duckdb``: the assets' pool and kind."""
    return "postgres" if env.get("KW_WAREHOUSE", "").startswith(("postgresql://", "postgres://")) else "duckdb"


# Every asset that writes the warehouse is in this pool, named after the warehouse. `duckdb` must be limited
# to 1 (one writing process per file: the instance's pools.default_limit, 1 in dagster.local.yaml). A
# PostgreSQL warehouse takes writers of different partitions side by side, so an instance on it raises the
# limit of pool `postgres` (deploy/dagster.yaml: 8).
WAREHOUSE_POOL = WAREHOUSE_KIND = warehouse_kind()


class WarehouseResource(dg.ConfigurableResource):
    """The warehouse every table lives in: a DuckDB file, or a PostgreSQL database (a ``postgresql://`` URL)."""

    path: str = Field(default="data/warehouse.duckdb", description="DuckDB file, or postgresql://user@host:port/db")
    workers: int = Field(default_factory=default_workers,
                         description="processes that compute partitions in parallel within a step (KW_WORKERS, "
                                     "default one per core); only the step's own process opens the DuckDB file")

    memory_limit: Optional[str] = Field(default="256MB", description="DuckDB's buffer per connection (e.g. '1GB'; "
                                                                    "None: 80% of RAM): bounds a backfill's memory")
    threads: Optional[int] = Field(default=None, description="DuckDB threads per connection (None: one per core)")

    def get(self) -> Warehouse:
        return open_warehouse(self.path, memory_limit=self.memory_limit, threads=self.threads)


def _env(name: str):
    """EnvVar when the variable is set (so nothing secret is read into config text), else None."""
    return dg.EnvVar(name) if os.environ.get(name) else None


def default_resources() -> dict[str, dg.ConfigurableResource]:
    return {
        "market_data": MarketDataResource(
            source=os.environ.get("KW_SOURCE", "simulated"),
            price_history_dir=os.environ.get("KW_PRICE_HISTORY_DIR"),
            kalshi_key_id=_env("KALSHI_KEY_ID"),
            kalshi_private_key=_env("KALSHI_PRIVATE_KEY"),
            visual_crossing_api_key=_env("VISUAL_CROSSING_API_KEY"),
        ),
        "warehouse": WarehouseResource(path=os.environ.get("KW_WAREHOUSE", "data/warehouse.duckdb")),
    }
