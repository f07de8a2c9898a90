"""The fast path's shape key is `lockgate.sql.shape.shape_key`, computed in C: the same key (or
none) for every text, so a decision the Python path cached by shape is found for exactly the
texts it would find it for."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from data_plane.protocols.postgres._fastpath import shape_key as c_shape_key
from lockgate.sql.shape import shape_key

# Characters that matter to the literal scan, and a few that make a text unsure.
_TRICKY = st.sampled_from(list("\"'.0123456789eE+-_aZ ()=,;*/\t\n$\\\x0b\x01é"))


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT abalance FROM pgbench_accounts WHERE aid = 12345;",
        "SELECT * FROM t WHERE a = 'x' AND b = 1.5e3",
        'SELECT "a""b", "c" FROM "t""',
        'SELECT "a""b""',
        'SELECT "open',
        "SELECT 'open",
        "SELECT 1.5.3, 1..2, .5, 1., 1e, 1e+, 1e+5, 1.e5, t1, 1abc, x.1, 1_000",
        "SELECT 1 -- comment",
        "SELECT /* c */ 1",
        "SELECT $1",
        "SELECT E'\\n'",
        "SELECT 'é'",
        "",
        "'",
        '"',
        "1",
        ".",
    ],
)
def test_known_texts(sql: str) -> None:
    assert c_shape_key(sql) == shape_key(sql)


@settings(max_examples=3000, deadline=None)
@given(st.text(_TRICKY, max_size=40))
def test_same_key_as_python_on_tricky_text(sql: str) -> None:
    assert c_shape_key(sql) == shape_key(sql)


@settings(max_examples=500, deadline=None)
@given(st.text(max_size=60))
def test_same_key_as_python_on_any_text(sql: str) -> None:
    assert c_shape_key(sql) == shape_key(sql)
