"""Authentication by bearer token and authorization by role."""

from __future__ import annotations

from datetime import timedelta

import httpx
import pytest

from control_plane.db import Database
from control_plane.models import Token, utcnow
from tests.unit.control_plane.conftest import Api, assert_problem, bearer


async def test_admin_token_is_accepted(api: Api) -> None:
    response = await api.get("/identities")
    assert response.status_code == 200
    assert [i["name"] for i in response.json()] == ["admin"]


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Basic YWRtaW46eA=="},
        {"Authorization": "Bearer"},
        {"Authorization": "Bearer not-a-token"},
        {"Authorization": "Bearer lg_0123456789abcdef_wrongsecretwrongsecretwrong"},
    ],
    ids=["missing", "basic", "empty", "malformed", "unknown"],
)
async def test_requests_without_a_valid_token_get_401_problem(
    client: httpx.AsyncClient, headers: dict[str, str]
) -> None:
    response = await client.get("/api/v1/identities", headers=headers)
    body = assert_problem(response, 401)
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert "token" in body["detail"]


async def test_right_id_with_wrong_secret_is_rejected(api: Api, admin_token: str) -> None:
    forged = admin_token[: admin_token.rindex("_") + 1] + "x" * 43
    assert_problem(await api.as_(forged).get("/identities"), 401)


async def test_revoked_token_is_rejected(api: Api) -> None:
    issued = (await api.post("/tokens", {"identity": "admin"})).json()
    assert (await api.as_(issued["token"]).get("/identities")).status_code == 200
    assert (await api.delete(f"/tokens/{issued['id']}")).status_code == 204
    assert_problem(await api.as_(issued["token"]).get("/identities"), 401)


async def test_expired_token_is_rejected(api: Api, db: Database) -> None:
    issued = (await api.post("/tokens", {"identity": "admin", "ttl_seconds": 3600})).json()
    assert (await api.as_(issued["token"]).get("/identities")).status_code == 200
    async with db.session() as session:
        row = await session.get(Token, issued["id"])
        assert row is not None
        row.expires_at = utcnow() - timedelta(seconds=1)
        session.add(row)
        await session.commit()
    assert_problem(await api.as_(issued["token"]).get("/identities"), 401)


async def test_token_of_deleted_identity_is_rejected(api: Api) -> None:
    token = await api.identity_with_token("gone")
    assert (await api.delete("/identities/gone")).status_code == 204
    assert_problem(await api.as_(token).get("/connections"), 401)


async def test_auditor_reads_everything_but_cannot_write(api: Api) -> None:
    auditor = api.as_(await api.identity_with_token("carol", role="auditor"))
    for path in ("/identities", "/groups", "/tokens", "/connections", "/policies", "/nodes"):
        assert (await auditor.get(path)).status_code == 200, path
    assert (await auditor.get("/sessions")).status_code == 200
    writes = [
        auditor.post("/identities", {"name": "eve"}),
        auditor.post("/groups", {"name": "g"}),
        auditor.post("/policies", {"name": "p", "cedar": "permit(principal, action, resource);"}),
        auditor.post("/nodes", {"name": "n1"}),
        auditor.delete("/identities/admin"),
        auditor.post("/tokens", {"identity": "admin"}),
    ]
    for write in writes:
        body = assert_problem(await write, 403)
        assert "auditor" in body["detail"]


async def test_member_reads_only_connection_names_and_its_own_things(api: Api) -> None:
    created = await api.post(
        "/connections",
        {
            "name": "orders",
            "host": "db",
            "port": 5432,
            "database": "orders",
            "username": "app",
            "password": "pw-9f2c",
        },
    )
    assert created.status_code == 201
    member = api.as_(await api.identity_with_token("bob"))
    listed = await member.get("/connections")
    assert listed.status_code == 200
    assert listed.json() == [{"name": "orders", "type": "postgres"}]
    for path in ("/identities", "/groups", "/policies", "/nodes", "/connections/orders"):
        assert_problem(await member.get(path), 403)
    assert (await member.get("/identities/bob")).json()["name"] == "bob"
    assert_problem(await member.get("/identities/admin"), 404)


async def test_member_creates_lists_and_revokes_only_its_own_tokens(api: Api) -> None:
    member = api.as_(await api.identity_with_token("bob"))
    assert_problem(await member.post("/tokens", {"identity": "admin"}), 403)

    own = await member.post("/tokens", {"identity": "bob", "description": "laptop"})
    assert own.status_code == 201
    defaulted = await member.post("/tokens", {})
    assert defaulted.status_code == 201 and defaulted.json()["identity"] == "bob"

    listed = (await member.get("/tokens")).json()
    assert {t["identity"] for t in listed} == {"bob"}
    assert len(listed) == 3  # the one the admin made, plus two
    assert (await member.get("/tokens", params={"identity": "admin"})).json() == []

    admin_tokens = (await api.get("/tokens", params={"identity": "admin"})).json()
    assert_problem(await member.delete(f"/tokens/{admin_tokens[0]['id']}"), 404)
    assert (await member.delete(f"/tokens/{own.json()['id']}")).status_code == 204


async def test_bearer_scheme_is_case_insensitive(
    client: httpx.AsyncClient, admin_token: str
) -> None:
    response = await client.get(
        "/api/v1/groups", headers={"Authorization": f"bearer {admin_token}"}
    )
    assert response.status_code == 200
    assert bearer(admin_token)["Authorization"].startswith("Bearer ")
