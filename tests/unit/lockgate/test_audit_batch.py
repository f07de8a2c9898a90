"""AuditBatch bytes: built from serialized events they are the bytes protobuf makes of the
batch; split by session in C they are what the parser makes of them, event by event."""

from __future__ import annotations

import pytest
from google.protobuf.message import DecodeError
from hypothesis import given, settings
from hypothesis import strategies as st

from data_plane.audit.spool import frame
from lockgate import audit_batch
from lockgate.audit_batch import (
    SessionBlock,
    _auditwire,
    batch_of,
    event_spans,
    events_of,
    session_ids,
    split,
    split_parsed,
)
from protos.lockgate.v1 import node_pb2 as pb


@settings(max_examples=200, deadline=None)
@given(st.lists(st.binary(max_size=20000), max_size=4))
def test_batch_of_serialized_events_is_the_batch_protobuf_makes(payloads: list[bytes]) -> None:
    events = [pb.AuditEvent(session_id="s", seq=n, payload_json=p) for n, p in enumerate(payloads)]
    serialized = [e.SerializeToString() for e in events]
    assert batch_of(serialized) == pb.AuditBatch(events=events).SerializeToString()


# -- split: the C scan (`_auditwire`) against the parser, an event at a time -----------------

SESSIONS = st.sampled_from(["a", "b", "0190c2d4-7e1f-7a00-8000-0123456789ab", "sé", ""])
KINDS = st.sampled_from(["session.start", "statement", "session.end", "auth.failed", ""])
SEQS = st.integers(min_value=-(2**63), max_value=2**63 - 1) | st.integers(-2, 12)


@st.composite
def batches(draw: st.DrawFn) -> list[pb.AuditEvent]:
    return draw(
        st.lists(
            st.builds(
                pb.AuditEvent,
                session_id=SESSIONS,
                seq=SEQS,
                time_ms=st.integers(0, 2**62),
                kind=KINDS,
                payload_json=st.binary(max_size=300),
            ),
            max_size=40,
        )
    )


def parsed(block: SessionBlock) -> tuple[object, ...]:
    """A block's content, its events parsed (bytes may differ where the input's encoding is
    not the one protobuf makes: the scan copies each event's bytes as they came)."""
    return (
        *block[:5],
        list(pb.AuditBatch.FromString(block.block).events),
        pb.AuditEvent.FromString(block.first),
        [pb.AuditEvent.FromString(end) for end in block.ends],
    )


@settings(max_examples=300, deadline=None)
@given(batches(), st.dictionaries(SESSIONS, SEQS, max_size=3))
def test_the_scan_splits_as_the_parser_does(
    events: list[pb.AuditEvent], stored: dict[str, int]
) -> None:
    raw = pb.AuditBatch(events=events).SerializeToString()
    assert _auditwire is not None, "lockgate._auditwire is not built (make setup)"
    blocks, total = _auditwire.split(raw, stored)
    assert ([SessionBlock._make(b) for b in blocks], total) == split_parsed(raw, stored)
    assert _auditwire.session_ids(raw) == list(dict.fromkeys(e.session_id for e in events))


def test_the_new_events_of_each_session_in_order() -> None:
    def ev(sid: str, seq: int, kind: str = "statement") -> pb.AuditEvent:
        return pb.AuditEvent(session_id=sid, seq=seq, kind=kind, payload_json=b"{}")

    events = [
        ev("a", 1, "session.start"),
        ev("b", 4),
        ev("a", 2),
        ev("b", 5),
        ev("a", 2),  # repeated in the batch
        ev("b", 3),  # behind an earlier one
        ev("a", 3, "session.end"),
        ev("c", 7),  # stored before
    ]
    blocks, total = split(pb.AuditBatch(events=events).SerializeToString(), {"b": 4, "c": 9})
    assert total == 8
    assert [(b.session_id, b.first_seq, b.last_seq, b.events, b.statements) for b in blocks] == [
        ("a", 1, 3, 3, 1),
        ("b", 5, 5, 1, 1),
    ]
    a, b = blocks
    assert [e.seq for e in pb.AuditBatch.FromString(a.block).events] == [1, 2, 3]
    assert pb.AuditEvent.FromString(a.first) == events[0]
    assert [pb.AuditEvent.FromString(e) for e in a.ends] == [events[6]]
    assert b.ends == []
    assert session_ids(pb.AuditBatch(events=events).SerializeToString()) == ["a", "b", "c"]


def _field(number: int, wire_type: int, value: bytes) -> bytes:
    return bytes([number << 3 | wire_type]) + value


def _ld(number: int, value: bytes) -> bytes:
    return _field(number, 2, bytes([len(value)]) + value)


def test_encodings_protobuf_does_not_make_read_as_the_parser_reads_them() -> None:
    event = (
        _ld(1, b"first")
        + _field(2, 0, b"\x05")
        + _ld(1, b"s")  # a repeated field: the last counts
        + _field(9, 5, b"\x00\x00\x00\x00")  # unknown fields of each wire type
        + _field(10, 1, b"\x00" * 8)
        + _field(11, 0, b"\x96\x01")
        + _ld(12, b"xyz")
        + _field(2, 5, b"\x09\x00\x00\x00")  # seq with another wire type: unknown
        + _ld(4, b"statement")
    )
    raw = _ld(1, event) + _ld(7, b"not an event") + _ld(1, _ld(1, b"t") + _field(2, 0, b"\x01"))
    blocks, total = _auditwire.split(raw, {}) if _auditwire else ([], -1)
    assert [parsed(SessionBlock._make(b)) for b in blocks] == [
        parsed(b) for b in split_parsed(raw, {})[0]
    ]
    assert total == 2
    assert pb.AuditBatch.FromString(SessionBlock._make(blocks[0]).block).events[0].seq == 5


@pytest.mark.parametrize(
    "raw",
    [
        b"\x0a",  # a field 1 without its length
        b"\x0a\x05abc",  # shorter than its length
        b"\x0a\x02\x0a\x05",  # an event whose session id is cut short
        b"\x0b\x0c",  # a group
        b"\x0a\x03\x0a\x01\xff",  # a session id that is not UTF-8
        b"\x0a\x0b\x10" + b"\xff" * 10,  # a varint over ten bytes
    ],
)
def test_what_the_scan_does_not_take_is_a_value_error(raw: bytes) -> None:
    assert _auditwire is not None
    with pytest.raises(ValueError):
        _auditwire.split(raw, {})
    with pytest.raises(ValueError):
        _auditwire.session_ids(raw)


def test_the_parser_splits_a_group_field_the_scan_leaves_to_it() -> None:
    event = pb.AuditEvent(session_id="a", seq=1, kind="statement").SerializeToString()
    raw = _ld(1, event) + b"\x13\x08\x01\x14"  # field 2 as a group (start, a varint, end)
    blocks, total = split(raw, {})
    assert total == 1 and [b.session_id for b in blocks] == ["a"]
    assert session_ids(raw) == ["a"]


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=200))
def test_any_bytes_the_parser_takes_the_scan_splits_alike_or_refuses(raw: bytes) -> None:
    assert _auditwire is not None
    try:
        expected = split_parsed(raw, {})
    except DecodeError:
        expected = None
    try:
        blocks, total = _auditwire.split(raw, {})
    except ValueError:
        return
    if expected is not None:
        assert total == expected[1]
        assert [parsed(SessionBlock._make(b)) for b in blocks] == [parsed(b) for b in expected[0]]


# -- frames_to_batch and event_spans: the node's spool records as an upload sends them ---------


@settings(max_examples=200, deadline=None)
@given(st.lists(st.binary(min_size=0, max_size=3000), max_size=5), st.booleans())
def test_spool_records_become_the_batch_of_their_events(payloads: list[bytes], in_c: bool) -> None:
    events = [
        pb.AuditEvent(session_id="s", seq=n + 1, payload_json=p) for n, p in enumerate(payloads)
    ]
    frames = b"".join(frame(e) for e in events)
    with pytest.MonkeyPatch.context() as patch:
        if not in_c:
            patch.setattr(audit_batch, "_auditwire", None)
        batch = audit_batch.frames_to_batch(frames)
    assert batch == pb.AuditBatch(events=events).SerializeToString()
    assert events_of(batch) == [e.SerializeToString() for e in events]


@pytest.mark.parametrize("in_c", [True, False])
def test_a_record_cut_short_is_a_value_error(in_c: bool) -> None:
    record = frame(pb.AuditEvent(session_id="s", seq=1))
    with pytest.MonkeyPatch.context() as patch:
        if not in_c:
            patch.setattr(audit_batch, "_auditwire", None)
        for cut in (record[:-1], record[:5], record + record[:9]):
            with pytest.raises(ValueError):
                audit_batch.frames_to_batch(cut)


def test_event_spans_refuse_what_batch_of_does_not_make() -> None:
    with pytest.raises(ValueError):
        list(event_spans(b"\x12\x00"))  # field 2
    with pytest.raises(ValueError):
        list(event_spans(b"\x0a\x05ab"))  # cut short


# -- prefix: where a node's upload cuts its spool's records -------------------------------


def _prefix_by_hand(
    events: list[bytes], limit: int, budget: int | None, alone: bool
) -> tuple[int, int, int]:
    at = count = size = 0
    for event in events:
        fits = budget is None or size + len(event) <= budget or (alone and count == 0)
        if count == limit or not fits:
            break
        at += len(batch_of([event]))
        count += 1
        size += len(event)
    return at, count, size


@settings(max_examples=300, deadline=None)
@given(
    # Events about 16 KiB long (their length takes three varint bytes from 16,384 on) made of
    # one repeated byte: random 16 KiB values would exhaust hypothesis's data budget.
    st.lists(
        st.binary(max_size=300)
        | st.builds(
            lambda n, b: b * n, st.integers(16380, 16400), st.binary(min_size=1, max_size=1)
        ),
        max_size=8,
    ),
    st.integers(0, 10),
    st.none() | st.integers(0, 40000),
    st.booleans(),
    st.booleans(),
)
def test_prefix_cuts_after_the_events_that_fit(
    events: list[bytes], limit: int, budget: int | None, alone: bool, in_c: bool
) -> None:
    batch = batch_of(events)
    with pytest.MonkeyPatch.context() as patch:
        if not in_c:
            patch.setattr(audit_batch, "_auditwire", None)
        at, count, size = audit_batch.prefix(batch, limit, budget, alone)
    assert (at, count, size) == _prefix_by_hand(events, limit, budget, alone)
    assert events_of(batch[:at]) == events[:count]


@pytest.mark.parametrize("in_c", [True, False])
def test_prefix_refuses_what_batch_of_does_not_make(in_c: bool) -> None:
    with pytest.MonkeyPatch.context() as patch:
        if not in_c:
            patch.setattr(audit_batch, "_auditwire", None)
        for bad in (
            b"\x12\x00",
            b"\x0a\x05ab",
            b"\x0a",
            b"\x0a\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01",
        ):
            with pytest.raises(ValueError):
                audit_batch.prefix(bad, 5, None, False)
        assert audit_batch.prefix(b"\x0a\x01a\x12\x00", 1, None, False) == (3, 1, 1)
