"""Audit ingestion against real stores (SQLite and PostgreSQL): batches, duplicates and
session summaries."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlmodel import col, select

from control_plane import migrate
from control_plane.audit import ingest
from control_plane.db import Database
from control_plane.models import AuditEvent, AuditSession
from protos.lockgate.v1 import node_pb2 as pb
from tests.harness.postgres import scratch_database

T0 = 1_790_000_000_000


@pytest.fixture(params=["sqlite", "postgresql"])
async def db(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Database]:
    """A migrated store of each kind the control plane supports (overrides conftest's)."""
    with contextlib.ExitStack() as stack:
        if request.param == "sqlite":
            url = f"sqlite+aiosqlite:///{tmp_path / 'audit.db'}"
        else:
            url = stack.enter_context(scratch_database("lg_audit"))
        migrate.upgrade(url)
        database = Database(url)
        yield database
        await database.dispose()


def event(session_id: str, seq: int, kind: str, **payload: object) -> pb.AuditEvent:
    return pb.AuditEvent(
        session_id=session_id,
        seq=seq,
        time_ms=T0 + seq,
        kind=kind,
        payload_json=json.dumps(payload).encode(),
    )


def session_events(session_id: str, statements: int, end: bool = True) -> list[pb.AuditEvent]:
    events = [event(session_id, 1, "session.start", identity="ada", connection="appdb")]
    events += [event(session_id, 2 + n, "statement", sql="SELECT 1") for n in range(statements)]
    if end:
        events.append(
            event(session_id, 2 + statements, "session.end", outcome="closed", bytes_in=7)
        )
    return events


async def store(db: Database, events: list[pb.AuditEvent]) -> tuple[int, int]:
    async with db.session() as session:
        counts = await ingest(session, pb.AuditBatch(events=events), "node-1")
        await session.commit()
    return counts


async def test_a_batch_of_several_sessions_is_stored_with_their_summaries(db: Database) -> None:
    events = session_events("s1", 3) + session_events("s2", 1, end=False)
    assert await store(db, events) == (len(events), 0)

    async with db.session() as session:
        rows = {s.id: s for s in (await session.exec(select(AuditSession))).all()}
        stored = (await session.exec(select(AuditEvent).order_by(col(AuditEvent.id)))).all()
    assert rows["s1"].statements == 3
    assert rows["s1"].outcome == "closed"
    assert rows["s1"].bytes_in == 7
    assert rows["s1"].ended_at is not None
    assert rows["s1"].identity == "ada"
    assert rows["s1"].node == "node-1"
    assert rows["s2"].statements == 1
    assert rows["s2"].outcome == "open"
    assert [(e.session_id, e.seq) for e in stored] == [(e.session_id, e.seq) for e in events]
    assert stored[0].time.timestamp() * 1000 == T0 + 1
    assert stored[1].payload == {"sql": "SELECT 1"}


async def test_a_resent_batch_stores_nothing_twice_and_counts_nothing_twice(
    db: Database,
) -> None:
    events = session_events("s1", 2, end=False)
    assert await store(db, events) == (3, 0)
    more = [event("s1", 4, "statement", sql="SELECT 2"), event("s1", 5, "session.end")]
    # A lost acknowledgement: the node sends the old events again along with new ones.
    assert await store(db, events + more) == (2, 3)
    # The same event twice in one batch is one event.
    assert await store(db, [more[0], more[0]]) == (0, 2)

    async with db.session() as session:
        summary = await session.get(AuditSession, "s1")
        count = len((await session.exec(select(AuditEvent))).all())
    assert summary is not None
    assert summary.statements == 3
    assert summary.outcome == "closed"
    assert count == 5


async def test_batches_larger_than_one_statement_and_odd_payloads(db: Database) -> None:
    events = session_events("big", 1_200)
    payloads = [b"[1", b"[1]", b' {"a": 1} ', b'{"a":1}x', b"{}{}", b"\xff", b""]
    odd = [
        pb.AuditEvent(session_id="odd", seq=n, time_ms=T0, kind="note", payload_json=p)
        for n, p in enumerate(payloads, 1)
    ]
    assert await store(db, [*events, *odd]) == (len(events) + len(odd), 0)

    async with db.session() as session:
        summary = await session.get(AuditSession, "big")
        notes = (await session.exec(select(AuditEvent).where(AuditEvent.session_id == "odd"))).all()
    assert summary is not None and summary.statements == 1_200
    assert [n.payload for n in sorted(notes, key=lambda n: n.seq)] == [
        {"undecodable": True},
        {"value": [1]},
        {"a": 1},
        {"undecodable": True},
        {"undecodable": True},
        {"undecodable": True},
        {},
    ]
