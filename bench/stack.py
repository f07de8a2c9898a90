"""What the benchmarks run against: a SCRAM-authenticated PostgreSQL target, a control plane
and a node with audit on, provisioned through the REST API (the same harness as the tests)."""

from __future__ import annotations

import secrets
import shutil
from dataclasses import dataclass, field

from tests.harness.lockgate import ControlPlane, Node
from tests.harness.postgres import PostgresTarget
from tests.harness.processes import wait_until


@dataclass
class Stack:
    target: PostgresTarget
    control_plane: ControlPlane
    node: Node
    identity: str
    token: str
    extras: list[object] = field(default_factory=list)

    def direct_dsn(self, sslmode: str = "disable") -> str:
        pw = self.target.passwords["app"]
        return f"postgresql://app:{pw}@127.0.0.1:{self.target.port}/appdb?sslmode={sslmode}"

    def node_dsn(self, sslmode: str = "disable") -> str:
        return self.node.dsn(self.identity, self.token, "appdb", sslmode)

    def stop(self) -> None:
        self.node.cleanup()
        self.control_plane.stop()
        shutil.rmtree(self.control_plane.home, ignore_errors=True)
        self.target.stop()


def start() -> Stack:
    target = PostgresTarget().start()
    cp = ControlPlane().start()
    node = Node(cp, "bench-node").start()
    cp.ok(
        "POST",
        "/connections",
        json={
            "name": "appdb",
            "type": "postgres",
            "host": "127.0.0.1",
            "port": target.port,
            "database": "appdb",
            "username": "app",
            "password": target.passwords["app"],
        },
    )
    identity = f"bench-{secrets.token_hex(3)}"
    cp.ok("POST", "/identities", json={"name": identity, "kind": "service", "groups": ["bench"]})
    cp.ok(
        "POST",
        "/policies",
        json={
            "name": "bench-read",
            "cedar": 'permit(principal in Group::"bench", '
            'action in [Action::"connect", Action::"read"], resource);',
        },
    )
    token = cp.ok("POST", "/tokens", json={"identity": identity})["token"]
    wanted = cp.ok("GET", "/nodes")[0]["bundle_revision"]
    wait_until(lambda: node.revision() >= wanted and node.revision() > 1, 10, "bundle on node")
    return Stack(target, cp, node, identity, token)
