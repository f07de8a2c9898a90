"""Policies: Cedar is validated on every write, and errors say where they are."""

from __future__ import annotations

from tests.unit.control_plane.conftest import Api, assert_problem

READ_ONLY = 'permit(principal in Group::"analysts", action == Action::"read", resource);'


async def test_policy_crud(api: Api) -> None:
    created = await api.post(
        "/policies", {"name": "analysts-read", "cedar": READ_ONLY, "description": "reads"}
    )
    assert created.status_code == 201
    assert created.json()["cedar"] == READ_ONLY
    names = [p["name"] for p in (await api.get("/policies")).json()]
    assert names == ["admins-full-access", "analysts-read"]
    assert (await api.get("/policies/analysts-read")).json()["description"] == "reads"

    patched = await api.patch("/policies/analysts-read", {"description": "analysts may read"})
    assert patched.json()["cedar"] == READ_ONLY
    assert patched.json()["description"] == "analysts may read"

    forbid = 'forbid(principal, action == Action::"ddl", resource);'
    replaced = await api.put("/policies/analysts-read", {"cedar": forbid})
    assert replaced.status_code == 200
    assert replaced.json()["cedar"] == forbid and replaced.json()["description"] == ""

    assert (await api.delete("/policies/analysts-read")).status_code == 204
    assert_problem(await api.get("/policies/analysts-read"), 404)


async def test_put_creates_a_missing_policy(api: Api) -> None:
    response = await api.put("/policies/new-one", {"cedar": READ_ONLY})
    assert response.status_code == 201
    assert (await api.get("/policies/new-one")).status_code == 200
    assert_problem(await api.put("/policies/bad name", {"cedar": READ_ONLY}), 422)


async def test_invalid_cedar_is_a_422_with_line_and_column(api: Api) -> None:
    cedar = "permit(principal, action, resource);\npermit(principal, action resource);"
    response = await api.post("/policies", {"name": "broken", "cedar": cedar})
    body = assert_problem(response, 422)
    assert body["type"].endswith("/invalid-cedar")
    assert body["detail"].startswith("invalid Cedar at line 2, column ")
    [error] = body["errors"]
    assert error["line"] == 2 and error["column"] > 1 and error["message"]
    assert f"line 2, column {error['column']}:" in body["detail"]
    assert_problem(await api.get("/policies/broken"), 404)


async def test_invalid_cedar_is_refused_on_put_and_patch(api: Api) -> None:
    await api.post("/policies", {"name": "p", "cedar": READ_ONLY})
    assert_problem(await api.put("/policies/p", {"cedar": "permit("}), 422)
    assert_problem(await api.patch("/policies/p", {"cedar": "nonsense"}), 422)
    assert (await api.get("/policies/p")).json()["cedar"] == READ_ONLY


async def test_duplicate_policy_is_a_conflict(api: Api) -> None:
    assert_problem(
        await api.post("/policies", {"name": "admins-full-access", "cedar": READ_ONLY}), 409
    )
