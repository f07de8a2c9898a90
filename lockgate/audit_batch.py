"""`AuditBatch` bytes without a Python object per event: a node uploads its spool's records
as one (`batch_of`), and the control plane splits an upload by session (`split`, in C in
`_auditwire` when it is built) and stores each session's new events as one.
"""

from __future__ import annotations

import logging
import struct
from collections.abc import Iterator, Mapping
from typing import NamedTuple

from protos.lockgate.v1 import node_pb2 as pb

try:
    from lockgate import _auditwire
except ImportError:  # not built (`make setup` builds it): the parser splits, slower
    _auditwire = None  # type: ignore[assignment]
    logging.getLogger("lockgate.audit").warning(
        "lockgate._auditwire is not built; uploads are split by the protobuf parser"
    )


def _field_1_head(size: int) -> bytes:
    """Tag and length of a length-delimited field 1 of `size` bytes (protobuf encoding)."""
    head = bytearray(b"\x0a")
    while size >= 0x80:
        head.append((size & 0x7F) | 0x80)
        size >>= 7
    head.append(size)
    return bytes(head)


_SMALL = 1 << 14
_FIELD_1_HEADS = [_field_1_head(size) for size in range(_SMALL)]  # every event of a statement


def batch_of(events: list[bytes]) -> bytes:
    """The serialized `AuditBatch` of serialized events (each is field 1, length-delimited)."""
    heads = _FIELD_1_HEADS
    parts: list[bytes] = []
    for event in events:
        n = len(event)
        parts += (heads[n] if n < _SMALL else _field_1_head(n), event)
    return b"".join(parts)


def event_spans(batch: bytes) -> Iterator[tuple[int, int]]:
    """Where each event's bytes start and end in an `AuditBatch` encoding made of field 1
    only, as `batch_of` and protobuf make it."""
    at = 0
    while at < len(batch):
        if batch[at] != 0x0A:
            raise ValueError(f"not an AuditBatch field 1 at byte {at}")
        at += 1
        size = shift = 0
        while True:
            if at == len(batch):
                raise ValueError("an AuditBatch event's length is cut short")
            byte = batch[at]
            at += 1
            size |= (byte & 0x7F) << shift
            shift += 7
            if byte < 0x80:
                break
        if at + size > len(batch):
            raise ValueError("an AuditBatch event is cut short")
        yield at, at + size
        at += size


def prefix(batch: bytes, limit: int, budget: int | None, alone: bool) -> tuple[int, int, int]:
    """The first events of an `AuditBatch` encoding made as `batch_of` makes it: at most
    `limit` of them and at most `budget` bytes of events (None: no bound), or the first one
    whatever its size when `alone`. Returns where they end in `batch`, how many they are and
    their events' bytes (what a node's upload cuts and acknowledges, an event at a time)."""
    if _auditwire is not None:
        return _auditwire.prefix(batch, limit, -1 if budget is None else budget, alone)
    at = count = size = 0
    spans = event_spans(batch)
    while count < limit and (span := next(spans, None)) is not None:
        start, end = span
        if budget is not None and size + end - start > budget and not (alone and count == 0):
            break
        at = end
        count += 1
        size += end - start
    return at, count, size


def events_of(batch: bytes) -> list[bytes]:
    """The serialized events of an `AuditBatch` encoding made as `batch_of` makes it."""
    return [batch[start:end] for start, end in event_spans(batch)]


FRAME_HEADER = struct.Struct("<II")
"""The header of a record in the node's spool: the event's length and its CRC32."""


def frames_to_batch(frames: bytes) -> bytes:
    """The `AuditBatch` encoding of records framed as the node's spool frames them (a uint32
    length, a CRC32 the caller has checked or just made, the serialized event)."""
    if _auditwire is not None:
        return _auditwire.frames_to_batch(frames)
    parts: list[bytes] = []
    at = 0
    while at < len(frames):
        if at + FRAME_HEADER.size > len(frames):
            raise ValueError("a spool record is cut short")
        size, _ = FRAME_HEADER.unpack_from(frames, at)
        at += FRAME_HEADER.size
        if at + size > len(frames):
            raise ValueError("a spool record is cut short")
        parts += (_field_1_head(size), frames[at : at + size])
        at += size
    return b"".join(parts)


class SessionBlock(NamedTuple):
    """One session's new events in an uploaded batch (`split`)."""

    session_id: str
    first_seq: int
    last_seq: int
    events: int
    statements: int
    block: bytes  # the events' AuditBatch encoding
    first: bytes  # the first event, serialized
    ends: list[bytes]  # the events of kind session.end, serialized


def session_ids(batch: bytes) -> list[str]:
    """The sessions of a serialized `AuditBatch`, in the order of their first event."""
    if _auditwire is not None:
        try:
            return _auditwire.session_ids(batch)
        except ValueError:
            pass  # what the scan does not take (a group field), the parser does or reports
    return list(dict.fromkeys(event.session_id for event in pb.AuditBatch.FromString(batch).events))


def split(batch: bytes, stored: Mapping[str, int]) -> tuple[list[SessionBlock], int]:
    """The events of a serialized `AuditBatch` that are new, per session in the order of its
    first event, and the number of events in the batch. New: its seq is past `stored`'s for
    its session (0 when absent) and past every earlier event of that session in the batch."""
    if _auditwire is not None:
        try:
            blocks, total = _auditwire.split(batch, dict(stored))
            return [SessionBlock._make(block) for block in blocks], total
        except ValueError:
            pass
    return split_parsed(batch, stored)


def split_parsed(batch: bytes, stored: Mapping[str, int]) -> tuple[list[SessionBlock], int]:
    """`split` through the protobuf parser, an event at a time: what `_auditwire` does in one
    scan of the bytes (tests hold them to the same results)."""
    events = pb.AuditBatch.FromString(batch).events
    by_session: dict[str, list[pb.AuditEvent]] = {}
    for event in events:
        by_session.setdefault(event.session_id, []).append(event)
    blocks = []
    for sid, session_events in by_session.items():
        last = stored.get(sid, 0)
        new = []
        for event in session_events:
            if event.seq > last:
                new.append(event)
                last = event.seq
        if new:
            blocks.append(
                SessionBlock(
                    session_id=sid,
                    first_seq=new[0].seq,
                    last_seq=last,
                    events=len(new),
                    statements=sum(1 for event in new if event.kind == "statement"),
                    block=batch_of([event.SerializeToString() for event in new]),
                    first=new[0].SerializeToString(),
                    ends=[e.SerializeToString() for e in new if e.kind == "session.end"],
                )
            )
    return blocks, len(events)
