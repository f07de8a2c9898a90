"""Refusals at the node, each with its SQLSTATE: bad, expired and revoked tokens, an identity
without a `connect` permit, an unknown connection, an unreachable target."""

from __future__ import annotations

import time

import psycopg
import pytest

from tests.harness.lockgate import ControlPlane, Node
from tests.harness.processes import free_port
from tests.integration.conftest import Agent, connect_error, make_agent, wait_for_revision


def test_wrong_token_is_refused_with_28P01(node: Node, agent: Agent):
    forged = agent.token[:-4] + ("AAAA" if not agent.token.endswith("AAAA") else "BBBB")
    for sslmode in ("require", "disable"):  # cleartext over TLS, and SCRAM
        err = connect_error(node.dsn(agent.name, forged, "appdb", sslmode))
        assert err.sqlstate == "28P01", err


def test_token_of_another_identity_is_refused(
    control_plane: ControlPlane, node: Node, agent: Agent
):
    other = make_agent(control_plane)
    wait_for_revision(control_plane, node)
    err = connect_error(node.dsn(agent.name, other.token, "appdb"))
    assert err.sqlstate == "28P01"


def test_expired_token_is_refused(control_plane: ControlPlane, node: Node, agent: Agent):
    short = control_plane.ok("POST", "/tokens", json={"identity": agent.name, "ttl_seconds": 1})
    wait_for_revision(control_plane, node)
    time.sleep(1.5)
    for sslmode in ("require", "disable"):
        err = connect_error(node.dsn(agent.name, short["token"], "appdb", sslmode))
        assert err.sqlstate == "28P01"
        assert "expired" in str(err) or "failed" in str(err)


def test_revoked_token_is_refused_within_a_second(
    control_plane: ControlPlane, node: Node, agent: Agent
):
    dsn = node.dsn(agent.name, agent.token, "appdb")
    live = psycopg.connect(dsn)
    assert live.execute("SELECT 1").fetchone() == (1,)
    response = control_plane.api("DELETE", f"/tokens/{agent.token_id}")
    assert response.status_code == 204
    revoked_at = time.monotonic()
    refused_after = None
    while time.monotonic() - revoked_at < 3:
        try:
            psycopg.connect(dsn, connect_timeout=2).close()
        except psycopg.OperationalError as exc:
            assert "authentication failed" in str(exc) or "revoked" in str(exc), exc
            refused_after = time.monotonic() - revoked_at
            break
        time.sleep(0.02)
    assert refused_after is not None and refused_after < 1.0, refused_after
    # The session that was open when the token was revoked is ended too.
    with pytest.raises(psycopg.OperationalError):
        for _ in range(50):
            live.execute("SELECT 1")
            time.sleep(0.05)
    live.close()


def test_identity_without_connect_permit_gets_42501(
    control_plane: ControlPlane, node: Node, appdb: str
):
    outsider = make_agent(control_plane, group="outsiders")
    wait_for_revision(control_plane, node)
    err = connect_error(node.dsn(outsider.name, outsider.token, "appdb"))
    assert err.sqlstate == "42501"
    assert "connect" in str(err)


def test_unknown_connection_gets_3D000(node: Node, agent: Agent):
    err = connect_error(node.dsn(agent.name, agent.token, "no-such-db"))
    assert err.sqlstate == "3D000"


def test_unreachable_target_gets_08001(control_plane: ControlPlane, node: Node, agent: Agent):
    control_plane.ok(
        "POST",
        "/connections",
        json={
            "name": "gone",
            "type": "postgres",
            "host": "127.0.0.1",
            "port": free_port(),
            "database": "x",
            "username": "x",
            "password": "x",
        },
    )
    wait_for_revision(control_plane, node)
    with pytest.raises(psycopg.OperationalError) as info:
        psycopg.connect(node.dsn(agent.name, agent.token, "gone"), connect_timeout=15)
    assert "could not connect to the target" in str(info.value)
    err = connect_error(node.dsn(agent.name, agent.token, "gone"))
    assert err.sqlstate == "08001"


def test_garbage_and_half_open_clients_do_not_hurt_the_node(node: Node, agent: Agent):
    import socket

    for payload in (
        b"\x00\x00\x00\x08\x04\xd2\x16\x30",
        b"GET / HTTP/1.1\r\n\r\n",
        b"\xff" * 64,
        b"\x00\x00\x00\x03",
    ):
        with socket.create_connection(("127.0.0.1", node.pg_port), timeout=5) as sock:
            sock.sendall(payload)
            sock.shutdown(socket.SHUT_WR)
            try:
                sock.recv(4096)
            except OSError:
                pass
    with socket.create_connection(("127.0.0.1", node.pg_port), timeout=5):
        pass  # connect and go away
    conn = psycopg.connect(node.dsn(agent.name, agent.token, "appdb"))
    assert conn.execute("SELECT 'node still fine'").fetchone() == ("node still fine",)
    conn.close()


def test_a_client_slow_to_start_up_is_dropped_at_the_login_timeout(
    control_plane: ControlPlane, agent: Agent
):
    """The login timeout bounds the whole start-up, not each read: a client sending its
    start-up packet a byte at a time is dropped before it has sent it all."""
    import select
    import socket

    from data_plane.protocols.postgres import codec

    slow = Node(
        control_plane, "login-timeout-node", extra_env={"LOCKGATE_PG_LOGIN_TIMEOUT": "1"}
    ).start()
    try:
        wait_for_revision(control_plane, slow)
        packet = codec.startup_message({"user": agent.name, "database": "appdb"})
        sent = 0
        with socket.create_connection(("127.0.0.1", slow.pg_port), timeout=5) as sock:
            try:
                for sent in range(1, len(packet) + 1):  # 0.2 s a byte: ~9 s in all
                    sock.sendall(packet[sent - 1 : sent])
                    if select.select([sock], [], [], 0.2)[0] and sock.recv(1) == b"":
                        break
            except OSError:
                pass  # reset by the node
        assert sent < len(packet), "the node waited for the whole trickled start-up packet"
        # A client that starts up at once still gets in.
        dsn = slow.dsn(agent.name, agent.token, "appdb", "disable")
        with psycopg.connect(dsn) as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)
    finally:
        slow.cleanup()
