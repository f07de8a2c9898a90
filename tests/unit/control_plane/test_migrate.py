"""Migrations: idempotent, identical to the models, and working on PostgreSQL."""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, inspect, text
from sqlmodel import SQLModel

from control_plane import migrate
from control_plane.audit import read_events
from control_plane.bootstrap import bootstrap
from control_plane.db import Database, sync_url
from lockgate.settings import Settings
from tests.harness.postgres import scratch_database

TABLES = {
    "groups",
    "identity_groups",
    "identities",
    "tokens",
    "connections",
    "policies",
    "nodes",
    "bundle_state",
    "sessions",
    "audit_blocks",
    "masking_rules",
    "approval_rules",
    "approvals",
    "grants",
    "webhooks",
}
HEAD = ScriptDirectory.from_config(migrate.alembic_config("sqlite://")).get_current_head()
ROOT = Path(__file__).resolve().parents[3]


def schema_diff(url: str) -> list[object]:
    """What alembic would autogenerate to make the migrated store match the models."""
    engine = create_engine(sync_url(url))
    try:
        with engine.connect() as connection:
            context = MigrationContext.configure(connection, opts={"compare_type": True})
            return list(compare_metadata(context, SQLModel.metadata))
    finally:
        engine.dispose()


def tables_and_version(url: str) -> tuple[set[str], str | None]:
    engine = create_engine(sync_url(url))
    try:
        with engine.connect() as connection:
            tables = set(inspect(connection).get_table_names())
            version = MigrationContext.configure(connection).get_current_revision()
            return tables, version
    finally:
        engine.dispose()


def test_upgrade_creates_the_parent_dir_and_is_idempotent(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'nested' / 'dir' / 'lockgate.db'}"
    migrate.upgrade(url)
    migrate.upgrade(url)
    tables, version = tables_and_version(url)
    assert tables >= TABLES and version == HEAD


def test_migrated_sqlite_matches_the_models(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'lockgate.db'}"
    migrate.upgrade(url)
    assert schema_diff(url) == []


@pytest.fixture
def pg_database() -> Iterator[str]:
    with scratch_database("lg_mig") as url:
        yield url


async def test_migrations_on_postgresql(pg_database: str, tmp_path: Path) -> None:
    # Two replicas starting at once: the advisory lock makes the second wait, then do nothing.
    code = "import sys; from control_plane.migrate import upgrade; upgrade(sys.argv[1])"
    replicas = [
        await asyncio.create_subprocess_exec(sys.executable, "-c", code, pg_database, cwd=ROOT)
        for _ in range(2)
    ]
    assert [await p.wait() for p in replicas] == [0, 0]
    migrate.upgrade(pg_database)
    tables, version = tables_and_version(pg_database)
    assert tables >= TABLES and version == HEAD
    assert schema_diff(pg_database) == []

    settings = Settings(home=tmp_path, database_url=pg_database, master_key="")
    first, second = Database(pg_database), Database(pg_database)
    try:
        tokens = await asyncio.gather(bootstrap(first, settings), bootstrap(second, settings))
        assert sum(t is not None for t in tokens) == 1
        assert any(t is not None and t.startswith("lg_") for t in tokens)
        assert await bootstrap(first, settings) is None
    finally:
        await first.dispose()
        await second.dispose()


@pytest.mark.parametrize("store", ["sqlite", "postgresql"])
async def test_stored_events_move_into_blocks_and_back(store: str, tmp_path: Path) -> None:
    """0005 packs the rows of audit_events into blocks (1,000 events at most) that read back
    as the same events; downgrading unpacks them into rows again."""
    with contextlib.ExitStack() as stack:
        if store == "sqlite":
            url = f"sqlite+aiosqlite:///{tmp_path / 'lockgate.db'}"
        else:
            url = stack.enter_context(scratch_database("lg_mig_blocks"))
        config = migrate.alembic_config(url)
        command.upgrade(config, "0004")
        engine = create_engine(sync_url(url))
        stack.callback(engine.dispose)
        rows = [("s1", n, "statement", f'{{"sql":"SELECT {n}"}}') for n in range(1, 1_503)]
        rows += [("s2", 1, "session.start", '{"identity":"ada"}'), ("s2", 2, "note", "[1]")]
        with engine.begin() as connection:
            for sid in ("s1", "s2"):
                connection.execute(
                    text(
                        "INSERT INTO sessions (id, identity, connection, protocol, node,"
                        " client_addr, started_at, bytes_in, bytes_out, statements, outcome)"
                        " VALUES (:id, '', '', '', '', '', :t, 0, 0, 0, 'open')"
                    ),
                    {"id": sid, "t": datetime(2026, 11, 26, tzinfo=UTC)},
                )
            connection.execute(
                text(
                    "INSERT INTO audit_events (session_id, seq, time, kind, payload, received_at)"
                    " VALUES (:sid, :seq, :t, :kind, :payload, :t)"
                ),
                [
                    {
                        "sid": sid,
                        "seq": seq,
                        "kind": kind,
                        "payload": payload,
                        "t": datetime(2026, 11, 26, 12, 0, seq % 60, tzinfo=UTC),
                    }
                    for sid, seq, kind, payload in rows
                ],
            )

        command.upgrade(config, "head")
        with engine.connect() as connection:
            blocks = connection.execute(
                text("SELECT session_id, first_seq, last_seq FROM audit_blocks ORDER BY id")
            ).all()
            last = dict(connection.execute(text("SELECT id, last_seq FROM sessions")).all())
        assert [tuple(b) for b in blocks] == [("s1", 1, 1000), ("s1", 1001, 1502), ("s2", 1, 2)]
        assert last == {"s1": 1502, "s2": 2}
        db = Database(url)
        try:
            async with db.session() as session:
                s1 = await read_events(session, "s1", limit=10_000)
                s2 = await read_events(session, "s2")
        finally:
            await db.dispose()
        assert [(e.seq, e.payload) for e in s1] == [
            (n, {"sql": f"SELECT {n}"}) for n in range(1, 1_503)
        ]
        assert s1[0].time == datetime(2026, 11, 26, 12, 0, 1, tzinfo=UTC)
        assert [(e.kind, e.payload) for e in s2] == [
            ("session.start", {"identity": "ada"}),
            ("note", {"value": [1]}),
        ]

        command.downgrade(config, "0004")
        with engine.connect() as connection:
            back = connection.execute(
                text("SELECT session_id, seq, kind FROM audit_events ORDER BY session_id, seq")
            ).all()
        assert [tuple(r) for r in back] == [(sid, seq, kind) for sid, seq, kind, _ in rows]
