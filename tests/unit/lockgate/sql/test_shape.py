"""shape_key: same key only for texts that differ in their literals' values, which libpg_query's
fingerprint (what it stands in for) then also finds the same."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pglast.parser import ParseError, fingerprint

from lockgate.sql.shape import shape_key


def test_texts_that_differ_only_in_literals_share_a_key() -> None:
    a = shape_key("SELECT abalance FROM pgbench_accounts WHERE aid = 48213;")
    b = shape_key("SELECT abalance FROM pgbench_accounts WHERE aid = 7;")
    assert a is not None and a == b
    assert shape_key("SELECT * FROM t WHERE a = 'x' AND b = 1.5e3") == shape_key(
        "SELECT * FROM t WHERE a = 'y' AND b = .5"
    )


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("SELECT a FROM t1", "SELECT a FROM t2"),  # digits of a name are not a literal
        ('SELECT "col 1" FROM t', 'SELECT "col 2" FROM t'),  # nor inside a quoted name
        ("""SELECT "it's 1" FROM t""", """SELECT "it's 2" FROM t"""),
        ("SELECT 1abc", "SELECT 2abc"),  # a number run into a word stays as written
        ("SELECT a FROM t WHERE x = 1", "SELECT a FROM t WHERE x = '1'"),
        ("SELECT a FROM t LIMIT 1", "SELECT a FROM t"),
        ("SELECT a.b FROM t", "SELECT a.c FROM t"),
    ],
)
def test_texts_that_differ_elsewhere_do_not(a: str, b: str) -> None:
    assert shape_key(a) is not None and shape_key(b) is not None
    assert shape_key(a) != shape_key(b)


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT 1 -- comment",
        "SELECT /* comment */ 1",
        "SELECT $1",
        "SELECT $$text$$",
        r"SELECT E'a\'b'",
        "SELECT 'é'",
        "SELECT 'a\x00'",
        "SELECT 'a\x01'",  # could be taken for a placeholder
        "SELECT\v1",  # vertical tab: whitespace to PostgreSQL 16, not to 15
    ],
)
def test_texts_it_cannot_be_sure_of_have_no_key(sql: str) -> None:
    assert shape_key(sql) is None


# Token soup: names, quoted names (with quotes, digits and spaces inside), words with digits,
# operators and whitespace, and literal slots filled in twice with different values.
_FIXED = st.sampled_from(
    [
        "SELECT", "FROM", "WHERE", "AND", "t", "t1", "a2b", "abc", "x", "1abc", ".", ",", "(",
        ")", "=", "<", ">", "+", "-", "*", "/", "::", "text", "int", "IN", "LIMIT", "||",
        '"col 1"', '"it\'s"', '"a""b"', '"2"', ";",
    ]
)  # fmt: skip
_SPACE = st.sampled_from([" ", "  ", "\n", "\t", ""])
_NUMBERS = st.one_of(
    st.integers(0, 10**12).map(str),
    st.floats(0, 1e6, allow_nan=False).map(repr),
    st.sampled_from([".5", "1.", "1e-3", "2.5E+7"]),
)
_STRINGS = st.text(
    st.characters(min_codepoint=32, max_codepoint=126, blacklist_characters="'\\$-/*"),
    max_size=8,
).map(lambda s: f"'{s}'")
_LITERALS = st.one_of(_NUMBERS, _STRINGS)


@st.composite
def two_fillings(draw: st.DrawFn) -> tuple[str, str]:
    """One token layout with literal slots, filled twice (numbers stay numbers, strings strings)."""
    layout = draw(
        st.lists(st.one_of(_FIXED, st.just("#"), st.just("'#'")), min_size=1, max_size=14)
    )
    first, second = [], []
    for token in layout:
        space = draw(_SPACE) or " "
        if token == "#":
            first.append(draw(_NUMBERS))
            second.append(draw(_NUMBERS))
        elif token == "'#'":
            first.append(draw(_STRINGS))
            second.append(draw(_STRINGS))
        else:
            first.append(token)
            second.append(token)
        first.append(space)
        second.append(space)
    return "".join(first), "".join(second)


def _fingerprint(sql: str) -> str | None:
    try:
        return fingerprint(sql)
    except ParseError:
        return None


@settings(max_examples=400, deadline=None)
@given(two_fillings())
def test_same_layout_other_literals_same_key(pair: tuple[str, str]) -> None:
    a, b = pair
    assert shape_key(a) is not None
    assert shape_key(a) == shape_key(b)


@settings(max_examples=400, deadline=None)
@given(
    st.lists(st.one_of(_FIXED, _LITERALS, _SPACE), max_size=12).map("".join),
    st.lists(st.one_of(_FIXED, _LITERALS, _SPACE), max_size=12).map("".join),
)
def test_a_shared_key_means_a_shared_fingerprint(a: str, b: str) -> None:
    key = shape_key(a)
    if key is None or key != shape_key(b):
        return
    fa, fb = _fingerprint(a), _fingerprint(b)
    if fa is not None and fb is not None:
        assert fa == fb


@settings(max_examples=400, deadline=None)
@given(two_fillings())
def test_filled_layouts_that_parse_share_a_fingerprint(pair: tuple[str, str]) -> None:
    a, b = pair
    fa, fb = _fingerprint(a), _fingerprint(b)
    assert (fa is None) == (fb is None)
    assert fa == fb


@st.composite
def valid_statement_pair(draw: st.DrawFn) -> tuple[str, str]:
    """A statement that parses, with its literals drawn twice."""
    columns = draw(
        st.lists(
            st.sampled_from(["a", "t1.b", '"col 1"', "c2", "#", "'#'"]), min_size=1, max_size=4
        )
    )
    conditions = draw(
        st.lists(
            st.sampled_from(["a = #", "b <> '#'", "c IN (#, '#')", '"x 1" > #', "d::text = '#'"]),
            max_size=3,
        )
    )
    sql = f"SELECT {', '.join(columns)} FROM t1"
    if conditions:
        sql += " WHERE " + " AND ".join(conditions)
    if draw(st.booleans()):
        sql += " LIMIT #"
    pieces = sql.replace("'#'", "\0s").replace("#", "\0n").split("\0")
    first, second = [pieces[0]], [pieces[0]]
    for piece in pieces[1:]:
        pick = _STRINGS if piece[0] == "s" else _NUMBERS
        first.append(draw(pick) + piece[1:])
        second.append(draw(pick) + piece[1:])
    return "".join(first), "".join(second)


@settings(max_examples=300, deadline=None)
@given(valid_statement_pair())
def test_statements_with_one_key_have_one_fingerprint(pair: tuple[str, str]) -> None:
    a, b = pair
    assert shape_key(a) is not None and shape_key(a) == shape_key(b)
    assert fingerprint(a) == fingerprint(b)
