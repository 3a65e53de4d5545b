"""What both API clients share: a client-side token bucket, bounded retries with backoff and jitter,
errors that name the endpoint, the parameters and the server's message, and one client per process.

Only transient failures are retried (429, 5xx, timeouts, dropped connections); any other 4xx is a
bug in the request and raises at once. Secrets never reach a message: query parameters listed in
``redact`` are masked before anything is logged or raised.
"""

from __future__ import annotations

import json
import logging
import os
import random
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import httpx

log = logging.getLogger("kw_assets.http")

RETRYABLE_STATUS = frozenset({429, 500, 502, 503, 504})


class ApiError(RuntimeError):
    """A request the server refused for good (4xx other than 429), or a body that is not the documented JSON."""

    def __init__(self, endpoint: str, params: Mapping[str, Any], status: int | None, message: str):
        self.endpoint, self.params, self.status, self.server_message = endpoint, dict(params), status, message
        shown = ", ".join(f"{k}={v}" for k, v in self.params.items())
        super().__init__(f"{endpoint} [{shown}] -> HTTP {status}: {message}")

    def __reduce__(self):  # picklable from worker processes
        return type(self), (self.endpoint, self.params, self.status, self.server_message)


class RetriesExhausted(ApiError):
    """A transient failure that persisted past the retry bound."""


class TokenBucket:
    """Client-side rate limit: ``rate`` requests/s on average, bursts up to ``burst`` (thread-safe)."""

    def __init__(self, rate: float, burst: float | None = None, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep):
        if rate <= 0:
            raise ValueError("rate must be positive")
        self.rate = float(rate)
        self.capacity = float(burst if burst is not None else max(1.0, rate))
        self._tokens = self.capacity
        self._clock, self._sleep = clock, sleep
        self._last = clock()
        self._lock = threading.Lock()

    def acquire(self) -> float:
        """Take one token, sleeping until one is free; returns the seconds waited."""
        waited = 0.0
        while True:
            with self._lock:
                now = self._clock()
                self._tokens = min(self.capacity, self._tokens + (now - self._last) * self.rate)
                self._last = now
                if self._tokens >= 1.0 - 1e-9:
                    self._tokens -= 1.0
                    return waited
                need = (1.0 - self._tokens) / self.rate
            self._sleep(need)
            waited += need

    def penalize(self) -> None:
        """After a 429 the server's bucket is empty: empty ours too so the next calls pace themselves."""
        with self._lock:
            self._tokens = min(self._tokens, 0.0)


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 6
    base_delay_s: float = 0.25
    max_delay_s: float = 20.0
    jitter: float = 0.5  # fraction of the delay drawn at random ("equal jitter")

    def delay(self, attempt: int, rng: random.Random) -> float:
        d = min(self.max_delay_s, self.base_delay_s * (2 ** (attempt - 1)))
        return d * (1 - self.jitter) + d * self.jitter * rng.random()


def error_message(response: httpx.Response) -> str:
    """The server's own words: Kalshi's {"error": ...} JSON, or a plain-text body (Visual Crossing)."""
    text = response.text.strip()
    try:
        body = json.loads(text)
    except ValueError:
        return text[:500] or response.reason_phrase
    if isinstance(body, dict) and "error" in body:
        err = body["error"]
        if isinstance(err, dict):
            return str(err.get("message") or err.get("code") or err)
        return str(err)
    return text[:500]


@dataclass
class JsonHttp:
    """GET JSON with rate limiting and retries. Both clients wrap one of these."""

    client: httpx.Client
    bucket: TokenBucket | None
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    sleep: Callable[[float], None] = time.sleep
    redact: frozenset[str] = frozenset()
    name: str = "api"
    rng: random.Random = field(default_factory=lambda: random.Random(0x5EED))
    stats: dict[str, int] = field(default_factory=lambda: {"requests": 0, "retries": 0, "http_429": 0})

    def _shown(self, params: Mapping[str, Any]) -> dict[str, Any]:
        return {k: ("***" if k in self.redact else v) for k, v in params.items()}

    def get(self, path: str, params: Mapping[str, Any] | None = None, *, allow_404: bool = False) -> Any:
        params = {k: v for k, v in (params or {}).items() if v is not None}
        shown = self._shown(params)
        endpoint = f"{self.name} GET {path}"
        last: tuple[int | None, str] = (None, "")
        for attempt in range(1, self.retry.max_attempts + 1):
            if self.bucket is not None:
                self.bucket.acquire()
            self.stats["requests"] += 1
            try:
                response = self.client.get(path, params=params)
            except (httpx.TimeoutException, httpx.TransportError) as exc:
                last = (None, f"{type(exc).__name__}: {exc}")
            else:
                if response.status_code == 200:
                    return self._decode(response, endpoint, shown)
                if response.status_code == 404 and allow_404:
                    return None
                if response.status_code not in RETRYABLE_STATUS:
                    raise ApiError(endpoint, shown, response.status_code, error_message(response))
                if response.status_code == 429:
                    self.stats["http_429"] += 1
                    if self.bucket is not None:
                        self.bucket.penalize()
                last = (response.status_code, error_message(response))
            if attempt == self.retry.max_attempts:
                break
            delay = self.retry.delay(attempt, self.rng)
            self.stats["retries"] += 1
            log.warning("%s attempt %d/%d failed (%s %s); retrying in %.2fs",
                        endpoint, attempt, self.retry.max_attempts, last[0] or "no response", last[1], delay)
            self.sleep(delay)
        raise RetriesExhausted(endpoint, shown, last[0],
                               f"gave up after {self.retry.max_attempts} attempts; last error: {last[1]}")

    @staticmethod
    def _decode(response: httpx.Response, endpoint: str, shown: Mapping[str, Any]) -> Any:
        try:
            return response.json()
        except ValueError as exc:
            snippet = response.text[:120].replace("\n", " ")
            raise ApiError(endpoint, shown, 200, f"response is not JSON ({exc}); body starts {snippet!r}") from exc


class ClientPerProcess:
    """One API client per process: a forked worker opens its own connections (and, for the simulated
    source, its own simulated server) instead of sharing the parent's. Counts requests and retries."""

    def __init__(self, factory: Callable[[], Any]):
        self.factory, self._pid, self._client = factory, None, None

    def get(self):
        if self._pid != os.getpid():
            self._client, self._pid = self.factory(), os.getpid()
        return self._client

    def stats(self) -> dict[str, int]:
        if self._client is None or self._pid != os.getpid():
            return {}
        return {k: self._client.http.stats[k] for k in ("requests", "retries")}

    def close(self) -> None:
        if self._client is not None and self._pid == os.getpid():
            self._client.close()
