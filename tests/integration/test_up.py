"""`lockgate up` (what `make run` starts): prints a psql line that works once a PostgreSQL is
registered with the documented command, refuses a taken port in one line, stops on SIGTERM."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tests.harness.postgres import PostgresTarget
from tests.harness.processes import free_port, port_open, wait_until


def up_env(home: Path, ports: dict[str, int]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOCKGATE_")}
    env.update(
        LOCKGATE_HOME=str(home),
        LOCKGATE_BIND="127.0.0.1",
        **{f"LOCKGATE_{k.upper()}": str(v) for k, v in ports.items()},
    )
    return env


def test_up_prints_a_psql_line_that_works_and_stops_cleanly(pg_target: PostgresTarget):
    home = Path(tempfile.mkdtemp(prefix="lg-up-"))
    ports = {n: free_port() for n in ("http_port", "grpc_port", "pg_port", "node_http_port")}
    env = up_env(home, ports)
    log_path = home / "up.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "lockgate", "up"],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
    try:
        wait_until(
            lambda: "Lockgate is up." in log_path.read_text(),
            90,
            "lockgate up banner",
            interval=0.2,
        )
        banner = log_path.read_text()
        psql_line = re.search(r'^\s*psql "(postgresql://[^"]+)"', banner, re.M)
        assert psql_line, banner
        # The documented registration, with the CLI (the banner shows the same with curl).
        registered = subprocess.run(
            [
                sys.executable,
                "-m",
                "lockgate",
                "connections",
                "create",
                "mydb",
                "--host",
                "127.0.0.1",
                "--port",
                str(pg_target.port),
                "--database",
                "appdb",
                "--username",
                "app",
                "--password-stdin",
            ],
            input=pg_target.passwords["app"] + "\n",
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
        )
        assert registered.returncode == 0, registered.stderr
        assert pg_target.passwords["app"] not in registered.stdout

        def psql_works() -> bool:
            result = subprocess.run(
                ["psql", psql_line.group(1), "-XAtc", "SELECT count(*) FROM items"],
                capture_output=True,
                text=True,
                timeout=30,
            )
            return result.returncode == 0 and result.stdout.strip() == "100"

        wait_until(psql_works, 10, "the printed psql line to work", interval=0.2)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
        for port in ports.values():
            assert not port_open(port), f"port {port} still open after SIGTERM"
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        shutil.rmtree(home, ignore_errors=True)


def test_up_refuses_a_taken_port_with_one_line():
    home = Path(tempfile.mkdtemp(prefix="lg-up-"))
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        ports = {n: free_port() for n in ("http_port", "grpc_port", "node_http_port")}
        ports["pg_port"] = taken.getsockname()[1]
        started = time.monotonic()
        result = subprocess.run(
            [sys.executable, "-m", "lockgate", "up"],
            capture_output=True,
            text=True,
            env=up_env(home, ports),
            timeout=60,
        )
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and str(ports["pg_port"]) in lines[0], result.stderr
    assert time.monotonic() - started < 30
    shutil.rmtree(home, ignore_errors=True)
