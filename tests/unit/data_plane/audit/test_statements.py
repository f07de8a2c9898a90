"""`statement` payloads built per decision: byte for byte what `json` makes of the same dict,
whatever the text, and cut to 1 MiB with the length of the whole."""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from data_plane.audit.statements import SQL_CHARS, StatementPayloads, statement_fields
from data_plane.audit.trail import encode_json
from lockgate.enforcement import StatementDecision
from lockgate.sql.classify import Classification

TEXT = st.text(st.characters(codec="utf-8"), max_size=60)

decisions = st.builds(
    StatementDecision,
    allowed=st.booleans(),
    action=st.sampled_from(["read", "write", "ddl", "admin"]),
    classification=st.builds(Classification, kind=st.sampled_from(["read", "write", "other"])),
    policies=st.lists(TEXT, max_size=3).map(tuple),
    reason=TEXT,
)


@settings(max_examples=500, deadline=None)
@given(
    st.lists(st.tuples(TEXT, TEXT, TEXT, st.integers(0, 2)), min_size=1, max_size=8),
    st.lists(decisions, min_size=3, max_size=3),
)
def test_payloads_are_what_json_makes_of_the_fields(
    statements: list[tuple[str, str, str, int]], shared: list[StatementDecision]
) -> None:
    payloads = StatementPayloads()
    for sql, protocol, name, which in statements:  # decisions reused, as the enforcer does
        decision = shared[which]
        expected = encode_json(statement_fields(sql, protocol, name, decision)).encode()
        assert payloads.encode(sql, protocol, name, decision) == expected


def test_an_equal_but_distinct_decision_gets_its_own_encoding() -> None:
    payloads = StatementPayloads()
    read = StatementDecision(True, "read", Classification("read"), ("p",), "ok")
    payloads.encode("SELECT 1", "simple", "", read)
    other = StatementDecision(False, "read", Classification("read"), ("q",), "no")
    assert json.loads(payloads.encode("SELECT 1", "simple", "", other))["policies"] == ["q"]


def test_a_huge_statement_is_cut_with_the_length_of_the_whole() -> None:
    sql = "SELECT '" + "é" * SQL_CHARS + "'"
    decision = StatementDecision(True, "read", Classification("read"))
    payload = json.loads(StatementPayloads().encode(sql, "simple", "", decision))
    assert payload["sql"] == sql[:SQL_CHARS]
    assert payload["sql_truncated"] is True and payload["sql_chars"] == len(sql)
    assert payload == statement_fields(sql, "simple", "", decision)
