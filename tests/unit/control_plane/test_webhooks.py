"""Webhook delivery to a real local HTTP receiver: signed, each event once, retried with the same
delivery id, Slack-shaped when asked; and the secret never reaches a log line."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from control_plane import notify, webhooks
from control_plane.crypto import SecretBox
from control_plane.db import Database
from control_plane.webhooks import Dispatcher
from lockgate.settings import Settings
from tests.unit.control_plane.conftest import RISKY_RULE, Api, hold_statement

SECRET = "whsec-do-not-log"


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Receiver:
    """A minimal HTTP/1.1 server: records each POST, answers `statuses` in turn, then 200."""

    statuses: list[int] = field(default_factory=list)
    received: list[Received] = field(default_factory=list)
    url: str = ""
    _server: asyncio.Server | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}/hook"

    async def stop(self) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = (await reader.readuntil(b"\r\n\r\n")).decode()
        lines = head.split("\r\n")
        headers = {}
        for line in lines[1:]:
            if ":" in line:
                key, _, value = line.partition(":")
                headers[key.strip().lower()] = value.strip()
        body = await reader.readexactly(int(headers.get("content-length", "0")))
        self.received.append(Received(headers, body))
        status = self.statuses.pop(0) if self.statuses else 200
        writer.write(
            f"HTTP/1.1 {status} X\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".encode()
        )
        await writer.drain()
        writer.close()

    def events(self) -> list[str]:
        return [r.headers["x-lockgate-event"] for r in self.received]


def signature_ok(received: Received, secret: str = SECRET) -> bool:
    timestamp = received.headers["x-lockgate-timestamp"]
    expected = hmac.new(
        secret.encode(), timestamp.encode() + b"." + received.body, hashlib.sha256
    ).hexdigest()
    return hmac.compare_digest(received.headers["x-lockgate-signature"], f"sha256={expected}")


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    r = Receiver()
    await r.start()
    yield r
    await r.stop()


@pytest.fixture
async def dispatcher(db: Database, settings: Settings) -> AsyncIterator[Dispatcher]:
    d = Dispatcher(
        db,
        SecretBox.from_settings(settings),
        settings.http_url,
        backoff=(0.01, 0.02, 0.04, 0.08, 0.16),
    )
    d.attach(notify.hub)
    yield d
    await d.close()


@pytest.fixture(autouse=True)
async def rule(api: Api) -> None:
    assert (await api.post("/approval-rules", RISKY_RULE)).status_code == 201


@pytest.fixture
async def people(api: Api) -> dict[str, Api]:
    return {"dana": api.as_(await api.identity_with_token("dana", groups=["dba"]))}


async def test_each_event_arrives_once_signed(
    api: Api,
    db: Database,
    people: dict[str, Api],
    receiver: Receiver,
    dispatcher: Dispatcher,
    settings: Settings,
    caplog: pytest.LogCaptureFixture,
) -> None:
    hook = {"name": "ops", "url": receiver.url, "secret": SECRET}
    assert (await api.post("/webhooks", hook)).status_code == 201
    caplog.set_level(logging.DEBUG)

    approved, _ = await hold_statement(db)
    await people["dana"].post(f"/approvals/{approved.id}/approve", {"comment": "ok"})
    denied, _ = await hold_statement(db)
    await people["dana"].post(f"/approvals/{denied.id}/deny", {"comment": "no"})
    await dispatcher.drain()

    assert receiver.events() == [
        "approval.requested",
        "approval.approved",
        "approval.requested",
        "approval.denied",
    ]
    assert all(signature_ok(r) for r in receiver.received)
    assert not any(signature_ok(r, "another secret") for r in receiver.received)
    deliveries = [r.headers["x-lockgate-delivery"] for r in receiver.received]
    assert len(set(deliveries)) == 4
    first = receiver.received[0].json
    assert first["event"] == "approval.requested" and first["delivery"] == deliveries[0]
    assert first["approval"]["id"] == approved.id and first["approval"]["state"] == "pending"
    assert first["approval"]["url"] == f"{settings.http_url}/approvals/{approved.id}"
    assert receiver.received[1].json["approval"]["decisions"][0]["comment"] == "ok"
    assert receiver.received[3].json["approval"]["state"] == "denied"
    assert receiver.received[0].headers["content-type"] == "application/json"
    for line in caplog.text.splitlines():
        assert SECRET not in line, line
    assert receiver.url not in caplog.text


async def test_only_subscribed_events_are_sent(
    api: Api, db: Database, people: dict[str, Api], receiver: Receiver, dispatcher: Dispatcher
) -> None:
    hook = {"name": "ops", "url": receiver.url, "events": ["approval.approved"]}
    assert (await api.post("/webhooks", hook)).status_code == 201
    approval, _ = await hold_statement(db)
    await people["dana"].post(f"/approvals/{approval.id}/approve")
    await dispatcher.drain()
    assert receiver.events() == ["approval.approved"]
    # No secret, no signature.
    assert "x-lockgate-signature" not in receiver.received[0].headers


async def test_failures_are_retried_with_the_same_delivery_id(
    api: Api, db: Database, receiver: Receiver, dispatcher: Dispatcher
) -> None:
    receiver.statuses = [500, 503]
    hook = {"name": "ops", "url": receiver.url, "secret": SECRET, "events": ["approval.requested"]}
    assert (await api.post("/webhooks", hook)).status_code == 201
    await hold_statement(db)
    await dispatcher.drain()
    assert receiver.events() == ["approval.requested"] * 3
    assert len({r.headers["x-lockgate-delivery"] for r in receiver.received}) == 1
    assert len({r.body for r in receiver.received}) == 1
    assert all(signature_ok(r) for r in receiver.received)


async def test_delivery_gives_up_after_six_attempts(
    dispatcher: Dispatcher, receiver: Receiver
) -> None:
    receiver.statuses = [500] * 10
    delivery = webhooks.Delivery("ops", receiver.url, "approval.expired", "d1", b"{}", SECRET)
    assert await dispatcher.deliver(delivery) is False
    assert len(receiver.received) == 6
    assert webhooks.BACKOFF == (0.5, 1.0, 2.0, 4.0, 8.0)


async def test_connection_errors_are_retried(dispatcher: Dispatcher, receiver: Receiver) -> None:
    url = receiver.url
    await receiver.stop()  # nobody listens at first
    delivery = webhooks.Delivery("ops", url, "approval.expired", "d2", b"{}", SECRET)
    sending = asyncio.create_task(dispatcher.deliver(delivery))
    await asyncio.sleep(0.05)
    port = int(url.rsplit(":", 1)[1].split("/")[0])
    receiver._server = await asyncio.start_server(receiver._handle, "127.0.0.1", port)
    assert await sending is True
    assert [r.headers["x-lockgate-delivery"] for r in receiver.received] == ["d2"]


async def test_slack_format_is_an_incoming_webhook_message(
    api: Api, db: Database, receiver: Receiver, dispatcher: Dispatcher, settings: Settings
) -> None:
    hook = {"name": "slack", "url": receiver.url, "format": "slack"}
    assert (await api.post("/webhooks", hook)).status_code == 201
    approval, _ = await hold_statement(
        db, statement="DELETE FROM orders WHERE note = '<b>&'", reason="INC-7"
    )
    await dispatcher.drain()
    [received] = receiver.received
    message = received.json
    assert set(message) == {"text", "blocks"}
    url = f"{settings.http_url}/approvals/{approval.id}"
    assert "alice" in message["text"] and "prod-db" in message["text"] and url in message["text"]
    blocks = message["blocks"]
    assert blocks[0]["type"] == "header"
    facts = {f["text"].split("\n")[0]: f["text"].split("\n")[1] for f in blocks[1]["fields"]}
    assert facts == {
        "*Requester*": "alice",
        "*Connection*": "prod-db",
        "*Rule*": "risky-writes",
        "*Action*": "write",
    }
    code = blocks[2]["text"]["text"]
    assert code == "```DELETE FROM orders WHERE note = '&lt;b&gt;&amp;'```"
    [actions] = [b for b in blocks if b["type"] == "actions"]
    links = {e["text"]["text"]: e["url"] for e in actions["elements"]}
    assert links == {"Approve": f"{url}?decision=approve", "Deny": f"{url}?decision=deny"}
    assert any("INC-7" in json.dumps(b) for b in blocks)


def test_slack_decision_messages_name_who_decided() -> None:
    from datetime import UTC, datetime

    from control_plane.schemas import ApprovalDecisionPublic, ApprovalPublic

    now = datetime.now(UTC)
    approval = ApprovalPublic(
        id="abc",
        kind="access",
        rule="",
        request_key="access:abc",
        session_id="",
        identity="alice",
        connection="prod-db",
        statement="access write on prod-db for 60 s",
        fingerprint="",
        action="write",
        actions=["write"],
        tables=[],
        reason="",
        duration_seconds=60,
        required=1,
        approvers=['Group::"admins"'],
        decisions=[ApprovalDecisionPublic(identity="admin", verdict="deny", comment="no", at=now)],
        state="denied",
        url="http://cp/approvals/abc",
        created_at=now,
        expires_at=now,
        decided_at=now,
    )
    message = webhooks.slack_message("approval.denied", approval)
    assert message["text"].startswith("Denied: access (write) on prod-db by alice")
    assert "deny by admin: no" in json.dumps(message["blocks"])
    assert not any(b["type"] == "actions" for b in message["blocks"])
