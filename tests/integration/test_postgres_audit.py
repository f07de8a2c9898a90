"""Every statement is audited, in order, within seconds; a control-plane outage loses nothing
and duplicates nothing; the target's password is nowhere a user or an operator can read it."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import psycopg

from tests.harness.lockgate import ControlPlane, Node
from tests.harness.postgres import PostgresTarget
from tests.harness.processes import wait_until
from tests.integration.conftest import Agent, connect_error


def sessions_of(cp: ControlPlane, identity: str) -> list[dict]:
    return cp.ok("GET", f"/sessions?identity={identity}")


def statements(cp: ControlPlane, session_id: str) -> list[str]:
    events = cp.ok("GET", f"/sessions/{session_id}/events")
    seqs = [e["seq"] for e in events]
    assert seqs == sorted(seqs) and len(seqs) == len(set(seqs)), seqs
    return [e["payload"]["sql"] for e in events if e["kind"] == "statement"]


def test_each_statement_is_in_the_audit_trail_within_two_seconds_in_order(
    control_plane: ControlPlane, node: Node, agent: Agent
):
    sent = [f"SELECT {i} AS n" for i in range(20)]
    with psycopg.connect(node.dsn(agent.name, agent.token, "appdb"), autocommit=True) as conn:
        for sql in sent:
            conn.execute(sql)
        last_sent = time.monotonic()

        def audited() -> bool:
            found = sessions_of(control_plane, agent.name)
            return bool(found) and statements(control_plane, found[0]["id"])[-len(sent) :] == sent

        wait_until(audited, 2.0, "statements in the audit trail", interval=0.02)
        assert time.monotonic() - last_sent < 2.0
    session = sessions_of(control_plane, agent.name)[0]
    assert session["connection"] == "appdb"
    assert session["protocol"] == "postgres"
    events = control_plane.ok("GET", f"/sessions/{session['id']}/events")
    kinds = [e["kind"] for e in events]
    assert kinds[0] == "session.start" and "auth.ok" in kinds and "decision" in kinds


def test_control_plane_outage_loses_no_statement_and_duplicates_none(
    control_plane: ControlPlane, node: Node, agent: Agent
):
    dsn = node.dsn(agent.name, agent.token, "appdb")
    conn = psycopg.connect(dsn, autocommit=True)
    conn.execute("SELECT 'before outage'")
    control_plane.stop()
    try:
        for i in range(30):  # the session keeps working while the control plane is down
            assert conn.execute(f"SELECT {i} AS during_outage").fetchone() == (i,)
        assert node.health()["control_plane"] == "unreachable"
        assert node.health()["audit_pending"] > 0
        # A new session needs the target's credentials from the control plane.
        refused = connect_error(dsn)
        assert refused.sqlstate == "08006"
        assert "credentials for connection" in str(refused)
        assert conn.execute("SELECT 'still here'").fetchone() == ("still here",)
    finally:
        control_plane.start()
    conn.execute("SELECT 'after outage'")
    conn.close()
    expected = [
        "SELECT 'before outage'",
        *[f"SELECT {i} AS during_outage" for i in range(30)],
        "SELECT 'still here'",
        "SELECT 'after outage'",
    ]

    def outage_session() -> dict | None:
        # The agent's other session is the one refused during the outage.
        found = {s["outcome"]: s for s in sessions_of(control_plane, agent.name)}
        return found.get("closed")

    def delivered() -> bool:
        session = outage_session()
        return session is not None and statements(control_plane, session["id"]) == expected

    wait_until(delivered, 15, "audit events after the outage", interval=0.1)
    session = outage_session()
    assert session is not None and session["statements"] == len(expected)
    outcomes = sorted(s["outcome"] for s in sessions_of(control_plane, agent.name))
    assert outcomes == ["closed", "error"]


def test_upstream_password_appears_in_no_response_log_event_or_database_file(
    control_plane: ControlPlane, node: Node, pg_target: PostgresTarget, agent: Agent
):
    secret = pg_target.passwords["app"]
    with psycopg.connect(node.dsn(agent.name, agent.token, "appdb")) as conn:
        conn.execute("SELECT 1")
    time.sleep(0.5)
    bodies = []
    for path in (
        "/connections",
        "/connections/appdb",
        "/sessions",
        "/nodes",
        "/policies",
        "/identities",
        "/tokens",
    ):
        bodies.append(control_plane.api("GET", path).text)
    for session in control_plane.ok("GET", "/sessions"):
        bodies.append(control_plane.api("GET", f"/sessions/{session['id']}/events").text)
    bodies.append(httpx.get(f"{control_plane.url}/api/v1/openapi.json").text)
    bodies.append(httpx.get(f"{control_plane.url}/metrics").text)
    for body in bodies:
        assert secret not in body
    assert control_plane.process is not None and node.process is not None
    assert secret not in control_plane.process.log()
    assert secret not in node.process.log()
    for db_file in Path(control_plane.home).glob("lockgate.db*"):
        assert secret.encode() not in db_file.read_bytes()
    for spooled in Path(node.home).rglob("*"):
        if spooled.is_file():
            assert secret.encode() not in spooled.read_bytes()


def test_spooled_events_survive_a_node_crash_while_the_control_plane_is_down(
    control_plane: ControlPlane, agent: Agent
):
    import signal

    from tests.integration.conftest import wait_for_revision

    crash_node = Node(control_plane, "crash-node").start()
    try:
        wait_for_revision(control_plane, crash_node)
        conn = psycopg.connect(crash_node.dsn(agent.name, agent.token, "appdb"), autocommit=True)
        control_plane.stop()
        try:
            for i in range(10):
                conn.execute(f"SELECT {i} AS before_crash")
            assert crash_node.process is not None
            crash_node.process.stop(sig=signal.SIGKILL)  # no chance to flush anything
        finally:
            control_plane.start()
        crash_node.start()
        expected = [f"SELECT {i} AS before_crash" for i in range(10)]

        def delivered() -> bool:
            found = sessions_of(control_plane, agent.name)
            return any(statements(control_plane, s["id"]) == expected for s in found)

        wait_until(delivered, 15, "events spooled before the crash", interval=0.1)
    finally:
        crash_node.cleanup()


def test_a_huge_statement_is_audited_cut_short_and_later_ones_still_arrive(
    control_plane: ControlPlane, node: Node, agent: Agent
):
    """A statement larger than any upload could carry (PostgreSQL takes up to 1 GiB) is kept
    to its first 1 MiB in the audit trail, with its length, so the uploads go on."""
    literal = "x" * (3 << 20)
    huge = f"SELECT length('{literal}') AS n"
    with psycopg.connect(node.dsn(agent.name, agent.token, "appdb"), autocommit=True) as conn:
        assert conn.execute(huge).fetchone() == (len(literal),)
        conn.execute("SELECT 'after the huge one'")

    def both_audited() -> bool:
        found = sessions_of(control_plane, agent.name)
        return bool(found) and statements(control_plane, found[0]["id"])[-1:] == [
            "SELECT 'after the huge one'"
        ]

    wait_until(both_audited, 10, "statements after a huge one in the audit trail", interval=0.1)
    events = control_plane.ok(
        "GET", f"/sessions/{sessions_of(control_plane, agent.name)[0]['id']}/events"
    )
    cut = next(
        e["payload"]
        for e in events
        if e["kind"] == "statement" and e["payload"].get("sql_truncated")
    )
    assert cut["sql"] == huge[: 1 << 20]
    assert cut["sql_chars"] == len(huge)
