"""Dagster resources: where raw data comes from (one ``source`` setting) and where tables live.

``source`` is ``simulated`` (default, offline), ``live`` (Kalshi + Visual Crossing over the network)
or ``file`` (Kalshi website price-history exports; no weather unless a VC key is set). Secrets come
from environment variables through ``dagster.EnvVar`` and are never logged.
"""

from __future__ import annotations

import datetime as dt
import os
from typing import Optional

import dagster as dg
from pydantic import Field

from kw_assets.parallel import default_workers
from kw_assets.sources.http import RetryPolicy
from kw_assets.sources.kalshi.client import PRODUCTION_URL, KalshiClient
from kw_assets.sources.kalshi.signing import KalshiSigner
from kw_assets.sources.simulator.exchange import SimulatedExchange
from kw_assets.sources.simulator.faults import FaultConfig
from kw_assets.sources.simulator.world import Agents
from kw_assets.sources.simulator.weather_feed import SimulatedWeatherFeed
from kw_assets.sources.visual_crossing import BASE_URL as VC_URL, VisualCrossingClient
from kw_assets.sources import SOURCES
from kw_assets.warehouse import Warehouse



class MarketDataResource(dg.ConfigurableResource):
    """Kalshi and Visual Crossing clients for the configured source."""

    source: str = Field(default="simulated", description="simulated | live | file")
    weather_source: Optional[str] = Field(default=None, description="simulated | live | none; default follows source "
                                                                    "(file -> live if a VC key is set, else none)")
    seed: int = Field(default=7, description="simulator seed (with city and day)")
    simulated_now: Optional[str] = Field(default=None, description="ISO instant the simulated world is at; default: now")
    simulated_rate_limit: Optional[float] = Field(default=None, description="simulated exchange's requests/s limit")
    sim_agents_obs_delay_min: float = Field(default=0.0, description="simulated market: its traders learn each "
                                                                      "observation this many minutes late (a planted edge)")
    sim_agents_ignore_forecast_drift: bool = Field(default=False, description="simulated market: its traders stay on "
                                                                              "the runs issued by the listing (a planted edge)")
    fault_rate_429: float = 0.0
    fault_rate_5xx: float = 0.0
    fault_rate_timeout: float = 0.0
    fault_rate_drop: float = 0.0
    fault_rate_empty_page: float = 0.0
    kalshi_base_url: str = PRODUCTION_URL
    kalshi_requests_per_second: float = Field(default=20.0, description="client-side token bucket for live Kalshi")
    kalshi_key_id: Optional[str] = None
    kalshi_private_key: Optional[str] = Field(default=None, description="PEM text; from KALSHI_PRIVATE_KEY")
    visual_crossing_url: str = VC_URL
    visual_crossing_api_key: Optional[str] = None
    price_history_dir: Optional[str] = Field(default=None, description="folder of kalshi-price-history-*.csv (file source)")
    retry_sleep: bool = Field(default=True, description="sleep between retries (tests switch it off)")
    max_attempts: int = Field(default=10, description="attempts per request before giving up (429/5xx/timeouts/drops)")

    def label(self) -> str:
        if self.source not in SOURCES:
            raise ValueError(f"market_data.source must be one of {SOURCES}, got {self.source!r}")
        return self.source

    def weather_label(self) -> str:
        if self.weather_source:
            return self.weather_source
        if self.source == "file":
            return "live" if self.visual_crossing_api_key else "none"
        return self.source

    def _now(self):
        if self.simulated_now:
            fixed = dt.datetime.fromisoformat(self.simulated_now.replace("Z", "+00:00"))
            return lambda: fixed
        return None

    def _faults(self) -> FaultConfig:
        return FaultConfig(self.fault_rate_429, self.fault_rate_5xx, self.fault_rate_timeout, self.fault_rate_drop,
                           self.fault_rate_empty_page, seed=self.seed)

    def _sleep(self):
        import time
        return time.sleep if self.retry_sleep else (lambda s: None)

    def kalshi_client(self) -> KalshiClient:
        signer = KalshiSigner(self.kalshi_key_id, self.kalshi_private_key) if self.kalshi_key_id and self.kalshi_private_key else None
        if self.label() == "simulated":
            exchange = SimulatedExchange(seed=self.seed, now=self._now(), rate_limit=self.simulated_rate_limit,
                                         faults=self._faults(),
                                         agents=Agents(obs_delay_min=self.sim_agents_obs_delay_min,
                                                       ignore_forecast_drift=self.sim_agents_ignore_forecast_drift))
            rate = self.simulated_rate_limit * 0.95 if self.simulated_rate_limit else None
            return KalshiClient(transport=exchange.transport(), requests_per_second=rate, signer=signer,
                                sleep=self._sleep(), retry=RetryPolicy(max_attempts=self.max_attempts))
        return KalshiClient(self.kalshi_base_url, requests_per_second=self.kalshi_requests_per_second, signer=signer,
                            sleep=self._sleep(), retry=RetryPolicy(max_attempts=self.max_attempts))

    def weather_client(self) -> VisualCrossingClient | None:
        kind = self.weather_label()
        if kind == "none":
            return None
        if kind == "simulated":
            feed = SimulatedWeatherFeed(seed=self.seed, now=self._now(), faults=self._faults())
            return VisualCrossingClient(self.visual_crossing_api_key or "simulated-key", transport=feed.transport(),
                                        requests_per_second=None, sleep=self._sleep(),
                                        retry=RetryPolicy(max_attempts=self.max_attempts, base_delay_s=0.5))
        if not self.visual_crossing_api_key:
            raise ValueError("weather source is live but VISUAL_CROSSING_API_KEY is not set")
        return VisualCrossingClient(self.visual_crossing_api_key, self.visual_crossing_url, sleep=self._sleep())


class WarehouseResource(dg.ConfigurableResource):
    """The DuckDB file every table lives in."""

    path: str = Field(default="data/warehouse.duckdb")
    workers: int = Field(default_factory=default_workers,
                         description="processes that compute partitions in parallel within a step (KW_WORKERS, "
                                     "default one per core); only the step's own process opens the DuckDB file")

    memory_limit: Optional[str] = Field(default="1GB", description="DuckDB's buffer per connection (e.g. '1GB'; "
                                                                    "None: 80% of RAM): bounds a backfill's memory")
    threads: Optional[int] = Field(default=None, description="DuckDB threads per connection (None: one per core)")

    def get(self) -> Warehouse:
        return Warehouse(self.path, memory_limit=self.memory_limit, threads=self.threads)


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
