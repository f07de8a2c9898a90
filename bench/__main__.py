"""`python -m bench` (`make bench`): run the scenarios, write `docs/benchmarks.md` and
`bench/results.json`. `--quick` runs each scenario once at a tiny size (the test suite does, to
keep the harness working); figures from a quick run mean nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import time
from pathlib import Path
from typing import Any

from bench import kernel, latency, pgbench
from bench.stack import start
from lockgate import __version__

ROOT = Path(__file__).resolve().parent.parent


def summarize(values: list[float]) -> dict[str, float]:
    return {
        "median": statistics.median(values),
        "min": min(values),
        "max": max(values),
        "runs": len(values),
    }


def machine() -> dict[str, Any]:
    def version(cmd: list[str]) -> str:
        try:
            return subprocess.run(cmd, capture_output=True, text=True).stdout.strip()
        except OSError:
            return "not found"

    return {
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "lockgate": __version__,
        "postgres": version(["psql", "--version"]),
        "pgbench": version(["pgbench", "--version"]),
    }


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench")
    parser.add_argument("--quick", action="store_true", help="tiny sizes, one run each")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results.json")
    parser.add_argument("--doc", type=Path, default=ROOT / "docs" / "benchmarks.md")
    args = parser.parse_args()
    runs = 1 if args.quick else 3
    seconds = 1 if args.quick else 20
    statements = 200 if args.quick else 20_000
    client_counts = [1, 8] if args.quick else [1, 8, 32]

    results: dict[str, Any] = {"machine": machine(), "quick": args.quick, "started": time.time()}
    print("kernel: classification, decisions and masking without sockets", flush=True)
    kernel_runs = [kernel.run(500 if args.quick else 20_000) for _ in range(runs)]
    results["kernel"] = {k: summarize([r[k] for r in kernel_runs]) for k in kernel_runs[0]}
    stack = start()
    try:
        print("latency: simple round trip at 1 client", flush=True)
        samples = [
            latency.run(stack.direct_dsn(), stack.node_dsn(), statements) for _ in range(runs)
        ]
        results["latency"] = {key: summarize([s[key] for s in samples]) for key in samples[0]}
        pgbench.init(stack.direct_dsn())
        results["pgbench"] = {}
        for protocol in ("simple", "prepared"):
            for clients in client_counts:
                print(f"pgbench -S -M {protocol} -c {clients}", flush=True)
                legs: dict[str, list[dict[str, float]]] = {"direct": [], "node": []}
                for _ in range(runs):
                    legs["direct"].append(
                        pgbench.run(stack.direct_dsn(), clients, seconds, protocol)
                    )
                    legs["node"].append(pgbench.run(stack.node_dsn(), clients, seconds, protocol))
                entry = {
                    leg: {m: summarize([r[m] for r in rs]) for m in ("tps", "latency_ms")}
                    for leg, rs in legs.items()
                }
                entry["node_over_direct"] = (
                    entry["node"]["tps"]["median"] / entry["direct"]["tps"]["median"]
                )
                results["pgbench"][f"{protocol}/{clients}"] = entry
    finally:
        stack.stop()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2))
    if not args.quick:
        args.doc.parent.mkdir(parents=True, exist_ok=True)
        args.doc.write_text(render(results))
    print(f"results in {args.out}")
    return 0


def render(results: dict[str, Any]) -> str:
    m = results["machine"]
    lat = results["latency"]
    lines = [
        "# Benchmarks",
        "",
        "Written by `make bench` (`python -m bench`); every figure is the median of several runs",
        "with the spread (min to max) beside it; every Lockgate figure has its baseline measured",
        "in the same run on the same machine. The node runs with audit on (every statement is",
        "spooled and shipped to the control plane), every statement classified and authorized",
        "by Cedar (`connect` and `read` permitted), no masking rule; no TLS on any leg.",
        "",
        f"Machine: {m['cpus']} CPUs, {m['platform']}, Python {m['python']}, {m['postgres']}, "
        f"Lockgate {m['lockgate']}.",
        "",
        "## Added latency per statement (1 client, simple protocol `SELECT 1`)",
        "",
        "| leg | median µs | p99 µs |",
        "|-----|-----------|--------|",
        f"| direct | {_f(lat['direct_median_us'])} | {_f(lat['direct_p99_us'])} |",
        f"| through the node | {_f(lat['node_median_us'])} | {_f(lat['node_p99_us'])} |",
        f"| **added by the node** | **{_f(lat['added_median_us'])}** | {_f(lat['added_p99_us'])} |",
        "",
        "## pgbench -S (select-only), 20 s per run",
        "",
        "| protocol | clients | direct tps | node tps | node / direct | direct ms | node ms |",
        "|----------|---------|------------|----------|---------------|-----------|---------|",
    ]
    for key, e in results["pgbench"].items():
        protocol, clients = key.split("/")
        lines.append(
            f"| {protocol} | {clients} | {_f(e['direct']['tps'])} | {_f(e['node']['tps'])} | "
            f"{e['node_over_direct']:.2f} | {_f(e['direct']['latency_ms'], 3)} | "
            f"{_f(e['node']['latency_ms'], 3)} |"
        )
    lines += [
        "",
        "## Enforcement kernel (no sockets)",
        "",
        "Classification parses with libpg_query (pglast) and walks the whole tree; a decision adds",
        "Cedar authorization (guardrails on) and masking lineage; the cached decision is what a",
        "repeated statement costs inside a session (a dictionary lookup by statement text).",
        "",
        "| measure | per second |",
        "|---------|------------|",
    ]
    for key, value in results["kernel"].items():
        lines.append(f"| {key.removesuffix('_per_s').replace('_', ' ')} | {_f(value)} |")
    lines += ["", "Raw figures: `bench/results.json`.", ""]
    return "\n".join(lines)


def _f(s: dict[str, float], digits: int = 0) -> str:
    return f"{s['median']:.{digits}f} ({s['min']:.{digits}f}-{s['max']:.{digits}f})"
    return f"{s['median']:.{digits}f} ({s['min']:.{digits}f}-{s['max']:.{digits}f})"


if __name__ == "__main__":
    raise SystemExit(main())
