"""Added latency of one simple-protocol statement round trip at one client: direct, through
PgBouncer and through the node.

Uses libpq's PQexec through psycopg's low-level connection so the client's own overhead is the
same on every leg and small; reports median and p99 per leg and each leg's difference from the
direct one (the latency that leg adds). The legs take turns in blocks, so each sees the
machine in the same state.
"""

from __future__ import annotations

import contextlib
import statistics
import time
from collections.abc import Mapping

import psycopg

BLOCK = 100  # round trips on one leg before the next leg takes its turn


def round_trips(dsns: Mapping[str, str], count: int, warmup: int = 200) -> dict[str, list[float]]:
    """Microseconds per `SELECT 1` round trip, `count` per leg.

    The legs take turns in blocks of `BLOCK` round trips (the first leg of each round rotating)
    instead of running one after another: on a shared machine the speed of the cores drifts
    over seconds, and a leg measured a minute after another would carry that drift into the
    difference between them."""
    with contextlib.ExitStack() as stack:
        conns = {
            leg: stack.enter_context(psycopg.connect(dsn, autocommit=True)).pgconn
            for leg, dsn in dsns.items()
        }
        for pg in conns.values():
            for _ in range(warmup):
                pg.exec_(b"SELECT 1")
        samples: dict[str, list[float]] = {leg: [] for leg in conns}
        order = list(conns)
        for turn in range(-(-count // BLOCK)):
            for leg in order[turn % len(order) :] + order[: turn % len(order)]:
                pg, out = conns[leg], samples[leg]
                for _ in range(min(BLOCK, count - turn * BLOCK)):
                    start = time.perf_counter_ns()
                    pg.exec_(b"SELECT 1")
                    out.append((time.perf_counter_ns() - start) / 1000)
    return samples


def p99(samples: list[float]) -> float:
    return statistics.quantiles(samples, n=100)[98]


def run(dsns: Mapping[str, str], count: int) -> dict[str, float]:
    """Median and p99 per leg (`direct` first), and what each other leg adds to direct."""
    figures: dict[str, float] = {}
    for leg, samples in round_trips(dsns, count).items():
        figures[f"{leg}_median_us"] = statistics.median(samples)
        figures[f"{leg}_p99_us"] = p99(samples)
    for leg in dsns:
        if leg != "direct":
            for q in ("median", "p99"):
                figures[f"{leg}_added_{q}_us"] = (
                    figures[f"{leg}_{q}_us"] - figures[f"direct_{q}_us"]
                )
    return figures
