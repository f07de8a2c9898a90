"""Sessions: read-only, newest first, filterable; members see only their own."""

from __future__ import annotations

from datetime import timedelta

from control_plane.audit import ingest, node_lock
from control_plane.db import Database
from control_plane.models import AuditSession, utcnow
from protos.lockgate.v1 import node_pb2 as pb
from tests.unit.control_plane.conftest import Api, assert_problem


async def _record(db: Database) -> None:
    now = utcnow()
    async with db.session() as session:
        for i, (who, conn) in enumerate(
            [("bob", "orders"), ("admin", "orders"), ("bob", "billing")]
        ):
            session.add(
                AuditSession(
                    id=f"s{i}",
                    identity=who,
                    connection=conn,
                    protocol="postgres",
                    started_at=now + timedelta(seconds=i),
                )
            )
        await session.commit()
    # Stored as ingestion stores them: one block per upload.
    for seqs in ((1,), (2, 3)):
        events = [
            pb.AuditEvent(
                session_id="s0",
                seq=seq,
                time_ms=int(now.timestamp() * 1000),
                kind="query",
                payload_json=f'{{"sql":"q{seq}"}}'.encode(),
            )
            for seq in seqs
        ]
        async with node_lock("n"), db.session() as session:
            await ingest(session, pb.AuditBatch(events=events).SerializeToString(), "n")
            await session.commit()


async def test_admin_lists_filters_and_pages(api: Api, db: Database) -> None:
    await _record(db)
    assert [s["id"] for s in (await api.get("/sessions")).json()] == ["s2", "s1", "s0"]
    by_bob = await api.get("/sessions", params={"identity": "bob"})
    assert [s["id"] for s in by_bob.json()] == ["s2", "s0"]
    orders = await api.get("/sessions", params={"connection": "orders", "limit": 1, "offset": 1})
    assert [s["id"] for s in orders.json()] == ["s0"]
    assert_problem(await api.get("/sessions", params={"limit": 0}), 422)
    one = (await api.get("/sessions/s1")).json()
    assert one["identity"] == "admin" and one["outcome"] == "open"
    assert_problem(await api.get("/sessions/nope"), 404)


async def test_events_in_sequence_order_after_a_cursor(api: Api, db: Database) -> None:
    await _record(db)
    events = (await api.get("/sessions/s0/events")).json()
    assert [e["seq"] for e in events] == [1, 2, 3]
    assert set(events[0]) == {"seq", "time", "kind", "payload"}
    assert events[0]["payload"] == {"sql": "q1"}
    after = (await api.get("/sessions/s0/events", params={"after_seq": 1, "limit": 1})).json()
    assert [e["seq"] for e in after] == [2]


async def test_member_sees_only_its_own_sessions(api: Api, db: Database) -> None:
    await _record(db)
    bob = api.as_(await api.identity_with_token("bob"))
    assert [s["id"] for s in (await bob.get("/sessions")).json()] == ["s2", "s0"]
    assert (await bob.get("/sessions", params={"identity": "admin"})).json() == []
    assert (await bob.get("/sessions/s0")).status_code == 200
    assert_problem(await bob.get("/sessions/s1"), 404)
    assert_problem(await bob.get("/sessions/s1/events"), 404)
    assert len((await bob.get("/sessions/s0/events")).json()) == 3
