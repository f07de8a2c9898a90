"""Statement-level enforcement and inline masking through a real node, with real clients.

A corpus of bypass attempts: destructive statements on a connection with the
`production-safety` guardrails (each must be denied with SQLSTATE 42501, a harmless neighbour
allowed), and reads of masked columns (every returned value must be masked, whatever the SQL
does to the column), an exempt identity that sees clear values, and the simulate endpoint
agreeing with the node on every entry.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
from dataclasses import dataclass

import asyncpg
import psycopg
import pytest
from psycopg import ClientCursor

from lockgate.masking import masks
from lockgate.masking.detectors import Scanner
from tests.harness.lockgate import ControlPlane, Node, add_connection
from tests.harness.postgres import PostgresTarget
from tests.harness.processes import wait_until
from tests.integration.conftest import Agent, make_agent, wait_for_revision

EMAILS = ["jane.doe@example.com", "john.roe@example.org", "ann@corp.example"]
SSNS = ["123-45-6789", "987-65-4321", "222-33-4444"]
CARDS = ["4242 4242 4242 4242", "5555 5555 5555 4444", "4000 0566 5566 5556"]
SECRETS = [*EMAILS, *SSNS, *CARDS, "4242424242424242", "123456789", "jane.doe"]

SCHEMA = """
CREATE TABLE customers (id int PRIMARY KEY, name text, email text UNIQUE, ssn text, card text,
                        note text);
INSERT INTO customers VALUES
  (1, 'Jane Doe', 'jane.doe@example.com', '123-45-6789', '4242 4242 4242 4242', 'vip'),
  (2, 'John Roe', 'john.roe@example.org', '987-65-4321', '5555 5555 5555 4444', 'call back'),
  (3, 'Ann Poe', 'ann@corp.example', '222-33-4444', '4000 0566 5566 5556', '');
CREATE TABLE orders (id int PRIMARY KEY, customer_id int, total numeric);
INSERT INTO orders SELECT g, 1 + g % 3, g * 10 FROM generate_series(1, 20) g;
CREATE VIEW customer_contacts AS SELECT id, email AS contact, ssn AS tax_id FROM customers;
CREATE FUNCTION customer_ssn(i int) RETURNS text LANGUAGE sql
  AS 'SELECT ssn FROM customers WHERE id = i';
ALTER TABLE customers OWNER TO app;
ALTER TABLE orders OWNER TO app;
ALTER VIEW customer_contacts OWNER TO app;
ALTER FUNCTION customer_ssn(int) OWNER TO app;
"""


@dataclass
class World:
    cp: ControlPlane
    node: Node
    agent: Agent
    dpo: Agent


@pytest.fixture(scope="module")
def world(control_plane: ControlPlane, node: Node, pg_target: PostgresTarget, appdb: str) -> World:
    pg_target.psql_admin(SCHEMA, database="appdb")
    add_connection(control_plane, pg_target, "guarded", guardrails=["production-safety"])
    add_connection(control_plane, pg_target, "masked")
    control_plane.ok(
        "POST",
        "/policies",
        json={
            "name": "enf-agents-all",
            "cedar": 'permit(principal in Group::"enf-agents", action, resource) when '
            '{ [Connection::"guarded", Connection::"masked"].contains(resource) };',
        },
    )
    control_plane.ok(
        "POST",
        "/masking-rules",
        json={
            "name": "pii",
            "connections": ["masked"],
            "columns": ["*.email", "customers.ssn", "customers.card"],
            "detectors": ["credit_card", "us_ssn"],
            "exempt": ['Group::"dpo"'],
        },
    )
    agent = make_agent(control_plane, group="enf-agents", prefix="enf")
    dpo = make_agent(control_plane, group="enf-agents", prefix="dpo")
    control_plane.ok("PATCH", f"/identities/{dpo.name}", json={"groups": ["enf-agents", "dpo"]})
    wait_for_revision(control_plane, node)
    return World(control_plane, node, agent, dpo)


@dataclass
class Outcome:
    denied: bool
    sqlstate: str | None
    message: str
    rows: list[tuple]


def run_simple(world: World, who: Agent, connection: str, sql: str) -> Outcome:
    """Run `sql` with the simple query protocol inside a transaction that is rolled back."""
    dsn = world.node.dsn(who.name, who.token, connection)
    with psycopg.connect(dsn, cursor_factory=ClientCursor) as conn:
        try:
            with conn.cursor() as cur:
                cur.execute(sql)
                rows = cur.fetchall() if cur.description else []
                while cur.nextset():
                    if cur.description:
                        rows += cur.fetchall()
            conn.rollback()
            return Outcome(False, None, "", rows)
        except psycopg.Error as exc:
            conn.rollback()
            state = exc.sqlstate
            msg = str(exc)
            return Outcome(state == "42501" and "Lockgate denied" in msg, state, msg, [])


def simulate(world: World, who: Agent, connection: str, sql: str) -> dict:
    return world.cp.ok(
        "POST",
        "/policy/simulate",
        json={"identity": who.name, "connection": connection, "statement": sql},
    )


def leaked(rows: list[tuple]) -> list[str]:
    text = json.dumps([[str(v) for v in row] for row in rows])
    return [s for s in SECRETS if s in text]


DESTRUCTIVE = [
    "DROP TABLE orders",
    "drop table if exists orders cascade",
    "DrOp/**/TaBlE orders",
    "DROP TABLE public.orders",
    'DROP TABLE "orders"',
    "TRUNCATE orders",
    "truncate table only orders restart identity",
    "DELETE FROM orders",
    'delete from "orders"',
    "DELETE FROM ONLY orders",
    "DELETE FROM orders WHERE true",
    "DELETE FROM orders WHERE 1=1",
    "DELETE FROM orders WHERE 1 = 1 OR id = 5",
    "DELETE FROM orders WHERE id > 0 OR true",
    "DELETE FROM orders WHERE NULL IS NULL",
    "UPDATE orders SET total = 0",
    "UPDATE orders SET total = 0 WHERE 'a' = 'a'",
    "UPDATE orders SET total = 0 WHERE id = id",
    "UPDATE orders SET total = 0 WHERE true AND true",
    "WITH d AS (DELETE FROM orders RETURNING *) SELECT count(*) FROM d",
    "WITH u AS (UPDATE orders SET total = 0 RETURNING 1) SELECT 1",
    "SELECT 1; DROP TABLE orders",
    "SELECT 1; DELETE FROM orders",
    "EXPLAIN ANALYZE DELETE FROM orders",
    "PREPARE wipe AS DELETE FROM orders",
    "DO $$ BEGIN DELETE FROM orders; END $$",
    "DO $x$ BEGIN EXECUTE 'DROP TABLE orders'; END $x$",
    "CREATE FUNCTION wipe() RETURNS void LANGUAGE sql AS $$ DELETE FROM orders $$",
    "COPY orders TO PROGRAM 'cat > /tmp/lockgate-leak'",
    "COPY orders FROM PROGRAM 'echo 1'",
    "SELECT pg_read_file('/etc/passwd')",
    "SELECT lo_export(1234, '/tmp/lockgate-lo')",
    "ALTER SYSTEM SET work_mem = '1GB'",
    "GRANT ALL ON orders TO PUBLIC",
    "CREATE ROLE evil SUPERUSER",
    "SET ROLE postgres",
    "SELECT set_config('role', 'postgres', false)",
    "SELECT pg_terminate_backend(1)",
]

HARMLESS = [
    "DELETE FROM orders WHERE id = 1",
    "UPDATE orders SET total = 1 WHERE id = 2",
    "UPDATE orders SET total = total + 1 WHERE customer_id = 1",
    "DELETE FROM orders WHERE id IN (SELECT id FROM orders WHERE total > 150)",
    "WITH d AS (DELETE FROM orders WHERE id = 3 RETURNING *) SELECT count(*) FROM d",
    "SELECT count(*) FROM orders",
    "INSERT INTO orders VALUES (100, 1, 5)",
    "CREATE TEMP TABLE scratch (x int)",
    "SELECT * FROM orders WHERE id = 1 FOR UPDATE",
    "SHOW work_mem",
    "SELECT current_user",
]

MASKED_READS = [
    "SELECT email FROM customers",
    "SELECT email AS e FROM customers",
    "SELECT c.email FROM customers c",
    "SELECT public.customers.email FROM public.customers",
    "SELECT email::text FROM customers",
    "SELECT CAST(email AS varchar(200)) FROM customers",
    "SELECT lower(email) FROM customers",
    "SELECT email || '' FROM customers",
    "SELECT substr(email, 1, 200) FROM customers",
    "SELECT upper(ssn) FROM customers",
    "SELECT (SELECT email FROM customers WHERE id = 1)",
    "SELECT x FROM (SELECT email AS x FROM customers) s",
    "WITH c AS (SELECT email FROM customers) SELECT * FROM c",
    "WITH RECURSIVE r AS (SELECT ssn FROM customers) SELECT ssn FROM r",
    "SELECT * FROM customers",
    "SELECT customers.* FROM customers",
    "TABLE customers",
    "SELECT row_to_json(c) FROM customers c",
    "SELECT json_agg(c) FROM customers c",
    "SELECT json_build_object('e', email, 's', ssn) FROM customers",
    "SELECT to_jsonb(c) FROM customers c",
    "SELECT string_agg(email, ',') FROM customers",
    "SELECT max(ssn) FROM customers",
    "SELECT array_agg(card) FROM customers",
    "SELECT contact, tax_id FROM customer_contacts",
    "SELECT * FROM customer_contacts",
    "SELECT customer_ssn(1)",
    "SELECT email FROM customers UNION SELECT 'x'",
    "sElEcT /* hi */ EMAIL from CUSTOMERS",
    'SELECT "email" FROM "customers"',
    "SELECT coalesce(email, ssn) FROM customers",
    "SELECT CASE WHEN id > 0 THEN ssn END FROM customers",
    "SELECT 1; SELECT email FROM customers",
    "SELECT note, card FROM customers WHERE id = 1",
    "SELECT format('%s', email) FROM customers",
    "SELECT regexp_replace(email, '@', ' at ') FROM customers",
    "SELECT c.* FROM customers c JOIN orders o ON o.customer_id = c.id",
    "SELECT * FROM customers c JOIN orders o ON o.customer_id = c.id",
    "SELECT json_agg(json_build_object('x', card)) FROM customers",
    "SELECT $$ $$ || email FROM customers",
]

COPY_OUT = [
    "COPY (SELECT email FROM customers) TO STDOUT",
    "COPY customers TO STDOUT",
    "COPY customers (email, ssn) TO STDOUT",
    "copy (select * from customer_contacts) to stdout with (format csv)",
]

EXFILTRATION = [
    "CREATE TABLE stolen AS SELECT email, ssn FROM customers",
    "SELECT email INTO stolen FROM customers",
    "INSERT INTO orders (id, customer_id, total) SELECT id + 1000, id, length(ssn) FROM customers",
    "CREATE VIEW leak AS SELECT ssn FROM customers",
]


@pytest.mark.parametrize("sql", DESTRUCTIVE)
def test_destructive_statement_is_denied_on_a_guarded_connection(world: World, sql: str):
    outcome = run_simple(world, world.agent, "guarded", sql)
    assert outcome.denied, (sql, outcome)
    assert simulate(world, world.agent, "guarded", sql)["allowed"] is False


@pytest.mark.parametrize("sql", HARMLESS)
def test_harmless_neighbour_is_allowed_on_a_guarded_connection(world: World, sql: str):
    outcome = run_simple(world, world.agent, "guarded", sql)
    assert not outcome.denied and outcome.sqlstate is None, (sql, outcome)
    assert simulate(world, world.agent, "guarded", sql)["allowed"] is True


@pytest.mark.parametrize(
    ("rule", "denied", "allowed"),
    [
        ("no-drop-or-truncate", "TRUNCATE orders", "SELECT count(*) FROM orders"),
        ("no-unfiltered-writes", "DELETE FROM orders", "DELETE FROM orders WHERE id = 1"),
        ("no-privilege-changes", "GRANT SELECT ON orders TO PUBLIC", "SELECT current_user"),
        ("no-server-programs", "COPY orders TO PROGRAM 'cat'", "SELECT id FROM orders LIMIT 1"),
        ("no-anonymous-code", "DO $$ BEGIN PERFORM 1; END $$", "SELECT 1"),
        ("no-alter-system", "ALTER SYSTEM SET work_mem = '64MB'", "SHOW work_mem"),
    ],
)
def test_every_built_in_guardrail_denies_and_names_itself(
    world: World, rule: str, denied: str, allowed: str
):
    outcome = run_simple(world, world.agent, "guarded", denied)
    assert outcome.denied and f"production-safety/{rule}" in outcome.message, outcome
    assert not run_simple(world, world.agent, "guarded", allowed).denied
    # the same statements on a connection without the profile are not stopped by it
    assert (
        f"production-safety/{rule}" not in run_simple(world, world.agent, "masked", denied).message
    )


@pytest.mark.parametrize("sql", MASKED_READS)
def test_masked_columns_come_back_masked_whatever_the_sql(world: World, sql: str):
    outcome = run_simple(world, world.agent, "masked", sql)
    assert outcome.sqlstate is None, (sql, outcome)
    assert outcome.rows, sql
    assert leaked(outcome.rows) == [], (sql, outcome.rows)
    assert simulate(world, world.agent, "masked", sql)["allowed"] is True


@pytest.mark.parametrize("sql", COPY_OUT)
def test_copy_to_stdout_is_masked(world: World, sql: str):
    dsn = world.node.dsn(world.agent.name, world.agent.token, "masked")
    with psycopg.connect(dsn) as conn, conn.cursor() as cur:
        with cur.copy(sql) as copy:
            out = b"".join(bytes(chunk) for chunk in copy).decode()
    assert out.strip(), sql
    assert [s for s in SECRETS if s in out] == [], (sql, out)
    assert simulate(world, world.agent, "masked", sql)["allowed"] is True


@pytest.mark.parametrize("sql", EXFILTRATION)
def test_copying_masked_columns_elsewhere_is_denied(world: World, sql: str):
    outcome = run_simple(world, world.agent, "masked", sql)
    assert outcome.denied, (sql, outcome)
    assert simulate(world, world.agent, "masked", sql)["allowed"] is False


def test_extended_protocol_prepared_and_binary_results_are_masked(world: World):
    dsn = world.node.dsn(world.agent.name, world.agent.token, "masked")
    with psycopg.connect(dsn, prepare_threshold=0) as conn:
        for i in (1, 2, 3, 1, 2, 3):  # prepared server-side on first use, then reused
            row = conn.execute(
                "SELECT email, ssn, card FROM customers WHERE id = %s", (i,)
            ).fetchone()
            assert row is not None and leaked([row]) == [], row
        with conn.cursor(binary=True) as cur:
            cur.execute("SELECT email, ssn, row_to_json(c)::jsonb FROM customers c")
            rows = cur.fetchall()
            assert len(rows) == 3 and leaked(rows) == [], rows


def test_asyncpg_cached_statements_stay_masked(world: World):
    async def run() -> list:
        conn = await asyncpg.connect(world.node.dsn(world.agent.name, world.agent.token, "masked"))
        try:
            stmt = await conn.prepare("SELECT id, email, ssn FROM customers WHERE id <= $1")
            rows = []
            for n in (1, 2, 3, 3):  # re-executed without a new Describe
                rows += [tuple(r) for r in await stmt.fetch(n)]
            rows += [tuple(r) for r in await conn.fetch("SELECT to_jsonb(c) FROM customers c")]
            return rows
        finally:
            await conn.close()

    rows = asyncio.run(run())
    assert len(rows) == 1 + 2 + 3 + 3 + 3
    assert leaked(rows) == [], rows


def test_values_echoed_in_errors_are_masked(world: World):
    outcome = run_simple(
        world,
        world.agent,
        "masked",
        "INSERT INTO customers (id, name, email) VALUES (99, 'x', 'jane.doe@example.com')",
    )
    assert outcome.sqlstate == "23505", outcome
    assert "jane.doe@example.com" not in outcome.message
    assert "already exists" in outcome.message


def test_exempt_identity_sees_clear_values(world: World):
    outcome = run_simple(
        world,
        world.dpo,
        "masked",
        "SELECT email, ssn, row_to_json(c) FROM customers c WHERE id = 1",
    )
    assert outcome.rows[0][0] == "jane.doe@example.com"
    assert outcome.rows[0][1] == "123-45-6789"
    assert "4242 4242 4242 4242" in json.dumps(outcome.rows[0][2])


def test_denied_statement_leaves_the_session_usable_and_is_audited(world: World):
    dsn = world.node.dsn(world.agent.name, world.agent.token, "guarded")
    with psycopg.connect(dsn, autocommit=True) as conn:
        with pytest.raises(psycopg.errors.InsufficientPrivilege) as info:
            conn.execute("DELETE FROM orders")
        assert "production-safety/no-unfiltered-writes" in str(info.value)
        assert conn.execute("SELECT count(*) FROM orders").fetchone()[0] >= 1

    def denials() -> list[dict]:
        found = world.cp.ok("GET", f"/sessions?identity={world.agent.name}&connection=guarded")
        events = world.cp.ok("GET", f"/sessions/{found[0]['id']}/events")
        return [
            e for e in events if e["kind"] == "statement" and e["payload"]["decision"] == "deny"
        ]

    wait_until(lambda: bool(denials()), 5, "the denial in the audit trail")
    first = denials()[0]["payload"]
    assert first["sql"] == "DELETE FROM orders"
    assert first["policies"] == ["production-safety/no-unfiltered-writes"]


CONTACT_VALUES = ["plain{}@example.com", "  padded{}@example.org ", "no email {}", None]


def masked_connection(
    world: World, pg_target: PostgresTarget, name: str, rule: dict[str, object]
) -> None:
    """Connection `name` to the target's appdb, open to the enf-agents group and bound by the
    masking rule `rule`; in force on the node when this returns."""
    add_connection(world.cp, pg_target, name)
    world.cp.ok(
        "POST",
        "/policies",
        json={
            "name": f"enf-agents-{name}",
            "cedar": 'permit(principal in Group::"enf-agents", action, '
            f'resource == Connection::"{name}");',
        },
    )
    world.cp.ok("POST", "/masking-rules", json={**rule, "connections": [name]})
    wait_for_revision(world.cp, world.node)


@pytest.fixture(scope="module")
def contacts(world: World, pg_target: PostgresTarget) -> str:
    """Connection `masked-emails` (`*.email` masked, no detectors: rows are masked in runs in
    C) and a table of 4,000 contacts whose emails are plain, padded, not emails or NULL."""
    pg_target.psql_admin(
        "CREATE TABLE contacts (id int PRIMARY KEY, email text, note text);"
        "INSERT INTO contacts SELECT g, CASE g % 4 WHEN 0 THEN 'plain' || g || '@example.com' "
        "WHEN 1 THEN '  padded' || g || '@example.org ' WHEN 2 THEN 'no email ' || g END, "
        "'note ' || g FROM generate_series(0, 3999) g;"
        "ALTER TABLE contacts OWNER TO app;",
        database="appdb",
    )
    masked_connection(world, pg_target, "masked-emails", {"name": "emails", "columns": ["*.email"]})
    return "masked-emails"


def expected_contact(i: int) -> tuple[int, str | None, str]:
    value = CONTACT_VALUES[i % 4]
    masked = None if value is None else masks.mask_column_value(value.format(i), None)
    return i, masked, f"note {i}"


def masked_cells(world: World, identity: str) -> int:
    """The masked cells the identity's only session reported when it ended."""
    ends: list[dict] = []

    def ended() -> bool:
        found = world.cp.ok("GET", f"/sessions?identity={identity}")
        if len(found) != 1:
            return False
        events = world.cp.ok("GET", f"/sessions/{found[0]['id']}/events")
        ends[:] = [e["payload"] for e in events if e["kind"] == "session.end"]
        return bool(ends)

    wait_until(ended, 10, "the session's end in the audit trail")
    return int(ends[0]["masked_cells"])


def test_many_rows_through_psql_are_masked_as_the_row_path_masks_them(world: World, contacts: str):
    agent = make_agent(world.cp, group="enf-agents", prefix="rows")
    wait_for_revision(world.cp, world.node)
    out = subprocess.run(
        [
            "psql",
            world.node.dsn(agent.name, agent.token, contacts),
            "-X",
            "-At",
            "-F",
            "\t",
            "-c",
            "SELECT id, email, note, upper(email) FROM contacts ORDER BY id",
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    rows = [line.split("\t") for line in out.splitlines()]
    assert len(rows) == 4000
    for fields in rows:
        _, email, note = expected_contact(int(fields[0]))
        derived = "" if email is None else "****"  # upper(email): computed from it
        assert fields[1:] == [email or "", note, derived], fields
    # Every non-NULL email and its upper() (3,000 rows of 4,000 have one).
    assert masked_cells(world, agent.name) == 6000


def test_many_binary_rows_of_a_prepared_statement_are_masked(world: World, contacts: str):
    dsn = world.node.dsn(world.agent.name, world.agent.token, contacts)
    with psycopg.connect(dsn, prepare_threshold=0) as conn, conn.cursor(binary=True) as cur:
        for limit in (10, 4000):
            cur.execute("SELECT id, email, note FROM contacts WHERE id < %s ORDER BY id", (limit,))
            assert cur.fetchall() == [expected_contact(i) for i in range(limit)]


DETECTORS = ["credit_card", "us_ssn"]


@pytest.fixture(scope="module")
def detected_notes(world: World, pg_target: PostgresTarget) -> str:
    """Connection `detected-notes` with the README's example rule (`*.email` masked, the
    `credit_card` and `us_ssn` detectors on) and 4,000 rows whose notes now and then hold a
    card number or an SSN: the rows without one are masked in runs in C."""
    pg_target.psql_admin(
        "CREATE TABLE notes (id int PRIMARY KEY, email text, note text);"
        "INSERT INTO notes SELECT g, 'user' || g || '@example.com', CASE g % 10 "
        "WHEN 3 THEN 'card 4242 4242 4242 4242' WHEN 7 THEN 'ssn 123-45-' || (6000 + g % 1000) "
        "WHEN 9 THEN NULL ELSE 'paid order ' || g END FROM generate_series(0, 3999) g;"
        "ALTER TABLE notes OWNER TO app;",
        database="appdb",
    )
    masked_connection(
        world,
        pg_target,
        "detected-notes",
        {"name": "notes", "columns": ["*.email"], "detectors": DETECTORS},
    )
    return "detected-notes"


def test_rows_with_detectors_on_are_masked_as_the_row_path_masks_them(
    world: World, detected_notes: str, pg_target: PostgresTarget
):
    agent = make_agent(world.cp, group="enf-agents", prefix="detect")
    wait_for_revision(world.cp, world.node)
    sql = "SELECT id, email, note FROM notes ORDER BY id"

    def rows(dsn: str) -> list[list[str]]:
        out = subprocess.run(
            ["psql", dsn, "-X", "-At", "-F", "\t", "-P", "null=<null>", "-c", sql],
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        ).stdout
        return [line.split("\t") for line in out.splitlines()]

    clear = rows(pg_target.dsn())
    got = rows(world.node.dsn(agent.name, agent.token, detected_notes))
    scanner = Scanner(DETECTORS)
    assert len(got) == len(clear) == 4000
    masked = 0
    for fields, (id_, email, note) in zip(got, clear, strict=True):
        want_email = masks.mask_cell(
            email.encode(), oid=25, binary=False, how="column", scanner=scanner
        )
        want_note = note
        if note != "<null>":
            want_note = masks.mask_cell(
                note.encode(), oid=25, binary=False, how="detect", scanner=scanner
            ).decode()
        masked += 1 + (want_note != note)
        assert fields == [id_, want_email.decode(), want_note], fields
    assert got[3][2] == "card **** **** **** 4242" and got[7][2] == "ssn ***-**-6007"
    assert got[1][1:] == ["****", "paid order 1"]
    # Every email, and the 800 notes with a card or an SSN.
    assert masked == 4800 and masked_cells(world, agent.name) == 4800


def test_copy_rows_with_detectors_on_are_masked_as_the_row_path_masks_them(
    world: World, detected_notes: str, pg_target: PostgresTarget
):
    agent = make_agent(world.cp, group="enf-agents", prefix="detect-copy")
    wait_for_revision(world.cp, world.node)
    copy = "COPY (SELECT id, email, note FROM notes ORDER BY id) TO STDOUT"

    def lines(dsn: str) -> list[bytes]:
        return subprocess.run(
            ["psql", dsn, "-X", "-q", "-c", copy], capture_output=True, check=True, timeout=60
        ).stdout.splitlines()

    clear = lines(pg_target.dsn())
    got = lines(world.node.dsn(agent.name, agent.token, detected_notes))
    scanner = Scanner(DETECTORS)
    assert len(got) == len(clear) == 4000
    for line, original in zip(got, clear, strict=True):
        id_, email, note = original.split(b"\t")
        want = [id_, masks.mask_cell(email, oid=25, binary=False, how="column", scanner=scanner)]
        if note == b"\\N":
            want.append(note)
        else:
            want.append(masks.mask_cell(note, oid=25, binary=False, how="detect", scanner=scanner))
        assert line.split(b"\t") == want, line
    assert got[3].endswith(b"\tcard **** **** **** 4242") and got[9].endswith(b"\t\\N")
    assert masked_cells(world, agent.name) == 4800
