"""First start: an admin identity, its group and policy, and a token written once, 0600."""

from __future__ import annotations

import asyncio
import stat

import httpx
from sqlmodel import select

from control_plane.app import create_app
from control_plane.bootstrap import ADMIN_POLICY_CEDAR, bootstrap
from control_plane.db import Database
from control_plane.models import BundleState, Identity, Policy, Token
from lockgate.settings import ADMIN_TOKEN_FILE, Settings
from tests.unit.control_plane.conftest import bearer


async def test_bootstrap_creates_admin_and_writes_private_token_file(
    db: Database, settings: Settings
) -> None:
    token = await bootstrap(db, settings)
    assert token is not None and token.startswith("lg_")
    path = settings.home / ADMIN_TOKEN_FILE
    assert path.read_text().strip() == token
    assert stat.S_IMODE(path.stat().st_mode) == 0o600

    async with db.session() as session:
        admin = (await session.exec(select(Identity))).one()
        assert (admin.name, admin.role, admin.kind) == ("admin", "admin", "user")
        policy = (await session.exec(select(Policy))).one()
        assert policy.name == "admins-full-access" and policy.cedar == ADMIN_POLICY_CEDAR
        stored = (await session.exec(select(Token))).one()
        assert stored.expires_at is None and stored.revoked_at is None
        assert token.encode() not in stored.secret_sha256
        state = await session.get(BundleState, 1)
        assert state is not None and state.revision == 1

    app = create_app(settings, db)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
        me = await c.get("/api/v1/identities/admin", headers=bearer(token))
        assert me.status_code == 200
        assert me.json()["groups"] == ["admins"]


async def test_second_bootstrap_does_nothing(db: Database, settings: Settings) -> None:
    first = await bootstrap(db, settings)
    assert first is not None
    assert await bootstrap(db, settings) is None
    assert (settings.home / ADMIN_TOKEN_FILE).read_text().strip() == first
    async with db.session() as session:
        assert len((await session.exec(select(Identity))).all()) == 1


async def test_concurrent_bootstraps_create_one_admin(db: Database, settings: Settings) -> None:
    other = Database(db.url)
    try:
        results = await asyncio.gather(bootstrap(db, settings), bootstrap(other, settings))
    finally:
        await other.dispose()
    assert sum(r is not None for r in results) == 1
    async with db.session() as session:
        assert len((await session.exec(select(Identity))).all()) == 1
        assert len((await session.exec(select(Token))).all()) == 1
