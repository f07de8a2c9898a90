"""SIGTERM stops a node, a node's supervisor and a control plane through their clean-up
(`lockgate.runtime.Server`): a node records why its live sessions ended and uploads it, a
supervisor stops its workers before it exits, and each exits 0. (uvicorn's own handling raised
SIGTERM again once its server stopped, which killed the process before any of that.)"""

from __future__ import annotations

import os
import secrets
import shutil

import psycopg
import pytest

from tests.harness.lockgate import ControlPlane, Node
from tests.harness.processes import wait_until
from tests.integration.conftest import make_agent, wait_for_revision


def test_a_node_stopped_with_sigterm_ends_its_sessions_and_uploads_why(
    control_plane: ControlPlane, appdb: str
):
    node = Node(control_plane, f"it-stopping-{secrets.token_hex(3)}").start()
    try:
        agent = make_agent(control_plane)
        wait_for_revision(control_plane, node)
        conn = psycopg.connect(node.dsn(agent.name, agent.token, "appdb"), autocommit=True)
        assert conn.execute("SELECT 'working'").fetchone() == ("working",)
        assert node.process is not None
        assert node.process.stop() == 0
        with pytest.raises(psycopg.OperationalError):
            conn.execute("SELECT 'after'")
        conn.close()

        def ended_by_shutdown() -> bool:
            sessions = control_plane.ok("GET", f"/sessions?identity={agent.name}")
            events = control_plane.ok("GET", f"/sessions/{sessions[0]['id']}/events")
            return any(
                e["kind"] == "session.terminated"
                and e["payload"]["reason"] == "the node is shutting down"
                for e in events
            )

        wait_until(ended_by_shutdown, 10, "the session's end in the control plane")
    finally:
        node.cleanup()


def test_a_supervisor_stopped_with_sigterm_stops_its_workers_first(
    control_plane: ControlPlane, appdb: str
):
    node = Node(
        control_plane,
        f"it-stopping-workers-{secrets.token_hex(3)}",
        extra_env={"LOCKGATE_NODE_WORKERS": "2"},
    ).start()
    try:
        pids = [w["pid"] for w in node.health()["workers"]]
        assert node.process is not None
        assert node.process.stop() == 0
        for pid in pids:  # reaped by the supervisor before it exited
            with pytest.raises(ProcessLookupError):
                os.kill(pid, 0)
        assert "supervisor is gone" not in node.process.log()
    finally:
        node.cleanup()


def test_a_control_plane_stopped_with_sigterm_exits_cleanly():
    cp = ControlPlane().start()
    try:
        assert cp.process is not None
        assert cp.process.stop() == 0
        assert "Traceback" not in cp.process.log()
    finally:
        cp.stop()
        shutil.rmtree(cp.home, ignore_errors=True)
