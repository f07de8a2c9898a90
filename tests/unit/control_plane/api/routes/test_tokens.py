"""Tokens: the secret is shown once, stored only as hashes, listed without it, revocable."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlmodel import select

from control_plane.db import Database
from control_plane.models import Token
from lockgate import tokens
from tests.unit.control_plane.conftest import Api, assert_problem


async def test_create_returns_the_secret_once(api: Api, db: Database) -> None:
    await api.post("/identities", {"name": "svc", "kind": "service"})
    response = await api.post(
        "/tokens", {"identity": "svc", "ttl_seconds": 600, "description": "deploys"}
    )
    assert response.status_code == 201
    body = response.json()
    secret = body["token"]
    assert tokens.token_id(secret) == body["id"]
    assert body["identity"] == "svc"
    expires = datetime.fromisoformat(body["expires_at"])
    now = datetime.fromisoformat((await api.get("/identities/svc")).json()["created_at"])
    assert timedelta(seconds=590) < expires - now < timedelta(seconds=610)

    listed = await api.get("/tokens")
    assert secret not in listed.text
    one = await api.get(f"/tokens/{body['id']}")
    assert secret not in one.text
    assert one.json()["revoked"] is False and one.json()["description"] == "deploys"
    assert "token" not in one.json()

    async with db.session() as session:
        row = await session.get(Token, body["id"])
        assert row is not None
        assert tokens.matches(secret, row.secret_sha256)
        assert row.scram_stored_key and row.scram_server_key and row.scram_iterations == 4096
        for value in (row.secret_sha256, row.scram_stored_key, row.scram_server_key):
            assert secret.encode() not in value


async def test_token_without_ttl_never_expires(api: Api) -> None:
    body = (await api.post("/tokens", {"identity": "admin"})).json()
    assert body["expires_at"] is None


async def test_revoke_marks_the_token_and_is_idempotent(api: Api, db: Database) -> None:
    issued = (await api.post("/tokens", {"identity": "admin"})).json()
    assert (await api.delete(f"/tokens/{issued['id']}")).status_code == 204
    listed = {t["id"]: t for t in (await api.get("/tokens")).json()}
    assert listed[issued["id"]]["revoked"] is True
    assert listed[issued["id"]]["revoked_at"] is not None
    revision = await api.revision()
    assert (await api.delete(f"/tokens/{issued['id']}")).status_code == 204
    assert await api.revision() == revision
    async with db.session() as session:
        assert len((await session.exec(select(Token))).all()) == 2


async def test_token_for_missing_identity_or_bad_ttl(api: Api) -> None:
    assert_problem(await api.post("/tokens", {"identity": "nobody"}), 404)
    assert_problem(await api.post("/tokens", {"identity": "admin", "ttl_seconds": 0}), 422)
    assert_problem(await api.delete("/tokens/0123456789abcdef"), 404)
