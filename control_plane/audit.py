"""Audit ingestion: batches of node events into sessions and their ordered events.

Idempotent by (session_id, seq): a batch re-sent after a lost acknowledgement stores nothing
twice, which together with the node's spool gives exactly-once delivery.
"""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import bindparam, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlmodel.ext.asyncio.session import AsyncSession

from control_plane.models import AuditEvent, AuditSession
from protos.lockgate.v1 import node_pb2 as pb

log = logging.getLogger("lockgate.audit")


def _time(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)


def _insert(session: AsyncSession, model: type[Any]) -> Any:
    dialect = session.bind.dialect.name if session.bind else "sqlite"
    return (postgresql if dialect == "postgresql" else sqlite).insert(model)


# The C scanner under json.loads, without its wrappers: a node's payload is one JSON object
# with no whitespace around it, which is the whole text when the scan ends at its end.
_scan_json: Callable[[str, int], tuple[Any, int]] = json.JSONDecoder().scan_once  # type: ignore[attr-defined]


def _payload(event: pb.AuditEvent) -> tuple[dict[str, Any], str | None]:
    """The event's payload as a dict, and its JSON text when that can be stored as it came."""
    try:
        # From str, not bytes: json.loads would first sniff the bytes for a UTF-16/32 encoding.
        text = event.payload_json.decode() or "{}"
    except ValueError:
        return {"undecodable": True}, None
    try:
        payload, end = _scan_json(text, 0)
        if end == len(text) and type(payload) is dict:
            return payload, text
    except (StopIteration, ValueError):
        pass
    try:
        payload = json.loads(text)
    except ValueError:
        return {"undecodable": True}, None
    if isinstance(payload, dict):
        return payload, text
    return {"value": payload}, None


# Rows per INSERT statement: 6 values a row stays well under every driver's parameter limit.
_ROWS_PER_INSERT = 200
_EVENT_COLUMNS = ("session_id", "seq", "time", "kind", "payload", "received_at")


@functools.cache
def _insert_events_sql(paramstyle: str, rows: int) -> str:
    """`INSERT ... VALUES (...), ... ON CONFLICT DO NOTHING RETURNING` for `rows` events, in the
    driver's own placeholder style (SQLite and PostgreSQL both speak this dialect of upsert)."""
    width = len(_EVENT_COLUMNS)
    if paramstyle == "qmark":
        groups = ["(" + ",".join("?" * width) + ")"] * rows
    elif paramstyle == "numeric_dollar":
        groups = [
            "(" + ",".join(f"${r * width + c + 1}" for c in range(width)) + ")" for r in range(rows)
        ]
    else:
        raise NotImplementedError(f"audit ingestion does not know paramstyle {paramstyle!r}")
    return (
        f"INSERT INTO {AuditEvent.__tablename__} ({', '.join(_EVENT_COLUMNS)}) "
        f"VALUES {', '.join(groups)} ON CONFLICT (session_id, seq) DO NOTHING "
        "RETURNING session_id, seq"
    )


async def ingest(session: AsyncSession, batch: pb.AuditBatch, node_name: str) -> tuple[int, int]:
    """Store a batch; returns (newly stored, duplicates). The caller commits.

    A few statements per batch, not per event: INSERT ... ON CONFLICT DO NOTHING RETURNING over
    the batch tells which events are new, and only those update the sessions table (new
    sessions, statement counts and endings as executemany statements). A busy node sends
    thousands of events a second, so the insert is built here and its values are converted by
    the columns' own SQLAlchemy types: SQLAlchemy's executemany spent ~20 µs an event, more
    than the database did, and a payload that arrives as a JSON object is stored as it came.
    """
    conn = await session.connection()
    dialect = conn.dialect
    table = AuditEvent.__table__  # type: ignore[attr-defined]
    to_db = {
        name: table.c[name].type._cached_bind_processor(dialect) or (lambda v: v)
        for name in ("time", "payload", "received_at")
    }
    to_time = functools.lru_cache(maxsize=4096)(lambda ms: to_db["time"](_time(ms)))
    received = to_db["received_at"](datetime.now(UTC))

    fresh: dict[tuple[str, int], tuple[pb.AuditEvent, dict[str, Any]]] = {}
    values: list[Any] = []
    for event in batch.events:
        key = session_id, seq = event.session_id, event.seq
        if key in fresh:
            continue
        payload, text = _payload(event)
        fresh[key] = (event, payload)
        values += (
            session_id,
            seq,
            to_time(event.time_ms),
            event.kind,
            text if text is not None else to_db["payload"](payload),
            received,
        )
    stored: set[tuple[str, int]] = set()
    step = _ROWS_PER_INSERT * len(_EVENT_COLUMNS)
    for first in range(0, len(values), step):
        chunk = tuple(values[first : first + step])
        sql = _insert_events_sql(dialect.paramstyle, len(chunk) // len(_EVENT_COLUMNS))
        result = await conn.exec_driver_sql(sql, chunk)
        returned: list[Any] = list(result.all())
        stored.update((str(sid), int(seq)) for sid, seq in returned)
    # Events in the order the node sent them, so a session's start precedes its statements.
    accepted = [fresh[key] for key in fresh if key in stored]
    await _apply_to_sessions(session, conn, accepted, node_name)
    return len(accepted), len(batch.events) - len(accepted)


async def _apply_to_sessions(
    session: AsyncSession,
    conn: AsyncConnection,
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
