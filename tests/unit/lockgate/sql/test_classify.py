"""Statement classification: kinds, relations, columns, dangers, filters and failing closed."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pglast.parser import ParseError, parse_sql_json

from lockgate.sql.classify import (
    KINDS,
    Classification,
    _classify_tree,
    cedar_context,
    classify,
    classify_cached,
)

# --- kinds ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sql", "kind"),
    [
        # read
        ("SELECT 1", "read"),
        ("select * from users where id = 1", "read"),
        ("VALUES (1), (2)", "read"),
        ("TABLE users", "read"),
        ("SHOW work_mem", "read"),
        ("EXPLAIN SELECT * FROM users", "read"),
        ("EXPLAIN DELETE FROM users", "read"),
        ("EXPLAIN (ANALYZE false) DELETE FROM users", "read"),
        ("EXPLAIN (ANALYZE off, VERBOSE) DELETE FROM users", "read"),
        ("DECLARE c CURSOR FOR SELECT * FROM users", "read"),
        ("FETCH 10 FROM c", "read"),
        ("MOVE NEXT IN c", "read"),
        ("SELECT * FROM users FOR UPDATE", "read"),
        ("COPY (SELECT id FROM users) TO STDOUT", "read"),
        ("COPY users TO STDOUT", "read"),
        ("WITH u AS (SELECT * FROM users) SELECT * FROM u", "read"),
        ("SELECT currval('s')", "read"),
        # write
        ("INSERT INTO users (id) VALUES (1)", "write"),
        ("UPDATE users SET name = 'x' WHERE id = 1", "write"),
        ("DeLeTe /* x */ FROM users", "write"),
        ("MERGE INTO t USING s ON t.id = s.id WHEN MATCHED THEN DELETE", "write"),
        ("COPY users FROM STDIN", "write"),
        ("SELECT * INTO newt FROM users", "write"),
        ("SELECT nextval('order_seq')", "write"),
        ("SELECT setval('order_seq', 10)", "write"),
        ("WITH d AS (UPDATE t SET a = 1 RETURNING *) SELECT * FROM d", "write"),
        ("WITH d AS (DELETE FROM t RETURNING *) SELECT * FROM d", "write"),
        ("EXPLAIN ANALYZE DELETE FROM users", "write"),
        ("EXPLAIN (ANALYZE, BUFFERS) UPDATE t SET a = 1 WHERE id = 2", "write"),
        ("COPY (DELETE FROM t RETURNING *) TO STDOUT", "write"),
        ("PREPARE p AS DELETE FROM t", "write"),
        # ddl
        ("CREATE TABLE t (id int primary key)", "ddl"),
        ("CREATE TABLE x AS SELECT * FROM users", "ddl"),
        ("CREATE MATERIALIZED VIEW mv AS SELECT 1", "ddl"),
        ("CREATE VIEW v AS SELECT email FROM users", "ddl"),
        ("CREATE INDEX i ON users (email)", "ddl"),
        ("CREATE SEQUENCE s", "ddl"),
        ("CREATE SCHEMA s", "ddl"),
        ("CREATE TYPE mood AS ENUM ('ok')", "ddl"),
        ("CREATE FUNCTION f() RETURNS int LANGUAGE sql AS 'select 1'", "ddl"),
        ("CREATE TRIGGER tg BEFORE INSERT ON t FOR EACH ROW EXECUTE FUNCTION f()", "ddl"),
        ("CREATE RULE r AS ON INSERT TO t DO INSTEAD NOTHING", "ddl"),
        ("ALTER TABLE t ADD COLUMN c int", "ddl"),
        ("ALTER TABLE t RENAME TO u", "ddl"),
        ("DROP TABLE users", "ddl"),
        ("DROP INDEX i", "ddl"),
        ("COMMENT ON TABLE t IS 'x'", "ddl"),
        ("TRUNCATE users", "ddl"),
        ("SELECT 1; DROP TABLE users", "ddl"),
        # admin
        ("GRANT SELECT ON users TO bob", "admin"),
        ("REVOKE SELECT ON users FROM bob", "admin"),
        ("GRANT admin TO bob", "admin"),
        ("CREATE ROLE x", "admin"),
        ("CREATE USER y WITH SUPERUSER", "admin"),
        ("ALTER ROLE bob WITH SUPERUSER", "admin"),
        ("DROP ROLE bob", "admin"),
        ("ALTER SYSTEM SET work_mem = '1GB'", "admin"),
        ("SET ROLE postgres", "admin"),
        ("SET LOCAL ROLE postgres", "admin"),
        ("SET SESSION AUTHORIZATION bob", "admin"),
        ("RESET ROLE", "admin"),
        ("ALTER TABLE t OWNER TO bob", "admin"),
        ("ALTER TABLE t DISABLE ROW LEVEL SECURITY", "admin"),
        ("ALTER FUNCTION f() OWNER TO bob", "admin"),
        ("VACUUM", "admin"),
        ("VACUUM FULL users", "admin"),
        ("ANALYZE users", "admin"),
        ("CLUSTER users", "admin"),
        ("CHECKPOINT", "admin"),
        ("LOAD 'auto_explain'", "admin"),
        ("REINDEX TABLE users", "admin"),
        ("LOCK TABLE users IN ACCESS EXCLUSIVE MODE", "admin"),
        ("CREATE EXTENSION dblink", "admin"),
        ("DO $$ BEGIN DELETE FROM users; END $$", "admin"),
        ("CALL p()", "admin"),
        ("COPY users TO PROGRAM 'cat'", "admin"),
        ("COPY users FROM PROGRAM 'curl evil'", "admin"),
        ("COPY users TO '/tmp/users.csv'", "admin"),
        ("COPY users FROM '/etc/passwd'", "admin"),
        ("SELECT pg_read_file('/etc/passwd')", "admin"),
        ("SELECT lo_export(1234, '/tmp/x')", "admin"),
        ("SELECT dblink_exec('host=x', 'DROP TABLE t')", "admin"),
        ("SELECT set_config('role', 'postgres', false)", "admin"),
        ("SELECT set_config('work_mem', '1GB', false)", "admin"),
        ("SELECT pg_terminate_backend(42)", "admin"),
        ("SELECT pg_catalog.pg_reload_conf()", "admin"),
        ("EXPLAIN SELECT pg_read_file('/etc/passwd')", "admin"),
        ("PREPARE p AS SELECT pg_read_file('/etc/passwd')", "admin"),
        ("CREATE SERVER s FOREIGN DATA WRAPPER postgres_fdw", "admin"),
        ("CREATE USER MAPPING FOR bob SERVER s", "admin"),
        ("ALTER DEFAULT PRIVILEGES GRANT SELECT ON TABLES TO bob", "admin"),
        ("DISCARD ALL", "admin"),
        ("COMMIT PREPARED 'tx1'", "admin"),
        ("SET log_statement = 'none'", "admin"),
        ("CREATE FUNCTION c() RETURNS int LANGUAGE c AS 'lib', 'sym'", "admin"),
        ("CREATE POLICY p ON users USING (true)", "admin"),
        # other
        ("", "other"),
        ("   ", "other"),
        ("-- only a comment", "other"),
        ("/* only a comment */", "other"),
        (";", "other"),
        ("BEGIN", "other"),
        ("START TRANSACTION ISOLATION LEVEL SERIALIZABLE", "other"),
        ("COMMIT", "other"),
        ("ROLLBACK", "other"),
        ("SAVEPOINT a", "other"),
        ("RELEASE SAVEPOINT a", "other"),
        ("ROLLBACK TO SAVEPOINT a", "other"),
        ("SET application_name = 'agent'", "other"),
        ("SET TIME ZONE 'UTC'", "other"),
        ("SET search_path TO app, public", "other"),
        ("SET work_mem = '64MB'", "other"),
        ("RESET ALL", "other"),
        ("DISCARD PLANS", "other"),
        ("DEALLOCATE p", "other"),
        ("EXECUTE p(1)", "other"),
        ("CLOSE c", "other"),
        ("LISTEN ch", "other"),
        ("NOTIFY ch, 'x'", "other"),
    ],
)
def test_kind_is_decided_by_what_the_statement_does(sql: str, kind: str) -> None:
    assert classify(sql).kind == kind


@pytest.mark.parametrize(
    ("sql", "types"),
    [
        ("SELECT 1", ("SELECT",)),
        ("select 1; Drop Table users", ("SELECT", "DROP TABLE")),
        (
            "INSERT INTO t VALUES (1); UPDATE t SET a = 1; DELETE FROM t",
            ("INSERT", "UPDATE", "DELETE"),
        ),
        ("MERGE INTO t USING s ON true WHEN MATCHED THEN DELETE", ("MERGE",)),
        ("TRUNCATE t", ("TRUNCATE TABLE",)),
        ("COPY t FROM STDIN", ("COPY",)),
        ("CREATE TABLE t (a int)", ("CREATE TABLE",)),
        ("CREATE TABLE x AS SELECT 1", ("CREATE TABLE AS",)),
        ("SELECT 1 INTO t", ("SELECT INTO",)),
        ("ALTER TABLE t ADD c int", ("ALTER TABLE",)),
        ("DROP VIEW v", ("DROP VIEW",)),
        ("DROP MATERIALIZED VIEW mv", ("DROP MATERIALIZED VIEW",)),
        ("GRANT SELECT ON t TO bob", ("GRANT",)),
        ("REVOKE SELECT ON t FROM bob", ("REVOKE",)),
        ("CREATE ROLE r", ("CREATE ROLE",)),
        ("CREATE USER u", ("CREATE USER",)),
        ("ALTER SYSTEM SET work_mem = 1", ("ALTER SYSTEM",)),
        ("DO $$ BEGIN END $$", ("DO",)),
        ("SET a.b = 1", ("SET",)),
        ("RESET ROLE", ("RESET",)),
        ("BEGIN", ("BEGIN",)),
        ("EXPLAIN SELECT 1", ("EXPLAIN",)),
        ("PREPARE p AS SELECT 1; EXECUTE p", ("PREPARE", "EXECUTE")),
        ("VACUUM", ("VACUUM",)),
        ("ANALYZE", ("ANALYZE",)),
        ("CALL p()", ("CALL",)),
        ("", ()),
    ],
)
def test_statement_types_name_each_top_level_statement(sql: str, types: tuple[str, ...]) -> None:
    assert classify(sql).statement_types == types


# --- relations -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sql", "read", "written"),
    [
        ("SELECT * FROM users", {"public.users"}, set()),
        ("SELECT * FROM Users", {"public.users"}, set()),
        ('SELECT * FROM "Public"."Users"', {"public.users"}, set()),
        (
            "SELECT * FROM app.users u JOIN orders o ON o.uid = u.id",
            {"app.users", "public.orders"},
            set(),
        ),
        ("SELECT * FROM mydb.app.users", {"app.users"}, set()),
        ("SELECT * FROM pg_authid", {"pg_catalog.pg_authid"}, set()),
        (
            "SELECT * FROM a WHERE id IN (SELECT aid FROM b WHERE EXISTS (SELECT 1 FROM c))",
            {"public.a", "public.b", "public.c"},
            set(),
        ),
        ("SELECT (SELECT max(x) FROM b) FROM a", {"public.a", "public.b"}, set()),
        ("SELECT * FROM (SELECT * FROM inner_t) s", {"public.inner_t"}, set()),
        (
            "SELECT * FROM a, LATERAL (SELECT * FROM b WHERE b.x = a.x) l",
            {"public.a", "public.b"},
            set(),
        ),
        (
            "SELECT a FROM x UNION SELECT b FROM y EXCEPT SELECT c FROM z",
            {"public.x", "public.y", "public.z"},
            set(),
        ),
        ("SELECT f(g((SELECT 1 FROM deep)))", {"public.deep"}, set()),
        ("SELECT * FROM users TABLESAMPLE SYSTEM (10)", {"public.users"}, set()),
        # CTE names are not tables; a CTE named like a table shadows it only where it is read.
        ("WITH users AS (SELECT 1) SELECT * FROM users", set(), set()),
        ("WITH u AS (SELECT * FROM users) SELECT * FROM u", {"public.users"}, set()),
        ("WITH users AS (SELECT 1) DELETE FROM users", set(), {"public.users"}),
        (
            "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n FROM r) SELECT * FROM r",
            set(),
            set(),
        ),
        ("WITH d AS (DELETE FROM t RETURNING *) SELECT * FROM d", set(), {"public.t"}),
        ("INSERT INTO t SELECT * FROM s", {"public.s"}, {"public.t"}),
        ("UPDATE t SET a = s.a FROM s WHERE t.id = s.id", {"public.s"}, {"public.t"}),
        ("DELETE FROM t USING s WHERE t.id = s.id", {"public.s"}, {"public.t"}),
        (
            "MERGE INTO t USING s ON t.id = s.id WHEN MATCHED THEN DELETE",
            {"public.s"},
            {"public.t"},
        ),
        ("TRUNCATE a, app.b", set(), {"public.a", "app.b"}),
        ("COPY users FROM STDIN", set(), {"public.users"}),
        ("COPY users TO STDOUT", {"public.users"}, set()),
        ("CREATE TABLE x AS SELECT * FROM users", {"public.users"}, {"public.x"}),
        ("SELECT * INTO newt FROM users", {"public.users"}, {"public.newt"}),
        ("CREATE VIEW v AS SELECT * FROM users", {"public.users"}, {"public.v"}),
        ("CREATE TABLE t (uid int REFERENCES users (id))", {"public.users"}, {"public.t"}),
        ("CREATE INDEX i ON t (a)", set(), {"public.t"}),
        ("CREATE SCHEMA s CREATE TABLE t (a int)", set(), {"s.t"}),
        ("CREATE TEMP TABLE tt (a int)", set(), {"pg_temp.tt"}),
        ("DROP TABLE users, app.orders", set(), {"public.users", "app.orders"}),
        ("ALTER TABLE t ADD COLUMN c int", set(), {"public.t"}),
        ("COMMENT ON COLUMN t.c IS 'x'", set(), {"public.t"}),
        ("GRANT SELECT ON users TO bob", set(), {"public.users"}),
        ("SELECT nextval('app.seq')", set(), {"app.seq"}),
        ("EXPLAIN DELETE FROM users", {"public.users"}, set()),
        ("EXPLAIN ANALYZE DELETE FROM users", set(), {"public.users"}),
        ("PREPARE p AS DELETE FROM t", set(), {"public.t"}),
        (
            "CREATE RULE r AS ON INSERT TO t DO INSTEAD DELETE FROM x",
            set(),
            {"public.t", "public.x"},
        ),
        ("DO $$ BEGIN DELETE FROM users; END $$", set(), {"public.users"}),
        (
            "CREATE FUNCTION f(OUT n int) LANGUAGE plpgsql AS "
            "$$ BEGIN n := (SELECT count(*) FROM secrets); END $$",
            {"public.secrets"},
            set(),
        ),
        ("SELECT query_to_xml('select * from secrets', true, true, '')", {"public.secrets"}, set()),
        ("SELECT table_to_xml('secrets', true, true, '')", {"public.secrets"}, set()),
        ("SELECT * FROM users FOR UPDATE OF users", {"public.users"}, set()),
    ],
)
def test_tables_are_schema_qualified_and_split_by_access(
    sql: str, read: set[str], written: set[str]
) -> None:
    c = classify(sql)
    assert c.tables_read == read
    assert c.tables_written == written
    assert c.tables == read | written


# --- columns -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sql", "columns"),
    [
        ("SELECT email FROM users", {"public.users.email"}),
        ("SELECT u.email FROM users u", {"public.users.email"}),
        ("SELECT users.email FROM users", {"public.users.email"}),
        ("SELECT app.users.email FROM app.users", {"app.users.email"}),
        ("SELECT email, name FROM users u JOIN orders o ON true", {"email", "name"}),
        (
            "SELECT u.email FROM users u JOIN orders o ON o.uid = u.id",
            {"public.users.email", "public.orders.uid", "public.users.id"},
        ),
        ("SELECT email FROM users a, users b", {"public.users.email"}),
        ("SELECT * FROM users", {"public.users.*"}),
        ("SELECT u.* FROM users u", {"public.users.*"}),
        ("SELECT u FROM users u", {"public.users.*", "public.users.u"}),
        ("SELECT (u).email FROM users u", {"public.users.email"}),
        ("SELECT s.e FROM (SELECT email AS e FROM users) s", {"public.users.email", "e"}),
        ("UPDATE users SET email = 'x' WHERE id = 1", {"public.users.email", "public.users.id"}),
        (
            "INSERT INTO users (id, email) VALUES (1, 'x')",
            {"public.users.id", "public.users.email"},
        ),
        ("INSERT INTO users SELECT * FROM staging", {"public.users.*", "public.staging.*"}),
        ("DELETE FROM users WHERE id = 1 RETURNING *", {"public.users.id", "public.users.*"}),
        ("COPY users (id, email) TO STDOUT", {"public.users.id", "public.users.email"}),
        ("COPY users TO STDOUT", {"public.users.*"}),
    ],
)
def test_columns_are_qualified_when_the_table_is_known(sql: str, columns: set[str]) -> None:
    assert classify(sql).columns == columns


# --- unfiltered writes ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sql", "unfiltered"),
    [
        ("DELETE FROM t", True),
        ("UPDATE t SET a = 1", True),
        ("DELETE FROM t WHERE id = 1", False),
        ("DELETE FROM t WHERE id > 0", False),
        ("DELETE FROM t WHERE email LIKE '%'", False),
        ("DELETE FROM t WHERE id = $1", False),
        ("DELETE FROM t WHERE true", True),
        ("DELETE FROM t WHERE TRUE", True),
        ("UPDATE t SET a=1 WHERE 1=1", True),
        ("DELETE FROM t WHERE 'a'='a'", True),
        ("DELETE FROM t WHERE 2>1", True),
        ("DELETE FROM t WHERE 1 = '1'", True),
        ("UPDATE t SET a = 1 WHERE x = x", True),
        ("DELETE FROM t WHERE t.id = t.id", True),
        ("DELETE FROM t WHERE NOT (id <> id)", True),
        ("DELETE FROM t WHERE id IS NOT DISTINCT FROM id", True),
        ("DELETE FROM t WHERE 1=1 OR id=5", True),
        ("DELETE FROM t WHERE id=5 OR true", True),
        ("DELETE FROM t WHERE id=5 AND 1=1", False),
        ("DELETE FROM t WHERE 1=1 AND 2=2", True),
        ("DELETE FROM t WHERE NOT false", True),
        ("DELETE FROM t WHERE 1 IN (1, 2)", True),
        ("DELETE FROM t WHERE 3 NOT IN (1, 2)", True),
        ("DELETE FROM t WHERE 2 BETWEEN 1 AND 3", True),
        ("DELETE FROM t WHERE NULL IS NULL", True),
        ("DELETE FROM t WHERE 't'::bool", True),
        ("DELETE FROM t WHERE 'yes'::boolean", True),
        ("DELETE FROM t WHERE coalesce(true, id = 1)", True),
        ("DELETE FROM t WHERE true IS TRUE", True),
        ("DELETE FROM t WHERE id IS NULL OR id IS NOT NULL", True),
        ("DELETE FROM t WHERE random() < 2", True),
        ("DELETE FROM t WHERE EXISTS (SELECT 1)", True),
        ("DELETE FROM t WHERE false", False),
        ("DELETE FROM t WHERE 1 = 2", False),
        ("DELETE FROM t WHERE NULL", False),
        ("DELETE FROM t WHERE CURRENT OF c", False),
        ("DELETE FROM t USING u WHERE t.id = u.id", False),
        ("DELETE FROM t USING u", True),
        ("UPDATE t SET a = u.a FROM u WHERE t.id = u.id", False),
        ("TRUNCATE t", True),
        ("WITH d AS (DELETE FROM t RETURNING *) SELECT * FROM d", True),
        ("WITH d AS (DELETE FROM t WHERE id = 1 RETURNING *) SELECT * FROM d", False),
        ("EXPLAIN ANALYZE DELETE FROM users", True),
        ("EXPLAIN DELETE FROM users", False),
        ("PREPARE p AS DELETE FROM t", True),
        ("MERGE INTO t USING s ON true WHEN MATCHED THEN DELETE", True),
        ("MERGE INTO t USING s ON t.id = s.id WHEN MATCHED THEN DELETE", False),
        ("MERGE INTO t USING s ON t.id = s.id WHEN NOT MATCHED BY SOURCE THEN DELETE", True),
        ("INSERT INTO t VALUES (1)", False),
        ("INSERT INTO t (a) VALUES (1) ON CONFLICT (a) DO UPDATE SET b = 2", False),
        ("SELECT * FROM t", False),
    ],
)
def test_unfiltered_write_flags_writes_that_hit_every_row(sql: str, unfiltered: bool) -> None:
    assert classify(sql).unfiltered_write is unfiltered


# --- dangers -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sql", "dangers"),
    [
        ("SELECT 1", set()),
        ("COPY users TO PROGRAM 'cat'", {"copy_program"}),
        ("COPY users FROM '/etc/passwd'", {"server_file"}),
        ("COPY users TO '/tmp/x'", {"server_file"}),
        ("COPY users FROM STDIN", set()),
        ("SELECT pg_read_file('/etc/passwd')", {"server_file"}),
        ("SELECT * FROM pg_ls_dir('.')", {"server_file"}),
        ("SELECT pg_catalog.pg_read_binary_file('x')", {"server_file"}),
        ("SELECT pg_stat_file('x')", {"server_file"}),
        ("SELECT pg_file_write('x', 'y', false)", {"server_file"}),
        ("SELECT lo_import('/etc/passwd')", {"server_file", "large_object"}),
        ("SELECT lo_export(1234, '/tmp/x')", {"server_file", "large_object"}),
        ("SELECT lo_get(1234)", {"large_object"}),
        ("SELECT loread(0, 10)", {"large_object"}),
        ("SELECT dblink_exec('host=x', 'DROP TABLE t')", {"dblink"}),
        ("SELECT * FROM dblink('host=x', 'select 1') AS t(a int)", {"dblink"}),
        ("CREATE SERVER s FOREIGN DATA WRAPPER postgres_fdw", {"dblink"}),
        ("CREATE USER MAPPING FOR bob SERVER s OPTIONS (user 'x')", {"dblink"}),
        ("CREATE EXTENSION postgres_fdw", {"dblink"}),
        ("ALTER SYSTEM SET work_mem = '1GB'", {"alter_system", "settings_change"}),
        ("SET ROLE postgres", {"role_change"}),
        ("SET SESSION AUTHORIZATION bob", {"role_change"}),
        ("RESET ROLE", {"role_change"}),
        ("CREATE ROLE x", {"role_change"}),
        ("ALTER USER bob PASSWORD 'x'", {"role_change"}),
        ("DROP USER bob", {"role_change", "drop"}),
        ("GRANT SELECT ON users TO bob", {"privilege_change", "role_change"}),
        ("REVOKE ALL ON users FROM bob", {"privilege_change", "role_change"}),
        ("GRANT admin TO bob", {"privilege_change", "role_change"}),
        ("ALTER DEFAULT PRIVILEGES GRANT SELECT ON TABLES TO bob", {"privilege_change"}),
        ("SELECT set_config('role', 'postgres', false)", {"role_change", "settings_change"}),
        (
            "SELECT set_config('session_authorization', 'x', false)",
            {"role_change", "settings_change"},
        ),
        ("SELECT set_config($1, 'x', false)", {"role_change", "settings_change"}),
        ("SELECT set_config('work_mem', '1GB', false)", {"settings_change"}),
        ("DO $$ BEGIN NULL; END $$", {"do_block"}),
        ("CREATE FUNCTION f() RETURNS int LANGUAGE sql AS 'select 1'", {"function_definition"}),
        ("CREATE PROCEDURE p() LANGUAGE sql AS 'select 1'", {"function_definition"}),
        ("SELECT pg_terminate_backend(42)", {"backend_control"}),
        ("SELECT pg_cancel_backend(42)", {"backend_control"}),
        ("SELECT pg_reload_conf()", {"backend_control"}),
        ("SELECT pg_rotate_logfile()", {"backend_control"}),
        ("SET work_mem = '1GB'", {"settings_change"}),
        ("SET statement_timeout = 0", set()),
        ("SET application_name = 'x'", set()),
        ("SET client_encoding = 'UTF8'", set()),
        ("SET NAMES 'UTF8'", set()),
        ("SET DateStyle = ISO", set()),
        ("SET TIME ZONE 'UTC'", set()),
        ("SET extra_float_digits = 3", set()),
        ("SET standard_conforming_strings = on", set()),
        ("SET TRANSACTION READ WRITE", {"settings_change"}),
        ("SET TRANSACTION ISOLATION LEVEL SERIALIZABLE", set()),
        ("BEGIN READ WRITE", {"settings_change"}),
        ("BEGIN READ ONLY", set()),
        ("DROP TABLE users", {"drop"}),
        ("DROP FUNCTION f()", {"drop"}),
        ("ALTER TABLE t DROP COLUMN c", {"drop"}),
        ("TRUNCATE users", {"truncate"}),
        ("SELECT query_to_xml($1, true, true, '')", {"dynamic_sql"}),
        ("SELECT database_to_xml(true, true, '')", {"dynamic_sql"}),
        (
            "CREATE FUNCTION h() RETURNS void LANGUAGE plpgsql AS "
            "$$ BEGIN EXECUTE format('DELETE FROM %I', 'x'); END $$",
            {"function_definition", "dynamic_sql"},
        ),
        (
            "CREATE FOREIGN TABLE ft (a text) SERVER files OPTIONS (filename '/etc/passwd')",
            {"server_file"},
        ),
    ],
)
def test_dangers_name_each_risky_capability(sql: str, dangers: set[str]) -> None:
    assert classify(sql).dangers == dangers


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT pg_read_file('/etc/passwd')",
        "SELECT * FROM users WHERE name = pg_read_file('x')",
        "SELECT (SELECT lo_export(1, '/tmp/x'))",
        "WITH x AS (SELECT pg_terminate_backend(1)) SELECT 1",
        "INSERT INTO t VALUES (pg_read_file('x'))",
        "CREATE VIEW v AS SELECT pg_read_file('x')",
        "CREATE FUNCTION g() RETURNS text LANGUAGE sql AS 'select pg_read_file(''x'')'",
        "CREATE FUNCTION g() RETURNS text BEGIN ATOMIC SELECT pg_read_file('x'); END",
        "EXECUTE p(pg_read_file('x'))",
    ],
)
def test_dangerous_function_anywhere_makes_statement_admin(sql: str) -> None:
    assert classify(sql).kind == "admin"


# --- functions, flags, prepared statements -------------------------------------------------


@pytest.mark.parametrize(
    ("sql", "functions"),
    [
        ("SELECT now()", {"now"}),
        ("SELECT LOWER(email) FROM users", {"lower"}),
        ("SELECT pg_catalog.pg_read_file('x')", {"pg_catalog.pg_read_file"}),
        ("SELECT dblink.dblink_exec('c', 'x')", {"dblink.dblink_exec"}),
        ("SELECT substring('abc' FROM 1)", {"substring"}),
        ("SELECT count(*) FILTER (WHERE f(x)) OVER (ORDER BY g(y)) FROM t", {"count", "f", "g"}),
        ("SELECT * FROM generate_series(1, 3)", {"generate_series"}),
        ("SELECT a FROM t WHERE b IN (SELECT h(c) FROM u)", {"h"}),
        ("CALL app.do_things(1)", {"app.do_things"}),
        ("CREATE TRIGGER tg BEFORE INSERT ON t FOR EACH ROW EXECUTE FUNCTION s.f()", {"s.f"}),
    ],
)
def test_functions_lists_every_call_as_written(sql: str, functions: set[str]) -> None:
    assert classify(sql).functions == functions


@pytest.mark.parametrize(
    ("sql", "multi", "dm_cte"),
    [
        ("SELECT 1", False, False),
        ("SELECT 1;", False, False),
        ("SELECT 1; SELECT 2", True, False),
        ("SELECT 1; DROP TABLE users", True, False),
        ("WITH d AS (UPDATE t SET a = 1 RETURNING *) SELECT * FROM d", False, True),
        ("WITH d AS (INSERT INTO t VALUES (1) RETURNING *) SELECT * FROM d", False, True),
        ("WITH d AS (DELETE FROM t RETURNING *) INSERT INTO log SELECT * FROM d", False, True),
        ("WITH u AS (SELECT 1) SELECT * FROM u", False, False),
    ],
)
def test_multi_statement_and_data_modifying_cte_flags(sql: str, multi: bool, dm_cte: bool) -> None:
    c = classify(sql)
    assert c.multi_statement is multi
    assert c.data_modifying_cte is dm_cte


def test_prepare_reports_its_name_and_the_kind_of_its_statement() -> None:
    c = classify("PREPARE p AS DELETE FROM t")
    assert (c.prepared_name, c.kind) == ("p", "write")
    assert c.tables_written == {"public.t"}


def test_execute_names_the_prepared_statement_for_the_caller_to_resolve() -> None:
    c = classify("PREPARE p AS DELETE FROM t; EXECUTE p")
    assert (c.prepared_name, c.executes, c.kind) == ("p", ("p",), "write")
    assert classify("EXECUTE q(1, 2)").executes == ("q",)
    assert classify("EXPLAIN ANALYZE EXECUTE q").executes == ("q",)


# --- failing closed ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "sql",
    [
        "SELEC 1",
        "DELETE users",
        "SELECT 1 FROM",
        "DO $$ BEGIN",
        "'unterminated",
        "SELECT 1; SELEC 2",
    ],
)
def test_unparseable_input_is_admin_with_an_error(sql: str) -> None:
    c = classify(sql)
    assert c.kind == "admin"
    assert c.error


@pytest.mark.parametrize(
    "stmt",
    [
        {"BrandNewStmt": {}},
        {"SelectStmt": {"targetList": [{"BrandNewStmt": {"relation": {"relname": "t"}}}]}},
    ],
)
def test_statement_type_nobody_reviewed_is_admin(stmt: dict[str, object]) -> None:
    # Every statement type of today's grammar is handled; a future one must not pass as a read.
    c = _classify_tree("", [{"stmt": stmt}])
    assert c.kind == "admin"


def test_plain_explain_plans_a_data_modifying_cte_without_running_it() -> None:
    c = classify("EXPLAIN WITH d AS (DELETE FROM t RETURNING *) SELECT * FROM d")
    assert (c.kind, c.unfiltered_write, c.data_modifying_cte) == ("read", False, True)
    assert c.tables_read == {"public.t"}
    assert not c.tables_written


def test_nul_byte_is_refused_because_the_parser_would_stop_reading_there() -> None:
    c = classify("SELECT 1\x00; DROP TABLE users")
    assert (c.kind, c.error is not None) == ("admin", True)


def test_valid_sql_has_no_error() -> None:
    assert classify("SELECT 1").error is None


# --- Cedar context and cache ---------------------------------------------------------------

_CONTEXT_KEYS = {
    "kind",
    "tables",
    "columns",
    "unfiltered_write",
    "multi_statement",
    "functions",
    "statement_types",
    "dangers",
    "data_modifying_cte",
    "tables_written",
}


@pytest.mark.parametrize("sql", ["", "SELEC 1", "SELECT b, a FROM z, y", "DELETE FROM t"])
def test_cedar_context_always_has_every_key(sql: str) -> None:
    ctx = cedar_context(classify(sql))
    assert set(ctx) == _CONTEXT_KEYS


def test_cedar_context_lists_are_sorted() -> None:
    ctx = cedar_context(classify("SELECT z.b, y.a FROM z, y WHERE f(1) AND e(2)"))
    assert ctx["tables"] == ["public.y", "public.z"]
    assert ctx["columns"] == ["public.y.a", "public.z.b"]
    assert ctx["functions"] == ["e", "f"]
    assert ctx["kind"] == "read"


def test_classify_cached_returns_the_same_classification() -> None:
    first = classify_cached("SELECT * FROM cached_t")
    assert classify_cached("SELECT * FROM cached_t") is first
    assert first == classify("SELECT * FROM cached_t")


# --- fuzzing -------------------------------------------------------------------------------

_FRAGMENTS = [
    "SELECT",
    "select",
    "DeLeTe",
    "DELETE FROM",
    "INSERT INTO",
    "UPDATE",
    "SET",
    "FROM",
    "WHERE",
    "users",
    "t",
    "a = 1",
    "1=1",
    "true",
    "*",
    ",",
    ";",
    "(",
    ")",
    "WITH x AS",
    "RETURNING *",
    "VALUES (1)",
    "DROP TABLE",
    "TRUNCATE",
    "COPY",
    "TO PROGRAM 'x'",
    "FROM STDIN",
    "PREPARE p AS",
    "EXECUTE p",
    "EXPLAIN ANALYZE",
    "pg_read_file('x')",
    "set_config('role', 'x', false)",
    "DO $$ BEGIN DELETE FROM t; END $$",
    "$$",
    "'",
    '"',
    "/*",
    "*/",
    "--",
    "\n",
    "GRANT",
    "ROLE",
    "UNION",
    "JOIN",
    "ON",
    "CREATE",
    "FUNCTION",
    "::bool",
    "NULL",
    "NOT",
    "OR",
    "AND",
]

_SQLISH = st.lists(st.sampled_from(_FRAGMENTS), min_size=1, max_size=14).map(" ".join)


def _parses(sql: str) -> bool:
    try:
        parse_sql_json(sql)
    except (ParseError, ValueError, UnicodeError):
        return False
    return "\x00" not in sql


def _check_invariants(sql: str, c: Classification) -> None:
    assert c.kind in KINDS
    assert c.tables == c.tables_read | c.tables_written
    if not _parses(sql):
        assert c.kind == "admin"
        assert c.error
    if c.kind == "read":  # a read never writes, and never carries a danger
        assert not c.tables_written
        assert not c.unfiltered_write
        assert not c.dangers


@settings(max_examples=300, deadline=None)
@given(st.text())
def test_arbitrary_text_never_raises_and_fails_closed(sql: str) -> None:
    _check_invariants(sql, classify(sql))


@settings(max_examples=400, deadline=None)
@given(_SQLISH)
def test_keyword_soup_never_raises_and_fails_closed(sql: str) -> None:
    _check_invariants(sql, classify(sql))


@settings(max_examples=100, deadline=None)
@given(
    st.lists(st.sampled_from(["SELECT 1", "DELETE FROM t", "DROP TABLE t", "BEGIN"]), min_size=2)
)
def test_multi_statement_kind_is_the_most_severe(stmts: list[str]) -> None:
    c = classify("; ".join(stmts))
    expected = max((classify(s).kind for s in stmts), key=KINDS.index)
    assert (c.kind, c.multi_statement) == (expected, True)
