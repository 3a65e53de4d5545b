"""Kalshi client throughput against the simulated exchange's rate limit (its server-side token bucket
answers 429 past the limit, with no Retry-After, as Kalshi does).

    .venv/bin/python bench/client_rate.py [--limit 20] [--requests 300]

For client rates of 95%, 100% and 120% of the limit: achieved requests/s (successful responses), its
share of the limit, 429s received, and whether every request finally succeeded.
"""

import argparse
import logging
import datetime as dt
import time

from kw_assets.sources.http import RetryPolicy
from kw_assets.sources.kalshi.client import KalshiClient
from kw_assets.sources.simulator.exchange import SimulatedExchange

NOW = dt.datetime(2026, 11, 27, tzinfo=dt.timezone.utc)


def run(limit: float, share: float, n: int) -> dict:
    ex = SimulatedExchange(now=lambda: NOW, rate_limit=limit)
    client = KalshiClient(transport=ex.transport(), requests_per_second=limit * share,
                          retry=RetryPolicy(max_attempts=12, base_delay_s=0.05, max_delay_s=2.0))
    burst = int(2 * limit)  # both buckets start full: measure the steady state after the burst
    t0 = None
    for i in range(n + burst):
        if i == burst:
            t0 = time.perf_counter()
        client._series_cache.clear()
        client.get_series("KXHIGHNY")
    wall = time.perf_counter() - t0
    return {"client_share": share, "achieved_rps": n / wall, "of_limit": n / wall / limit,
            "http_429": client.http.stats["http_429"], "requests_sent": client.http.stats["requests"], "ok": n}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--limit", type=float, default=20.0)
    ap.add_argument("--requests", type=int, default=300)
    a = ap.parse_args()
    logging.getLogger("kw_assets").setLevel(logging.ERROR)  # retries are counted below instead
    print(f"server limit {a.limit:g} req/s; steady state over {a.requests} successful requests after a {int(2 * a.limit)}-request burst")
    print(f"{'client rate':>12} {'achieved':>10} {'of limit':>9} {'429s':>6} {'sent':>6}")
    for share in (0.95, 1.0, 1.2):
        r = run(a.limit, share, a.requests)
        print(f"{share * a.limit:>9.1f}/s {r['achieved_rps']:>8.2f}/s {r['of_limit']:>8.1%} {r['http_429']:>6} {r['requests_sent']:>6}")


if __name__ == "__main__":
    main()
