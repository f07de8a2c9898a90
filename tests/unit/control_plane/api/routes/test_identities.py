"""Identities: CRUD, group membership by name, role and name rules, last-admin protection."""

from __future__ import annotations

from tests.unit.control_plane.conftest import Api, assert_problem


async def test_create_identity_creates_missing_groups(api: Api) -> None:
    response = await api.post(
        "/identities", {"name": "ci-bot", "kind": "service", "groups": ["deployers", "admins"]}
    )
    assert response.status_code == 201
    body = response.json()
    assert body["name"] == "ci-bot" and body["kind"] == "service" and body["role"] == "member"
    assert body["groups"] == ["admins", "deployers"]
    assert body["created_at"].endswith("Z")
    assert set(body) == {"name", "kind", "role", "groups", "created_at"}
    groups = {g["name"]: g["members"] for g in (await api.get("/groups")).json()}
    assert groups == {"admins": ["admin", "ci-bot"], "deployers": ["ci-bot"]}


async def test_list_get_patch_delete(api: Api) -> None:
    await api.post("/identities", {"name": "alice@example.com", "groups": ["dev"]})
    names = [i["name"] for i in (await api.get("/identities")).json()]
    assert names == ["admin", "alice@example.com"]

    got = await api.get("/identities/alice@example.com")
    assert got.status_code == 200 and got.json()["groups"] == ["dev"]

    patched = await api.patch(
        "/identities/alice@example.com", {"role": "auditor", "groups": ["ops", "sre"]}
    )
    assert patched.status_code == 200
    assert patched.json()["role"] == "auditor" and patched.json()["groups"] == ["ops", "sre"]
    assert (await api.patch("/identities/alice@example.com", {"kind": "service"})).json()[
        "groups"
    ] == ["ops", "sre"]

    assert (await api.delete("/identities/alice@example.com")).status_code == 204
    assert_problem(await api.get("/identities/alice@example.com"), 404)
    assert_problem(await api.delete("/identities/alice@example.com"), 404)


async def test_invalid_names_kinds_and_roles_are_rejected(api: Api) -> None:
    for body in (
        {"name": "-starts-with-dash"},
        {"name": "has space"},
        {"name": "x" * 129},
        {"name": "ok", "kind": "robot"},
        {"name": "ok", "role": "root"},
        {"name": "ok", "groups": ["bad group"]},
    ):
        assert_problem(await api.post("/identities", body), 422)
    assert (await api.post("/identities", {"name": "x" * 128})).status_code == 201


async def test_duplicate_identity_is_a_conflict(api: Api) -> None:
    assert_problem(await api.post("/identities", {"name": "admin"}), 409)


async def test_last_admin_cannot_be_deleted_or_demoted(api: Api) -> None:
    assert_problem(await api.delete("/identities/admin"), 409)
    assert_problem(await api.patch("/identities/admin", {"role": "member"}), 409)
    await api.post("/identities", {"name": "second", "role": "admin"})
    assert (await api.patch("/identities/admin", {"role": "auditor"})).status_code == 200


async def test_deleting_an_identity_removes_its_tokens(api: Api) -> None:
    await api.identity_with_token("temp")
    assert len((await api.get("/tokens", params={"identity": "temp"})).json()) == 1
    await api.delete("/identities/temp")
    assert all(t["identity"] != "temp" for t in (await api.get("/tokens")).json())
