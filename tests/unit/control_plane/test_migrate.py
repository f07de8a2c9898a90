"""Migrations: idempotent, identical to the models, and working on PostgreSQL."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, inspect
from sqlmodel import SQLModel

from control_plane import migrate
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
    "audit_events",
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
