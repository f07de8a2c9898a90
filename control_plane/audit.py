"""Audit ingestion: batches of node events into sessions and their ordered events.

Idempotent by (session_id, seq): a batch re-sent after a lost acknowledgement stores nothing
twice, which together with the node's spool gives exactly-once delivery.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import update
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


async def ingest(session: AsyncSession, batch: pb.AuditBatch, node_name: str) -> tuple[int, int]:
    """Store a batch; returns (newly stored, duplicates). The caller commits."""
    accepted = duplicates = 0
    for event in batch.events:
        try:
            payload = json.loads(event.payload_json or b"{}")
        except ValueError:
            payload = {"undecodable": True}
        if not isinstance(payload, dict):
            payload = {"value": payload}
        stmt = (
            _insert(session, AuditEvent)
            .values(
                session_id=event.session_id,
                seq=event.seq,
                time=_time(event.time_ms),
                kind=event.kind,
                payload=payload,
                received_at=datetime.now(UTC),
            )
            .on_conflict_do_nothing(index_elements=["session_id", "seq"])
        )
        result = await session.exec(stmt)
        if result.rowcount == 0:
            duplicates += 1
            continue
        accepted += 1
        await _apply_to_session(session, event, payload, node_name)
    return accepted, duplicates


async def _apply_to_session(
    session: AsyncSession, event: pb.AuditEvent, payload: dict[str, Any], node_name: str
) -> None:
    """Keep the sessions table's summary in step with the events just stored."""
    when = _time(event.time_ms)
    if event.kind == "session.start":
        stmt = (
            _insert(session, AuditSession)
            .values(
                id=event.session_id,
                identity=str(payload.get("identity", "")),
                connection=str(payload.get("connection", "")),
                protocol=str(payload.get("protocol", "")),
                node=str(payload.get("node", node_name)),
                client_addr=str(payload.get("client_addr", "")),
                started_at=when,
                outcome="open",
            )
            .on_conflict_do_nothing(index_elements=["id"])
        )
        await session.exec(stmt)
    elif event.kind == "statement":
        await session.exec(
            update(AuditSession)
            .where(AuditSession.id == event.session_id)  # type: ignore[arg-type]
            .values(statements=AuditSession.statements + 1)
        )
    elif event.kind == "session.end":
        await session.exec(
            update(AuditSession)
            .where(AuditSession.id == event.session_id)  # type: ignore[arg-type]
            .values(
                ended_at=when,
                outcome=str(payload.get("outcome", "closed")),
                bytes_in=int(payload.get("bytes_in", 0)),
                bytes_out=int(payload.get("bytes_out", 0)),
            )
        )
