"""Connections: the password is write-only, sealed at rest, and never in a response or a log."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from sqlmodel import select

from control_plane.crypto import SecretBox
from control_plane.db import Database
from control_plane.models import Connection
from lockgate.settings import Settings
from tests.unit.control_plane.conftest import Api, assert_problem

PASSWORD = "pg-Pa55word-7c1e9b"
NEW_PASSWORD = "rotated-Pa55word-44d0"

ORDERS = {
    "name": "orders",
    "type": "postgres",
    "host": "orders.internal",
    "port": 5432,
    "database": "orders",
    "username": "app",
    "password": PASSWORD,
    "node_labels": {"region": "eu-west"},
    "guardrails": ["production-safety"],
}


def store_bytes(settings: Settings) -> bytes:
    """Everything SQLite wrote: the database file and its WAL."""
    url = settings.db_url.split("///", 1)[1]
    files = Path(url).parent.glob(Path(url).name + "*")
    return b"".join(f.read_bytes() for f in files)


async def test_password_never_leaves_the_control_plane(
    api: Api, db: Database, settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    responses = []
    created = await api.post("/connections", ORDERS)
    assert created.status_code == 201, created.text
    responses.append(created)
    body = created.json()
    assert body["has_password"] is True and "password" not in body
    assert body["node_labels"] == {"region": "eu-west"}
    assert body["guardrails"] == ["production-safety"]

    responses.append(await api.get("/connections"))
    responses.append(await api.get("/connections/orders"))
    patched = await api.patch("/connections/orders", {"password": NEW_PASSWORD, "port": 6432})
    assert patched.status_code == 200 and patched.json()["port"] == 6432
    responses.append(patched)
    responses.append(await api.patch("/connections/orders", {"host": "orders2.internal"}))
    responses.append(await api.get("/connections/orders"))
    responses.append(await api.get("/openapi.json"))

    for response in responses:
        assert PASSWORD not in response.text
        assert NEW_PASSWORD not in response.text
    assert PASSWORD not in caplog.text and NEW_PASSWORD not in caplog.text

    raw = store_bytes(settings)
    assert b"orders.internal" in raw or b"orders2.internal" in raw  # we are reading the store
    assert PASSWORD.encode() not in raw and NEW_PASSWORD.encode() not in raw

    async with db.session() as session:
        row = (await session.exec(select(Connection))).one()
        box = SecretBox.from_settings(settings)
        assert box.decrypt(row.password_encrypted, aad=b"orders") == NEW_PASSWORD


async def test_patch_keeps_the_password_unless_given(
    api: Api, db: Database, settings: Settings
) -> None:
    await api.post("/connections", ORDERS)
    await api.patch("/connections/orders", {"username": "reader"})
    async with db.session() as session:
        row = (await session.exec(select(Connection))).one()
        assert row.username == "reader"
        assert (
            SecretBox.from_settings(settings).decrypt(row.password_encrypted, aad=b"orders")
            == PASSWORD
        )


async def test_connection_without_password(api: Api) -> None:
    body = {k: v for k, v in ORDERS.items() if k != "password"}
    created = await api.post("/connections", body)
    assert created.status_code == 201 and created.json()["has_password"] is False


async def test_validation_of_type_port_and_required_fields(api: Api) -> None:
    assert_problem(await api.post("/connections", {**ORDERS, "type": "oracle"}), 422)
    assert_problem(await api.post("/connections", {**ORDERS, "port": 0}), 422)
    assert_problem(await api.post("/connections", {**ORDERS, "port": 65536}), 422)
    missing = await api.post("/connections", {**ORDERS, "database": ""})
    assert "database" in assert_problem(missing, 422)["detail"]
    ssh = await api.post(
        "/connections", {"name": "bastion", "type": "ssh", "host": "b", "port": 22}
    )
    assert ssh.status_code == 201 and ssh.json()["type"] == "ssh"
    await api.post("/connections", ORDERS)
    assert_problem(await api.patch("/connections/orders", {"host": ""}), 422)
    assert_problem(await api.patch("/connections/orders", {"port": 70000}), 422)


async def test_list_delete_and_duplicates(api: Api) -> None:
    await api.post("/connections", ORDERS)
    assert_problem(await api.post("/connections", ORDERS), 409)
    assert [c["name"] for c in (await api.get("/connections")).json()] == ["orders"]
    assert (await api.delete("/connections/orders")).status_code == 204
    assert (await api.get("/connections")).json() == []
    assert_problem(await api.delete("/connections/orders"), 404)
