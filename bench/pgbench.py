"""`pgbench -S` (select-only) through the node and directly, simple and prepared protocol."""

from __future__ import annotations

import os
import re
import subprocess
from urllib.parse import urlsplit

from bench.sessions import tree_cpu_seconds


def init(dsn: str, scale: int = 1) -> None:
    subprocess.run(
        ["pgbench", "-i", "-q", "-s", str(scale), dsn],
        check=True,
        capture_output=True,
        env=_env(dsn),
    )


def _env(dsn: str) -> dict[str, str]:
    env = dict(os.environ)
    password = urlsplit(dsn).password
    if password:
        env["PGPASSWORD"] = password
    return env


def run(
    dsn: str,
    clients: int,
    seconds: int,
    protocol: str,
    cpu: dict[str, int] | None = None,
    *,
    connect: bool = False,
) -> dict[str, float]:
    """Transactions per second and mean latency (ms) of one pgbench run; with `cpu` (a name for
    each process to watch), the CPU time each process tree spent per transaction, in µs. With
    `connect`, every transaction opens and closes its own connection (`pgbench -C`), and the
    latency includes the connection's set-up."""
    threads = min(clients, 2)
    cpu = cpu or {}
    before = {name: tree_cpu_seconds(pid) for name, pid in cpu.items()}
    result = subprocess.run(
        [
            "pgbench",
            "-S",
            "-n",
            "-c",
            str(clients),
            "-j",
            str(threads),
            "-T",
            str(seconds),
            "-M",
            protocol,
            *(["-C"] if connect else []),
            dsn,
        ],
        capture_output=True,
        text=True,
        env=_env(dsn),
        timeout=seconds + 120,
    )
    if result.returncode != 0:
        raise RuntimeError(f"pgbench failed: {result.stderr[-2000:]}")
    spent = {name: tree_cpu_seconds(pid) - before[name] for name, pid in cpu.items()}
    # -C reports tps "including reconnection times" and the mean time to connect.
    tps = re.search(
        r"tps = ([\d.]+) \((?:without initial connection|including reconnection) times?\)",
        result.stdout,
    )
    connecting = re.search(r"average connection time = ([\d.]+) ms", result.stdout)
    latency = re.search(r"latency average = ([\d.]+) ms", result.stdout)
    done = re.search(r"number of transactions actually processed: (\d+)", result.stdout)
    if not tps or not latency or not done or (connect and not connecting):
        raise RuntimeError(f"unexpected pgbench output: {result.stdout[-2000:]}")
    figures = {"tps": float(tps.group(1)), "latency_ms": float(latency.group(1))}
    if connecting:
        figures["connect_ms"] = float(connecting.group(1))
    for name, seconds_used in spent.items():
        figures[f"{name}_cpu_us_per_tx"] = seconds_used / max(int(done.group(1)), 1) * 1e6
    return figures
