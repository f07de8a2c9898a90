"""Result lineage: which source columns reach each result column, and how."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lockgate.sql.lineage import Lineage, OutputColumn, lineage_cached, result_lineage

U = "public.users"
ORD = "public.orders"

Row = tuple[str, frozenset[str], str]


def col(name: str, how: str, *sources: str) -> Row:
    return name, frozenset(sources), how


def star(*tables: str) -> OutputColumn:
    ts = frozenset(tables)
    return OutputColumn("*", frozenset(f"{t}.*" for t in ts), "direct", ts)


def only(sql: str, views: dict[str, str] | None = None) -> Lineage:
    results = result_lineage(sql, views)
    assert len(results) == 1
    lineage = results[0]
    assert lineage is not None
    return lineage


def rows(lineage: Lineage) -> list[Row | OutputColumn]:
    return [c if c.star else (c.name, c.sources, c.how) for c in lineage.columns]


COMPLETE_CASES: list[tuple[str, list[Row | OutputColumn]]] = [
    # plain references
    ("SELECT email FROM users", [col("email", "direct", f"{U}.email")]),
    ("SELECT email AS contact FROM users", [col("contact", "direct", f"{U}.email")]),
    ("SELECT u.email FROM users u", [col("email", "direct", f"{U}.email")]),
    ("SELECT users.email FROM users", [col("email", "direct", f"{U}.email")]),
    ("SELECT crm.people.email FROM crm.people", [col("email", "direct", "crm.people.email")]),
    ("SELECT p.email FROM crm.people AS p", [col("email", "direct", "crm.people.email")]),
    # casts and parentheses keep the value direct
    ("SELECT email::text FROM users", [col("email", "direct", f"{U}.email")]),
    ("SELECT CAST(email AS varchar) FROM users", [col("email", "direct", f"{U}.email")]),
    ("SELECT (email) FROM users", [col("email", "direct", f"{U}.email")]),
    ('SELECT email COLLATE "C" FROM users', [col("email", "direct", f"{U}.email")]),
    # computed values
    ("SELECT email || '' FROM users", [col("?column?", "derived", f"{U}.email")]),
    ("SELECT lower(email) FROM users", [col("lower", "derived", f"{U}.email")]),
    ("SELECT substr(email, 1) FROM users", [col("substr", "derived", f"{U}.email")]),
    ("SELECT coalesce(email, '') FROM users", [col("coalesce", "derived", f"{U}.email")]),
    ("SELECT string_agg(email, ',') FROM users", [col("string_agg", "derived", f"{U}.email")]),
    (
        "SELECT max(email), min(email) FROM users",
        [
            col("max", "derived", f"{U}.email"),
            col("min", "derived", f"{U}.email"),
        ],
    ),
    ("SELECT array_agg(email) FROM users", [col("array_agg", "derived", f"{U}.email")]),
    (
        "SELECT CASE WHEN id > 0 THEN email ELSE 'x' END AS e FROM users",
        [col("e", "derived", f"{U}.email", f"{U}.id")],
    ),
    (
        "SELECT string_agg(name, ',' ORDER BY email) FROM users",
        [col("string_agg", "derived", f"{U}.name")],
    ),
    ("SELECT row_number() OVER (ORDER BY email) FROM users", [col("row_number", "none")]),
    (
        "SELECT mode() WITHIN GROUP (ORDER BY email) FROM users",
        [col("mode", "derived", f"{U}.email")],
    ),
    # no sources
    ("SELECT 1", [col("?column?", "none")]),
    ("SELECT count(*) FROM users", [col("count", "none")]),
    ("SELECT now(), current_user", [col("now", "none"), col("current_user", "none")]),
    # scalar subqueries are derived, named after their column
    (
        "SELECT (SELECT email FROM users WHERE id = 1)",
        [col("email", "derived", f"{U}.email")],
    ),
    (
        "SELECT EXISTS (SELECT email FROM users)",
        [col("exists", "none")],
    ),
    # FROM subqueries and CTEs carry direct lineage through renames
    ("SELECT x FROM (SELECT email AS x FROM users) s", [col("x", "direct", f"{U}.email")]),
    ("SELECT s.y FROM (SELECT email FROM users) AS s(y)", [col("y", "direct", f"{U}.email")]),
    ("SELECT email FROM (SELECT * FROM users) s", [col("email", "direct", f"{U}.email")]),
    (
        "WITH c AS (SELECT email AS addr FROM users) SELECT addr FROM c",
        [col("addr", "direct", f"{U}.email")],
    ),
    (
        "WITH c(y) AS (SELECT lower(email) FROM users) SELECT c.y AS z FROM c",
        [col("z", "derived", f"{U}.email")],
    ),
    (
        "WITH users AS (SELECT 1 AS email) SELECT email FROM users",
        [col("email", "none")],
    ),
    (
        "WITH RECURSIVE r(n, e) AS ("
        " SELECT 1, email FROM users"
        " UNION ALL SELECT n + 1, e FROM r WHERE n < 3"
        ") SELECT n, e FROM r",
        [col("n", "none"), col("e", "direct", f"{U}.email")],
    ),
    (
        "WITH RECURSIVE r AS ("
        " SELECT id AS n, '' AS acc FROM users"
        " UNION ALL SELECT n, acc || name FROM r JOIN customers c ON c.id = r.n"
        ") SELECT acc FROM r",
        [col("acc", "derived", "public.customers.name")],
    ),
    # set operations: sources unite, how is the most derived
    (
        "SELECT email FROM users UNION SELECT lower(name) FROM customers",
        [col("email", "derived", f"{U}.email", "public.customers.name")],
    ),
    (
        "SELECT email FROM users UNION ALL SELECT email FROM admins",
        [col("email", "direct", f"{U}.email", "public.admins.email")],
    ),
    (
        "SELECT email FROM users INTERSECT SELECT 'x' EXCEPT SELECT NULL",
        [col("email", "direct", f"{U}.email")],
    ),
    ("VALUES (1, 'a')", [col("column1", "none"), col("column2", "none")]),
    # unqualified names over several relations: every base table could hold them
    (
        "SELECT email FROM users u JOIN orders o ON o.user_id = u.id",
        [col("email", "direct", f"{U}.email", f"{ORD}.email")],
    ),
    ("SELECT email FROM users, orders", [col("email", "direct", f"{U}.email", f"{ORD}.email")]),
    (
        "SELECT email FROM users JOIN (SELECT 1 AS email) s ON true",
        [col("email", "none")],
    ),
    # correlated references resolve through the outer scope
    (
        "SELECT (SELECT max(o.total) FROM orders o WHERE o.user_id = u.id) AS m FROM users u",
        [col("m", "derived", f"{ORD}.total")],
    ),
    (
        "SELECT (SELECT u.email FROM orders o LIMIT 1) AS e FROM users u",
        [col("e", "derived", f"{U}.email")],
    ),
    (
        "SELECT (SELECT email FROM orders LIMIT 1) AS e FROM users",
        [col("e", "derived", f"{ORD}.email", f"{U}.email")],
    ),
    ("SELECT y FROM users u, LATERAL (SELECT u.email AS y) l", [col("y", "direct", f"{U}.email")]),
    # stars
    ("SELECT * FROM users", [star(U)]),
    ("TABLE users", [star(U)]),
    ("SELECT * FROM users u JOIN orders o ON true", [star(U, ORD)]),
    (
        "SELECT u.*, o.id FROM users u JOIN orders o ON o.user_id = u.id",
        [
            star(U),
            col("id", "direct", f"{ORD}.id"),
        ],
    ),
    (
        "SELECT * FROM (SELECT email, id FROM users) s",
        [
            col("email", "direct", f"{U}.email"),
            col("id", "direct", f"{U}.id"),
        ],
    ),
    (
        "SELECT * FROM (SELECT *, lower(email) AS x FROM users) s",
        [star(U), col("x", "derived", f"{U}.email")],
    ),
    (
        "SELECT * FROM (SELECT 1 AS a, 2 AS b) s NATURAL JOIN (SELECT 3 AS b, email FROM users) t",
        [col("b", "none"), col("a", "none"), col("email", "direct", f"{U}.email")],
    ),
    # whole rows and JSON
    ("SELECT row_to_json(u) FROM users u", [col("row_to_json", "json", f"{U}.*")]),
    ("SELECT to_jsonb(users) FROM users", [col("to_jsonb", "json", f"{U}.*")]),
    ("SELECT jsonb_agg(u.*) FROM users u", [col("jsonb_agg", "json", f"{U}.*")]),
    ("SELECT json_agg(users) FROM users", [col("json_agg", "json", f"{U}.*")]),
    (
        "SELECT json_build_object('e', email) FROM users",
        [col("json_build_object", "json", f"{U}.email")],
    ),
    ("SELECT json_build_object('k', 1)", [col("json_build_object", "none")]),
    ("SELECT json_object('e': email) FROM users", [col("json_object", "json", f"{U}.email")]),
    ("SELECT to_jsonb(u) -> 'email' FROM users u", [col("?column?", "derived", f"{U}.*")]),
    ("SELECT u FROM users u", [col("u", "derived", f"{U}.*")]),
    ("SELECT (u).email FROM users u", [col("email", "direct", f"{U}.email")]),
    (
        "SELECT row_to_json(s) FROM (SELECT email FROM users) s",
        [col("row_to_json", "json", f"{U}.email")],
    ),
    # data modification with RETURNING
    ("DELETE FROM users WHERE id = 1 RETURNING email", [col("email", "direct", f"{U}.email")]),
    ("UPDATE users u SET name = 'x' RETURNING u.email", [col("email", "direct", f"{U}.email")]),
    ("INSERT INTO users (email) VALUES ('a') RETURNING *", [star(U)]),
    ("UPDATE users SET a = 1 RETURNING old.email", [col("email", "direct", f"{U}.email")]),
    ("WITH d AS (DELETE FROM users RETURNING *) SELECT * FROM d", [star(U)]),
    (
        "WITH d AS (UPDATE users SET a = 1 RETURNING email) SELECT lower(email) FROM d",
        [col("lower", "derived", f"{U}.email")],
    ),
    # COPY to the client
    (
        "COPY users (email, id) TO STDOUT",
        [
            col("email", "direct", f"{U}.email"),
            col("id", "direct", f"{U}.id"),
        ],
    ),
    ("COPY users TO STDOUT", [star(U)]),
    ("COPY (SELECT lower(email) AS e FROM users) TO STDOUT", [col("e", "derived", f"{U}.email")]),
    # identifiers: unquoted fold to lower case, quoted keep theirs
    ('SELECT "Users"."Email" FROM "Users"', [col("Email", "direct", "public.Users.Email")]),
    ("SELECT Users.EMAIL FROM USERS", [col("email", "direct", f"{U}.email")]),
    ('SELECT email AS "E-mail" FROM "Crm"."People"', [col("E-mail", "direct", "Crm.People.email")]),
    # functions in FROM
    ("SELECT g FROM generate_series(1, 3) g", [col("g", "none")]),
    (
        "SELECT k, v FROM users u, jsonb_each(u.profile) AS j(k, v)",
        [col("k", "derived", f"{U}.profile"), col("v", "derived", f"{U}.profile")],
    ),
]


@pytest.mark.parametrize(("sql", "expected"), COMPLETE_CASES, ids=[c[0] for c in COMPLETE_CASES])
def test_lineage_of_each_result_column(sql: str, expected: list[Row | OutputColumn]) -> None:
    lineage = only(sql)
    assert lineage.complete
    assert rows(lineage) == expected


NAME_CASES = [
    ("SELECT count(*) FROM t", "count"),
    ("SELECT 1", "?column?"),
    ("SELECT email::text FROM t", "email"),
    ("SELECT 'a'::text", "text"),
    ("SELECT CAST(1 AS int)", "int4"),
    ("SELECT 1::varchar", "varchar"),
    ("SELECT interval '1 day'", "interval"),
    ("SELECT a + 1 FROM t", "?column?"),
    ("SELECT t.a FROM t", "a"),
    ("SELECT coalesce(a, 0) FROM t", "coalesce"),
    ("SELECT nullif(a, 0) FROM t", "nullif"),
    ("SELECT greatest(a, 0) FROM t", "greatest"),
    ("SELECT CASE WHEN a THEN 1 END FROM t", "case"),
    ("SELECT CASE WHEN a THEN 1 ELSE b END FROM t", "b"),
    ("SELECT CASE WHEN a THEN 1 ELSE 'x'::text END FROM t", "case"),
    ("SELECT ARRAY[1]", "array"),
    ("SELECT ARRAY(SELECT 1)", "array"),
    ("SELECT ROW(1, 2)", "row"),
    ("SELECT (SELECT b FROM t)", "b"),
    ("SELECT (SELECT 1)", "?column?"),
    ("SELECT (SELECT 1 AS one UNION SELECT 2)", "one"),
    ("SELECT current_timestamp(3)", "current_timestamp"),
    ("SELECT session_user", "session_user"),
    ("SELECT pg_catalog.lower('A')", "lower"),
    ("SELECT row_to_json(t) FROM t", "row_to_json"),
    ("SELECT (t).a FROM t", "a"),
    ("SELECT arr[1] FROM t", "arr"),
    ("SELECT x IS NULL FROM t", "?column?"),
    ("SELECT json_arrayagg(a) FROM t", "json_arrayagg"),
    ("SELECT xmlelement(name a, b) FROM t", "xmlelement"),
    ("SELECT $1", "?column?"),
]


@pytest.mark.parametrize(("sql", "name"), NAME_CASES, ids=[c[0] for c in NAME_CASES])
def test_output_names_match_what_postgres_reports(sql: str, name: str) -> None:
    assert only(sql).columns[0].name == name


def test_statements_without_result_rows_have_no_lineage() -> None:
    sql = (
        "INSERT INTO users (email) VALUES ('a'); CREATE TABLE x (a int); EXPLAIN SELECT email"
        " FROM users; SELECT email INTO copy_of FROM users; COPY users FROM STDIN;"
        " COPY users TO '/tmp/x'; SET search_path = public; DELETE FROM users;"
        " SELECT email INTO t2 FROM users UNION SELECT 'x'"
    )
    assert result_lineage(sql) == [None] * 9


def test_one_entry_per_statement() -> None:
    first, second = result_lineage("SELECT email FROM users; SELECT 1")
    assert first is not None and second is not None
    assert first.columns[0].sources == {f"{U}.email"}
    assert second.columns[0].how == "none"


@pytest.mark.parametrize("sql", ["SELEC email", "SELECT (", "\x00", "SELECT 'unterminated"])
def test_unparsable_sql_has_a_single_unknown_entry(sql: str) -> None:
    assert result_lineage(sql) == [None]


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT * FROM get_user_rows()",  # a function of the database's own may read any table
        "FETCH ALL FROM c",  # the cursor's query lives in another statement
        "EXECUTE stmt(1)",
        "SELECT email FROM users UNION SELECT * FROM admins",  # stars of unknown width
        "SELECT nothing_in_scope",
        "SELECT * FROM users AS u(a, b)",
    ],
)
def test_unresolvable_parts_make_the_lineage_incomplete(sql: str) -> None:
    assert only(sql).complete is False


def test_incomplete_lineage_still_keeps_what_it_resolved() -> None:
    lineage = only("SELECT email, f.x FROM users, my_rows() f")
    assert not lineage.complete
    assert lineage.columns[0].sources >= {f"{U}.email"}


def test_tables_lists_every_base_relation_read() -> None:
    lineage = only(
        "WITH c AS (SELECT id FROM accounts) SELECT u.email FROM users u"
        " WHERE u.id IN (SELECT user_id FROM orders) AND EXISTS (SELECT 1 FROM c)"
    )
    assert lineage.tables == {f"{U}", f"{ORD}", "public.accounts"}


VIEWS = {
    "public.contacts": "SELECT email, lower(name) AS name FROM users",
    "reporting.emails": "SELECT c.email AS addr FROM contacts c",
    "public.loop_a": "SELECT x FROM loop_b",
    "loop_b": "SELECT x FROM loop_a",
    "public.everyone": "SELECT * FROM users",
    "public.broken": "SELEC nothing",
}


@pytest.mark.parametrize(
    ("sql", "expected"),
    [
        ("SELECT email FROM contacts", [col("email", "direct", f"{U}.email")]),
        ("SELECT name FROM contacts", [col("name", "derived", f"{U}.name")]),
        ("SELECT addr FROM reporting.emails", [col("addr", "direct", f"{U}.email")]),
        (
            "SELECT * FROM contacts",
            [
                col("email", "direct", f"{U}.email"),
                col("name", "derived", f"{U}.name"),
            ],
        ),
        ("SELECT email FROM everyone", [col("email", "direct", f"{U}.email")]),
        ("SELECT * FROM everyone", [star(U)]),
    ],
)
def test_views_expand_to_their_base_columns(sql: str, expected: list[Row | OutputColumn]) -> None:
    lineage = only(sql, VIEWS)
    assert lineage.complete
    assert rows(lineage) == expected
    assert lineage.tables == {U}


def test_a_view_cycle_ends_and_is_incomplete() -> None:
    lineage = only("SELECT x FROM loop_a", VIEWS)
    assert not lineage.complete
    assert lineage.columns[0].sources == {"public.loop_a.x"}


def test_an_unparsable_view_is_incomplete_and_kept_as_a_table() -> None:
    lineage = only("SELECT email FROM broken", VIEWS)
    assert not lineage.complete
    assert lineage.columns[0].sources == {"public.broken.email"}


def test_without_views_a_view_is_taken_for_a_table() -> None:
    assert rows(only("SELECT email FROM contacts")) == [
        col("email", "direct", "public.contacts.email")
    ]


def test_cached_lineage_matches_and_returns_a_fresh_list() -> None:
    sql = "SELECT email FROM users"
    first = lineage_cached(sql)
    assert first == result_lineage(sql)
    first.clear()
    assert lineage_cached(sql) == result_lineage(sql)


def test_deep_nesting_fails_closed_instead_of_raising() -> None:
    sql = "SELECT " + "lower(" * 600 + "email" + ")" * 600 + " FROM users"
    (lineage,) = result_lineage(sql)
    assert lineage is None or not lineage.complete or lineage.columns[0].sources


SQL_WORDS = st.sampled_from(
    [
        "SELECT",
        "FROM",
        "WHERE",
        "JOIN",
        "ON",
        "USING",
        "(",
        ")",
        ",",
        "*",
        ".",
        "AS",
        "WITH",
        "RECURSIVE",
        "UNION",
        "VALUES",
        "LATERAL",
        "users",
        "u",
        "email",
        "x",
        "1",
        "'a'",
        "::",
        "text",
        "row_to_json",
        "count",
        "RETURNING",
        "DELETE",
        "INSERT",
        "INTO",
        "UPDATE",
        "SET",
        "=",
        "COPY",
        "TO",
        "STDOUT",
        "TABLE",
        ";",
        "||",
        "CASE",
        "WHEN",
        "THEN",
        "END",
        "EXISTS",
        "generate_series",
        "NATURAL",
        "old",
        "new",
    ]
)


@settings(max_examples=150, deadline=None)
@given(st.text(max_size=200))
def test_never_raises_on_arbitrary_text(sql: str) -> None:
    result = result_lineage(sql)
    assert all(entry is None or isinstance(entry, Lineage) for entry in result)


@settings(max_examples=300, deadline=None)
@given(st.lists(SQL_WORDS, max_size=30))
def test_never_raises_on_sql_shaped_text(words: list[str]) -> None:
    sql = " ".join(words)
    views = {"public.u": "SELECT * FROM users u", "public.users": "SELECT email FROM u"}
    for result in (result_lineage(sql), result_lineage(sql, views)):
        assert all(entry is None or isinstance(entry, Lineage) for entry in result)
