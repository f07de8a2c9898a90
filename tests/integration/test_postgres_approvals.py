"""Just-in-time approvals on the native path: a held statement waits in a real psql until a
person decides over REST; two-person rules; the requester cannot approve itself; time-bound
access grants that a node expires on its own; a decision made on another control-plane replica
(LISTEN/NOTIFY over a shared PostgreSQL); signed webhooks seen once per event."""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import secrets
import subprocess
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer

import psycopg
import pytest

from tests.harness.lockgate import ControlPlane, Node, add_connection
from tests.harness.postgres import PostgresTarget
from tests.harness.processes import free_port, wait_until
from tests.integration.conftest import Agent, make_agent, wait_for_revision

WEBHOOK_SECRET = "whsec-" + secrets.token_hex(8)


class Receiver:
    """A webhook receiver that checks each delivery's HMAC signature."""

    def __init__(self) -> None:
        self.events: list[dict] = []
        self.deliveries: list[str] = []
        self.bad_signatures = 0
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                stamp = self.headers.get("X-Lockgate-Timestamp", "")
                expected = hmac.new(
                    WEBHOOK_SECRET.encode(), stamp.encode() + b"." + body, hashlib.sha256
                ).hexdigest()
                if self.headers.get("X-Lockgate-Signature") != f"sha256={expected}":
                    receiver.bad_signatures += 1
                    self.send_response(401)
                else:
                    receiver.deliveries.append(self.headers["X-Lockgate-Delivery"])
                    receiver.events.append(
                        {"event": self.headers["X-Lockgate-Event"], **json.loads(body)}
                    )
                    self.send_response(204)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.port = free_port()
        self.server = HTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.server.shutdown()


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.stop()


@pytest.fixture(scope="module")
def setup(
    control_plane: ControlPlane,
    node: Node,
    pg_target: PostgresTarget,
    appdb: str,
    receiver: Receiver,
) -> dict:
    pg_target.psql_admin(
        "CREATE TABLE held_items (id int PRIMARY KEY, note text);"
        "INSERT INTO held_items SELECT g, 'row ' || g FROM generate_series(1, 50) g;"
        "ALTER TABLE held_items OWNER TO app;",
        database="appdb",
    )
    cp = control_plane
    add_connection(cp, pg_target, "held")
    cp.ok(
        "POST",
        "/policies",
        json={
            "name": "requesters-work",
            "cedar": 'permit(principal in Group::"requesters", action, '
            'resource == Connection::"held");',
        },
    )
    cp.ok(
        "POST",
        "/approval-rules",
        json={
            "name": "deletes-need-a-dba",
            "connections": ["held"],
            "actions": ["write"],
            "commands": ["delete *"],
            "approvers": ['Group::"dba"'],
            "required": 1,
            "timeout_seconds": 4,
        },
    )
    cp.ok(
        "POST",
        "/approval-rules",
        json={
            "name": "updates-need-two",
            "connections": ["held"],
            "actions": ["write"],
            "commands": ["update *"],
            "approvers": ['Group::"dba"', 'Group::"requesters"'],
            "required": 2,
            "timeout_seconds": 30,
        },
    )
    cp.ok(
        "POST",
        "/webhooks",
        json={
            "name": "test-receiver",
            "url": f"http://127.0.0.1:{receiver.port}/hook",
            "secret": WEBHOOK_SECRET,
            "format": "json",
            "events": [
                "approval.requested",
                "approval.approved",
                "approval.denied",
                "approval.expired",
            ],
        },
    )
    requester = make_agent(cp, group="requesters", prefix="req")
    dba1 = make_agent(cp, group="dba", prefix="dba")
    dba2 = make_agent(cp, group="dba", prefix="dba")
    wait_for_revision(cp, node)
    return {"requester": requester, "dba1": dba1, "dba2": dba2}


class HeldPsql:
    """psql running one statement through the node, read line by line as it happens."""

    def __init__(self, node: Node, who: Agent, sql: str) -> None:
        self.proc = subprocess.Popen(
            [
                "psql",
                node.dsn(who.name, who.token, "held"),
                "-X",
                "-v",
                "ON_ERROR_STOP=1",
                "-c",
                sql,
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.stderr_lines: list[str] = []
        self.started = time.monotonic()
        self.reader = threading.Thread(target=self._read_stderr, daemon=True)
        self.reader.start()

    def _read_stderr(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.stderr_lines.append(line)

    def approval_id(self, timeout: float = 5.0) -> str:
        def notice() -> str | None:
            for line in self.stderr_lines:
                found = re.search(r"approval (\S+) is needed", line)
                if found:
                    return found.group(1)
            return None

        wait_until(lambda: notice() is not None, timeout, "the approval notice")
        return notice() or ""

    def finish(self, timeout: float = 15.0) -> tuple[int, str, str]:
        self.proc.wait(timeout=timeout)
        assert self.proc.stdout is not None
        out = self.proc.stdout.read()
        self.reader.join(5)
        return self.proc.returncode, out, "".join(self.stderr_lines)


def decide(cp: ControlPlane, who: Agent, approval: str, verdict: str, comment: str = ""):
    return cp.api(
        "POST", f"/approvals/{approval}/{verdict}", token=who.token, json={"comment": comment}
    )


def test_held_delete_waits_for_approval_then_runs(
    setup: dict, node: Node, control_plane: ControlPlane
):
    held = HeldPsql(node, setup["requester"], "DELETE FROM held_items WHERE id = 1")
    approval = held.approval_id()
    assert time.monotonic() - held.started < 5  # the notice arrives at once
    time.sleep(0.5)
    assert held.proc.poll() is None  # still waiting
    pending = control_plane.ok("GET", "/approvals?state=pending")
    assert approval in [a["id"] for a in pending]
    assert decide(control_plane, setup["dba1"], approval, "approve", "ok").status_code == 200
    code, out, err = held.finish()
    assert code == 0, err
    assert "DELETE 1" in out


def test_denied_delete_returns_42501_with_the_comment(
    setup: dict, node: Node, control_plane: ControlPlane
):
    held = HeldPsql(node, setup["requester"], "DELETE FROM held_items WHERE id = 2")
    approval = held.approval_id()
    assert (
        decide(control_plane, setup["dba1"], approval, "deny", "not during the freeze").status_code
        == 200
    )
    code, _, err = held.finish()
    assert code != 0
    assert "not during the freeze" in err


def test_unanswered_request_times_out(setup: dict, node: Node):
    held = HeldPsql(node, setup["requester"], "DELETE FROM held_items WHERE id = 4")
    held.approval_id()
    code, _, err = held.finish(timeout=20)
    assert code != 0
    assert "expired" in err or "timed out" in err
    assert time.monotonic() - held.started >= 4


def test_two_approvals_required_and_the_requester_cannot_approve(
    setup: dict, node: Node, control_plane: ControlPlane
):
    held = HeldPsql(node, setup["requester"], "UPDATE held_items SET note = 'x' WHERE id = 5")
    approval = held.approval_id()
    assert decide(control_plane, setup["requester"], approval, "approve").status_code == 403
    assert decide(control_plane, setup["dba1"], approval, "approve").status_code == 200
    time.sleep(1.0)
    assert held.proc.poll() is None  # one approval is not enough
    assert decide(control_plane, setup["dba1"], approval, "approve").status_code == 409
    assert decide(control_plane, setup["dba2"], approval, "approve").status_code == 200
    code, out, err = held.finish()
    assert code == 0, err
    assert "UPDATE 1" in out


def test_each_approval_event_reaches_the_webhook_once_signed(
    setup: dict, node: Node, control_plane: ControlPlane, receiver: Receiver
):
    held = HeldPsql(node, setup["requester"], "DELETE FROM held_items WHERE id = 6")
    approval = held.approval_id()
    decide(control_plane, setup["dba2"], approval, "approve")
    assert held.finish()[0] == 0

    def events_for(kind: str) -> list[dict]:
        return [e for e in receiver.events if e["event"] == kind and json.dumps(e).count(approval)]

    wait_until(lambda: len(events_for("approval.approved")) == 1, 10, "webhook deliveries")
    assert len(events_for("approval.requested")) == 1
    assert receiver.bad_signatures == 0
    assert len(receiver.deliveries) == len(set(receiver.deliveries))


def test_jit_grant_works_until_its_expiry_even_without_the_control_plane(
    setup: dict, node: Node, control_plane: ControlPlane
):
    cp = control_plane
    bot = make_agent(cp, group="nobody", prefix="jit")
    wait_for_revision(cp, node)
    refused = psycopg.connect  # no permit yet: 42501
    with pytest.raises(psycopg.OperationalError, match="permission denied"):
        refused(node.dsn(bot.name, bot.token, "held"))
    request = cp.api(
        "POST",
        "/access-requests",
        token=bot.token,
        json={
            "connection": "held",
            "actions": ["connect", "read"],
            "duration_seconds": 6,
            "reason": "investigate ticket 42",
        },
    )
    assert request.status_code == 201, request.text
    approval = request.json()["approval_id"]
    admin = Agent("admin", cp.admin_token, "")
    assert decide(cp, admin, approval, "approve").status_code == 200
    wait_for_revision(cp, node)
    conn = psycopg.connect(node.dsn(bot.name, bot.token, "held"), autocommit=True)
    assert conn.execute("SELECT count(*) FROM held_items").fetchone()[0] > 0
    grant = cp.ok("GET", "/grants")[0]
    cp.stop()
    try:
        expires = time.time() + 6
        deadline = expires + 5
        denied_at = None
        while time.time() < deadline:
            try:
                conn.execute("SELECT 1")
            except psycopg.errors.InsufficientPrivilege:
                denied_at = time.time()
                break
            time.sleep(0.2)
        assert denied_at is not None, grant
        with pytest.raises(psycopg.OperationalError, match="permission denied"):
            psycopg.connect(node.dsn(bot.name, bot.token, "held"))
    finally:
        conn.close()
        cp.start()
