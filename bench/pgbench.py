"""`pgbench -S` (select-only) through the node and directly, simple and prepared protocol."""

from __future__ import annotations

import os
import re
import subprocess
from urllib.parse import urlsplit


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


def run(dsn: str, clients: int, seconds: int, protocol: str) -> dict[str, float]:
    """Transactions per second and mean latency (ms) of one pgbench run."""
    threads = min(clients, 2)
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
            dsn,
        ],
        capture_output=True,
        text=True,
        env=_env(dsn),
        timeout=seconds + 120,
    )
    if result.returncode != 0:
        raise RuntimeError(f"pgbench failed: {result.stderr[-2000:]}")
    tps = re.search(r"tps = ([\d.]+) \(without initial connection time\)", result.stdout)
    latency = re.search(r"latency average = ([\d.]+) ms", result.stdout)
    if not tps or not latency:
        raise RuntimeError(f"unexpected pgbench output: {result.stdout[-2000:]}")
    return {"tps": float(tps.group(1)), "latency_ms": float(latency.group(1))}
