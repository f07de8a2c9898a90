"""Audit ingestion: batches of node events into sessions and blocks of their ordered events.

A node numbers each session's events from 1, spools them in that order and uploads them in
that order; after a lost acknowledgement it sends them again from its spool's cursor. So an
event is new exactly when its seq is above the last one stored for its session
(`sessions.last_seq`), and ingestion stores each event once however often it arrives. That
needs the batches of one node stored one at a time: `node_lock` in this process, and on
PostgreSQL a transaction-scoped advisory lock as well, for control planes on several hosts.

A session's new events in a batch are stored as one `AuditBlock` holding them as the node
serialized them: storage costs a row per session per batch, not a row and a JSON parse per
event, and a payload is decoded when it is read. Only the events that summarize a session
(its start and end) are decoded here.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import bindparam, insert, select, text, update
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlmodel.ext.asyncio.session import AsyncSession

from control_plane.models import AuditBlock, AuditSession
from lockgate import audit_batch
from lockgate.audit_batch import SessionBlock
from protos.lockgate.v1 import node_pb2 as pb

_BLOCKS = AuditBlock.__table__  # type: ignore[attr-defined]
_SESSIONS = AuditSession.__table__  # type: ignore[attr-defined]
# Session ids per `IN (...)` lookup: well under every driver's parameter limit.
_IDS_PER_LOOKUP = 500


@dataclass(frozen=True)
class StoredEvent:
    seq: int
    time: datetime
    kind: str
    payload: dict[str, Any]


def _time(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)


# The C scanner under json.loads, without its wrappers: a node's payload is one JSON object
# with no whitespace around it, which is the whole text when the scan ends at its end.
_scan_json: Callable[[str, int], tuple[Any, int]] = json.JSONDecoder().scan_once  # type: ignore[attr-defined]


def payload_of(event: pb.AuditEvent) -> dict[str, Any]:
    """The event's payload as a dict: a payload that is not a JSON object is wrapped as
    `{"value": ...}`, and one that is not JSON at all reads as `{"undecodable": true}`."""
    try:
        # From str, not bytes: json.loads would first sniff the bytes for a UTF-16/32 encoding.
        text = event.payload_json.decode() or "{}"
    except ValueError:
        return {"undecodable": True}
    try:
        payload, end = _scan_json(text, 0)
        if end == len(text) and type(payload) is dict:
            return payload
    except (StopIteration, ValueError):
        pass
    try:
        payload = json.loads(text)
    except ValueError:
        return {"undecodable": True}
    return payload if isinstance(payload, dict) else {"value": payload}


# Per event loop: an asyncio.Lock that once waited belongs to its loop.
_node_locks: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, asyncio.Lock]] = (
    weakref.WeakKeyDictionary()
)


def node_lock(node_name: str) -> asyncio.Lock:
    """Held from before `ingest` until its transaction commits: one batch of a node at a time."""
    locks = _node_locks.setdefault(asyncio.get_running_loop(), {})
    lock = locks.get(node_name)
    if lock is None:
        lock = locks[node_name] = asyncio.Lock()
    return lock


def _advisory_key(node_name: str) -> int:
    digest = hashlib.sha256(b"lockgate-audit:" + node_name.encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


async def ingest(session: AsyncSession, raw: bytes, node_name: str) -> tuple[int, int]:
    """Store a serialized `AuditBatch` the protobuf parser takes; returns (newly stored,
    duplicates). The caller commits, holding `node_lock(node_name)` until then."""
    conn = await session.connection()
    if conn.dialect.name == "postgresql":
        await conn.execute(
            text("SELECT pg_advisory_xact_lock(:key)"), {"key": _advisory_key(node_name)}
        )
    # Split by session from the bytes (in C: a Python object per event cost more than the rest
    # of ingestion together).
    stored = await _last_seqs(conn, audit_batch.session_ids(raw))
    blocks, total = audit_batch.split(raw, stored)
    if blocks:
        received = datetime.now(UTC)
        await conn.execute(
            insert(_BLOCKS),
            [
                {
                    "session_id": block.session_id,
                    "first_seq": block.first_seq,
                    "last_seq": block.last_seq,
                    "events": block.block,
                    "received_at": received,
                }
                for block in blocks
            ],
        )
    await _apply_to_sessions(conn, blocks, set(stored), node_name)
    accepted = sum(block.events for block in blocks)
    return accepted, total - accepted


async def _last_seqs(conn: AsyncConnection, session_ids: list[str]) -> dict[str, int]:
    """The last stored seq of each of these sessions that has a row."""
    found: dict[str, int] = {}
    query = select(_SESSIONS.c.id, _SESSIONS.c.last_seq).where(
        _SESSIONS.c.id.in_(bindparam("ids", expanding=True))
    )
    for first in range(0, len(session_ids), _IDS_PER_LOOKUP):
        ids = session_ids[first : first + _IDS_PER_LOOKUP]
        found.update((row.id, row.last_seq) for row in await conn.execute(query, {"ids": ids}))
    return found


async def _apply_to_sessions(
    conn: AsyncConnection,
    blocks: list[SessionBlock],
    known: set[str],
    node_name: str,
) -> None:
    """Keep the sessions table's summary in step with the events just stored."""
    starts: list[dict[str, Any]] = []
    progress: list[dict[str, Any]] = []
    ends: list[dict[str, Any]] = []  # bind names differ from the columns they set
    for block in blocks:
        sid = block.session_id
        if sid not in known:
            # Its first event is its start; without one (a start lost to a damaged spool
            # record), the row still tells where the session's events are.
            first = pb.AuditEvent.FromString(block.first)
            payload = payload_of(first) if first.kind == "session.start" else {}
            starts.append(
                {
                    "id": sid,
                    "identity": str(payload.get("identity", "")),
                    "connection": str(payload.get("connection", "")),
                    "protocol": str(payload.get("protocol", "")),
                    "node": str(payload.get("node", node_name)),
                    "client_addr": str(payload.get("client_addr", "")),
                    "started_at": _time(first.time_ms),
                    "outcome": "open",
                    "statements": 0,
                    "bytes_in": 0,
                    "bytes_out": 0,
                    "last_seq": 0,
                }
            )
        for end in block.ends:
            event = pb.AuditEvent.FromString(end)
            payload = payload_of(event)
            ends.append(
                {
                    "sid": sid,
                    "ended": _time(event.time_ms),
                    "how": str(payload.get("outcome", "closed")),
                    "got": int(payload.get("bytes_in", 0)),
                    "sent": int(payload.get("bytes_out", 0)),
                }
            )
        progress.append({"sid": sid, "added": block.statements, "last": block.last_seq})
    if starts:
        await conn.execute(insert(_SESSIONS), starts)
    if progress:
        await conn.execute(
            update(_SESSIONS)
            .where(_SESSIONS.c.id == bindparam("sid"))
            .values(
                statements=_SESSIONS.c.statements + bindparam("added"),
                last_seq=bindparam("last"),
            ),
            progress,
        )
    if ends:
        await conn.execute(
            update(_SESSIONS)
            .where(_SESSIONS.c.id == bindparam("sid"))
            .values(
                ended_at=bindparam("ended"),
                outcome=bindparam("how"),
                bytes_in=bindparam("got"),
                bytes_out=bindparam("sent"),
            ),
            ends,
        )


async def read_events(
    session: AsyncSession, session_id: str, after_seq: int = 0, limit: int = 1000
) -> list[StoredEvent]:
    """A session's events with `seq > after_seq`, in order, at most `limit`."""
    # Every block holds at least one event, so `limit` blocks are always enough.
    query = (
        select(_BLOCKS.c.events)
        .where(_BLOCKS.c.session_id == session_id, _BLOCKS.c.last_seq > after_seq)
        .order_by(_BLOCKS.c.last_seq)
        .limit(limit)
    )
    conn = await session.connection()
    found: list[StoredEvent] = []
    for (blob,) in await conn.execute(query):
        for event in pb.AuditBatch.FromString(blob).events:
            if event.seq <= after_seq:
                continue
            found.append(
                StoredEvent(event.seq, _time(event.time_ms), event.kind, payload_of(event))
            )
            after_seq = event.seq
            if len(found) == limit:
                return found
    return found
