"""Two control-plane replicas over one PostgreSQL: a statement held by a node connected to the
first proceeds within a second of being approved on the second (LISTEN/NOTIFY, not polling)."""

from __future__ import annotations

import base64
import re
import secrets
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator

import pytest

from tests.harness.lockgate import ControlPlane, Node, add_connection
from tests.harness.postgres import PostgresTarget, scratch_database
from tests.harness.processes import wait_until
from tests.integration.conftest import make_agent


@pytest.fixture
def replicas() -> Iterator[tuple[ControlPlane, ControlPlane]]:
    with scratch_database("lg_replicas") as url:
        key = base64.urlsafe_b64encode(secrets.token_bytes(32)).decode()
        first = ControlPlane(database_url=url, env={"LOCKGATE_MASTER_KEY": key}).start()
        second = ControlPlane(
            database_url=url, env={"LOCKGATE_MASTER_KEY": key}, admin_token=first.admin_token
        ).start()
        try:
            yield first, second
        finally:
            for cp in (first, second):
                cp.stop()
                shutil.rmtree(cp.home, ignore_errors=True)


def test_approval_on_another_replica_releases_the_statement_within_a_second(
    replicas: tuple[ControlPlane, ControlPlane], pg_target: PostgresTarget
):
    first, second = replicas
    pg_target.psql_admin(
        "CREATE TABLE IF NOT EXISTS replica_items (id int PRIMARY KEY);"
        "INSERT INTO replica_items SELECT g FROM generate_series(1, 10) g ON CONFLICT DO NOTHING;"
        "ALTER TABLE replica_items OWNER TO app;",
        database="appdb",
    )
    add_connection(first, pg_target, "rdb")
    first.ok(
        "POST",
        "/policies",
        json={"name": "rq", "cedar": 'permit(principal in Group::"rq", action, resource);'},
    )
    first.ok(
        "POST",
        "/approval-rules",
        json={
            "name": "hold-deletes",
            "connections": ["rdb"],
            "actions": ["write"],
            "commands": ["delete *"],
            "approvers": ['Group::"dba"'],
            "required": 1,
            "timeout_seconds": 60,
        },
    )
    requester = make_agent(first, group="rq", prefix="rq")
    approver = make_agent(first, group="dba", prefix="dba")
    node = Node(first, "replica-node").start()
    try:
        wanted = int(first.ok("GET", "/nodes")[0]["bundle_revision"])
        wait_until(lambda: node.revision() >= wanted, 10, "bundle")
        proc = subprocess.Popen(
            [
                "psql",
                node.dsn(requester.name, requester.token, "rdb"),
                "-X",
                "-c",
                "DELETE FROM replica_items WHERE id = 1",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        lines: list[str] = []
        threading.Thread(target=lambda: lines.extend(proc.stderr), daemon=True).start()
        wait_until(lambda: any("is needed" in line for line in lines), 10, "approval notice")
        approval = re.search(r"approval (\S+) is needed", "".join(lines)).group(1)
        approved = second.api(
            "POST",
            f"/approvals/{approval}/approve",
            token=approver.token,
            json={"comment": "from replica two"},
        )
        assert approved.status_code == 200, approved.text
        decided = time.monotonic()
        out, _ = proc.communicate(timeout=10)
        elapsed = time.monotonic() - decided
        assert proc.returncode == 0 and "DELETE 1" in out
        assert elapsed < 1.0, elapsed
    finally:
        node.cleanup()
