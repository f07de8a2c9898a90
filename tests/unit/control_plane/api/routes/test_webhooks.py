"""Webhooks: admins manage them, the secret is write-only and sealed to the webhook's name."""

from __future__ import annotations

from typing import Any

import pytest

from control_plane.crypto import SecretBox
from control_plane.db import Database
from control_plane.models import Webhook
from lockgate.settings import Settings
from tests.unit.control_plane.conftest import Api, assert_problem

HOOK = {"name": "ops", "url": "https://hooks.example/lockgate", "secret": "s3cret-value"}


async def test_create_list_update_delete_without_ever_showing_the_secret(
    api: Api, db: Database, settings: Settings
) -> None:
    created = await api.post("/webhooks", HOOK)
    assert created.status_code == 201, created.text
    body = created.json()
    assert body["has_secret"] is True and body["format"] == "json"
    assert body["events"] == [
        "approval.requested",
        "approval.approved",
        "approval.denied",
        "approval.expired",
    ]
    assert "secret" not in body
    listed = await api.get("/webhooks")
    assert "s3cret-value" not in listed.text and [w["name"] for w in listed.json()] == ["ops"]

    async with db.session() as session:
        row = (await session.exec(Webhook.__table__.select())).first()  # type: ignore[attr-defined]
    assert row is not None and b"s3cret-value" not in row.secret_encrypted
    box = SecretBox.from_settings(settings)
    assert box.decrypt(row.secret_encrypted, aad=b"ops") == "s3cret-value"

    patched = await api.patch(
        "/webhooks/ops", {"format": "slack", "events": ["approval.requested"], "secret": ""}
    )
    assert patched.status_code == 200, patched.text
    assert patched.json()["format"] == "slack" and patched.json()["has_secret"] is False
    assert patched.json()["events"] == ["approval.requested"]
    assert (await api.delete("/webhooks/ops")).status_code == 204
    assert_problem(await api.get("/webhooks/ops"), 404)


async def test_webhooks_do_not_change_the_bundle(api: Api) -> None:
    before = await api.revision()
    assert (await api.post("/webhooks", HOOK)).status_code == 201
    assert await api.revision() == before


@pytest.mark.parametrize(
    "change",
    [
        {"url": "ftp://hooks.example/x"},
        {"url": "hooks.example/x"},
        {"format": "xml"},
        {"events": []},
        {"events": ["approval.maybe"]},
        {"name": "no spaces"},
    ],
)
async def test_invalid_webhooks_are_422(api: Api, change: dict[str, Any]) -> None:
    response = await api.post("/webhooks", {**HOOK, **change})
    assert "s3cret-value" not in response.text
    assert_problem(response, 422)


async def test_only_admins_write_and_auditors_read(api: Api) -> None:
    auditor = api.as_(await api.identity_with_token("audrey", role="auditor"))
    member = api.as_(await api.identity_with_token("alice"))
    assert_problem(await auditor.post("/webhooks", HOOK), 403)
    assert_problem(await member.get("/webhooks"), 403)
    assert (await api.post("/webhooks", HOOK)).status_code == 201
    assert (await auditor.get("/webhooks")).status_code == 200
    assert_problem(await api.post("/webhooks", HOOK), 409)
