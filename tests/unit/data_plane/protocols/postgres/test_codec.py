"""The PostgreSQL codec: encoders and decoders agree, framing survives any split, and
malformed input only ever raises ProtocolError."""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from data_plane.protocols.postgres import codec
from data_plane.protocols.postgres.codec import (
    CancelRequest,
    GSSEncRequest,
    ProtocolError,
    SSLRequest,
    StartupMessage,
    StartupReader,
)

FUZZ = settings(max_examples=300, deadline=None)
TLS_CLIENT_HELLO_START = b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03"


def frame(kind: bytes, body: bytes) -> bytes:
    return kind + struct.pack("!i", len(body) + 4) + body


def one_message(data: bytes) -> tuple[int, bytes]:
    reader = codec.MessageReader()
    reader.feed(data)
    msg = reader.next_message()
    assert msg is not None
    assert reader.next_message() is None
    assert reader.pending() == b""
    return msg


def read_all(reader: StartupReader) -> list[codec.StartupPacket]:
    out = []
    while (msg := reader.next_message()) is not None:
        out.append(msg)
    return out


# --- startup phase -------------------------------------------------------------------------


def test_startup_message_is_parsed_when_fed_byte_by_byte() -> None:
    params = {"user": "app", "database": "orders", "application_name": "psql"}
    data = codec.startup_message(params)
    reader = StartupReader()
    for i in range(len(data) - 1):
        reader.feed(data[i : i + 1])
        assert reader.next_message() is None
    reader.feed(data[-1:])
    assert reader.next_message() == StartupMessage(protocol=codec.PROTOCOL_V3, params=params)
    assert reader.next_message() is None
    assert reader.remainder() == b""


def test_startup_params_decode_invalid_utf8_with_replacement() -> None:
    body = struct.pack("!i", codec.PROTOCOL_V3) + b"user\0caf\xe9\0\0"
    reader = StartupReader()
    reader.feed(struct.pack("!i", len(body) + 4) + body)
    msg = reader.next_message()
    assert isinstance(msg, StartupMessage)
    assert msg.params == {"user": "caf\ufffd"}


def test_protocol_3_2_startup_is_accepted_for_negotiation() -> None:
    reader = StartupReader()
    reader.feed(codec.startup_message({"user": "app"}, protocol=(3 << 16) | 2))
    msg = reader.next_message()
    assert isinstance(msg, StartupMessage)
    assert msg.protocol == (3 << 16) | 2


def test_ssl_request_leaves_tls_client_hello_in_the_remainder() -> None:
    reader = StartupReader()
    reader.feed(codec.ssl_request() + TLS_CLIENT_HELLO_START)
    assert reader.next_message() == SSLRequest()
    assert reader.remainder() == TLS_CLIENT_HELLO_START
    assert reader.remainder() == b""  # taken once
    assert reader.next_message() is None


def test_gssenc_request_then_startup_in_one_feed() -> None:
    reader = StartupReader()
    reader.feed(struct.pack("!ii", 8, codec.GSSENC_REQUEST_CODE))
    reader.feed(codec.startup_message({"user": "app"}))
    assert read_all(reader) == [
        GSSEncRequest(),
        StartupMessage(codec.PROTOCOL_V3, {"user": "app"}),
    ]


def test_cancel_request_round_trips_with_3_0_and_3_2_secret_lengths() -> None:
    for secret in (b"\x01\x02\x03\x04", bytes(range(32)), b"\xff" * 256):
        reader = StartupReader()
        reader.feed(codec.cancel_request(4242, secret))
        assert reader.next_message() == CancelRequest(pid=4242, secret=secret)


@pytest.mark.parametrize(
    ("data", "sqlstate"),
    [
        (struct.pack("!ii", 7, codec.PROTOCOL_V3), "08P01"),  # too short
        (struct.pack("!ii", 10001, codec.PROTOCOL_V3), "08P01"),  # too long
        (struct.pack("!ii", -8, codec.PROTOCOL_V3), "08P01"),
        (struct.pack("!ii", 8, (1234 << 16) | 9999), "08P01"),  # unknown request code
        (struct.pack("!ii", 8, 2 << 16), "0A000"),  # protocol 2.0
        (struct.pack("!ii", 8, 4 << 16), "0A000"),
        (struct.pack("!ii", 12, codec.SSL_REQUEST_CODE) + b"\0" * 4, "08P01"),
        (struct.pack("!ii", 11, codec.CANCEL_REQUEST_CODE) + b"\0" * 3, "08P01"),
        (struct.pack("!ii", 14, codec.PROTOCOL_V3) + b"user\0\0", "08P01"),  # missing value
        (struct.pack("!ii", 14, codec.PROTOCOL_V3) + b"user\0x\0", "08P01"),  # no terminator
        (struct.pack("!ii", 12, codec.PROTOCOL_V3) + b"\0x\0\0", "08P01"),  # empty name
    ],
)
def test_bad_startup_packets_are_refused_with_sqlstate(data: bytes, sqlstate: str) -> None:
    reader = StartupReader()
    reader.feed(data)
    with pytest.raises(ProtocolError) as exc_info:
        reader.next_message()
    assert exc_info.value.sqlstate == sqlstate


def test_startup_with_only_terminator_has_no_params() -> None:
    reader = StartupReader()
    reader.feed(struct.pack("!ii", 9, codec.PROTOCOL_V3) + b"\0")
    assert reader.next_message() == StartupMessage(codec.PROTOCOL_V3, {})


def test_oversized_length_is_refused_before_the_bytes_arrive() -> None:
    reader = StartupReader()
    reader.feed(struct.pack("!i", 1 << 20))
    with pytest.raises(ProtocolError):
        reader.next_message()


@FUZZ
@given(st.lists(st.binary(max_size=64), max_size=8))
def test_startup_reader_raises_only_protocol_error_on_any_bytes(chunks: list[bytes]) -> None:
    reader = StartupReader()
    try:
        for chunk in chunks:
            reader.feed(chunk)
            read_all(reader)
    except ProtocolError:
        pass


@FUZZ
@given(
    st.dictionaries(
        st.text(min_size=1).filter(lambda s: "\0" not in s),
        st.text().filter(lambda s: "\0" not in s),
        max_size=5,
    ),
    st.integers(min_value=1, max_value=40),
)
def test_startup_message_round_trips_under_any_split(params: dict[str, str], step: int) -> None:
    data = codec.startup_message(params)
    if len(data) > codec.MAX_STARTUP_LENGTH:
        return
    reader = StartupReader()
    got = []
    for i in range(0, len(data), step):
        reader.feed(data[i : i + step])
        got += read_all(reader)
    assert got == [StartupMessage(codec.PROTOCOL_V3, params)]


# --- framing -------------------------------------------------------------------------------


def test_split_messages_finds_every_complete_message_in_concatenated_buffer() -> None:
    buf = codec.query("select 1") + codec.terminate() + frame(b"S", b"")
    spans, end = codec.split_messages(buf)
    assert [(chr(k), buf[s:e]) for k, s, e in spans] == [
        ("Q", b"select 1\0"),
        ("X", b""),
        ("S", b""),
    ]
    assert end == len(buf)


def test_split_messages_stops_before_a_partial_message() -> None:
    full = codec.query("select 1")
    buf = bytearray(full + codec.query("select 2")[:7])
    spans, end = codec.split_messages(buf)
    assert spans == [(ord("Q"), 5, len(full))]
    assert end == len(full)
    # A partial header (fewer than 5 bytes) is not an error either.
    assert codec.split_messages(full[:3]) == ([], 0)


def test_split_messages_resumes_from_start_offset_and_accepts_memoryview() -> None:
    buf = b"junk" + codec.query("a") + codec.query("b")
    spans, end = codec.split_messages(memoryview(buf), 4)
    assert [buf[s:e] for _, s, e in spans] == [b"a\0", b"b\0"]
    assert end == len(buf)


def test_split_messages_stops_before_a_kind_or_after_a_count() -> None:
    q, x, s = codec.query("a"), codec.terminate(), frame(b"S", b"")
    buf = q + x + q + s
    # `before` never stops at the first message: its caller is already at one of that kind.
    assert [k for k, _, _ in codec.split_messages(buf, before=b"Q")[0]] == [ord("Q"), ord("X")]
    assert codec.split_messages(buf, before=b"Q")[1] == len(q + x)
    assert codec.split_messages(buf, len(q), before=b"S")[1] == len(q + x + q)
    assert codec.split_messages(buf, limit=1) == ([(ord("Q"), 5, len(q))], len(q))
    assert codec.split_messages(buf, len(q), limit=2)[1] == len(q + x + q)


def test_split_messages_rejects_bad_lengths() -> None:
    with pytest.raises(ProtocolError):
        codec.split_messages(b"Q" + struct.pack("!i", 3))
    with pytest.raises(ProtocolError):
        codec.split_messages(b"Q" + struct.pack("!i", -1))
    with pytest.raises(ProtocolError):
        codec.split_messages(b"Q" + struct.pack("!i", 1001), max_length=1000)


@FUZZ
@given(st.binary(max_size=200), st.integers(min_value=0, max_value=10))
def test_split_messages_raises_only_protocol_error_and_stays_in_bounds(
    buf: bytes, start: int
) -> None:
    try:
        spans, end = codec.split_messages(buf, start, max_length=1000)
    except ProtocolError:
        return
    pos = start
    for _, s, e in spans:
        assert s == pos + 5 and s <= e <= len(buf)
        pos = e
    assert end == pos


@FUZZ
@given(
    st.lists(st.tuples(st.binary(min_size=1, max_size=1), st.binary(max_size=30)), max_size=6),
    st.integers(min_value=1, max_value=17),
)
def test_message_reader_reassembles_messages_under_any_split(
    messages: list[tuple[bytes, bytes]], step: int
) -> None:
    data = b"".join(frame(k, b) for k, b in messages) + b"Z\0\0"
    reader = codec.MessageReader()
    got = []
    for i in range(0, len(data), step):
        reader.feed(data[i : i + step])
        while (msg := reader.next_message()) is not None:
            got.append(msg)
    assert got == [(k[0], b) for k, b in messages]
    assert reader.pending() == b"Z\0\0"
    assert reader.pending() == b""


# --- encoders and decoders -----------------------------------------------------------------


def test_authentication_messages_round_trip() -> None:
    cases = [
        (codec.authentication_ok(), 0, b""),
        (codec.authentication_cleartext_password(), 3, b""),
        (codec.authentication_md5_password(b"abcd"), 5, b"abcd"),
        (codec.authentication_sasl_continue(b"r=x,s=y,i=4096"), 11, b"r=x,s=y,i=4096"),
        (codec.authentication_sasl_final(b"v=abc"), 12, b"v=abc"),
    ]
    for data, code, rest in cases:
        kind, body = one_message(data)
        assert kind == ord("R")
        assert codec.parse_authentication(body) == (code, rest)


def test_authentication_sasl_lists_mechanisms() -> None:
    kind, body = one_message(codec.authentication_sasl(["SCRAM-SHA-256-PLUS", "SCRAM-SHA-256"]))
    code, data = codec.parse_authentication(body)
    assert (chr(kind), code) == ("R", 10)
    assert codec.parse_sasl_mechanisms(data) == ["SCRAM-SHA-256-PLUS", "SCRAM-SHA-256"]


def test_parameter_status_backend_key_data_ready_for_query_round_trip() -> None:
    kind, body = one_message(codec.parameter_status("server_version", "16.4"))
    assert chr(kind) == "S"
    assert codec.parse_parameter_status(body) == ("server_version", "16.4")
    kind, body = one_message(codec.backend_key_data(123, b"\x00\x01\x02\x03"))
    assert chr(kind) == "K"
    assert codec.parse_backend_key_data(body) == (123, b"\x00\x01\x02\x03")
    for status in (b"I", b"T", b"E"):
        kind, body = one_message(codec.ready_for_query(status))
        assert chr(kind) == "Z"
        assert codec.parse_ready_for_query(body) == status


def test_error_response_carries_all_fields() -> None:
    data = codec.error_response(
        "42501", "permission denied", severity="FATAL", detail="policy p1", hint="ask"
    )
    kind, body = one_message(data)
    assert chr(kind) == "E"
    assert codec.parse_error_fields(body) == {
        "S": "FATAL",
        "V": "FATAL",
        "C": "42501",
        "M": "permission denied",
        "D": "policy p1",
        "H": "ask",
    }


def test_notice_response_defaults_and_nul_cannot_inject_fields() -> None:
    kind, body = one_message(codec.notice_response("masked\0Cxx"))
    assert chr(kind) == "N"
    assert codec.parse_error_fields(body) == {
        "S": "NOTICE",
        "V": "NOTICE",
        "C": "00000",
        "M": "masked\ufffdCxx",
    }


def test_ssl_response_is_one_unframed_byte() -> None:
    assert codec.ssl_response(True) == b"S"
    assert codec.ssl_response(False) == b"N"


def test_frontend_encoders_produce_known_bytes() -> None:
    assert codec.ssl_request() == b"\x00\x00\x00\x08\x04\xd2\x16\x2f"
    assert codec.terminate() == b"X\x00\x00\x00\x04"
    assert codec.query("select 1") == b"Q\x00\x00\x00\x0dselect 1\x00"
    assert codec.startup_message({"user": "u"}) == (
        b"\x00\x00\x00\x10\x00\x03\x00\x00user\x00u\x00\x00"
    )
    assert codec.cancel_request(7, b"abcd") == (
        b"\x00\x00\x00\x10\x04\xd2\x16\x2e\x00\x00\x00\x07abcd"
    )


def test_password_messages_round_trip() -> None:
    kind, body = one_message(codec.password_message(b"md5abc"))
    assert chr(kind) == "p"
    assert codec.parse_password(body) == b"md5abc"
    kind, body = one_message(codec.sasl_initial_response("SCRAM-SHA-256", b"n,,n=,r=abc"))
    assert chr(kind) == "p"
    assert codec.parse_sasl_initial_response(body) == ("SCRAM-SHA-256", b"n,,n=,r=abc")
    _, body = one_message(codec.sasl_initial_response("SCRAM-SHA-256", None))
    assert codec.parse_sasl_initial_response(body) == ("SCRAM-SHA-256", b"")
    kind, body = one_message(codec.sasl_response(b"c=biws,r=abc,p=xyz"))
    assert (chr(kind), body) == ("p", b"c=biws,r=abc,p=xyz")


def test_password_with_embedded_nul_is_refused() -> None:
    with pytest.raises(ProtocolError):
        codec.parse_password(b"secret\0extra\0")
    with pytest.raises(ProtocolError):
        codec.parse_password(b"secret")


def test_parse_and_bind_are_decoded() -> None:
    body = b"s1\0select $1::int, $2\0" + struct.pack("!HII", 2, 23, 25)
    assert codec.parse_parse(body) == ("s1", "select $1::int, $2", [23, 25])
    assert codec.parse_parse(bytearray(b"\0select 1\0\0\0")) == ("", "select 1", [])
    bind = b"portal\0s1\0" + struct.pack("!HH", 0, 0)
    assert codec.parse_bind_portal(bind) == ("portal", "s1")


def test_query_with_invalid_utf8_is_a_protocol_error_not_replaced() -> None:
    with pytest.raises(ProtocolError) as exc_info:
        codec.parse_query(b"select '\xff'\0")
    assert exc_info.value.sqlstate == "22021"


def test_query_with_trailing_bytes_after_nul_is_refused() -> None:
    # A policy check on "select 1" must not be bypassed by bytes hidden after the NUL.
    with pytest.raises(ProtocolError):
        codec.parse_query(b"select 1\0; drop table t\0")


def test_encoders_refuse_nul_in_protocol_strings() -> None:
    with pytest.raises(ValueError):
        codec.query("select 1\0")
    with pytest.raises(ValueError):
        codec.startup_message({"user": "a\0b"})
    with pytest.raises(ValueError):
        codec.error_response("bad", "m")


@FUZZ
@given(st.text().filter(lambda s: "\0" not in s))
def test_query_round_trips_any_text_without_nul(sql: str) -> None:
    kind, body = one_message(codec.query(sql))
    assert chr(kind) == "Q"
    assert codec.parse_query(body) == sql
    assert codec.parse_query(bytearray(body)) == sql


# Pieces that reach deeper into the decoders than uniform random bytes do.
PIECES = [b"\0", b"a", b"\xff", b"\x00\x02", b"\xff\xff\xff\xff", b"\x00\x00\x00\x04", b"C"]
DECODERS: list[Callable[[bytes], Any]] = [
    codec.parse_query,
    codec.parse_parse,
    codec.parse_bind_portal,
    codec.parse_error_fields,
    codec.parse_authentication,
    codec.parse_sasl_mechanisms,
    codec.parse_password,
    codec.parse_sasl_initial_response,
    codec.parse_backend_key_data,
    codec.parse_parameter_status,
    codec.parse_ready_for_query,
]


@pytest.mark.parametrize("decoder", DECODERS, ids=lambda d: d.__name__)
@FUZZ
@given(body=st.one_of(st.binary(max_size=80), st.lists(st.sampled_from(PIECES)).map(b"".join)))
def test_decoders_raise_only_protocol_error_on_any_bytes(
    decoder: Callable[[bytes], Any], body: bytes
) -> None:
    try:
        decoder(body)
    except ProtocolError:
        pass


@pytest.mark.parametrize(
    ("decoder", "body"),
    [
        (codec.parse_sasl_initial_response, b"SCRAM-SHA-256\0" + struct.pack("!i", 99) + b"abc"),
        (codec.parse_sasl_initial_response, b"SCRAM-SHA-256\0" + struct.pack("!i", -2)),
        (codec.parse_parse, b"s\0select 1\0" + struct.pack("!HI", 2, 23)),
        (codec.parse_backend_key_data, b"\0\0\0\x01abc"),
        (codec.parse_ready_for_query, b"X"),
        (codec.parse_error_fields, b"Mno terminator\0"),
        (codec.parse_authentication, b"\0\0\0"),
        (codec.parse_sasl_mechanisms, b"SCRAM-SHA-256\0"),
        (codec.parse_parameter_status, b"name\0value\0extra"),
    ],
)
def test_malformed_bodies_are_protocol_errors(decoder: Callable[[bytes], Any], body: bytes) -> None:
    with pytest.raises(ProtocolError):
        decoder(body)
