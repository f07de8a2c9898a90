"""What the benchmarks run against: a SCRAM-authenticated PostgreSQL target, a control plane
and a node with audit on, provisioned through the REST API (the same harness as the tests),
and, for the scenarios that compare against it, a stock PgBouncer in front of the same target.
"""

from __future__ import annotations

import os
import secrets
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import httpx

from bench.pgbouncer import PgBouncer
from tests.harness.lockgate import ControlPlane, Node, add_connection
from tests.harness.postgres import PostgresTarget
from tests.harness.processes import wait_until

CONNECTION = "appdb"
# The second node configuration the latency and pgbench scenarios measure: a worker process
# per core (data_plane/workers.py), otherwise the node's defaults.
WORKERS = max(os.cpu_count() or 1, 2)
WORKERS_ENV = {"LOCKGATE_NODE_WORKERS": str(WORKERS)}


@dataclass
class Stack:
    target: PostgresTarget
    control_plane: ControlPlane
    node: Node
    identity: str
    token: str
    pgbouncer: PgBouncer | None = None
    extra_nodes: list[Node] = field(default_factory=list)

    def direct_dsn(self, sslmode: str = "disable") -> str:
        return self.target.dsn(sslmode)

    def node_dsn(self, sslmode: str = "disable", connection: str = CONNECTION) -> str:
        return self.node.dsn(self.identity, self.token, connection, sslmode)

    def pgbouncer_dsn(self, sslmode: str = "disable") -> str:
        assert self.pgbouncer is not None, "stack started without PgBouncer"
        return self.pgbouncer.dsn(sslmode)

    def workers_node(self) -> Node:
        """A second node of `WORKERS` worker processes in this stack, in sync with it (the
        stack stops it with the rest)."""
        node = Node(
            self.control_plane, f"bench-workers-{secrets.token_hex(3)}", extra_env=WORKERS_ENV
        )
        self.extra_nodes.append(node.start())
        self.wait_for_bundle()
        return node

    def add_connection(self, name: str) -> None:
        """Another connection to the same target database (for rules bound to one name)."""
        add_connection(self.control_plane, self.target, name)

    def wait_for_bundle(self) -> None:
        """Wait until the node enforces the control plane's current configuration revision."""
        wanted = int(httpx.get(f"{self.control_plane.url}/healthz", timeout=5).json()["revision"])
        wait_until(lambda: self.node.revision() >= wanted, 10, f"bundle {wanted} on the node")

    def stop(self) -> None:
        if self.pgbouncer is not None:
            self.pgbouncer.stop()
        for node in self.extra_nodes:
            node.cleanup()
        self.node.cleanup()
        self.control_plane.stop()
        shutil.rmtree(self.control_plane.home, ignore_errors=True)
        self.target.stop()


def start(*, max_connections: int = 300, pgbouncer: bool = False) -> Stack:
    """Target, control plane and node (and PgBouncer when asked), provisioned and in sync."""
    target = PostgresTarget(max_connections=max_connections).start()
    cp = ControlPlane().start()
    node = Node(cp, "bench-node").start()
    stack = Stack(target, cp, node, "", "")
    try:
        stack.add_connection(CONNECTION)
        identity = f"bench-{secrets.token_hex(3)}"
        cp.ok(
            "POST", "/identities", json={"name": identity, "kind": "service", "groups": ["bench"]}
        )
        cp.ok(
            "POST",
            "/policies",
            json={
                "name": "bench-read",
                "cedar": 'permit(principal in Group::"bench", '
                'action in [Action::"connect", Action::"read"], resource);',
            },
        )
        stack.identity = identity
        stack.token = cp.ok("POST", "/tokens", json={"identity": identity})["token"]
        stack.wait_for_bundle()
        if pgbouncer:
            stack.pgbouncer = PgBouncer(target).start()
    except BaseException:
        stack.stop()
        raise
    return stack


@contextmanager
def running(*, max_connections: int = 300, pgbouncer: bool = False) -> Iterator[Stack]:
    """A stack for one scenario, stopped after it whatever happens."""
    stack = start(max_connections=max_connections, pgbouncer=pgbouncer)
    try:
        yield stack
    finally:
        stack.stop()
