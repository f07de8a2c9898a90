"""Fixtures for integration tests: a real PostgreSQL target, a control plane and a node, all
real processes on free loopback ports, provisioned through the REST API."""

from __future__ import annotations

import asyncio
import secrets
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass

import asyncpg
import pytest

from tests.harness.lockgate import ControlPlane, Node, add_connection
from tests.harness.postgres import PostgresTarget

pytestmark = pytest.mark.integration


@pytest.fixture(scope="session")
def pg_target() -> Iterator[PostgresTarget]:
    target = PostgresTarget().start()
    yield target
    target.stop()


@pytest.fixture(scope="session")
def control_plane() -> Iterator[ControlPlane]:
    cp = ControlPlane().start()
    yield cp
    cp.stop()
    shutil.rmtree(cp.home, ignore_errors=True)


@pytest.fixture(scope="session")
def node(control_plane: ControlPlane) -> Iterator[Node]:
    n = Node(control_plane, "it-node").start()
    yield n
    n.cleanup()


def wait_for_revision(cp: ControlPlane, node: Node, timeout: float = 5.0) -> None:
    """Block until the node enforces the control plane's current revision."""
    wanted = _cp_revision(cp)
    deadline = time.monotonic() + timeout
    while node.revision() < wanted:
        if time.monotonic() > deadline:
            raise TimeoutError(f"node stuck at revision {node.revision()} < {wanted}")
        time.sleep(0.02)


def _cp_revision(cp: ControlPlane) -> int:
    import httpx

    return int(httpx.get(f"{cp.url}/healthz", timeout=5).json()["revision"])


@dataclass
class Agent:
    name: str
    token: str
    token_id: str


def make_agent(cp: ControlPlane, group: str = "agents", prefix: str = "agent") -> Agent:
    name = f"{prefix}-{secrets.token_hex(4)}"
    cp.ok("POST", "/identities", json={"name": name, "kind": "service", "groups": [group]})
    token = cp.ok("POST", "/tokens", json={"identity": name})
    return Agent(name, token["token"], token["id"])


@pytest.fixture(scope="session")
def appdb(control_plane: ControlPlane, pg_target: PostgresTarget, node: Node) -> str:
    """Connection `appdb` (SCRAM upstream) and a policy letting group `agents` work on it."""
    add_connection(control_plane, pg_target, "appdb")
    control_plane.ok(
        "POST",
        "/policies",
        json={
            "name": "agents-work",
            "cedar": 'permit(principal in Group::"agents", action, resource);',
        },
    )
    wait_for_revision(control_plane, node)
    return "appdb"


@pytest.fixture
def agent(control_plane: ControlPlane, node: Node, appdb: str) -> Agent:
    a = make_agent(control_plane)
    wait_for_revision(control_plane, node)
    return a


def connect_error(dsn: str) -> asyncpg.PostgresError:
    """The error the node answers a new connection with (asyncpg: psycopg's has no SQLSTATE)."""

    async def attempt() -> asyncpg.PostgresError:
        try:
            conn = await asyncpg.connect(dsn, timeout=10)
        except asyncpg.PostgresError as exc:
            return exc
        await conn.close()
        raise AssertionError("connection unexpectedly succeeded")

    return asyncio.run(attempt())
