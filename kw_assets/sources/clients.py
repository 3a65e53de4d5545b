"""Which clients a run uses: ``SourceSettings`` (the ``market_data`` resource's fields, defined once here)
turned into a Kalshi client and a Visual Crossing client for ``simulated``, ``live`` or ``file`` data."""

from __future__ import annotations

import dataclasses
import datetime as dt
import time
from dataclasses import dataclass, field
from typing import Callable, Optional

from kw_assets.sources import SOURCES
from kw_assets.sources.http import RetryPolicy
from kw_assets.sources.kalshi.client import PRODUCTION_URL, KalshiClient
from kw_assets.sources.kalshi.signing import KalshiSigner
from kw_assets.sources.simulator.exchange import SimulatedExchange
from kw_assets.sources.simulator.faults import FaultConfig
from kw_assets.sources.simulator.weather_feed import SimulatedWeatherFeed
from kw_assets.sources.simulator.world import Agents
from kw_assets.sources.simulator.world_store import WorldStore
from kw_assets.sources.visual_crossing import BASE_URL as VC_URL, VisualCrossingClient


def _about(text: str) -> dict:
    return {"description": text}


@dataclass
class SourceSettings:
    source: str = field(default="simulated", metadata=_about("simulated | live | file"))
    weather_source: Optional[str] = field(default=None, metadata=_about(
        "simulated | live | none; default follows source (file -> live if a VC key is set, else none)"))
    seed: int = field(default=7, metadata=_about("simulator seed (with city and day)"))
    simulated_now: Optional[str] = field(default=None, metadata=_about("ISO instant the simulated world is at; default: now"))
    simulated_rate_limit: Optional[float] = field(default=None, metadata=_about("simulated exchange's requests/s limit"))
    sim_agents_obs_delay_min: float = field(default=0.0, metadata=_about(
        "simulated market: its traders learn each observation this many minutes late (a planted edge)"))
    sim_agents_ignore_forecast_drift: bool = field(default=False, metadata=_about(
        "simulated market: its traders stay on the runs issued by the listing (a planted edge)"))
    simulated_world_dir: Optional[str] = field(default=None, metadata=_about(
        "folder where the simulated exchange keeps the worlds it built for the run's other steps (set per run)"))
    simulated_through_http: bool = field(default=False, metadata=_about(
        "simulated candles, trades, obs and forecasts through HTTP and JSON like live ones (slower); always so with "
        "faults (and the candles and trades with a rate limit). Otherwise the simulated exchange and weather feed hand "
        "over the values their JSON would parse to"))
    fault_rate_429: float = 0.0
    fault_rate_5xx: float = 0.0
    fault_rate_timeout: float = 0.0
    fault_rate_drop: float = 0.0
    fault_rate_empty_page: float = 0.0
    fault_outages: Optional[str] = field(default=None, metadata=_about(
        "simulated exchange down (every request 503) over these clock intervals: ISO/ISO[,ISO/ISO...]"))
    kalshi_base_url: str = PRODUCTION_URL
    kalshi_requests_per_second: float = field(default=20.0, metadata=_about("client-side token bucket for live Kalshi"))
    kalshi_key_id: Optional[str] = field(default=None, repr=False)
    kalshi_private_key: Optional[str] = field(default=None, repr=False, metadata=_about("PEM text; from KALSHI_PRIVATE_KEY"))
    visual_crossing_url: str = VC_URL
    visual_crossing_api_key: Optional[str] = field(default=None, repr=False)
    price_history_dir: Optional[str] = field(default=None, metadata=_about("folder of kalshi-price-history-*.csv (file source)"))
    retry_sleep: bool = field(default=True, metadata=_about("sleep between retries (tests switch it off)"))
    max_attempts: int = field(default=10, metadata=_about("attempts per request before giving up (429/5xx/timeouts/drops)"))

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

    def simulated_clock(self) -> Callable[[], dt.datetime] | None:
        """The simulated world's fixed instant (None: the wall clock)."""
        if not self.simulated_now:
            return None
        fixed = dt.datetime.fromisoformat(self.simulated_now.replace("Z", "+00:00"))
        return lambda: fixed

    def now(self) -> dt.datetime:
        """The instant the source is at: ``simulated_now`` on the simulated source, else the clock."""
        fixed = self.simulated_clock() if self.source == "simulated" else None
        return fixed() if fixed else dt.datetime.now(dt.timezone.utc)

    def faults(self) -> FaultConfig:
        return FaultConfig(self.fault_rate_429, self.fault_rate_5xx, self.fault_rate_timeout, self.fault_rate_drop,
                           self.fault_rate_empty_page, seed=self.seed, outages=self.outages())

    def outages(self) -> tuple[tuple[float, float], ...]:
        """``fault_outages`` as epoch-second intervals."""
        out = []
        for part in filter(None, (self.fault_outages or "").split(",")):
            start, _, end = part.partition("/")
            out.append(tuple(dt.datetime.fromisoformat(x.strip().replace("Z", "+00:00")).timestamp() for x in (start, end)))
        return tuple(out)

    def sleep(self) -> Callable[[float], None]:
        return time.sleep if self.retry_sleep else (lambda s: None)


def _batched(s: SourceSettings) -> bool:
    """Whether a simulated source hands over the values its JSON parses to (no HTTP): not when asked to go through
    HTTP, nor with injected faults, which only a request can meet."""
    f = s.faults()
    return not (s.simulated_through_http or f.rate_429 or f.rate_5xx or f.rate_timeout or f.rate_drop or f.rate_empty_page)


def kalshi_client(s: SourceSettings, now: Callable[[], dt.datetime] | None = None) -> KalshiClient:
    """The Kalshi client of these settings; ``now`` overrides the simulated exchange's clock (a moving one)."""
    signer = KalshiSigner(s.kalshi_key_id, s.kalshi_private_key) if s.kalshi_key_id and s.kalshi_private_key else None
    retry = RetryPolicy(max_attempts=s.max_attempts)
    if s.label() == "simulated":
        store = WorldStore(s.simulated_world_dir) if s.simulated_world_dir else None
        exchange = SimulatedExchange(seed=s.seed, now=now or s.simulated_clock(), rate_limit=s.simulated_rate_limit,
                                     faults=s.faults(), store=store, agents=Agents(obs_delay_min=s.sim_agents_obs_delay_min,
                                                                      ignore_forecast_drift=s.sim_agents_ignore_forecast_drift))
        rate = s.simulated_rate_limit * 0.95 if s.simulated_rate_limit else None
        plain = _batched(s) and not (rate or s.faults().outages)
        return KalshiClient(transport=exchange.transport(), requests_per_second=rate, signer=signer, sleep=s.sleep(),
                            retry=retry, batches=exchange if plain else None)
    return KalshiClient(s.kalshi_base_url, requests_per_second=s.kalshi_requests_per_second, signer=signer,
                        sleep=s.sleep(), retry=retry)


def weather_client(s: SourceSettings, now: Callable[[], dt.datetime] | None = None) -> VisualCrossingClient | None:
    kind = s.weather_label()
    if kind == "none":
        return None
    if kind == "simulated":
        feed = SimulatedWeatherFeed(seed=s.seed, now=now or s.simulated_clock(),
                                    faults=dataclasses.replace(s.faults(), outages=()))  # outages: the exchange's
        return VisualCrossingClient(s.visual_crossing_api_key or "simulated-key", transport=feed.transport(),
                                    requests_per_second=None, sleep=s.sleep(),
                                    retry=RetryPolicy(max_attempts=s.max_attempts, base_delay_s=0.5),
                                    batches=feed if _batched(s) else None)
    if not s.visual_crossing_api_key:
        raise ValueError("weather source is live but VISUAL_CROSSING_API_KEY is not set")
    return VisualCrossingClient(s.visual_crossing_api_key, s.visual_crossing_url, sleep=s.sleep())
