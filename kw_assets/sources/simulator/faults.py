"""Fault injection for the simulated servers: 429s, 5xx, timeouts, dropped connections, empty pages."""

from __future__ import annotations

import random
import threading
import time
from dataclasses import dataclass, field

import httpx


@dataclass
class FaultConfig:
    rate_429: float = 0.0
    rate_5xx: float = 0.0
    rate_timeout: float = 0.0
    rate_drop: float = 0.0
    rate_empty_page: float = 0.0
    seed: int = 0
    outages: tuple[tuple[float, float], ...] = ()  # [start, end) in the server clock's epoch seconds: every request 503s


@dataclass
class FaultInjector:
    config: FaultConfig = field(default_factory=FaultConfig)

    def __post_init__(self) -> None:
        self._rng = random.Random(self.config.seed)
        self._lock = threading.Lock()
        self.injected = {"429": 0, "5xx": 0, "timeout": 0, "drop": 0, "empty_page": 0, "outage": 0}

    def _hit(self, rate: float, kind: str) -> bool:
        if rate <= 0:
            return False
        with self._lock:
            hit = self._rng.random() < rate
            if hit:
                self.injected[kind] += 1
        return hit

    def before(self, request: httpx.Request, too_many: bytes, now_ts: float | None = None) -> httpx.Response | None:
        c = self.config
        if now_ts is not None and any(a <= now_ts < b for a, b in c.outages):
            with self._lock:
                self.injected["outage"] += 1
            return httpx.Response(503, text="simulated: outage, service unavailable")
        if self._hit(c.rate_timeout, "timeout"):
            raise httpx.ReadTimeout("simulated read timeout", request=request)
        if self._hit(c.rate_drop, "drop"):
            raise httpx.RemoteProtocolError("simulated: server disconnected without sending a response", request=request)
        if self._hit(c.rate_429, "429"):
            return httpx.Response(429, content=too_many, headers={"content-type": "application/json"})
        if self._hit(c.rate_5xx, "5xx"):
            return httpx.Response(503, text="simulated: service unavailable")
        return None

    def empty_page(self) -> bool:
        return self._hit(self.config.rate_empty_page, "empty_page")


class ServerRateLimit:
    """The server's token bucket: over the rate, a 429 with no Retry-After (as Kalshi does)."""

    def __init__(self, rate: float, burst: float | None = None):
        self.rate, self.capacity = float(rate), float(burst or rate)
        self._tokens, self._last = self.capacity, time.monotonic()
        self._lock = threading.Lock()

    def allow(self) -> bool:
        with self._lock:
            now = time.monotonic()
            self._tokens = min(self.capacity, self._tokens + (now - self._last) * self.rate)
            self._last = now
            if self._tokens >= 1:
                self._tokens -= 1
                return True
            return False
