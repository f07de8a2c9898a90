"""Audit ingestion against real stores (SQLite and PostgreSQL): batches, duplicates, session
summaries, and events read back in order from their blocks."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlmodel import col, select

from control_plane import migrate
from control_plane.audit import StoredEvent, ingest, node_lock, read_events
from control_plane.db import Database
from control_plane.models import AuditBlock, AuditSession
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
    async with node_lock("node-1"), db.session() as session:
        counts = await ingest(session, pb.AuditBatch(events=events).SerializeToString(), "node-1")
        await session.commit()
    return counts


async def read(
    db: Database, session_id: str, after_seq: int = 0, limit: int = 10_000
) -> list[StoredEvent]:
    async with db.session() as session:
        return await read_events(session, session_id, after_seq, limit)


async def test_a_batch_of_several_sessions_is_stored_with_their_summaries(db: Database) -> None:
    events = session_events("s1", 3) + session_events("s2", 1, end=False)
    assert await store(db, events) == (len(events), 0)

    async with db.session() as session:
        rows = {s.id: s for s in (await session.exec(select(AuditSession))).all()}
    stored = [("s1", e) for e in await read(db, "s1")] + [("s2", e) for e in await read(db, "s2")]
    assert rows["s1"].statements == 3
    assert rows["s1"].outcome == "closed"
    assert rows["s1"].bytes_in == 7
    assert rows["s1"].ended_at is not None
    assert rows["s1"].identity == "ada"
    assert rows["s1"].node == "node-1"
    assert rows["s2"].statements == 1
    assert rows["s2"].outcome == "open"
    assert [(sid, e.seq) for sid, e in stored] == [(e.session_id, e.seq) for e in events]
    assert [e.kind for _, e in stored] == [e.kind for e in events]
    assert stored[0][1].time.timestamp() * 1000 == T0 + 1
    assert stored[1][1].payload == {"sql": "SELECT 1"}
    assert rows["s1"].last_seq == 5 and rows["s2"].last_seq == 2


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
    assert summary is not None
    assert summary.statements == 3
    assert summary.outcome == "closed"
    assert [e.seq for e in await read(db, "s1")] == [1, 2, 3, 4, 5]


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
    notes = await read(db, "odd")
    assert summary is not None and summary.statements == 1_200
    assert len(await read(db, "big")) == len(events)
    assert [n.payload for n in notes] == [
        {"undecodable": True},
        {"value": [1]},
        {"a": 1},
        {"undecodable": True},
        {"undecodable": True},
        {"undecodable": True},
        {},
    ]


async def test_each_upload_adds_one_block_per_session_and_reads_page_across_them(
    db: Database,
) -> None:
    events = session_events("s1", 9, end=False)  # seqs 1..10
    for first in range(0, 10, 3):
        await store(db, events[first : first + 3])
    async with db.session() as session:
        blocks = (await session.exec(select(AuditBlock).order_by(col(AuditBlock.id)))).all()
    assert [(b.first_seq, b.last_seq) for b in blocks] == [(1, 3), (4, 6), (7, 9), (10, 10)]
    assert [e.seq for e in await read(db, "s1", after_seq=4, limit=4)] == [5, 6, 7, 8]
    assert [e.seq for e in await read(db, "s1", after_seq=8)] == [9, 10]
    assert await read(db, "s1", after_seq=10) == []
    assert await read(db, "nobody") == []


async def test_events_of_a_session_whose_start_never_came_are_kept(db: Database) -> None:
    # A start lost to a damaged spool record: the later events still get a session row.
    assert await store(db, [event("lost", 2, "statement", sql="SELECT 1")]) == (1, 0)
    async with db.session() as session:
        row = await session.get(AuditSession, "lost")
    assert row is not None and row.statements == 1 and row.last_seq == 2
    assert row.node == "node-1" and row.identity == ""
    assert [e.seq for e in await read(db, "lost")] == [2]


async def test_overlapping_uploads_of_one_node_store_each_event_once(db: Database) -> None:
    """A retry after a timed-out upload overlaps the upload still being stored (and, with
    several control planes, may reach another one): each event is stored once. A node sends
    from its spool's cursor, so every retry starts where the unacknowledged upload started."""
    events = session_events("s1", 300, end=False)  # seqs 1..301

    async def upload(part: list[pb.AuditEvent]) -> tuple[int, int]:
        if db.url.startswith("sqlite"):
            return await store(db, part)  # one control plane: its per-node lock
        async with db.session() as session:  # replicas: only the database's lock
            counts = await ingest(session, pb.AuditBatch(events=part).SerializeToString(), "node-1")
            await session.commit()
        return counts

    results = await asyncio.gather(upload(events[:200]), upload(events), upload(events[:250]))
    assert sum(accepted for accepted, _ in results) == len(events)
    async with db.session() as session:
        summary = await session.get(AuditSession, "s1")
    assert summary is not None and summary.statements == 300 and summary.last_seq == 301
    assert [e.seq for e in await read(db, "s1")] == list(range(1, 302))
