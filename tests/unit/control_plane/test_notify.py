"""Replicas hear each other through PostgreSQL LISTEN/NOTIFY: a decision committed on one wakes
an AwaitApproval waiting on another within a second, new revisions reach every bus, and a
listener whose connection dies reconnects. Plus the in-process hub those notifications feed."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest

from control_plane import approvals, changes, crud, migrate, notify
from control_plane.bootstrap import bootstrap
from control_plane.crypto import SecretBox
from control_plane.db import Database
from control_plane.grpc_service import NodeService
from control_plane.models import Approval, Identity, utcnow
from control_plane.schemas import ApprovalRuleCreate, NodeCreate
from lockgate.settings import Settings
from protos.lockgate.v1 import node_pb2 as pb
from tests.harness.postgres import LOCAL_ADMIN, scratch_database
from tests.unit.control_plane.conftest import MASTER_KEY


@pytest.fixture
def pg_url() -> Iterator[str]:
    with scratch_database("lg_appr") as url:
        migrate.upgrade(url)
        yield url


@dataclass
class Replica:
    """What one control-plane process owns: its engine, hub, bus and listener."""

    db: Database
    hub: notify.ApprovalHub
    bus: changes.ChangeBus
    listener: notify.Listener


@pytest.fixture
async def replicas(pg_url: str, tmp_path: Path) -> AsyncIterator[tuple[Replica, Replica]]:
    made = []
    for _ in range(2):
        hub, bus = notify.ApprovalHub(), changes.ChangeBus()
        listener = notify.Listener(pg_url, hub=hub, bus=bus, reconnect_seconds=0.05)
        made.append(Replica(Database(pg_url), hub, bus, listener))
    settings = Settings(home=tmp_path, database_url=pg_url, master_key=MASTER_KEY)
    await bootstrap(made[0].db, settings)
    for replica in made:
        await replica.listener.start()
        assert replica.listener.connected.is_set()
    try:
        yield made[0], made[1]
    finally:
        for replica in made:
            await replica.listener.stop()
            await replica.db.dispose()


class FakeContext:
    """The parts of a grpc.aio servicer context AwaitApproval uses."""

    def __init__(self, token: str) -> None:
        self.metadata = (("authorization", f"Bearer {token}"),)

    def invocation_metadata(self) -> tuple[tuple[str, str], ...]:
        return self.metadata

    async def abort(self, code: object, details: str) -> None:
        raise RuntimeError(f"aborted {code}: {details}")


async def _setup(db: Database) -> tuple[str, Identity]:
    """An approval rule the admins decide, and a node; returns the node token and the admin."""
    async with db.session() as session:
        await crud.create_approval_rule(
            session=session,
            rule_in=ApprovalRuleCreate(
                name="risky",
                connections=["*"],
                actions=["write"],
                approvers=['Group::"admins"'],
            ),
        )
        _node, token = await crud.create_node(session=session, node_in=NodeCreate(name="edge"))
        admin = await crud.get_identity(session=session, name="admin")
    assert admin is not None
    return token, admin


async def test_a_decision_on_one_replica_wakes_a_waiter_on_another(
    replicas: tuple[Replica, Replica],
) -> None:
    a, b = replicas
    token, admin = await _setup(a.db)
    service_b = NodeService(
        b.db, SecretBox.from_settings(Settings(master_key=MASTER_KEY)), hub=b.hub
    )
    request = pb.ApprovalRequest(
        request_key="sess:1", rule="risky", identity="alice", connection="prod", action="write"
    )
    stream = service_b.AwaitApproval(request, FakeContext(token))  # type: ignore[arg-type]
    pending = await anext(stream)
    assert pending.state == "pending"
    assert (await anext(stream)).state == "notified"
    waiting = asyncio.create_task(anext(stream))
    with b.hub.subscribe() as seen_by_b:
        await asyncio.sleep(0.2)
        assert not waiting.done()  # its deadline is ten minutes away: only a notification helps

        async with a.db.session() as session:
            await approvals.decide(
                session=session,
                approval_id=pending.approval_id,
                identity=admin,
                verdict="approve",
                comment="from replica a",
                hub=a.hub,
            )
        decided_at = time.monotonic()
        approved = await asyncio.wait_for(waiting, 1.0)
        woke_after = time.monotonic() - decided_at
        assert approved.state == "approved" and approved.comment == "from replica a"
        assert list(approved.decided_by) == ["admin"]
        assert woke_after < 1.0
        # The SSE streams of replica b hear about it the same way.
        assert await asyncio.wait_for(seen_by_b.get(), 1.0) == pending.approval_id
    with pytest.raises(StopAsyncIteration):
        await anext(stream)


async def test_new_revisions_reach_the_other_replicas_bus(
    replicas: tuple[Replica, Replica],
) -> None:
    a, b = replicas
    async with a.db.session() as session:
        before = await changes.current(session)
        revision = await changes.bump(session)
        await session.commit()
    assert revision == before + 1
    assert await b.bus.wait_newer(before, within=1.0) == revision


async def test_the_listener_reconnects_and_catches_up(replicas: tuple[Replica, Replica]) -> None:
    a, b = replicas
    old_pid = b.listener.backend_pid
    with psycopg.connect(LOCAL_ADMIN, autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", (old_pid,))
    # A change committed while b is not listening is caught up on reconnect.
    async with a.db.session() as session:
        revision = await changes.bump(session)
        await session.commit()
    deadline = time.monotonic() + 5
    while b.listener.connections < 2 or not b.listener.connected.is_set():
        assert time.monotonic() < deadline, "the listener did not reconnect"
        await asyncio.sleep(0.02)
    assert b.listener.backend_pid != old_pid
    assert await b.bus.wait_newer(revision - 1, within=1.0) == revision
    # And it hears new notifications again.
    with b.hub.subscribe() as seen:
        async with a.db.session() as session:
            await notify.send(session, notify.APPROVALS_CHANNEL, "abc")
            await session.commit()
        assert await asyncio.wait_for(seen.get(), 1.0) == "abc"


def test_postgres_is_told_apart_from_sqlite() -> None:
    assert notify.is_postgres("postgresql+asyncpg://u@h/db")
    assert not notify.is_postgres("sqlite+aiosqlite:///x.db")
    assert notify.asyncpg_dsn("postgresql+asyncpg://u:p%40ss@h:5433/db") == (
        "postgresql://u:p%40ss@h:5433/db"
    )


# The in-process hub ------------------------------------------------------------------------


def _approval(approval_id: str = "a1") -> Approval:
    return Approval(
        id=approval_id, request_key=approval_id, identity="x", connection="c", expires_at=utcnow()
    )


async def test_watchers_wake_on_their_approval_only() -> None:
    hub = notify.ApprovalHub()
    with hub.watch("a1") as mine, hub.watch("a2") as other:
        hub.publish("a1")
        assert mine.is_set() and not other.is_set()
        mine.clear()
        hub.publish_all()
        assert mine.is_set() and other.is_set()
    hub.publish("a1")  # nobody watches any more: nothing to do, nothing kept
    assert hub._watchers == {}


async def test_only_local_announcements_reach_the_sinks() -> None:
    hub = notify.ApprovalHub()
    sent: list[tuple[str, str]] = []
    detach = hub.attach(lambda approval, event: sent.append((approval.id, event)))
    with hub.subscribe() as stream:
        hub.publish("remote")  # what a listener does for another replica's change
        hub.announce(_approval(), "approval.requested")
        hub.announce(_approval("a2"), None)  # a change without a webhook event
        assert [stream.get_nowait() for _ in range(3)] == ["remote", "a1", "a2"]
    detach()
    hub.announce(_approval(), "approval.approved")
    assert sent == [("a1", "approval.requested")]
