"""Nodes: registration mints a node token shown once; the list reports liveness."""

from __future__ import annotations

from datetime import timedelta

from control_plane.db import Database
from control_plane.models import Node, utcnow
from lockgate import tokens
from tests.unit.control_plane.conftest import Api, assert_problem


async def test_register_list_delete(api: Api, db: Database) -> None:
    created = await api.post("/nodes", {"name": "edge-1", "labels": {"region": "eu-west"}})
    assert created.status_code == 201
    body = created.json()
    assert set(body) == {"id", "name", "token", "labels"}
    assert body["token"].startswith(f"lgn_{body['id']}_")
    assert body["labels"] == {"region": "eu-west"}

    async with db.session() as session:
        row = await session.get(Node, body["id"])
        assert row is not None and tokens.matches(body["token"], row.token_sha256)

    listed = await api.get("/nodes")
    assert body["token"] not in listed.text
    [node] = listed.json()
    assert node["name"] == "edge-1" and node["online"] is False and node["last_seen_at"] is None
    assert {"id", "labels", "bundle_revision", "version", "listeners"} <= set(node)

    assert_problem(await api.post("/nodes", {"name": "edge-1"}), 409)
    assert (await api.delete("/nodes/edge-1")).status_code == 204
    assert (await api.get("/nodes")).json() == []


async def test_node_seen_recently_is_online(api: Api, db: Database) -> None:
    node_id = (await api.post("/nodes", {"name": "edge-2"})).json()["id"]
    async with db.session() as session:
        row = await session.get(Node, node_id)
        assert row is not None
        row.last_seen_at = utcnow() - timedelta(seconds=5)
        row.listeners = ["postgres"]
        row.version = "0.1.0"
        session.add(row)
        await session.commit()
    node = (await api.get("/nodes/edge-2")).json()
    assert node["online"] is True and node["listeners"] == ["postgres"]
    async with db.session() as session:
        row = await session.get(Node, node_id)
        assert row is not None
        row.last_seen_at = utcnow() - timedelta(seconds=31)
        session.add(row)
        await session.commit()
    assert (await api.get("/nodes/edge-2")).json()["online"] is False
