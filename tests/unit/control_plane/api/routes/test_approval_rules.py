"""Approval rules: admins write, auditors read, every write bumps the revision, and the rules
travel in the bundle exactly as written."""

from __future__ import annotations

from typing import Any

import pytest

from control_plane import compiler
from control_plane.db import Database
from tests.unit.control_plane.conftest import RISKY_RULE, Api, assert_problem


async def test_create_read_update_delete_with_a_revision_bump_each(api: Api) -> None:
    before = await api.revision()
    created = await api.post("/approval-rules", RISKY_RULE)
    assert created.status_code == 201, created.text
    body = created.json()
    assert body == {
        **RISKY_RULE,
        "tables": [],
        "commands": [],
        "require_reason": False,
        "reuse_seconds": 0,
        "created_at": body["created_at"],
        "updated_at": body["updated_at"],
    }
    assert await api.revision() == before + 1

    assert [r["name"] for r in (await api.get("/approval-rules")).json()] == ["risky-writes"]
    assert (await api.get("/approval-rules/risky-writes")).json()["approvers"] == [
        'Group::"dba"',
        'Identity::"ops-lead"',
    ]

    patched = await api.patch(
        "/approval-rules/risky-writes",
        {"required": 2, "tables": ["public.orders"], "reuse_seconds": 300},
    )
    assert patched.status_code == 200, patched.text
    assert patched.json()["required"] == 2 and patched.json()["tables"] == ["public.orders"]
    assert patched.json()["connections"] == ["prod*"]  # untouched fields stay
    assert await api.revision() == before + 2

    assert (await api.delete("/approval-rules/risky-writes")).status_code == 204
    assert await api.revision() == before + 3
    assert_problem(await api.get("/approval-rules/risky-writes"), 404)


async def test_duplicate_name_is_a_conflict(api: Api) -> None:
    assert (await api.post("/approval-rules", RISKY_RULE)).status_code == 201
    assert_problem(await api.post("/approval-rules", RISKY_RULE), 409)


@pytest.mark.parametrize(
    "change",
    [
        {"actions": []},
        {"actions": ["drop-everything"]},
        {"connections": []},
        {"approvers": []},
        {"approvers": ["dba"]},
        {"approvers": ['Role::"dba"']},
        {"required": 0},
        {"timeout_seconds": 0},
        {"reuse_seconds": -1},
        {"approvers": ['Identity::"a"', 'Identity::"b"'], "required": 3},
        {"surprise": True},
    ],
)
async def test_invalid_rules_are_422_problems(api: Api, change: dict[str, Any]) -> None:
    assert_problem(await api.post("/approval-rules", {**RISKY_RULE, **change}), 422)


async def test_update_is_validated_as_a_whole(api: Api) -> None:
    rule = {**RISKY_RULE, "approvers": ['Identity::"a"', 'Identity::"b"']}
    assert (await api.post("/approval-rules", rule)).status_code == 201
    assert_problem(await api.patch("/approval-rules/risky-writes", {"required": 3}), 422)
    assert (await api.patch("/approval-rules/risky-writes", {"required": 2})).status_code == 200


async def test_members_cannot_read_or_write_and_auditors_only_read(api: Api) -> None:
    member = api.as_(await api.identity_with_token("alice"))
    auditor = api.as_(await api.identity_with_token("audrey", role="auditor"))
    assert_problem(await member.post("/approval-rules", RISKY_RULE), 403)
    assert_problem(await member.get("/approval-rules"), 403)
    assert_problem(await auditor.post("/approval-rules", RISKY_RULE), 403)
    assert (await api.post("/approval-rules", RISKY_RULE)).status_code == 201
    assert (await auditor.get("/approval-rules")).status_code == 200
    assert_problem(await auditor.delete("/approval-rules/risky-writes"), 403)


async def test_rules_are_compiled_into_the_bundle(api: Api, db: Database) -> None:
    rule = {
        **RISKY_RULE,
        "commands": ["delete *"],
        "tables": ["public.*"],
        "require_reason": True,
        "reuse_seconds": 120,
    }
    assert (await api.post("/approval-rules", rule)).status_code == 201
    async with db.session() as session:
        bundle = await compiler.compile_bundle(session)
    [compiled] = bundle.approval_rules
    assert compiled.name == "risky-writes"
    assert list(compiled.connections) == ["prod*"]
    assert list(compiled.actions) == ["write", "ddl"]
    assert list(compiled.tables) == ["public.*"]
    assert list(compiled.commands) == ["delete *"]
    assert list(compiled.approvers) == ['Group::"dba"', 'Identity::"ops-lead"']
    assert (compiled.required, compiled.timeout_seconds) == (1, 600)
    assert compiled.require_reason is True and compiled.reuse_seconds == 120
