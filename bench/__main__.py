"""`python -m bench` (`make bench`): run the scenarios, write `docs/benchmarks.md` and
`bench/results.json`. Each scenario starts what it needs (target, control plane, node,
PgBouncer, sshd) on loopback and stops it after; every Lockgate figure has its baseline measured
in the same scenario. `--quick` runs each scenario once at a tiny size (the test suite does, to
keep the harness working) and writes to a temporary directory unless told where: figures from a
quick run mean nothing. `--only NAME[,NAME]` runs some scenarios and merges their results into
the existing results file.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import (
    compile,
    kernel,
    large_result,
    latency,
    pgbench,
    pgbouncer,
    propagation,
    relay,
    scp,
    sessions,
    stack,
)
from lockgate import __version__
from tests.harness.processes import Process

ROOT = Path(__file__).resolve().parent.parent
QUICK_DIR = Path(tempfile.gettempdir()) / "lockgate-bench-quick"


@dataclass(frozen=True)
class Sizes:
    runs: int
    kernel_count: int
    latency_statements: int
    pgbench_seconds: int
    pgbench_clients: tuple[int, ...]
    connect_seconds: int
    rows: int
    sessions: int
    session_seconds: int
    changes: int
    compile_size: int
    scp_bytes: int


FULL = Sizes(
    runs=3,
    kernel_count=20_000,
    latency_statements=20_000,
    pgbench_seconds=20,
    pgbench_clients=(1, 8, 32),
    connect_seconds=10,
    rows=1_000_000,
    sessions=1_000,
    session_seconds=60,
    changes=100,
    compile_size=10_000,
    scp_bytes=256 * 10**6,
)
QUICK = Sizes(
    runs=1,
    kernel_count=500,
    latency_statements=200,
    pgbench_seconds=1,
    pgbench_clients=(1, 8),
    connect_seconds=1,
    rows=10_000,
    sessions=20,
    session_seconds=3,
    changes=5,
    compile_size=200,
    scp_bytes=4 * 10**6,
)


def summarize(values: list[float]) -> dict[str, float]:
    return {
        "median": statistics.median(values),
        "min": min(values),
        "max": max(values),
        "runs": len(values),
    }


def summarize_runs(runs: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Per-key summaries of several runs' numeric figures."""
    return {
        key: summarize([r[key] for r in runs])
        for key, value in runs[0].items()
        if isinstance(value, int | float)
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
        "pgbouncer": pgbouncer.version(),
        "openssh": scp.version(),
    }


# Scenarios: each takes the sizes, starts what it needs and returns its results.


def scenario_kernel(sizes: Sizes) -> dict[str, Any]:
    print("kernel: classification, decisions and masking without sockets", flush=True)
    return summarize_runs([kernel.run(sizes.kernel_count) for _ in range(sizes.runs)])


def scenario_latency(sizes: Sizes) -> dict[str, Any]:
    print("latency: simple round trip at 1 client", flush=True)
    with stack.running(pgbouncer=True) as s:
        workers = s.workers_node()
        legs = {
            "direct": s.direct_dsn(),
            "pgbouncer": s.pgbouncer_dsn(),
            "node": s.node_dsn(),
            "node_workers": workers.dsn(s.identity, s.token, stack.CONNECTION, "disable"),
        }
        return summarize_runs(
            [latency.run(legs, sizes.latency_statements) for _ in range(sizes.runs)]
        )


def scenario_pgbench(sizes: Sizes) -> dict[str, Any]:
    results: dict[str, Any] = {"seconds": sizes.pgbench_seconds}
    with stack.running(pgbouncer=True) as s:
        bare = relay.Relay(s.target.port, s.control_plane.home).start()
        try:
            workers = s.workers_node()
            assert s.pgbouncer is not None and s.pgbouncer.process is not None
            # (dsn, the processes whose CPU time per transaction is reported) per leg
            legs: dict[str, tuple[str, dict[str, int]]] = {
                "direct": (s.direct_dsn(), {}),
                "pgbouncer": (s.pgbouncer_dsn(), {"proxy": _pid(s.pgbouncer.process)}),
                "relay": (
                    s.direct_dsn().replace(f":{s.target.port}/", f":{bare.port}/"),
                    {"proxy": bare.pid},
                ),
                "node": (
                    s.node_dsn(),
                    {"proxy": _pid(s.node.process), "control_plane": _pid(s.control_plane.process)},
                ),
                "node_workers": (
                    workers.dsn(s.identity, s.token, stack.CONNECTION, "disable"),
                    {
                        "proxy": _pid(workers.process),
                        "control_plane": _pid(s.control_plane.process),
                    },
                ),
            }
            pgbench.init(s.direct_dsn())
            for protocol in ("simple", "prepared"):
                for clients in sizes.pgbench_clients:
                    print(f"pgbench -S -M {protocol} -c {clients}", flush=True)
                    runs: dict[str, list[dict[str, float]]] = {leg: [] for leg in legs}
                    for _ in range(sizes.runs):
                        for leg, (dsn, cpu) in legs.items():
                            runs[leg].append(
                                pgbench.run(dsn, clients, sizes.pgbench_seconds, protocol, cpu)
                            )
                    entry: dict[str, Any] = {leg: summarize_runs(rs) for leg, rs in runs.items()}
                    tps = {leg: entry[leg]["tps"]["median"] for leg in legs}
                    entry["node_over_direct"] = tps["node"] / tps["direct"]
                    entry["node_over_pgbouncer"] = tps["node"] / tps["pgbouncer"]
                    entry["node_workers_over_pgbouncer"] = tps["node_workers"] / tps["pgbouncer"]
                    entry["pgbouncer_over_direct"] = tps["pgbouncer"] / tps["direct"]
                    entry["relay_over_pgbouncer"] = tps["relay"] / tps["pgbouncer"]
                    results[f"{protocol}/{clients}"] = entry
        finally:
            bare.stop()
    return results


def scenario_connect(sizes: Sizes) -> dict[str, Any]:
    """`pgbench -S -C`: a new connection for every transaction, as an agent that runs `psql -c`
    per tool call makes them. What a connection costs: client authentication, the node's
    credentials from the control plane, the target's own log-in."""
    results: dict[str, Any] = {"seconds": sizes.connect_seconds}
    with stack.running(pgbouncer=True) as s:
        assert s.pgbouncer is not None
        legs: dict[str, tuple[str, dict[str, int]]] = {
            "direct": (s.direct_dsn(), {}),
            "pgbouncer": (s.pgbouncer_dsn(), {"proxy": _pid(s.pgbouncer.process)}),
            "node": (
                s.node_dsn(),
                {"proxy": _pid(s.node.process), "control_plane": _pid(s.control_plane.process)},
            ),
        }
        pgbench.init(s.direct_dsn())
        seconds = sizes.connect_seconds
        for clients in (1, 8):
            print(f"pgbench -S -C -c {clients}", flush=True)
            runs: dict[str, list[dict[str, float]]] = {leg: [] for leg in legs}
            for _ in range(sizes.runs):
                for leg, (dsn, cpu) in legs.items():
                    runs[leg].append(
                        pgbench.run(dsn, clients, seconds, "simple", cpu, connect=True)
                    )
            entry: dict[str, Any] = {leg: summarize_runs(rs) for leg, rs in runs.items()}
            tps = {leg: entry[leg]["tps"]["median"] for leg in legs}
            entry["node_over_direct"] = tps["node"] / tps["direct"]
            entry["node_over_pgbouncer"] = tps["node"] / tps["pgbouncer"]
            results[str(clients)] = entry
    return results


def _pid(process: Process | None) -> int:
    assert process is not None and process.proc is not None, "process not running"
    return process.proc.pid


def scenario_large_result(sizes: Sizes) -> dict[str, Any]:
    print(f"large result: COPY and SELECT of {sizes.rows} rows", flush=True)
    with stack.running(pgbouncer=True) as s:
        large_result.create_table(s, sizes.rows)
        large_result.add_masked_connection(s)
        large_result.add_detect_connection(s)
        legs = {
            "direct": s.direct_dsn(),
            "pgbouncer": s.pgbouncer_dsn(),
            "node": s.node_dsn(),
            "node_masked": s.node_dsn(connection=large_result.MASKED_CONNECTION),
            "node_detect": s.node_dsn(connection=large_result.DETECT_CONNECTION),
        }
        large_result.copy_out(s.direct_dsn())  # warm the caches
        # A run takes a few seconds, so this scenario affords more of them than the others.
        runs = [large_result.run(legs) for _ in range(sizes.runs * 2 + 1)]
    results: dict[str, Any] = {"rows": sizes.rows}
    for form in large_result.FORMS:
        entry: dict[str, Any] = {leg: summarize_runs([r[form][leg] for r in runs]) for leg in legs}
        for leg in ("pgbouncer", "node", *large_result.MASKED_LEGS):
            # Each run's ratio to the direct leg of the same run, then their median: the
            # machine's speed drifts between runs by more than the legs differ.
            entry[f"{leg}_over_direct"] = statistics.median(
                r[form][leg]["rows_per_s"] / r[form]["direct"]["rows_per_s"] for r in runs
            )
        results[form] = entry
    return results


def scenario_sessions(sizes: Sizes) -> dict[str, Any]:
    print(
        f"sessions: {sizes.sessions} sessions, 1 statement/s for {sizes.session_seconds} s",
        flush=True,
    )
    results: dict[str, Any] = {"sessions": sizes.sessions, "seconds": sizes.session_seconds}
    with stack.running(max_connections=sizes.sessions + 100) as s:
        assert s.node.process is not None and s.node.process.proc is not None
        pid = s.node.process.proc.pid
        runs: dict[str, list[dict[str, Any]]] = {"direct": [], "node": []}
        for _ in range(sizes.runs):
            for leg, dsn, leg_pid in (
                ("direct", s.direct_dsn(), None),
                ("node", s.node_dsn(), pid),
            ):
                runs[leg].append(sessions.run(dsn, sizes.sessions, sizes.session_seconds, leg_pid))
                sessions.wait_drained(s.target)
    for leg, rs in runs.items():
        results[leg] = summarize_runs(rs)
    return results


def scenario_propagation(sizes: Sizes) -> dict[str, Any]:
    print(
        f"propagation: {sizes.changes} forbid policies and {sizes.changes} revocations", flush=True
    )
    with stack.running() as s:
        runs = [propagation.run(s, sizes.changes) for _ in range(sizes.runs)]
    return {"changes": sizes.changes, **summarize_runs(runs)}


def scenario_compile(sizes: Sizes) -> dict[str, Any]:
    n = sizes.compile_size
    print(f"compile: {n} identities x {n} connections", flush=True)
    runs = [compile.run(n, n) for _ in range(sizes.runs)]
    return {"identities": n, "connections": n, **summarize_runs(runs)}


def scenario_scp(sizes: Sizes) -> dict[str, Any]:
    print(f"scp: {sizes.scp_bytes} bytes, direct and through a jump host", flush=True)
    pair = scp.SshPair().start()
    try:
        runs = [scp.run(pair, sizes.scp_bytes) for _ in range(sizes.runs)]
    finally:
        pair.stop()
    return {"bytes": sizes.scp_bytes, **summarize_runs(runs), "node": scp.node_leg_placeholder()}


SCENARIOS: dict[str, Callable[[Sizes], dict[str, Any]]] = {
    "kernel": scenario_kernel,
    "latency": scenario_latency,
    "pgbench": scenario_pgbench,
    "connect": scenario_connect,
    "large_result": scenario_large_result,
    "sessions": scenario_sessions,
    "propagation": scenario_propagation,
    "compile": scenario_compile,
    "scp": scenario_scp,
}


def scenario_names(value: str) -> list[str]:
    names = [n.strip() for n in value.split(",") if n.strip()]
    unknown = [n for n in names if n not in SCENARIOS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"unknown scenario {', '.join(unknown) or value!r}; choose from {', '.join(SCENARIOS)}"
        )
    return names


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench")
    parser.add_argument("--quick", action="store_true", help="tiny sizes, one run each")
    parser.add_argument(
        "--only",
        type=scenario_names,
        metavar="NAME[,NAME]",
        help=f"run only these scenarios ({', '.join(SCENARIOS)}) and merge their results "
        "into the existing results file",
    )
    parser.add_argument(
        "--out",
        type=Path,
        help=f"results JSON (default bench/results.json; {QUICK_DIR}/ with --quick)",
    )
    parser.add_argument(
        "--doc",
        type=Path,
        help=f"Markdown report (default docs/benchmarks.md; {QUICK_DIR}/ with --quick)",
    )
    args = parser.parse_args()
    out: Path = args.out or (QUICK_DIR if args.quick else ROOT / "bench") / "results.json"
    doc: Path = args.doc or (QUICK_DIR if args.quick else ROOT / "docs") / "benchmarks.md"
    sizes = QUICK if args.quick else FULL
    sessions.raise_open_files_limit()  # before any server starts: children inherit it

    results: dict[str, Any] = {}
    if args.only and out.exists():
        previous = json.loads(out.read_text())
        # Merge only into a results file of this layout ("scenarios") and the same kind of run.
        if "scenarios" in previous and previous.get("quick") == args.quick:
            results = previous
    results.update(machine=machine(), quick=args.quick, started=time.time())
    results.setdefault("scenarios", {})
    for name in args.only or SCENARIOS:
        began = time.time()
        results[name] = SCENARIOS[name](sizes)
        results["scenarios"][name] = {"started": began, "seconds": time.time() - began}
    results["targets"] = targets(results)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2))
    doc.parent.mkdir(parents=True, exist_ok=True)
    doc.write_text(render(results))
    for t in results["targets"]:
        print(f"target {t['target']}: {t['verdict']} ({t['figure']})")
    print(f"results in {out}, report in {doc}")
    return 0


# Targets from the issue: each a verdict with the figure it was judged on.

# The node configurations the pgbench and latency scenarios measure.
NODE_LEGS = (
    ("node", "node"),
    ("node_workers", f"node of {stack.WORKERS} workers"),
)


def targets(results: dict[str, Any]) -> list[dict[str, str]]:
    found: list[dict[str, str]] = []

    def judge(
        scenario: str, target: str, check: Callable[[dict[str, Any]], tuple[bool, str]]
    ) -> None:
        if scenario not in results:
            found.append({"target": target, "verdict": "not run", "figure": "-"})
            return
        try:
            met, figure = check(results[scenario])
        except KeyError as exc:
            found.append({"target": target, "verdict": "not run", "figure": f"no {exc}"})
            return
        found.append({"target": target, "verdict": "met" if met else "not met", "figure": figure})

    for leg, label in NODE_LEGS:
        for protocol in ("simple", "prepared"):

            def pgb(
                r: dict[str, Any], protocol: str = protocol, leg: str = leg
            ) -> tuple[bool, str]:
                e = r[f"{protocol}/8"]
                node, bouncer = e[leg]["tps"]["median"], e["pgbouncer"]["tps"]["median"]
                return node >= bouncer, (
                    f"node {node:.0f} tps, PgBouncer {bouncer:.0f} tps ({node / bouncer:.2f}x)"
                )

            judge("pgbench", f"pgbench -S, 8 clients, {protocol}: {label} >= PgBouncer", pgb)

        def added(r: dict[str, Any], leg: str = leg) -> tuple[bool, str]:
            v = r[f"{leg}_added_median_us"]["median"]
            return v <= 60, f"{v:.0f} µs"

        judge("latency", f"added latency median <= 60 µs: {label}", added)

    def large(form: str, leg: str, floor: float) -> Callable[[dict[str, Any]], tuple[bool, str]]:
        def check(r: dict[str, Any]) -> tuple[bool, str]:
            ratio = r[form][f"{leg}_over_direct"]
            mbs = r[form][leg]["mb_per_s"]["median"]
            return ratio >= floor, f"{ratio:.2f}x direct ({mbs:.0f} MB/s)"

        return check

    for form, label in (("copy", "COPY"), ("select", "SELECT")):
        judge(
            "large_result",
            f"large result ({label}) unmasked >= 0.9x direct",
            large(form, "node", 0.9),
        )
        judge(
            "large_result",
            f"large result ({label}) masked >= 0.5x direct",
            large(form, "node_masked", 0.5),
        )

    def rss(r: dict[str, Any]) -> tuple[bool, str]:
        peak = r["node"]["hwm_mib"]["median"]
        return peak < 1024, f"peak RSS {peak:.0f} MiB at {r['sessions']} sessions"

    def p99(r: dict[str, Any]) -> tuple[bool, str]:
        v, errors = r["node"]["p99_ms"]["median"], r["node"]["errors"]["max"]
        return v < 10 and errors == 0, f"{v:.2f} ms, {errors:.0f} errors"

    judge("sessions", "sessions: node RSS < 1 GiB", rss)
    judge("sessions", "sessions: p99 < 10 ms", p99)
    for kind, label in (("forbid", "new forbid policy"), ("revoke", "revoked token")):

        def prop(r: dict[str, Any], kind: str = kind) -> tuple[bool, str]:
            v = r[f"{kind}_p99_ms"]["median"]
            return v <= 500, f"{v:.0f} ms over {r['changes']} changes"

        judge("propagation", f"propagation p99 <= 500 ms ({label})", prop)

    def compiled(r: dict[str, Any]) -> tuple[bool, str]:
        v = r["compile_s"]["median"]
        return v <= 2, f"{v:.2f} s at {r['identities']} x {r['connections']}"

    judge("compile", "compile 10k identities x 10k connections <= 2 s", compiled)
    return found


# The report.

MISSING = ["", "_Not run in this results file._", ""]


def render(results: dict[str, Any]) -> str:
    m = results["machine"]
    lines = [
        "# Benchmarks",
        "",
        "Written by `make bench` (`python -m bench`; `python -m bench --only NAME[,NAME]` reruns",
        "some scenarios). Every figure is the median of several runs with the spread (min to",
        "max) beside it; every Lockgate figure has its baseline measured in the same scenario on",
        "the same machine. Each scenario starts its own SCRAM-authenticated PostgreSQL target,",
        "control plane and node on loopback and stops them after. The node runs with audit on",
        "(every statement is spooled and shipped to the control plane) and every statement",
        "classified and authorized by Cedar (`connect` and `read` permitted); masking only where",
        "a leg says so; no TLS on any leg; otherwise the node's defaults (the PostgreSQL fast",
        "path, bulk reads, the loop polling 50 µs after forwarding unless tasks wait for a",
        "CPU more than 30% of the time, one process: README); the latency and pgbench",
        f"scenarios also measure it as {stack.WORKERS} worker processes. PgBouncer is",
        "Debian's, in session mode, SCRAM from",
        "the client and to the server, with default settings except `default_pool_size = "
        f"{pgbouncer.POOL_SIZE}`",
        "(the default 20 would leave 12 of 32 session-mode clients waiting the whole run).",
        "",
        "| CPUs | platform | Python | PostgreSQL | PgBouncer | OpenSSH | Lockgate |",
        "|------|----------|--------|------------|-----------|---------|----------|",
        f"| {m['cpus']} | {m['platform']} | {m['python']} | {m['postgres']} | "
        f"{m['pgbouncer']} | {m['openssh']} | {m['lockgate']} |",
        "",
    ]
    if results.get("quick"):
        lines += [
            "**Quick run (`--quick`): tiny sizes and one run each; these figures and verdicts "
            "mean nothing.**",
            "",
        ]
    lines += ["## Targets", "", "| target | verdict | figure |", "|--------|---------|--------|"]
    for t in results.get("targets", []):
        lines.append(f"| {t['target']} | {t['verdict']} | {t['figure']} |")
    lines += [
        "",
        "What was profiled and changed, and what limits the figures that miss their targets:",
        "[performance.md](performance.md).",
    ]
    lines += _latency(results) + _pgbench(results) + _connect(results) + _large(results)
    lines += _sessions(results) + _propagation(results) + _compile(results) + _scp(results)
    lines += _kernel(results)
    lines += ["", "Raw figures: `bench/results.json`.", ""]
    return "\n".join(lines)


def _latency(results: dict[str, Any]) -> list[str]:
    lines = ["", "## Added latency per statement (1 client, simple protocol `SELECT 1`)"]
    lat = results.get("latency")
    if lat is None:
        return lines + MISSING
    lines += [
        "",
        "libpq `PQexec` round trips, one open connection per leg; the legs take turns in blocks",
        "of 100 round trips, so drift in the machine's speed falls on every leg alike; added =",
        "leg minus direct.",
        "",
        "| leg | median µs | p99 µs | added median µs | added p99 µs |",
        "|-----|-----------|--------|-----------------|--------------|",
        f"| direct | {_f(lat['direct_median_us'])} | {_f(lat['direct_p99_us'])} | - | - |",
    ]
    for leg, label in (
        ("pgbouncer", "PgBouncer"),
        ("node", "**node**"),
        ("node_workers", f"**node, {stack.WORKERS} workers**"),
    ):
        if f"{leg}_median_us" not in lat:
            continue
        lines.append(
            f"| {label} | {_f(lat[f'{leg}_median_us'])} | {_f(lat[f'{leg}_p99_us'])} | "
            f"{_f(lat[f'{leg}_added_median_us'])} | {_f(lat[f'{leg}_added_p99_us'])} |"
        )
    return lines


def _pgbench(results: dict[str, Any]) -> list[str]:
    pgb = results.get("pgbench")
    lines = ["", f"## pgbench -S (select-only), {pgb['seconds'] if pgb else '-'} s per run"]
    if pgb is None:
        return lines + MISSING
    entries = [(key.split("/"), e) for key, e in pgb.items() if "/" in key]
    lines += [
        "",
        "tps without the initial connection time; ms is pgbench's mean latency. The bare relay",
        "(`bench/relay.py`) is a uvloop pass-through that parses nothing: the floor for any",
        "Python proxy on this machine. *Workers*: the node with",
        f"`LOCKGATE_NODE_WORKERS={stack.WORKERS}`, a worker process per core",
        "(data_plane/workers.py).",
        "",
        "| protocol | clients | direct tps | PgBouncer tps | bare relay tps | node tps "
        "| node / PgBouncer | workers tps | workers / PgBouncer "
        "| bare relay / PgBouncer | node / direct | direct ms | PgBouncer ms "
        "| node ms |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for (protocol, clients), e in entries:
        workers = e.get("node_workers")
        lines.append(
            f"| {protocol} | {clients} | {_f(e['direct']['tps'])} | {_f(e['pgbouncer']['tps'])} "
            f"| {_f(e['relay']['tps']) if 'relay' in e else '-'} "
            f"| {_f(e['node']['tps'])} | {e['node_over_pgbouncer']:.2f} | "
            f"{_f(workers['tps']) if workers else '-'} | "
            f"{e.get('node_workers_over_pgbouncer', float('nan')):.2f} | "
            f"{e.get('relay_over_pgbouncer', float('nan')):.2f} | "
            f"{e['node_over_direct']:.2f} | {_f(e['direct']['latency_ms'], 3)} | "
            f"{_f(e['pgbouncer']['latency_ms'], 3)} | {_f(e['node']['latency_ms'], 3)} |"
        )
    if not any("proxy_cpu_us_per_tx" in e["node"] for _, e in entries):
        return lines
    lines += [
        "",
        "CPU time (user + system, µs) per transaction of each leg's processes, from",
        "/proc/<pid>/stat around the run: the proxy and, for the node, the control plane that",
        "stores the node's audit events (one per statement) on the same machine. On 2 cores",
        "every µs here is taken from PostgreSQL and pgbench.",
        "",
        "| protocol | clients | PgBouncer | bare relay | node | control plane (audit) "
        "| workers | control plane (audit) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for (protocol, clients), e in entries:

        def cpu(leg: str, name: str = "proxy", e: dict[str, Any] = e) -> str:
            figure = e.get(leg, {}).get(f"{name}_cpu_us_per_tx")
            return _f(figure, 1) if figure else "-"

        lines.append(
            f"| {protocol} | {clients} | {cpu('pgbouncer')} | {cpu('relay')} | {cpu('node')} "
            f"| {cpu('node', 'control_plane')} | {cpu('node_workers')} "
            f"| {cpu('node_workers', 'control_plane')} |"
        )
    return lines


def _large(results: dict[str, Any]) -> list[str]:
    r = results.get("large_result")
    lines = ["", "## Large result"]
    if r is None or "copy" not in r:
        return lines + MISSING
    lines += [
        "",
        f"{r['rows']:,} rows of about 100 bytes (`SELECT id, email, note FROM big_result`) in",
        "two forms. COPY: psycopg `COPY (...) TO STDOUT` in text format, timed from sending",
        "the COPY to its last row on an open connection. SELECT: `psql -At`, timed by psql's",
        "own `\\timing` (sending the statement to its last row, not connecting or printing).",
        "MB/s is the row text received (COPY data, or the rows as psql prints them: the same",
        "bytes for this table) in 10^6 bytes per second; the ratio is of rows per second (the",
        "masked leg receives fewer bytes for the same rows), each run's against the direct leg",
        "of the same run (the legs take turns), and its median over the runs. The masked leg",
        "goes through a second connection name with the masking rule `*.email`; its output is",
        "checked to be masked. Its rows hold plain emails, which the node masks a run of rows",
        "at a time: COPY rows with regular expressions (`lockgate/masking/copy_text.py`),",
        "DataRows in C (`data_plane/protocols/postgres/_rows.c`); other masked values and",
        "CSV COPY are masked row by row (docs/performance.md). The detectors leg (no target)",
        "goes through a third connection name with the README's example rule: `*.email` and",
        "the `credit_card` and `us_ssn` detectors, which scan the other text cells; rows",
        "whose scanned cells hold none of the detectors' triggers are masked in C, the others",
        "row by row.",
    ]
    for form, title in (("copy", "COPY"), ("select", "SELECT through psql")):
        f = r[form]
        lines += [
            "",
            f"### {title}",
            "",
            "| leg | MB/s | rows/s | bytes | rows/s vs direct |",
            "|-----|------|--------|-------|------------------|",
        ]
        for leg, label in (
            ("direct", "direct"),
            ("pgbouncer", "PgBouncer"),
            ("node", "node, unmasked"),
            ("node_masked", "node, `email` masked"),
            ("node_detect", "node, `email` masked, detectors on"),
        ):
            ratio = "1.00" if leg == "direct" else f"{f[f'{leg}_over_direct']:.2f}"
            lines.append(
                f"| {label} | {_f(f[leg]['mb_per_s'])} | {_f(f[leg]['rows_per_s'])} | "
                f"{f[leg]['bytes']['median']:.0f} | {ratio} |"
            )
    return lines


def _connect(results: dict[str, Any]) -> list[str]:
    r = results.get("connect")
    lines = ["", "## A connection per statement (pgbench -S -C)"]
    if r is None:
        return lines + MISSING
    lines += [
        "",
        f"`pgbench -S -C`, {r['seconds']} s per run: every transaction opens its own connection",
        "(SCRAM from the client; the node then fetches the target's credentials from the",
        "control plane and logs in to the target with SCRAM), runs one select and closes. No",
        "target to meet; PgBouncer in session mode keeps its server connections open between",
        "clients, which the node does not. CPU is ms per connection of the proxy and, for the",
        "node, of the control plane.",
        "",
        "| clients | leg | connections/s | connect ms | latency ms | proxy CPU ms | "
        "control plane CPU ms |",
        "|---|---|---|---|---|---|---|",
    ]
    for clients in ("1", "8"):
        if clients not in r:
            continue
        for leg in ("direct", "pgbouncer", "node"):
            e = r[clients][leg]

            def cpu(key: str, e: dict[str, Any] = e) -> str:
                if key not in e:
                    return "-"
                return _f({k: e[key][k] / 1000 for k in ("median", "min", "max")}, 2)

            lines.append(
                f"| {clients} | {leg} | {_f(e['tps'])} | {_f(e['connect_ms'], 2)} | "
                f"{_f(e['latency_ms'], 2)} | {cpu('proxy_cpu_us_per_tx')} | "
                f"{cpu('control_plane_cpu_us_per_tx')} |"
            )
    return lines


def _sessions(results: dict[str, Any]) -> list[str]:
    r = results.get("sessions")
    lines = ["", "## Many sessions"]
    if r is None:
        return lines + MISSING
    lines += [
        "",
        f"{r['sessions']:,} asyncpg sessions (one client process, asyncio) each run",
        "`SELECT id, name, price FROM items WHERE id = $1` once a second, at evenly spread",
        f"phases, for {r['seconds']} s. Latency is around `fetchrow` only. Node CPU is its",
        "process's utime+stime over the window as % of one core; RSS is VmRSS at the end of the",
        "window, peak is VmHWM since the node started. `client late p99` is how late the client",
        "started statements against their schedule (a busy client would show here).",
        "",
        "| leg | p50 ms | p99 ms | max ms | statements | errors | client late p99 ms | "
        "node RSS MiB | node peak MiB | node CPU % |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for leg in ("direct", "node"):
        e = r[leg]
        node = (
            [_f(e["rss_mib"]), _f(e["hwm_mib"]), _f(e["cpu_percent"], 1)]
            if "rss_mib" in e
            else ["-", "-", "-"]
        )
        lines.append(
            f"| {leg} | {_f(e['p50_ms'], 2)} | {_f(e['p99_ms'], 2)} | {_f(e['max_ms'], 2)} | "
            f"{_f(e['statements'])} | {_f(e['errors'])} | {_f(e['client_late_p99_ms'], 2)} | "
            + " | ".join(node)
            + " |"
        )
    return lines


def _propagation(results: dict[str, Any]) -> list[str]:
    r = results.get("propagation")
    lines = ["", "## Policy propagation"]
    if r is None:
        return lines + MISSING
    lines += [
        "",
        f"{r['changes']} changes of each kind per run, each timed from just before the REST",
        "request is sent until a real client sees it enforced: a session loops `SELECT 1`",
        "(1 ms pauses) until SQLSTATE 42501 after `POST /policies` with",
        '`forbid(principal == Identity::"...", action == Action::"read", resource);`, and a',
        "client loops connecting until SQLSTATE 28P01 after `DELETE /tokens/{id}`.",
        "",
        "| change | p50 ms | p99 ms | max ms |",
        "|--------|--------|--------|--------|",
    ]
    for kind, label in (("forbid", "new forbid policy"), ("revoke", "revoked token")):
        lines.append(
            f"| {label} | {_f(r[f'{kind}_p50_ms'])} | {_f(r[f'{kind}_p99_ms'])} | "
            f"{_f(r[f'{kind}_max_ms'])} |"
        )
    return lines


def _compile(results: dict[str, Any]) -> list[str]:
    r = results.get("compile")
    lines = ["", "## Bundle compile"]
    if r is None:
        return lines + MISSING
    lines += [
        "",
        f"{r['identities']:,} identities (one token each, 100 groups) and {r['connections']:,} "
        "connections inserted with",
        "SQLModel into a fresh SQLite store; `control_plane.compiler.compile_bundle` and the",
        "node's `lockgate.bundle.BundleView(bundle)` timed separately, each the second call in",
        "its process (the first, cold, call beside it). The target applies to `compile_bundle`.",
        "",
        "| step | warm s | cold s |",
        "|------|--------|--------|",
        f"| compile_bundle | {_f(r['compile_s'], 3)} | {_f(r['compile_cold_s'], 3)} |",
        f"| BundleView | {_f(r['bundle_view_s'], 3)} | {_f(r['bundle_view_cold_s'], 3)} |",
        "",
        f"Bundle size: {r['bundle_bytes']['median']:,.0f} bytes.",
    ]
    return lines


def _scp(results: dict[str, Any]) -> list[str]:
    r = results.get("scp")
    lines = ["", "## SSH file transfer (scp)"]
    if r is None:
        return lines + MISSING
    lines += [
        "",
        f"`scp` downloads {r['bytes'] / 1e6:.0f} MB of random bytes from a Debian `sshd` on",
        "loopback, directly and through a second `sshd` as jump host (`scp -J`); MB/s over the",
        "whole command's wall time, handshakes included.",
        "",
        "| leg | MB/s |",
        "|-----|------|",
        f"| direct | {_f(r['direct_mb_per_s'])} |",
        f"| jump host (`-J`) | {_f(r['jump_mb_per_s'])} |",
        f"| node | {r['node']['status']} |",
    ]
    return lines


def _kernel(results: dict[str, Any]) -> list[str]:
    r = results.get("kernel")
    lines = ["", "## Enforcement kernel (no sockets)"]
    if r is None:
        return lines + MISSING
    lines += [
        "",
        "Classification parses with libpg_query (pglast) and walks the whole tree; a decision adds",
        "Cedar authorization (guardrails on) and masking lineage; the cached decision is what a",
        "repeated statement costs inside a session (a dictionary lookup by statement text).",
        "",
        "| measure | per second |",
        "|---------|------------|",
    ]
    for key, value in r.items():
        lines.append(f"| {key.removesuffix('_per_s').replace('_', ' ')} | {_f(value)} |")
    return lines


def _f(s: dict[str, float], digits: int = 0) -> str:
    return f"{s['median']:.{digits}f} ({s['min']:.{digits}f}-{s['max']:.{digits}f})"


if __name__ == "__main__":
    raise SystemExit(main())
