"""Approvals over REST: who may decide (approvers only, never the requester, once each), how
many approvals settle it, expiry, who sees what, and the live server-sent event stream."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import socket
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import httpx
import pytest
import uvicorn

from control_plane import approvals, notify
from control_plane.api.routes import approvals as approval_routes
from control_plane.app import create_app
from control_plane.db import Database
from control_plane.models import Approval, utcnow
from lockgate.settings import Settings
from tests.unit.control_plane.conftest import (
    RISKY_RULE,
    Api,
    assert_problem,
    bearer,
    hold_statement,
    set_times,
)


@pytest.fixture
async def people(api: Api) -> dict[str, Api]:
    """A rule held by group dba or ops-lead; alice asks, dana and dave are DBAs."""
    assert (await api.post("/approval-rules", RISKY_RULE)).status_code == 201
    return {
        "alice": api.as_(await api.identity_with_token("alice")),
        "dana": api.as_(await api.identity_with_token("dana", groups=["dba"])),
        "dave": api.as_(await api.identity_with_token("dave", groups=["dba"])),
        "ops-lead": api.as_(await api.identity_with_token("ops-lead")),
        "mallory": api.as_(await api.identity_with_token("mallory")),
        "audrey": api.as_(await api.identity_with_token("audrey", role="auditor")),
    }


async def test_an_approver_approves_with_a_comment(
    people: dict[str, Api], db: Database, settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    approval, reused = await hold_statement(db)
    assert not reused
    pending = (await people["dana"].get(f"/approvals/{approval.id}")).json()
    assert pending["state"] == "pending" and pending["kind"] == "statement"
    assert pending["identity"] == "alice" and pending["rule"] == "risky-writes"
    assert pending["statement"] == "DELETE FROM orders WHERE id = 7"
    assert pending["approvers"] == RISKY_RULE["approvers"] and pending["required"] == 1
    assert pending["url"] == f"{settings.http_url}/approvals/{approval.id}"
    assert pending["decided_at"] is None and pending["decisions"] == []

    with caplog.at_level(logging.INFO, logger="lockgate.approvals"):
        decided = await people["dana"].post(f"/approvals/{approval.id}/approve", {"comment": "ok"})
    assert decided.status_code == 200, decided.text
    body = decided.json()
    assert body["state"] == "approved" and body["decided_at"] is not None
    [decision] = body["decisions"]
    assert (decision["identity"], decision["verdict"], decision["comment"]) == (
        "dana",
        "approve",
        "ok",
    )
    [line] = [r for r in caplog.records if r.name == "lockgate.approvals"]
    assert approval.id in line.getMessage() and "dana" in line.getMessage()


async def test_only_named_approvers_decide_and_never_the_requester(
    people: dict[str, Api], db: Database
) -> None:
    approval, _ = await hold_statement(db)
    path = f"/approvals/{approval.id}"
    assert (
        "approvers"
        in assert_problem(await people["mallory"].post(f"{path}/approve"), 403)["detail"]
    )
    assert_problem(await people["mallory"].post(f"{path}/deny"), 403)
    # The requester may be an approver too, and still cannot decide its own request.
    mine, _ = await hold_statement(db, identity="dana")
    assert (
        "requester"
        in assert_problem(await people["dana"].post(f"/approvals/{mine.id}/approve"), 403)["detail"]
    )
    # The identity entry counts as much as the group entry.
    approved = await people["ops-lead"].post(f"{path}/approve")
    assert approved.json()["state"] == "approved"


async def test_admins_are_not_approvers_unless_named(
    api: Api, people: dict[str, Api], db: Database
) -> None:
    approval, _ = await hold_statement(db)
    assert_problem(await api.post(f"/approvals/{approval.id}/approve"), 403)


async def test_two_required_approvals_from_distinct_identities(
    api: Api, people: dict[str, Api], db: Database
) -> None:
    assert (await api.patch("/approval-rules/risky-writes", {"required": 2})).status_code == 200
    approval, _ = await hold_statement(db)
    path = f"/approvals/{approval.id}"
    first = await people["dana"].post(f"{path}/approve", {"comment": "looks fine"})
    assert first.json()["state"] == "pending" and len(first.json()["decisions"]) == 1
    again = assert_problem(await people["dana"].post(f"{path}/approve"), 409)
    assert "already" in again["detail"]
    assert (await people["dana"].get(path)).json()["state"] == "pending"
    second = await people["dave"].post(f"{path}/approve", {"comment": "agreed"})
    assert second.json()["state"] == "approved"
    assert [d["identity"] for d in second.json()["decisions"]] == ["dana", "dave"]
    # Settled: nobody moves it any more.
    assert_problem(await people["ops-lead"].post(f"{path}/deny"), 409)


async def test_one_deny_settles_it_with_the_comment(people: dict[str, Api], db: Database) -> None:
    approval, _ = await hold_statement(db)
    denied = await people["dave"].post(
        f"/approvals/{approval.id}/deny", {"comment": "not during the freeze"}
    )
    assert denied.json()["state"] == "denied"
    assert denied.json()["decisions"][0]["comment"] == "not during the freeze"
    assert approvals.outcome(await _row(db, approval.id)) == (["dave"], "not during the freeze")
    assert_problem(await people["dana"].post(f"/approvals/{approval.id}/approve"), 409)


async def test_unknown_approval_is_404(people: dict[str, Api]) -> None:
    assert_problem(await people["dana"].get("/approvals/nope"), 404)
    assert_problem(await people["dana"].post("/approvals/nope/approve"), 404)


async def test_overdue_approvals_expire_when_read_and_cannot_be_decided(
    people: dict[str, Api], db: Database
) -> None:
    approval, _ = await hold_statement(db)
    await set_times(db, Approval, approval.id, expires_at=utcnow() - timedelta(seconds=1))
    assert (await people["dana"].get(f"/approvals/{approval.id}")).json()["state"] == "expired"
    assert (
        "expired"
        in assert_problem(await people["dana"].post(f"/approvals/{approval.id}/approve"), 409)[
            "detail"
        ]
    )


async def test_decide_after_the_deadline_expires_it_instead(
    people: dict[str, Api], db: Database
) -> None:
    approval, _ = await hold_statement(db)
    await set_times(db, Approval, approval.id, expires_at=utcnow() - timedelta(seconds=1))
    assert_problem(await people["dana"].post(f"/approvals/{approval.id}/approve"), 409)
    assert (await _row(db, approval.id)).state == "expired"


async def test_the_sweep_expires_overdue_approvals_once(
    people: dict[str, Api], db: Database
) -> None:
    overdue, _ = await hold_statement(db)
    fresh, _ = await hold_statement(db)
    await set_times(db, Approval, overdue.id, expires_at=utcnow() - timedelta(seconds=1))
    announced: list[tuple[str, str]] = []
    detach = notify.hub.attach(lambda a, event: announced.append((a.id, event)))
    try:
        async with db.session() as session:
            first = await approvals.expire_overdue(session=session)
        async with db.session() as session:
            second = await approvals.expire_overdue(session=session)
    finally:
        detach()
    assert [a.id for a in first] == [overdue.id] and second == []
    assert announced == [(overdue.id, "approval.expired")]
    assert (await _row(db, overdue.id)).state == "expired"
    assert (await _row(db, fresh.id)).state == "pending"


async def test_the_background_sweep_runs_every_second(people: dict[str, Api], db: Database) -> None:
    approval, _ = await hold_statement(db)
    await set_times(db, Approval, approval.id, expires_at=utcnow() - timedelta(seconds=1))
    sweep = asyncio.create_task(approvals.run_expiry(db, every=0.05))
    try:
        for _ in range(100):
            if (await _row(db, approval.id)).state == "expired":
                break
            await asyncio.sleep(0.02)
    finally:
        sweep.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sweep
    assert (await _row(db, approval.id)).state == "expired"


async def test_a_stale_write_loses_and_nothing_is_overwritten(
    people: dict[str, Api], db: Database
) -> None:
    from control_plane import crud

    approval, _ = await hold_statement(db)
    async with db.session() as session:
        stale = await crud.get_approval(session=session, approval_id=approval.id)
        assert stale is not None
        await people["dana"].post(f"/approvals/{approval.id}/approve")
        saved = await crud.save_approval(
            session=session, approval=stale, state="denied", decisions=[], decided_at=utcnow()
        )
    assert saved is False
    assert (await _row(db, approval.id)).state == "approved"


async def test_who_sees_which_approvals(api: Api, people: dict[str, Api], db: Database) -> None:
    approval, _ = await hold_statement(db)
    other_rule = {**RISKY_RULE, "name": "other", "approvers": ['Identity::"ops-lead"']}
    assert (await api.post("/approval-rules", other_rule)).status_code == 201
    hidden, _ = await hold_statement(db, rule="other", identity="bob")

    def ids(response: httpx.Response) -> set[str]:
        assert response.status_code == 200, response.text
        return {a["id"] for a in response.json()}

    assert ids(await api.get("/approvals")) == {approval.id, hidden.id}
    assert ids(await people["audrey"].get("/approvals")) == {approval.id, hidden.id}
    assert ids(await people["dana"].get("/approvals")) == {approval.id}
    assert ids(await people["alice"].get("/approvals")) == {approval.id}  # her own
    assert ids(await people["mallory"].get("/approvals")) == set()
    assert_problem(await people["mallory"].get(f"/approvals/{approval.id}"), 404)


async def test_list_filters_by_state_newest_first(people: dict[str, Api], db: Database) -> None:
    first, _ = await hold_statement(db)
    second, _ = await hold_statement(db)
    third, _ = await hold_statement(db)
    await people["dana"].post(f"/approvals/{second.id}/deny")
    pending = (await people["dana"].get("/approvals?state=pending")).json()
    assert [a["id"] for a in pending] == [third.id, first.id]
    denied = (await people["dana"].get("/approvals?state=denied")).json()
    assert [a["id"] for a in denied] == [second.id]
    assert_problem(await people["dana"].get("/approvals?state=maybe"), 422)


async def _row(db: Database, approval_id: str) -> Approval:
    async with db.session() as session:
        row = await session.get(Approval, approval_id, populate_existing=True)
    assert row is not None
    return row


# The server-sent event stream, over a real HTTP server -----------------------------------


@pytest.fixture
async def served(
    db: Database, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[str]:
    monkeypatch.setattr(approval_routes, "KEEPALIVE_SECONDS", 0.2)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(
        create_app(settings, db),
        lifespan="off",
        loop="none",
        log_level="warning",
        timeout_graceful_shutdown=1,
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    for _ in range(500):
        if server.started:
            break
        await asyncio.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task
        sock.close()


async def _next_event(lines: AsyncIterator[str]) -> dict[str, Any]:
    event: dict[str, str] = {}
    async for line in lines:
        if not line:
            if "data" in event:
                return {"event": event.get("event"), "data": json.loads(event["data"])}
            event = {}
            continue
        if line.startswith(":"):
            continue
        key, _, value = line.partition(": ")
        event[key] = value
    raise AssertionError("the stream ended")


async def _subscribed(lines: AsyncIterator[str]) -> None:
    async for line in lines:
        if line == ": subscribed":
            return
    raise AssertionError("the stream ended before subscribing")


async def test_stream_sends_creation_and_decisions(
    served: str, api: Api, people: dict[str, Api], db: Database
) -> None:
    other_rule = {**RISKY_RULE, "name": "other", "approvers": ['Identity::"ops-lead"']}
    assert (await api.post("/approval-rules", other_rule)).status_code == 201
    async with httpx.AsyncClient(base_url=served, timeout=5) as http:
        headers = bearer(people["dana"].token)
        async with http.stream("GET", "/api/v1/approvals/stream", headers=headers) as response:
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/event-stream")
            lines = response.aiter_lines()
            await _subscribed(lines)

            approval, _ = await hold_statement(db)
            created = await asyncio.wait_for(_next_event(lines), 5)
            assert created["event"] == "approval"
            assert created["data"]["id"] == approval.id
            assert created["data"]["state"] == "pending"

            # A request dana may neither decide nor see is not sent to her.
            await hold_statement(db, rule="other", identity="bob")
            decided = await people["ops-lead"].post(f"/approvals/{approval.id}/deny")
            assert decided.status_code == 200
            denied = await asyncio.wait_for(_next_event(lines), 5)
            assert denied["data"]["id"] == approval.id and denied["data"]["state"] == "denied"


async def test_stream_is_for_admins_auditors_and_approvers(
    served: str, people: dict[str, Api]
) -> None:
    async with httpx.AsyncClient(base_url=served, timeout=5) as http:
        for name, status in (("mallory", 403), ("audrey", 200), ("dana", 200)):
            headers = bearer(people[name].token)
            async with http.stream("GET", "/api/v1/approvals/stream", headers=headers) as response:
                assert response.status_code == status, name
        async with http.stream("GET", "/api/v1/approvals/stream") as response:
            assert response.status_code == 401
