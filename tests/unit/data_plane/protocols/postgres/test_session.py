"""ClientStream: a lone simple Query takes a short path that must frame it exactly as the
general one does; anything else (split, batched, other messages) takes the general path."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from data_plane.protocols.postgres import codec
from data_plane.protocols.postgres.session import QUERY, ClientStream

SQL = st.text(st.characters(blacklist_characters="\x00", blacklist_categories=("Cs",)))


@settings(max_examples=300, deadline=None)
@given(SQL)
def test_a_lone_query_is_framed_as_the_general_path_frames_it(sql: str) -> None:
    message = codec.query(sql)
    fast = ClientStream().feed(message)
    general = ClientStream()._frame(message)
    assert fast == general
    assert [(s.sql, s.protocol) for s in fast[0].statements] == [(sql, "simple")]
    assert fast[0].end == QUERY and fast[0].data == message


@settings(max_examples=200, deadline=None)
@given(SQL, SQL, st.integers(min_value=1))
def test_split_and_batched_queries_frame_alike(a: str, b: str, cut: int) -> None:
    stream = codec.query(a) + codec.query(b)
    cut %= len(stream)
    whole = ClientStream().feed(stream)
    parts = ClientStream()
    pieces = parts.feed(stream[:cut]) + parts.feed(stream[cut:])
    assert whole == pieces
    assert [g.statements[0].sql for g in whole] == [a, b]


@pytest.mark.parametrize(
    "message",
    [
        b"Q\x00\x00\x00\x03",  # a length shorter than the length field itself
        b"Q\x00\x00\x00\x07a\x00\x00",  # trailing bytes after the query's text
        b"Q\x00\x00\x00\x05a",  # no terminating NUL
        b"Q\x00\x00\x00\x06\xff\x00",  # not UTF-8
    ],
)
def test_a_malformed_lone_query_is_a_protocol_error(message: bytes) -> None:
    with pytest.raises(codec.ProtocolError):
        ClientStream().feed(message)
