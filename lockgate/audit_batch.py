"""`AuditBatch` bytes from serialized `AuditEvent`s, without parsing them: a node uploads its
spool's records this way, and the control plane stores each session's events this way."""

from __future__ import annotations


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
