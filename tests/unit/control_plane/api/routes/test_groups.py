"""Groups: create, list with members, read, delete (members stay)."""

from __future__ import annotations

from tests.unit.control_plane.conftest import Api, assert_problem


async def test_group_crud(api: Api) -> None:
    created = await api.post("/groups", {"name": "dba", "description": "database admins"})
    assert created.status_code == 201
    assert created.json()["members"] == [] and created.json()["description"] == "database admins"

    await api.post("/identities", {"name": "dora", "groups": ["dba"]})
    got = (await api.get("/groups/dba")).json()
    assert got["members"] == ["dora"]
    assert [g["name"] for g in (await api.get("/groups")).json()] == ["admins", "dba"]

    assert (await api.delete("/groups/dba")).status_code == 204
    assert_problem(await api.get("/groups/dba"), 404)
    assert (await api.get("/identities/dora")).json()["groups"] == []


async def test_group_name_rules_and_duplicates(api: Api) -> None:
    assert_problem(await api.post("/groups", {"name": "no/slash"}), 422)
    assert_problem(await api.post("/groups", {"name": "admins"}), 409)
