"""Audit ingestion: batches of node events into sessions and their ordered events.

Idempotent by (session_id, seq): a batch re-sent after a lost acknowledgement stores nothing
twice, which together with the node's spool gives exactly-once delivery.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import bindparam, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel.ext.asyncio.session import AsyncSession

from control_plane.models import AuditEvent, AuditSession
from protos.lockgate.v1 import node_pb2 as pb

log = logging.getLogger("lockgate.audit")


def _time(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)


def _insert(session: AsyncSession, model: type[Any]) -> Any:
    dialect = session.bind.dialect.name if session.bind else "sqlite"
    return (postgresql if dialect == "postgresql" else sqlite).insert(model)


def _payload(event: pb.AuditEvent) -> dict[str, Any]:
    try:
        # From str, not bytes: json.loads would first sniff the bytes for a UTF-16/32 encoding.
        payload = json.loads(event.payload_json.decode() or "{}")
    except ValueError:
        return {"undecodable": True}
    return payload if isinstance(payload, dict) else {"value": payload}


async def ingest(session: AsyncSession, batch: pb.AuditBatch, node_name: str) -> tuple[int, int]:
    """Store a batch; returns (newly stored, duplicates). The caller commits.

    A few statements per batch, not per event: INSERT ... ON CONFLICT DO NOTHING RETURNING run
    over the whole batch tells which events are new, and only those update the sessions table
    (new sessions, statement counts and endings as executemany statements).
    A busy node sends thousands of events a second; per-event statements cost a core here.
    """
    received = datetime.now(UTC)
    fresh: dict[tuple[str, int], tuple[pb.AuditEvent, dict[str, Any]]] = {}
    for event in batch.events:
        key = (event.session_id, event.seq)
        if key not in fresh:
            fresh[key] = (event, _payload(event))
    rows = [
        {
            "session_id": event.session_id,
            "seq": event.seq,
            "time": _time(event.time_ms),
            "kind": event.kind,
            "payload": payload,
            "received_at": received,
        }
        for event, payload in fresh.values()
    ]
    stored: set[tuple[str, int]] = set()
    conn = await session.connection()
    if rows:
        # One compiled statement run as executemany: SQLAlchemy batches it into multi-row
        # INSERTs itself ("insertmanyvalues") without building a bound parameter per value.
        events = AuditEvent.__table__  # type: ignore[attr-defined]
        result = await conn.execute(
            _insert(session, AuditEvent)
            .on_conflict_do_nothing(index_elements=["session_id", "seq"])
            .returning(events.c.session_id, events.c.seq),
            rows,
        )
        stored.update((str(sid), int(seq)) for sid, seq in result.all())
    # Events in the order the node sent them, so a session's start precedes its statements.
    accepted = [fresh[key] for key in fresh if key in stored]
    await _apply_to_sessions(session, accepted, node_name)
    return len(accepted), len(batch.events) - len(accepted)


async def _apply_to_sessions(
    session: AsyncSession,
    events: list[tuple[pb.AuditEvent, dict[str, Any]]],
    node_name: str,
) -> None:
    """Keep the sessions table's summary in step with the events just stored."""
    starts: list[dict[str, Any]] = []
    statements: dict[str, int] = {}
    ends: list[dict[str, Any]] = []  # bind names differ from the columns they set
    for event, payload in events:
        if event.kind == "session.start":
            starts.append(
                {
                    "id": event.session_id,
                    "identity": str(payload.get("identity", "")),
                    "connection": str(payload.get("connection", "")),
                    "protocol": str(payload.get("protocol", "")),
                    "node": str(payload.get("node", node_name)),
                    "client_addr": str(payload.get("client_addr", "")),
                    "started_at": _time(event.time_ms),
                    "outcome": "open",
                }
            )
        elif event.kind == "statement":
            statements[event.session_id] = statements.get(event.session_id, 0) + 1
        elif event.kind == "session.end":
            ends.append(
                {
                    "sid": event.session_id,
                    "ended": _time(event.time_ms),
                    "how": str(payload.get("outcome", "closed")),
                    "got": int(payload.get("bytes_in", 0)),
                    "sent": int(payload.get("bytes_out", 0)),
                }
            )
    table = AuditSession.__table__  # type: ignore[attr-defined]
    conn = await session.connection()
    if starts:
        await conn.execute(
            _insert(session, AuditSession).on_conflict_do_nothing(index_elements=["id"]), starts
        )
    if statements:
        await conn.execute(
            update(table)
            .where(table.c.id == bindparam("sid"))
            .values(statements=table.c.statements + bindparam("added")),
            [{"sid": sid, "added": n} for sid, n in statements.items()],
        )
    if ends:
        await conn.execute(
            update(table)
            .where(table.c.id == bindparam("sid"))
            .values(
                ended_at=bindparam("ended"),
                outcome=bindparam("how"),
                bytes_in=bindparam("got"),
                bytes_out=bindparam("sent"),
            ),
            ends,
        )
