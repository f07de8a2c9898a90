"""Added latency of one simple-protocol statement round trip at one client: direct, through
PgBouncer and through the node.

Uses libpq's PQexec through psycopg's low-level connection so the client's own overhead is the
same on every leg and small; reports median and p99 per leg and each leg's difference from the
direct one (the latency that leg adds).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Mapping

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


def run(dsns: Mapping[str, str], count: int) -> dict[str, float]:
    """Median and p99 per leg (`direct` first), and what each other leg adds to direct."""
    figures: dict[str, float] = {}
    for leg, dsn in dsns.items():
        samples = round_trips(dsn, count)
        figures[f"{leg}_median_us"] = statistics.median(samples)
        figures[f"{leg}_p99_us"] = p99(samples)
    for leg in dsns:
        if leg != "direct":
            for q in ("median", "p99"):
                figures[f"{leg}_added_{q}_us"] = (
                    figures[f"{leg}_{q}_us"] - figures[f"direct_{q}_us"]
                )
    return figures
