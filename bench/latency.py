"""Added latency of one simple-protocol statement round trip at one client, node vs direct.

Uses libpq's PQexec through psycopg's low-level connection so the client's own overhead is the
same on both legs and small; reports median and p99 per leg and the difference.
"""

from __future__ import annotations

import statistics
import time

import psycopg


def round_trips(dsn: str, count: int, warmup: int = 200) -> list[float]:
    """Microseconds per `SELECT 1` round trip."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        pg = conn.pgconn
        for _ in range(warmup):
            pg.exec_(b"SELECT 1")
        samples = []
        for _ in range(count):
            start = time.perf_counter_ns()
            pg.exec_(b"SELECT 1")
            samples.append((time.perf_counter_ns() - start) / 1000)
    return samples


def p99(samples: list[float]) -> float:
    return statistics.quantiles(samples, n=100)[98]


def run(direct_dsn: str, node_dsn: str, count: int) -> dict[str, float]:
    direct = round_trips(direct_dsn, count)
    node = round_trips(node_dsn, count)
    return {
        "direct_median_us": statistics.median(direct),
        "direct_p99_us": p99(direct),
        "node_median_us": statistics.median(node),
        "node_p99_us": p99(node),
        "added_median_us": statistics.median(node) - statistics.median(direct),
        "added_p99_us": p99(node) - p99(direct),
    }
