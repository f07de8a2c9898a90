"""Stock PostgreSQL clients through a real node to a real PostgreSQL with a password they never
see: psql (simple protocol, TLS and SCRAM), psycopg (extended), asyncpg (binary, prepared), COPY
both ways, cancellation, and upstream MD5 / cleartext logins."""

from __future__ import annotations

import asyncio
import subprocess
import time

import asyncpg
import psycopg
import pytest

from tests.harness.lockgate import ControlPlane, Node, add_connection
from tests.harness.postgres import PostgresTarget
from tests.harness.processes import wait_until
from tests.integration.conftest import Agent, wait_for_revision


def psql(dsn: str, *args: str, input: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["psql", dsn, "-X", "-v", "ON_ERROR_STOP=1", "-At", *args],
        capture_output=True,
        text=True,
        input=input,
        timeout=60,
    )


def test_psql_runs_statements_over_tls_with_the_token_as_password(node: Node, agent: Agent):
    result = psql(
        node.dsn(agent.name, agent.token, "appdb", "require"),
        "-c",
        "SELECT current_user, count(*) FROM items",
        "-c",
        "\\conninfo",
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "app|100"  # the target's role, which the agent never logged in as
    assert "SSL connection" in result.stdout


def test_psql_authenticates_by_scram_without_tls(node: Node, agent: Agent):
    result = psql(node.dsn(agent.name, agent.token, "appdb", "disable"), "-c", "SELECT 1 + 1")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "2"


def test_scram_is_used_over_tls_when_configured(control_plane: ControlPlane, agent: Agent):
    scram_node = Node(control_plane, "scram-node", extra_env={"LOCKGATE_PG_AUTH": "scram"}).start()
    try:
        wait_for_revision(control_plane, scram_node)
        dsn = scram_node.dsn(agent.name, agent.token, "appdb", "require")
        result = psql(dsn, "-c", "SELECT 'scram'", "-c", "\\conninfo")
        assert result.returncode == 0, result.stderr
        assert result.stdout.splitlines()[0] == "scram"
        assert "SSL connection" in result.stdout

        def auth_methods() -> list[str]:
            session = control_plane.ok("GET", f"/sessions?identity={agent.name}")[0]
            events = control_plane.ok("GET", f"/sessions/{session['id']}/events")
            return [e["payload"]["method"] for e in events if e["kind"] == "auth.ok"]

        wait_until(lambda: auth_methods() == ["scram"], 5, "the SCRAM login in the audit trail")
    finally:
        scram_node.cleanup()


def test_psql_multi_statement_script_and_errors_keep_the_session_usable(node: Node, agent: Agent):
    script = (
        "CREATE TEMP TABLE t (x int);\n"
        "INSERT INTO t VALUES (1), (2), (3);\n"
        "SELECT sum(x) FROM t;\n"
        "SELECT 1/0;\n"
    )
    result = subprocess.run(
        ["psql", node.dsn(agent.name, agent.token, "appdb"), "-X", "-At"],
        input=script + "SELECT 'still here';\n",
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert "6" in result.stdout.splitlines()
    assert "division by zero" in result.stderr
    assert result.stdout.splitlines()[-1] == "still here"


def test_psycopg_extended_protocol_and_server_side_prepare(node: Node, agent: Agent):
    with psycopg.connect(node.dsn(agent.name, agent.token, "appdb"), prepare_threshold=0) as conn:
        with conn.cursor() as cur:
            cur.execute("SELECT %s::int + %s::int, %s::text", (40, 2, "héllo"))
            assert cur.fetchone() == (42, "héllo")
            for i in range(5):  # prepared server-side from the first execution
                cur.execute("SELECT name FROM items WHERE id = %s", (i + 1,))
                assert cur.fetchone() == (f"item {i + 1}",)
            cur.execute("SELECT id FROM items WHERE id = ANY(%s) ORDER BY id", ([3, 1, 2],))
            assert [r[0] for r in cur.fetchall()] == [1, 2, 3]
            cur.execute("CREATE TEMP TABLE kv (k int, v text)")
            cur.executemany("INSERT INTO kv VALUES (%s, %s)", [(i, str(i)) for i in range(50)])
            cur.execute("SELECT count(*) FROM kv")
            assert cur.fetchone() == (50,)


def test_psycopg_binary_results(node: Node, agent: Agent):
    with psycopg.connect(node.dsn(agent.name, agent.token, "appdb")) as conn:
        with conn.cursor(binary=True) as cur:
            cur.execute("SELECT 12345678901::bigint, 'bytes'::bytea, 1.5::float8")
            assert cur.fetchone() == (12345678901, b"bytes", 1.5)


def test_asyncpg_binary_formats_and_prepared_statements(node: Node, agent: Agent):
    async def run() -> None:
        conn = await asyncpg.connect(node.dsn(agent.name, agent.token, "appdb"))
        try:
            row = await conn.fetchrow(
                "SELECT $1::int8 * 2 AS n, $2::bytea AS b, now() AS t", 21, b"\x00\xff"
            )
            assert row["n"] == 42 and row["b"] == b"\x00\xff"
            stmt = await conn.prepare(
                "SELECT id, name, price FROM items WHERE id <= $1 ORDER BY id"
            )
            for n in (1, 5, 10):  # the cached statement is re-executed without a new Parse
                rows = await stmt.fetch(n)
                assert [r["id"] for r in rows] == list(range(1, n + 1))
            assert await conn.fetchval("SELECT count(*) FROM items") == 100
            async with conn.transaction():
                await conn.execute("CREATE TEMP TABLE a (x int)")
                await conn.executemany("INSERT INTO a VALUES ($1)", [(i,) for i in range(10)])
            assert await conn.fetchval("SELECT sum(x) FROM a") == 45
        finally:
            await conn.close()

    asyncio.run(run())


def test_copy_from_stdin_and_to_stdout(node: Node, agent: Agent):
    dsn = node.dsn(agent.name, agent.token, "appdb")
    rows = "".join(f"{i}\tcopied {i}\n" for i in range(1000))
    result = psql(
        dsn,
        "-c",
        "CREATE TEMP TABLE c (id int, label text)",
        "-c",
        "\\copy c FROM pstdin",
        "-c",
        "SELECT count(*), max(id) FROM c",
        input=rows,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "1000|999"
    with psycopg.connect(dsn) as conn, conn.cursor() as cur:
        with cur.copy("COPY (SELECT id, name FROM items ORDER BY id) TO STDOUT") as copy:
            out = b"".join(bytes(chunk) for chunk in copy)
        assert out.splitlines()[0] == b"1\titem 1"
        assert len(out.splitlines()) == 100
        cur.execute("CREATE TEMP TABLE d (id int, label text)")
        with cur.copy("COPY d FROM STDIN") as copy:
            for i in range(200):
                copy.write_row((i, f"row {i}"))
        cur.execute("SELECT count(*) FROM d")
        assert cur.fetchone() == (200,)


def test_cancel_request_reaches_the_target(node: Node, agent: Agent):
    with psycopg.connect(node.dsn(agent.name, agent.token, "appdb")) as conn:
        started = time.monotonic()

        def cancel_soon() -> None:
            time.sleep(0.5)
            conn.cancel_safe()

        import threading

        threading.Thread(target=cancel_soon).start()
        with pytest.raises(psycopg.errors.QueryCanceled):
            conn.execute("SELECT pg_sleep(30)")
        assert time.monotonic() - started < 20
        conn.rollback()
        assert conn.execute("SELECT 'alive'").fetchone() == ("alive",)


@pytest.mark.parametrize("role", ["app_md5", "app_plain"])
def test_upstream_md5_and_cleartext_logins(
    control_plane: ControlPlane, node: Node, pg_target: PostgresTarget, agent: Agent, role: str
):
    name = f"appdb-{role}"
    add_connection(control_plane, pg_target, name, role)
    wait_for_revision(control_plane, node)
    result = psql(node.dsn(agent.name, agent.token, name), "-c", "SELECT current_user")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == role
