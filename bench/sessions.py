"""Many idle-ish sessions: N asyncpg connections open at once, each running one statement a
second for a fixed time, through the node (and directly, for the latency baseline).

One client process (asyncio, uvloop) holds every connection; sessions start their statements at
evenly spread phases of the second, so the target sees N statements a second in a steady
stream. The clock for a statement runs around `fetchrow` only; how late the client started
statements against their schedule is reported too, to show the client was not the bottleneck.
The node's CPU is its process's utime+stime over the measured window (/proc/<pid>/stat) as a
percentage of one core; its memory is VmRSS at the end of the window and VmHWM (the peak since
it started) from /proc/<pid>/status.
"""

from __future__ import annotations

import asyncio
import os
import resource
import statistics
import time
from typing import Any

import asyncpg

from lockgate.runtime import run as run_loop
from tests.harness.postgres import PostgresTarget
from tests.harness.processes import wait_until

STATEMENT = "SELECT id, name, price FROM items WHERE id = $1"
CONNECT_AT_ONCE = 50


def raise_open_files_limit(wanted: int = 65536) -> int:
    """Raise this process's RLIMIT_NOFILE (children, the node included, inherit it)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < wanted:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, wanted))
            return wanted
        except (ValueError, OSError):
            wanted = hard
    if soft == resource.RLIM_INFINITY or soft >= wanted:
        return soft
    resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
    return wanted


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process, in seconds (proc(5): fields 14 and 15 of /proc/<pid>/stat)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    # fields[0] is field 3 (state), so utime (14) and stime (15) are at 11 and 12.
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def tree_cpu_seconds(pid: int) -> float:
    """utime + stime of a process and its live descendants (PgBouncer runs under runuser)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(ppid, []).append(int(entry))
    total, todo = 0.0, [pid]
    while todo:
        current = todo.pop()
        try:
            total += cpu_seconds(current)
        except OSError:
            continue
        todo += children.get(current, [])
    return total


def memory_mib(pid: int) -> dict[str, float]:
    """VmRSS and VmHWM of a process, in MiB."""
    found: dict[str, float] = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                found[key] = int(value.split()[0]) / 1024
    return {"rss_mib": found["VmRSS"], "hwm_mib": found["VmHWM"]}


def _quantile(values: list[float], q: int) -> float:
    if len(values) < 2:
        return values[0] if values else 0.0
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


async def _load(dsn: str, sessions: int, seconds: float, pid: int | None) -> dict[str, Any]:
    gate = asyncio.Semaphore(CONNECT_AT_ONCE)

    async def connect() -> asyncpg.Connection:
        async with gate:
            return await asyncpg.connect(dsn, timeout=60)

    connect_start = time.perf_counter()
    conns = await asyncio.gather(*(connect() for _ in range(sessions)))
    connect_seconds = time.perf_counter() - connect_start
    latencies: list[float] = []
    lateness: list[float] = []
    errors = 0
    try:
        await asyncio.gather(*(c.fetchrow(STATEMENT, 1) for c in conns))
        clock = asyncio.get_running_loop().time
        start = clock() + 1.0
        end = start + seconds

        async def session(n: int, conn: asyncpg.Connection) -> None:
            nonlocal errors
            due = start + n / sessions
            while due < end:
                await asyncio.sleep(due - clock())
                lateness.append(clock() - due)
                began = time.perf_counter()
                try:
                    await conn.fetchrow(STATEMENT, n % 100 + 1)
                except asyncpg.PostgresError:
                    errors += 1
                latencies.append((time.perf_counter() - began) * 1000)
                due += 1.0

        tasks = [asyncio.create_task(session(n, c)) for n, c in enumerate(conns)]
        await asyncio.sleep(start - clock())
        cpu_start = cpu_seconds(pid) if pid else 0.0
        window_start = time.perf_counter()
        await asyncio.gather(*tasks)
        window = time.perf_counter() - window_start
        node: dict[str, float] = {}
        if pid:
            node = memory_mib(pid)
            node["cpu_percent"] = (cpu_seconds(pid) - cpu_start) / window * 100
    finally:
        await asyncio.gather(*(c.close(timeout=10) for c in conns), return_exceptions=True)
    return {
        **node,
        "p50_ms": _quantile(latencies, 50),
        "p99_ms": _quantile(latencies, 99),
        "max_ms": max(latencies, default=0.0),
        "statements": len(latencies),
        "errors": errors,
        "client_late_p99_ms": _quantile(lateness, 99) * 1000,
        "connect_s": connect_seconds,
    }


def run(dsn: str, sessions: int, seconds: float, pid: int | None = None) -> dict[str, Any]:
    """Open `sessions` connections, run one statement a second on each for `seconds`; figures
    for statement latency and, when `pid` names the node process, its CPU and memory."""
    return run_loop(_load(dsn, sessions, seconds, pid))


def wait_drained(target: PostgresTarget, timeout: float = 120) -> None:
    """Wait until the target's backends for `app` have exited (they outlive their clients)."""
    sql = "SELECT count(*) FROM pg_stat_activity WHERE usename = 'app'"
    wait_until(lambda: int(target.psql_admin(sql)) < 10, timeout, "the target's sessions to end")
