"""A node of several worker processes (`LOCKGATE_NODE_WORKERS`, data_plane/workers.py), with
psycopg against a real PostgreSQL: connections go to the least loaded worker and every session
is audited, a CancelRequest reaches its query whichever worker the kernel hands it to, a worker
killed is started again, and what a removed worker left in its spool is uploaded."""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import signal
import threading
import time
from collections.abc import Iterator

import httpx
import psycopg
import pytest

from data_plane.audit.trail import AuditTrail
from data_plane.workers import spool_dir
from tests.harness.lockgate import ControlPlane, Node
from tests.harness.processes import wait_until
from tests.integration.conftest import Agent, make_agent, wait_for_revision


@pytest.fixture(scope="module")
def workers_node(control_plane: ControlPlane, appdb: str) -> Iterator[Node]:
    n = Node(control_plane, f"it-workers-{secrets.token_hex(3)}", extra_env=WORKERS)
    n.start()
    wait_for_revision(control_plane, n)
    yield n
    n.cleanup()


WORKERS = {"LOCKGATE_NODE_WORKERS": "2"}


@pytest.fixture
def crew_member(control_plane: ControlPlane, workers_node: Node) -> Agent:
    agent = make_agent(control_plane)
    wait_for_revision(control_plane, workers_node)
    return agent


def health(node: Node) -> dict:
    return httpx.get(f"http://127.0.0.1:{node.http_port}/healthz", timeout=10).json()


def forwarded_cancels(node: Node) -> float:
    text = httpx.get(f"http://127.0.0.1:{node.http_port}/metrics", timeout=10).text
    found = re.findall(
        r'^lockgate_node_pg_cancels_forwarded_total\{worker="\d"\} (\S+)$', text, re.M
    )
    assert len(found) == 2, text
    return sum(float(v) for v in found)


def test_the_node_reports_each_worker(workers_node: Node):
    body = health(workers_node)
    assert body["status"] == "ok"
    assert [w["worker"] for w in body["workers"]] == [0, 1]
    pids = [w["pid"] for w in body["workers"]]
    assert len(set(pids)) == 2 and all(isinstance(p, int) for p in pids)
    assert all(w["revision"] == body["revision"] for w in body["workers"])


def test_sessions_spread_over_the_workers_and_each_is_audited(
    workers_node: Node, crew_member: Agent, control_plane: ControlPlane
):
    dsn = workers_node.dsn(crew_member.name, crew_member.token, "appdb")
    with contextlib.ExitStack() as stack:
        conns = [stack.enter_context(psycopg.connect(dsn, autocommit=True)) for _ in range(16)]
        for i, conn in enumerate(conns):
            assert conn.execute(f"SELECT {i} AS n").fetchone() == (i,)
        # The supervisor hands each new connection to the worker with the fewest open.
        workers = health(workers_node)["workers"]
        assert [w["sessions"] for w in workers] == [8, 8]
        assert [w["connections"] for w in workers] == [8, 8]
    wait_until(
        lambda: [w["connections"] for w in health(workers_node)["workers"]] == [0, 0],
        10,
        "the workers to report their connections ended",
    )

    def all_stored() -> bool:
        sessions = control_plane.ok("GET", f"/sessions?identity={crew_member.name}")
        if len(sessions) != 16:
            return False
        texts = set()
        for s in sessions:
            events = control_plane.ok("GET", f"/sessions/{s['id']}/events")
            texts |= {e["payload"]["sql"] for e in events if e["kind"] == "statement"}
            if "session.end" not in {e["kind"] for e in events}:
                return False
        return texts == {f"SELECT {i} AS n" for i in range(16)}

    wait_until(all_stored, 20, "16 sessions and their statements in the control plane")


def test_a_cancel_request_reaches_the_query_whichever_worker_gets_it(
    workers_node: Node, crew_member: Agent
):
    dsn = workers_node.dsn(crew_member.name, crew_member.token, "appdb")
    before = forwarded_cancels(workers_node)
    attempts = 0
    # Each cancel arrives on a new connection, which goes to the least loaded worker: the
    # query's (then busy with it) or the other one. Go on until one had to be passed on.
    while attempts < 16 and (attempts < 2 or forwarded_cancels(workers_node) == before):
        attempts += 1
        with psycopg.connect(dsn) as conn:
            threading.Timer(0.3, conn.cancel_safe).start()
            started = time.monotonic()
            with pytest.raises(psycopg.errors.QueryCanceled):
                conn.execute("SELECT pg_sleep(30)")
            assert time.monotonic() - started < 20
            conn.rollback()
            assert conn.execute("SELECT 'alive'").fetchone() == ("alive",)
    assert forwarded_cancels(workers_node) > before


def test_a_worker_that_dies_is_started_again(workers_node: Node, crew_member: Agent):
    victim = health(workers_node)["workers"][1]
    os.kill(victim["pid"], signal.SIGKILL)

    def back() -> bool:
        with contextlib.suppress(httpx.HTTPError):
            w = health(workers_node)["workers"][1]
            return w["status"] == "ok" and w["pid"] != victim["pid"]
        return False

    wait_until(back, 30, "worker 1 started again")
    assert health(workers_node)["workers"][1]["restarts"] == victim["restarts"] + 1
    dsn = workers_node.dsn(crew_member.name, crew_member.token, "appdb")
    for i in range(8):  # whichever worker each lands on, it answers
        with psycopg.connect(dsn) as conn:
            assert conn.execute(f"SELECT {i}").fetchone() == (i,)


def test_what_a_removed_worker_left_in_its_spool_is_uploaded(
    control_plane: ControlPlane, appdb: str
):
    # A node that ran 4 workers, now started with 2: worker 3's spool still holds a session.
    node = Node(control_plane, f"it-shrunk-{secrets.token_hex(3)}", extra_env=WORKERS)
    left = spool_dir(node.home, 3)
    trail = AuditTrail(left)
    session = trail.session()
    identity = f"gone-{secrets.token_hex(3)}"
    session.record(
        "session.start",
        identity=identity,
        connection="appdb",
        protocol="postgres",
        node=node.name,
        client_addr="127.0.0.1",
        tls=False,
        application_name="",
    )
    session.record("statement", sql="SELECT 'left behind'", decision="allow")
    session.record("session.end", reason="client closed")
    trail.write_pending()
    trail.close()
    node.start()
    try:

        def uploaded() -> bool:
            sessions = control_plane.ok("GET", f"/sessions?identity={identity}")
            if len(sessions) != 1:
                return False
            events = control_plane.ok("GET", f"/sessions/{sessions[0]['id']}/events")
            return [e["kind"] for e in events] == ["session.start", "statement", "session.end"]

        wait_until(uploaded, 20, "the removed worker's session in the control plane")
        wait_until(lambda: not left.parent.exists(), 10, "the removed worker's directory gone")
    finally:
        node.cleanup()


def test_workers_stop_when_their_supervisor_is_killed(control_plane: ControlPlane, appdb: str):
    node = Node(control_plane, f"it-orphaned-{secrets.token_hex(3)}", extra_env=WORKERS)
    node.start()
    try:
        pids = [w["pid"] for w in health(node)["workers"]]
        assert node.process is not None and node.process.proc is not None
        node.process.proc.kill()  # SIGKILL: the supervisor cannot stop its workers itself
        node.process.proc.wait(10)

        def gone(pid: int) -> bool:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return True
            with open(f"/proc/{pid}/stat") as f:  # a zombie until its new parent reaps it
                return f.read().rsplit(")", 1)[1].split()[0] == "Z"

        wait_until(lambda: all(gone(p) for p in pids), 20, "the workers to stop")
    finally:
        node.cleanup()
