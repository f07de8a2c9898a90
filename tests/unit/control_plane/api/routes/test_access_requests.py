"""Just-in-time access: a request becomes an approval; once approved, a grant with an expiry
is created, the revision is bumped, and the grant travels in bundles until it expires."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from control_plane import compiler
from control_plane.db import Database
from control_plane.models import Grant, utcnow
from tests.unit.control_plane.conftest import RISKY_RULE, Api, assert_problem, set_times

PROD = {"name": "prod-db", "host": "h", "port": 5432, "database": "d", "username": "u"}


@pytest.fixture
async def alice(api: Api) -> Api:
    assert (await api.post("/connections", PROD)).status_code == 201
    assert (await api.post("/connections", {**PROD, "name": "staging"})).status_code == 201
    return api.as_(await api.identity_with_token("alice"))


async def test_without_a_rule_admins_approve_and_a_grant_is_compiled(
    api: Api, alice: Api, db: Database
) -> None:
    asked = await alice.post(
        "/access-requests",
        {"connection": "prod-db", "actions": ["write"], "duration_seconds": 1800, "reason": "fix"},
    )
    assert asked.status_code == 201, asked.text
    request = asked.json()
    assert request["approval_id"] == request["id"]
    assert request["kind"] == "access" and request["state"] == "pending"
    assert request["identity"] == "alice" and request["connection"] == "prod-db"
    assert request["actions"] == ["write"] and request["duration_seconds"] == 1800
    assert request["approvers"] == ['Group::"admins"'] and request["required"] == 1
    assert request["reason"] == "fix"
    expires_in = datetime.fromisoformat(request["expires_at"]) - utcnow()
    assert timedelta(minutes=59) < expires_in <= timedelta(hours=1)

    # The requester cannot approve it, whoever she is.
    assert_problem(await alice.post(f"/approvals/{request['id']}/approve"), 403)
    assert (await alice.get("/grants")).json() == []

    before = await api.revision()
    approved = await api.post(f"/approvals/{request['id']}/approve", {"comment": "go"})
    assert approved.json()["state"] == "approved"
    assert await api.revision() == before + 1

    [grant] = (await alice.get("/grants")).json()
    assert grant["identity"] == "alice" and grant["connection"] == "prod-db"
    assert grant["actions"] == ["write"] and grant["approval_id"] == request["id"]
    decided_at = datetime.fromisoformat(approved.json()["decided_at"])
    assert datetime.fromisoformat(grant["expires_at"]) == decided_at + timedelta(seconds=1800)

    async with db.session() as session:
        bundle = await compiler.compile_bundle(session)
    [compiled] = bundle.grants
    assert (compiled.id, compiled.identity, compiled.connection) == (
        grant["id"],
        "alice",
        "prod-db",
    )
    assert list(compiled.actions) == ["write"]
    assert compiled.expires_at_ms == int(decided_at.timestamp() * 1000) + 1800 * 1000


async def test_expired_grants_are_neither_compiled_nor_listed(
    api: Api, alice: Api, db: Database
) -> None:
    request = (
        await alice.post("/access-requests", {"connection": "prod-db", "actions": ["read"]})
    ).json()
    await api.post(f"/approvals/{request['id']}/approve")
    [grant] = (await api.get("/grants")).json()
    await set_times(db, Grant, grant["id"], expires_at=utcnow() - timedelta(seconds=1))
    assert (await api.get("/grants")).json() == []
    async with db.session() as session:
        assert list((await compiler.compile_bundle(session)).grants) == []


async def test_a_denied_request_grants_nothing(api: Api, alice: Api) -> None:
    request = (
        await alice.post("/access-requests", {"connection": "prod-db", "actions": ["write"]})
    ).json()
    denied = await api.post(f"/approvals/{request['id']}/deny", {"comment": "use staging"})
    assert denied.json()["state"] == "denied"
    assert (await api.get("/grants")).json() == []


async def test_the_first_matching_rule_names_the_approvers(api: Api, alice: Api) -> None:
    rules = [
        {
            **RISKY_RULE,
            "name": "b-prod",
            "approvers": ['Identity::"ops-lead"'],
            "timeout_seconds": 90,
        },
        {**RISKY_RULE, "name": "a-staging", "connections": ["staging"]},
        {**RISKY_RULE, "name": "c-reads", "actions": ["read"], "approvers": ['Group::"sre"']},
    ]
    for rule in rules:
        assert (await api.post("/approval-rules", rule)).status_code == 201
    write = (
        await alice.post(
            "/access-requests", {"connection": "prod-db", "actions": ["connect", "write"]}
        )
    ).json()
    assert write["rule"] == "b-prod" and write["approvers"] == ['Identity::"ops-lead"']
    expires_in = datetime.fromisoformat(write["expires_at"]) - utcnow()
    assert expires_in <= timedelta(seconds=90)
    read = (
        await alice.post("/access-requests", {"connection": "prod-db", "actions": ["read"]})
    ).json()
    assert read["rule"] == "c-reads" and read["approvers"] == ['Group::"sre"']
    connect = (
        await alice.post("/access-requests", {"connection": "prod-db", "actions": ["connect"]})
    ).json()
    assert connect["rule"] == "" and connect["approvers"] == ['Group::"admins"']


async def test_a_rule_may_require_a_reason(api: Api, alice: Api) -> None:
    assert (
        await api.post("/approval-rules", {**RISKY_RULE, "require_reason": True})
    ).status_code == 201
    body = {"connection": "prod-db", "actions": ["write"]}
    assert "reason" in assert_problem(await alice.post("/access-requests", body), 422)["detail"]
    assert (await alice.post("/access-requests", {**body, "reason": "INC-42"})).status_code == 201


@pytest.mark.parametrize(
    "body",
    [
        {"connection": "prod-db", "actions": []},
        {"connection": "prod-db", "actions": ["everything"]},
        {"connection": "prod-db", "actions": ["read"], "duration_seconds": 0},
        {"connection": "prod-db", "actions": ["read"], "duration_seconds": 31 * 86400},
    ],
)
async def test_invalid_requests_are_422(alice: Api, body: dict[str, object]) -> None:
    assert_problem(await alice.post("/access-requests", body), 422)


async def test_unknown_connection_is_404(alice: Api) -> None:
    assert_problem(
        await alice.post("/access-requests", {"connection": "nope", "actions": ["read"]}), 404
    )


async def test_each_identity_lists_its_own_requests_and_admins_all(api: Api, alice: Api) -> None:
    bob = api.as_(await api.identity_with_token("bob"))
    mine = (
        await alice.post("/access-requests", {"connection": "prod-db", "actions": ["read"]})
    ).json()
    theirs = (
        await bob.post("/access-requests", {"connection": "staging", "actions": ["read"]})
    ).json()
    assert [r["id"] for r in (await alice.get("/access-requests")).json()] == [mine["id"]]
    assert [r["id"] for r in (await bob.get("/access-requests")).json()] == [theirs["id"]]
    assert [r["id"] for r in (await api.get("/access-requests")).json()] == [
        theirs["id"],
        mine["id"],
    ]


async def test_members_see_only_their_own_grants(api: Api, alice: Api) -> None:
    bob = api.as_(await api.identity_with_token("bob"))
    for who in (alice, bob):
        request = (
            await who.post("/access-requests", {"connection": "prod-db", "actions": ["read"]})
        ).json()
        await api.post(f"/approvals/{request['id']}/approve")
    assert [g["identity"] for g in (await alice.get("/grants")).json()] == ["alice"]
    assert sorted(g["identity"] for g in (await api.get("/grants")).json()) == ["alice", "bob"]
