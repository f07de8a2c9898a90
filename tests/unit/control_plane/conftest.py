"""Fixtures for the control plane's unit tests: a migrated, bootstrapped SQLite store per test
and an HTTP client driving the real app in-process (no sockets)."""

from __future__ import annotations

import base64
import secrets
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from control_plane import approvals, migrate
from control_plane.app import create_app
from control_plane.bootstrap import bootstrap
from control_plane.db import Database
from control_plane.models import Approval
from lockgate.settings import Settings

MASTER_KEY = base64.urlsafe_b64encode(bytes(range(32))).decode()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(
        home=tmp_path / "home",
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'store' / 'lockgate.db'}",
        master_key=MASTER_KEY,
    )


@pytest.fixture
async def db(settings: Settings) -> AsyncIterator[Database]:
    migrate.upgrade(settings.db_url)
    database = Database(settings.db_url)
    yield database
    await database.dispose()


@pytest.fixture
async def admin_token(db: Database, settings: Settings) -> str:
    token = await bootstrap(db, settings)
    assert token is not None
    return token


@pytest.fixture
async def client(
    db: Database, settings: Settings, admin_token: str
) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings, db)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
        yield http


class Api:
    """Tiny helpers over the client so tests read as user actions."""

    def __init__(self, http: httpx.AsyncClient, token: str) -> None:
        self.http = http
        self.token = token

    def as_(self, token: str) -> Api:
        return Api(self.http, token)

    async def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        headers = {**bearer(self.token), **kwargs.pop("headers", {})}
        return await self.http.request(method, f"/api/v1{path}", headers=headers, **kwargs)

    async def get(self, path: str, **kwargs: Any) -> httpx.Response:
        return await self.request("GET", path, **kwargs)

    async def post(self, path: str, json: Any = None, **kwargs: Any) -> httpx.Response:
        return await self.request("POST", path, json=json, **kwargs)

    async def patch(self, path: str, json: Any = None, **kwargs: Any) -> httpx.Response:
        return await self.request("PATCH", path, json=json, **kwargs)

    async def put(self, path: str, json: Any = None, **kwargs: Any) -> httpx.Response:
        return await self.request("PUT", path, json=json, **kwargs)

    async def delete(self, path: str, **kwargs: Any) -> httpx.Response:
        return await self.request("DELETE", path, **kwargs)

    async def revision(self) -> int:
        response = await self.http.get("/healthz")
        assert response.status_code == 200
        return int(response.json()["revision"])

    async def identity_with_token(self, name: str, role: str = "member", **fields: Any) -> str:
        """Create an identity with `role` and return a fresh token of it."""
        created = await self.post("/identities", {"name": name, "role": role, **fields})
        assert created.status_code == 201, created.text
        issued = await self.post("/tokens", {"identity": name})
        assert issued.status_code == 201, issued.text
        return str(issued.json()["token"])


@pytest.fixture
def api(client: httpx.AsyncClient, admin_token: str) -> Api:
    return Api(client, admin_token)


def assert_problem(response: httpx.Response, status: int) -> dict[str, Any]:
    """The response is an RFC 9457 problem with `status`; returns its body."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    assert isinstance(body["title"], str) and body["title"]
    assert isinstance(body["detail"], str) and body["detail"]
    assert body["type"] == "about:blank" or body["type"].startswith("https://lockgate.dev/")
    return body


RISKY_RULE: dict[str, Any] = {
    "name": "risky-writes",
    "connections": ["prod*"],
    "actions": ["write", "ddl"],
    "approvers": ['Group::"dba"', 'Identity::"ops-lead"'],
    "required": 1,
    "timeout_seconds": 600,
}


async def hold_statement(
    db: Database,
    *,
    rule: str = "risky-writes",
    identity: str = "alice",
    connection: str = "prod-db",
    request_key: str | None = None,
    statement: str = "DELETE FROM orders WHERE id = 7",
    fingerprint: str = "fp-delete-7",
    **fields: Any,
) -> tuple[Approval, bool]:
    """What a node does when it holds a statement: ask the broker for its approval."""
    held = approvals.StatementRequest(
        request_key=request_key or f"s-{secrets.token_hex(4)}:1",
        rule=rule,
        identity=identity,
        connection=connection,
        statement=statement,
        fingerprint=fingerprint,
        action=fields.pop("action", "write"),
        **fields,
    )
    async with db.session() as session:
        return await approvals.request_statement(session=session, request=held)


async def set_times(db: Database, model: type[Any], row_id: str, **times: Any) -> None:
    """Move a row's timestamps (e.g. `expires_at` into the past) as if time had passed."""
    async with db.session() as session:
        row = await session.get(model, row_id)
        assert row is not None
        for key, value in times.items():
            setattr(row, key, value)
        session.add(row)
        await session.commit()
