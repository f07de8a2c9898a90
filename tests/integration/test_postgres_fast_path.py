"""Statements a session has decided before take the fast path (C): through a real node with psql
and psycopg, they are audited as the first one was, in order, and a policy change still reaches
them; with the fast path off, the same statements take the Python path. Long replies are read
in bulk (data_plane/bulk.py) and arrive whole. The node's loop polls after forwarding on both
paths (data_plane/busy_poll.py), and not at all when that is off."""

from __future__ import annotations

import hashlib
import os
import re
import secrets
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import psycopg
import pytest

from tests.harness.lockgate import ControlPlane, Node
from tests.harness.processes import wait_until
from tests.integration.conftest import Agent, make_agent, wait_for_revision


def metric(node: Node, name: str) -> float:
    text = httpx.get(f"http://127.0.0.1:{node.http_port}/metrics", timeout=5).text
    found = re.search(rf"^{name} (\S+)$", text, re.M)
    assert found, text
    return float(found.group(1))


def fast_path_count(node: Node) -> float:
    return metric(node, "lockgate_node_pg_fast_path_statements_total")


def bulk_reads(node: Node) -> float:
    return metric(node, "lockgate_node_bulk_reads_total")


def busy_turns(node: Node) -> float:
    return metric(node, "lockgate_node_busy_poll_turns_total")


def session_events(cp: ControlPlane, identity: str, count: int) -> list[dict]:
    """The events of the identity's only session, once its `session.end` and `count`
    statements are stored."""
    found: list[dict] = []

    def stored() -> bool:
        sessions = cp.ok("GET", f"/sessions?identity={identity}")
        if len(sessions) != 1:
            return False
        found[:] = cp.ok("GET", f"/sessions/{sessions[0]['id']}/events")
        kinds = [e["kind"] for e in found]
        return "session.end" in kinds and kinds.count("statement") == count

    wait_until(stored, 10, "the session's events")
    return found


def psql(node: Node, agent: Agent, script: str) -> str:
    dsn = node.dsn(agent.name, agent.token, "appdb")
    return subprocess.run(
        ["psql", "-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-f", "-", "-d", dsn],
        input=script,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout


@pytest.fixture
def fresh_agent(control_plane: ControlPlane, node: Node, appdb: str) -> Agent:
    agent = make_agent(control_plane)
    wait_for_revision(control_plane, node)
    return agent


def test_psql_statements_after_the_first_are_audited_alike_and_in_order(
    node: Node, fresh_agent: Agent, control_plane: ControlPlane
):
    before = fast_path_count(node)
    script = "".join(f"SELECT {i} AS n, 'row {i}' AS label;\n" for i in range(30))
    out = psql(node, fresh_agent, script)
    assert out.split() == [x for i in range(30) for x in (f"{i}|row", f"{i}")]
    events = session_events(control_plane, fresh_agent.name, 30)
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    statements = [e["payload"] for e in events if e["kind"] == "statement"]
    assert [p["sql"] for p in statements] == [
        f"SELECT {i} AS n, 'row {i}' AS label;" for i in range(30)
    ]
    first = {k: v for k, v in statements[0].items() if k != "sql"}
    assert first["decision"] == "allow" and first["protocol"] == "simple"
    assert all({k: v for k, v in p.items() if k != "sql"} == first for p in statements[1:])
    # The first was decided by the enforcer; the other 29 share its shape.
    assert fast_path_count(node) - before == 29


def test_psycopg_prepared_executions_take_the_fast_path(
    node: Node, fresh_agent: Agent, control_plane: ControlPlane
):
    before = fast_path_count(node)
    dsn = node.dsn(fresh_agent.name, fresh_agent.token, "appdb")
    with psycopg.connect(dsn, autocommit=True, prepare_threshold=0) as conn:
        got = [conn.execute("SELECT %s::int + 1", (i,)).fetchone()[0] for i in range(20)]
    assert got == list(range(1, 21))
    statements = [
        e["payload"]
        for e in session_events(control_plane, fresh_agent.name, 21)
        if e["kind"] == "statement"
    ]
    # The Parse is decided by the enforcer (the Python path), each execution is a Bind.
    assert [p["protocol"] for p in statements] == ["extended"] + ["execute"] * 20
    assert {p["sql"] for p in statements} == {"SELECT $1::int + 1"}
    assert len({p["name"] for p in statements}) == 1
    assert fast_path_count(node) - before == 20


def test_a_new_policy_reaches_statements_the_fast_path_learned(
    node: Node, fresh_agent: Agent, control_plane: ControlPlane
):
    dsn = node.dsn(fresh_agent.name, fresh_agent.token, "appdb")
    name = f"forbid-{fresh_agent.name}"
    with psycopg.connect(dsn, autocommit=True, prepare_threshold=None) as conn:
        cur = psycopg.ClientCursor(conn)  # simple protocol, literals in the text
        for i in range(5):
            cur.execute(f"SELECT {i} AS n")
        control_plane.ok(
            "POST",
            "/policies",
            json={
                "name": name,
                "cedar": f'forbid(principal == Identity::"{fresh_agent.name}", action, resource);',
            },
        )
        try:
            wait_for_revision(control_plane, node)
            for sql in ("SELECT 4 AS n", "SELECT 5 AS n"):
                with pytest.raises(psycopg.errors.InsufficientPrivilege):
                    cur.execute(sql)
        finally:
            control_plane.ok("DELETE", f"/policies/{name}")
        wait_for_revision(control_plane, node)
        cur.execute("SELECT 6 AS n")
        assert cur.fetchone() == (6,)


@contextmanager
def node_with(control_plane: ControlPlane, name: str, **env: str) -> Iterator[Node]:
    """A second node started with these settings, removed after."""
    n = Node(control_plane, f"{name}-{secrets.token_hex(3)}", extra_env=env)  # names are unique
    n.start()
    try:
        yield n
    finally:
        n.cleanup()


@pytest.fixture
def slow_node(control_plane: ControlPlane, appdb: str) -> Iterator[Node]:
    with node_with(
        control_plane, "it-node-python-path", LOCKGATE_PG_FAST_PATH="0", **NO_GOVERNOR
    ) as n:
        yield n


def test_with_the_fast_path_off_every_statement_takes_the_python_path(
    slow_node: Node, fresh_agent: Agent, control_plane: ControlPlane
):
    wait_for_revision(control_plane, slow_node)
    script = "".join(f"SELECT {i} AS n;\n" for i in range(10))
    psql(slow_node, fresh_agent, script)
    events = session_events(control_plane, fresh_agent.name, 10)
    assert [e["payload"]["sql"] for e in events if e["kind"] == "statement"] == [
        f"SELECT {i} AS n;" for i in range(10)
    ]
    assert fast_path_count(slow_node) == 0


LONG_REPLY = "SELECT g, repeat(md5(g::text), 3) AS filler FROM generate_series(1, 40000) g;\n"


def long_reply_rows() -> list[str]:
    return [f"{g}|{hashlib.md5(str(g).encode()).hexdigest() * 3}" for g in range(1, 40001)]


def test_a_long_reply_is_read_in_bulk_and_arrives_whole_and_in_time_for_the_next(
    node: Node, fresh_agent: Agent, control_plane: ControlPlane
):
    before = bulk_reads(node)
    # About 4 MB of rows, then short statements whose replies stay under the raised mark.
    out = psql(node, fresh_agent, LONG_REPLY + "SELECT 'after';\n" + LONG_REPLY + "SELECT 'end';\n")
    assert out.splitlines() == [*long_reply_rows(), "after", *long_reply_rows(), "end"]
    session_events(control_plane, fresh_agent.name, 4)  # the session has ended
    assert bulk_reads(node) - before >= 2  # at least once for each long reply


def test_with_bulk_reads_off_a_long_reply_is_read_as_it_comes(
    control_plane: ControlPlane, appdb: str
):
    with node_with(control_plane, "it-node-no-bulk", LOCKGATE_BULK_READS="0") as plain:
        agent = make_agent(control_plane)
        wait_for_revision(control_plane, plain)
        assert psql(plain, agent, LONG_REPLY).splitlines() == long_reply_rows()
        session_events(control_plane, agent.name, 1)
        assert bulk_reads(plain) == 0


def run_twenty(node: Node, agent: Agent, control_plane: ControlPlane) -> None:
    """Twenty short statements through the node, their answers checked."""
    wait_for_revision(control_plane, node)
    out = psql(node, agent, "".join(f"SELECT {i} AS n;\n" for i in range(20)))
    assert out.split() == [str(i) for i in range(20)]


def polls_after_forwarding(node: Node, agent: Agent, control_plane: ControlPlane) -> None:
    before = busy_turns(node)
    run_twenty(node, agent, control_plane)
    assert busy_turns(node) > before


# The governor (below) pauses polling while the CPUs are contended, which a test machine's
# may be at any moment: the nodes that check polling itself run without it.
NO_GOVERNOR = {"LOCKGATE_BUSY_POLL_MAX_STALL": "100"}


def test_the_loop_polls_after_the_fast_path_forwards(
    control_plane: ControlPlane, fresh_agent: Agent
):
    with node_with(control_plane, "it-node-polling", **NO_GOVERNOR) as polling:
        polls_after_forwarding(polling, fresh_agent, control_plane)


def test_the_loop_polls_after_the_python_path_forwards(
    slow_node: Node, fresh_agent: Agent, control_plane: ControlPlane
):
    polls_after_forwarding(slow_node, fresh_agent, control_plane)


def test_with_busy_polling_off_the_loop_sleeps_between_reads(
    control_plane: ControlPlane, appdb: str
):
    with node_with(control_plane, "it-node-no-poll", LOCKGATE_BUSY_POLL_US="0") as plain:
        run_twenty(plain, make_agent(control_plane), control_plane)
        assert busy_turns(plain) == 0


def test_polling_pauses_while_tasks_wait_for_a_cpu(control_plane: ControlPlane, appdb: str):
    # A limit of 0: any wait for a CPU pauses it. More spinning processes than cores make
    # tasks wait (bounded: each spins for 5 s at most).
    spin = "import time\nend = time.monotonic() + 5\nwhile time.monotonic() < end: pass"
    with node_with(control_plane, "it-node-governed", LOCKGATE_BUSY_POLL_MAX_STALL="0") as n:
        spinners = [
            subprocess.Popen([sys.executable, "-c", spin]) for _ in range((os.cpu_count() or 1) + 2)
        ]
        try:
            wait_until(lambda: metric(n, "lockgate_node_busy_poll_paused") == 1, 5, "a pause")
        finally:
            for p in spinners:
                p.kill()
                p.wait()
        assert metric(n, "lockgate_node_busy_poll_pauses_total") >= 1
