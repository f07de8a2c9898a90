"""`lockgate up`: a control plane and one node as child processes, on embedded defaults.

It checks every port first (a taken port is a one-line error), registers the local node once
(its token is kept in the home, mode 0600), prints how to connect, and stops both children on
Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from lockgate.ports import PortTaken, check_free
from lockgate.settings import ADMIN_TOKEN_FILE, Settings, write_private

NODE_NAME = "local"
START_TIMEOUT = 90.0


def _child_env(settings: Settings, **extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        LOCKGATE_HOME=str(settings.home.resolve()),
        LOCKGATE_BIND=settings.bind,
        LOCKGATE_HTTP_PORT=str(settings.http_port),
        LOCKGATE_GRPC_PORT=str(settings.grpc_port),
        LOCKGATE_PG_PORT=str(settings.pg_port),
        LOCKGATE_NODE_HTTP_PORT=str(settings.node_http_port),
    )
    if settings.database_url:
        env["LOCKGATE_DATABASE_URL"] = settings.database_url
    env.update(extra)
    return env


def _wait_healthy(url: str, child: subprocess.Popen[bytes], what: str) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if child.poll() is not None:
            raise RuntimeError(f"the {what} exited with status {child.returncode}")
        try:
            if httpx.get(url, timeout=1.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"the {what} did not become healthy within {START_TIMEOUT:.0f} s")


def _node_token(settings: Settings, admin_token: str, node_home: Path) -> str:
    """The local node's token: kept from an earlier run, or registered now."""
    token_file = node_home / "node-token"
    api = f"{settings.http_url}/api/v1"
    headers = {"Authorization": f"Bearer {admin_token}"}
    nodes = httpx.get(f"{api}/nodes", headers=headers, timeout=10).json()
    registered = any(n["name"] == NODE_NAME for n in nodes)
    if registered and token_file.exists():
        return token_file.read_text().strip()
    if registered:  # the token file was lost: register afresh
        httpx.delete(f"{api}/nodes/{NODE_NAME}", headers=headers, timeout=10)
    response = httpx.post(
        f"{api}/nodes", json={"name": NODE_NAME, "labels": {}}, headers=headers, timeout=10
    )
    response.raise_for_status()
    token: str = response.json()["token"]
    node_home.mkdir(parents=True, exist_ok=True)
    write_private(token_file, token)
    return token


def _stop(children: list[subprocess.Popen[bytes]]) -> None:
    for child in children:
        if child.poll() is None:
            child.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + 10
    for child in children:
        try:
            child.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            child.kill()


def up(settings: Settings) -> int:
    try:
        for port, what in (
            (settings.http_port, "control-plane HTTP"),
            (settings.grpc_port, "control-plane gRPC"),
            (settings.pg_port, "node PostgreSQL"),
            (settings.node_http_port, "node health"),
        ):
            check_free(settings.bind, port, what=what)
    except PortTaken as exc:
        print(f"lockgate up: {exc}", file=sys.stderr)
        return 1
    home = settings.ensure_home().resolve()
    children: list[subprocess.Popen[bytes]] = []
    stopping = False

    def on_signal(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_signal)
    try:
        cp = subprocess.Popen(
            [sys.executable, "-m", "lockgate", "control-plane"], env=_child_env(settings)
        )
        children.append(cp)
        _wait_healthy(f"{settings.http_url}/healthz", cp, "control plane")
        admin_token = (home / ADMIN_TOKEN_FILE).read_text().strip()
        node_home = home / "node"
        node_token = _node_token(settings, admin_token, node_home)
        grpc_host = "127.0.0.1" if settings.bind in ("0.0.0.0", "::") else settings.bind
        node = subprocess.Popen(
            [sys.executable, "-m", "lockgate", "node"],
            env=_child_env(
                settings,
                LOCKGATE_HOME=str(node_home),
                LOCKGATE_CONTROL_PLANE=f"{grpc_host}:{settings.grpc_port}",
                LOCKGATE_NODE_TOKEN=node_token,
            ),
        )
        children.append(node)
        node_host = grpc_host
        _wait_healthy(f"http://{node_host}:{settings.node_http_port}/healthz", node, "node")
        print(_banner(settings, admin_token, node_host), flush=True)
        while all(child.poll() is None for child in children):
            time.sleep(0.5)
        failed = next(c for c in children if c.poll() is not None)
        print(
            f"lockgate up: a child process exited ({failed.returncode}); stopping", file=sys.stderr
        )
        return 1
    except KeyboardInterrupt:
        return 0
    except (RuntimeError, httpx.HTTPError) as exc:
        print(f"lockgate up: {exc}", file=sys.stderr)
        return 1
    finally:
        _stop(children)


def _banner(settings: Settings, admin_token: str, host: str) -> str:
    api = settings.http_url
    return f"""
Lockgate is up.
  control plane  {api}   (API docs: {api}/api/v1/docs)
  node           postgres://{host}:{settings.pg_port}
  admin token    {admin_token}
                 (kept in {settings.home.resolve() / ADMIN_TOKEN_FILE})

Register a PostgreSQL target (its password stays with Lockgate):
  curl -sS -X POST {api}/api/v1/connections \\
    -H "Authorization: Bearer {admin_token}" -H 'Content-Type: application/json' \\
    -d '{{"name": "mydb", "type": "postgres", "host": "127.0.0.1", "port": 5432,
         "database": "postgres", "username": "postgres", "password": "secret"}}'

Then connect with stock psql:
  psql "postgresql://admin:{admin_token}@{host}:{settings.pg_port}/mydb?sslmode=require"

Ctrl-C stops Lockgate.
"""
