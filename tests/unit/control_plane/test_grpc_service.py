"""The node-facing gRPC service on a real gRPC server. AwaitApproval: pending, notified, then
exactly one final event; a decision made over REST wakes the stream; request keys make it
idempotent; reuse_seconds answers an identical statement at once. UploadAudit: a batch stored
once, what protobuf refuses refused; the node marked seen, not on every batch. FetchCredentials:
only to a node whose token holds and whose labels the connection asks for."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import grpc
import pytest

from control_plane import grpc_service
from control_plane.crypto import SecretBox
from control_plane.db import Database
from control_plane.grpc_service import NodeService, register
from control_plane.models import Approval, utcnow
from lockgate.settings import Settings
from protos.lockgate.v1 import node_pb2 as pb
from protos.lockgate.v1 import node_pb2_grpc as pb_grpc
from tests.unit.control_plane.conftest import RISKY_RULE, Api, set_times

CONSOLE = "https://lockgate.example"


@pytest.fixture
async def stub(db: Database, settings: Settings) -> AsyncIterator[pb_grpc.NodeServiceStub]:
    server = grpc.aio.server()
    service = NodeService(db, SecretBox.from_settings(settings), console_url=CONSOLE)
    register(service, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = pb_grpc.NodeServiceStub(channel)  # type: ignore[no-untyped-call]
        # What the node uses: the batch as its spool holds it, sent as it is.
        stub.upload_raw = channel.unary_unary(
            "/lockgate.v1.NodeService/UploadAudit",
            request_serializer=None,
            response_deserializer=pb.AuditAck.FromString,
        )
        yield stub
    await server.stop(grace=None)


@pytest.fixture
async def node_token(api: Api) -> list[tuple[str, str]]:
    created = await api.post("/nodes", {"name": "edge-1"})
    return [("authorization", f"Bearer {created.json()['token']}")]


@pytest.fixture
async def people(api: Api) -> dict[str, Api]:
    assert (await api.post("/approval-rules", RISKY_RULE)).status_code == 201
    return {
        "dana": api.as_(await api.identity_with_token("dana", groups=["dba"])),
        "dave": api.as_(await api.identity_with_token("dave", groups=["dba"])),
    }


async def rest(call: Any) -> list[pb.ApprovalEvent]:
    """The remaining events of a stream, until it ends."""
    events = []
    while (event := await call.read()) != grpc.aio.EOF:
        events.append(event)
    return events


def held(key: str = "sess-1:4", **fields: Any) -> pb.ApprovalRequest:
    request = {
        "request_key": key,
        "rule": "risky-writes",
        "session_id": key.split(":")[0],
        "identity": "alice",
        "connection": "prod-db",
        "statement": "DELETE FROM orders WHERE id = 7",
        "fingerprint": "fp-delete-7",
        "kind": "sql",
        "action": "write",
        "tables": ["public.orders"],
        "reason": "INC-42",
        **fields,
    }
    return pb.ApprovalRequest(**request)


async def test_a_rest_approval_wakes_the_waiting_stream(
    stub: pb_grpc.NodeServiceStub,
    node_token: list[tuple[str, str]],
    people: dict[str, Api],
    db: Database,
) -> None:
    call = stub.AwaitApproval(held(), metadata=node_token)
    pending = await call.read()
    assert pending.state == "pending" and pending.approval_id
    assert pending.url == f"{CONSOLE}/approvals/{pending.approval_id}"
    expires_in = pending.expires_at_ms / 1000 - utcnow().timestamp()
    assert 590 < expires_in <= 600
    assert (await call.read()).state == "notified"

    stored = (await people["dana"].get(f"/approvals/{pending.approval_id}")).json()
    assert stored["session_id"] == "sess-1" and stored["tables"] == ["public.orders"]
    assert stored["reason"] == "INC-42" and stored["fingerprint"] == "fp-delete-7"
    assert stored["request_key"] == "sess-1:4" and stored["action"] == "write"

    # The stream waits on the approval's notification (its deadline is ten minutes away), so
    # it answers as soon as the decision commits.
    await people["dana"].post(f"/approvals/{pending.approval_id}/approve", {"comment": "go"})
    approved = await call.read()
    assert approved.state == "approved" and approved.approval_id == pending.approval_id
    assert list(approved.decided_by) == ["dana"] and approved.comment == "go"
    assert await call.read() == grpc.aio.EOF


async def test_two_approvals_then_approved_and_a_deny_ends_it(
    stub: pb_grpc.NodeServiceStub,
    node_token: list[tuple[str, str]],
    api: Api,
    people: dict[str, Api],
) -> None:
    await api.patch("/approval-rules/risky-writes", {"required": 2})
    call = stub.AwaitApproval(held(), metadata=node_token)
    approval_id = (await call.read()).approval_id
    await call.read()  # notified
    await people["dana"].post(f"/approvals/{approval_id}/approve", {"comment": "one"})
    await people["dave"].post(f"/approvals/{approval_id}/approve", {"comment": "two"})
    events = await rest(call)
    assert [e.state for e in events] == ["approved"]
    assert list(events[0].decided_by) == ["dana", "dave"] and events[0].comment == "two"

    call = stub.AwaitApproval(held("sess-1:5"), metadata=node_token)
    approval_id = (await call.read()).approval_id
    await people["dave"].post(f"/approvals/{approval_id}/deny", {"comment": "not now"})
    events = await rest(call)
    assert [e.state for e in events] == ["notified", "denied"]
    assert list(events[1].decided_by) == ["dave"] and events[1].comment == "not now"


async def test_the_same_request_key_resumes_the_same_approval(
    stub: pb_grpc.NodeServiceStub,
    node_token: list[tuple[str, str]],
    people: dict[str, Api],
    api: Api,
) -> None:
    first = stub.AwaitApproval(held(), metadata=node_token)
    approval_id = (await first.read()).approval_id
    first.cancel()  # the node lost its stream
    again = stub.AwaitApproval(held(), metadata=node_token)
    resumed = await again.read()
    assert resumed.approval_id == approval_id and resumed.state == "pending"
    await people["dana"].post(f"/approvals/{approval_id}/approve")
    assert [e.state for e in await rest(again)] == ["notified", "approved"]
    # Asking after the decision answers it straight away.
    late = await rest(stub.AwaitApproval(held(), metadata=node_token))
    assert [e.state for e in late] == ["pending", "notified", "approved"]
    assert {e.approval_id for e in late} == {approval_id}
    assert len((await api.get("/approvals")).json()) == 1


async def test_reuse_seconds_approves_the_identical_statement_at_once(
    stub: pb_grpc.NodeServiceStub,
    node_token: list[tuple[str, str]],
    people: dict[str, Api],
    api: Api,
    db: Database,
) -> None:
    await api.patch("/approval-rules/risky-writes", {"reuse_seconds": 300})
    call = stub.AwaitApproval(held("s:1"), metadata=node_token)
    original = (await call.read()).approval_id
    await people["dana"].post(f"/approvals/{original}/approve", {"comment": "once is fine"})
    assert [e.state for e in await rest(call)] == ["notified", "approved"]

    reused = await rest(stub.AwaitApproval(held("s:2"), metadata=node_token))
    assert [e.state for e in reused] == ["pending", "approved"]
    assert reused[0].approval_id != original
    assert list(reused[1].decided_by) == ["dana"] and reused[1].comment == "once is fine"
    row = (await api.get(f"/approvals/{reused[0].approval_id}")).json()
    assert row["state"] == "approved"
    assert [(d["verdict"], d["reuses"]) for d in row["decisions"]] == [("reuse", original)]

    # Another statement, another identity or another connection is held as usual.
    for other in (
        held("s:3", fingerprint="fp-other"),
        held("s:4", identity="bob"),
        held("s:5", connection="prod-replica"),
    ):
        call = stub.AwaitApproval(other, metadata=node_token)
        assert [(await call.read()).state, (await call.read()).state] == ["pending", "notified"]
        call.cancel()

    # Past the window the approval no longer covers it, and a reuse never extends the window.
    await set_times(db, Approval, original, decided_at=utcnow() - timedelta(seconds=301))
    await set_times(
        db, Approval, reused[0].approval_id, decided_at=utcnow() - timedelta(seconds=10)
    )
    call = stub.AwaitApproval(held("s:6"), metadata=node_token)
    assert [(await call.read()).state, (await call.read()).state] == ["pending", "notified"]
    call.cancel()


async def test_an_undecided_request_expires_at_its_deadline(
    stub: pb_grpc.NodeServiceStub, node_token: list[tuple[str, str]], api: Api
) -> None:
    rule = {**RISKY_RULE, "name": "quick", "timeout_seconds": 1}
    assert (await api.post("/approval-rules", rule)).status_code == 201
    events = await rest(stub.AwaitApproval(held(rule="quick"), metadata=node_token))
    assert [e.state for e in events] == ["pending", "notified", "expired"]
    assert events[-1].comment == "nobody decided within 1 s" and not events[-1].decided_by
    assert (await api.get(f"/approvals/{events[0].approval_id}")).json()["state"] == "expired"


async def test_nodes_must_authenticate_and_name_a_known_rule(
    stub: pb_grpc.NodeServiceStub, node_token: list[tuple[str, str]], people: dict[str, Api]
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as failed:
        await stub.AwaitApproval(held(), metadata=[("authorization", "Bearer lgn_x_y")]).read()
    assert failed.value.code() == grpc.StatusCode.UNAUTHENTICATED
    with pytest.raises(grpc.aio.AioRpcError) as failed:
        await stub.AwaitApproval(held(rule="no-such-rule"), metadata=node_token).read()
    assert failed.value.code() == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.aio.AioRpcError) as failed:
        await stub.AwaitApproval(held(request_key=""), metadata=node_token).read()
    assert failed.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_a_rule_that_requires_a_reason_refuses_requests_without_one(
    stub: pb_grpc.NodeServiceStub,
    node_token: list[tuple[str, str]],
    api: Api,
    people: dict[str, Api],
) -> None:
    await api.patch("/approval-rules/risky-writes", {"require_reason": True})
    with pytest.raises(grpc.aio.AioRpcError) as failed:
        await stub.AwaitApproval(held(reason=""), metadata=node_token).read()
    assert failed.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "reason" in (failed.value.details() or "")
    call = stub.AwaitApproval(held(reason="INC-42"), metadata=node_token)
    assert (await call.read()).state == "pending"
    call.cancel()


# -- UploadAudit: the batch taken as bytes, still checked by the parser ------------------------


def _events(session: str, seqs: range) -> list[pb.AuditEvent]:
    return [
        pb.AuditEvent(
            session_id=session,
            seq=seq,
            kind="session.start" if seq == 1 else "statement",
            time_ms=1_700_000_000_000,
            payload_json=b'{"sql": "SELECT 1"}',
        )
        for seq in seqs
    ]


async def test_an_upload_is_stored_once_whichever_way_it_was_serialized(
    stub: pb_grpc.NodeServiceStub, node_token: list[tuple[str, str]], api: Api
) -> None:
    first = pb.AuditBatch(events=_events("sess-up", range(1, 4)))
    ack = await stub.UploadAudit(first, metadata=node_token)
    assert (ack.accepted, ack.duplicates) == (3, 0)
    again = pb.AuditBatch(events=_events("sess-up", range(2, 6))).SerializeToString()
    ack = await stub.upload_raw(again, metadata=node_token)
    assert (ack.accepted, ack.duplicates) == (2, 2)
    stored = (await api.get("/sessions/sess-up/events")).json()
    assert [event["seq"] for event in stored] == [1, 2, 3, 4, 5]


async def test_an_upload_protobuf_refuses_is_invalid_and_stores_nothing(
    stub: pb_grpc.NodeServiceStub, node_token: list[tuple[str, str]], api: Api
) -> None:
    good = pb.AuditBatch(events=_events("sess-bad", range(1, 3))).SerializeToString()
    for bad in (good[:-1], b"\x0a\xff", good + b"\x0b"):
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await stub.upload_raw(bad, metadata=node_token)
        assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert (await api.get("/sessions/sess-bad/events")).status_code == 404
    with pytest.raises(grpc.aio.AioRpcError) as unknown:
        await stub.upload_raw(good, metadata=[("authorization", "Bearer nope")])
    assert unknown.value.code() == grpc.StatusCode.UNAUTHENTICATED


async def test_uploads_keep_the_node_seen_without_writing_it_for_every_batch(
    stub: pb_grpc.NodeServiceStub,
    node_token: list[tuple[str, str]],
    api: Api,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def last_seen() -> str | None:
        (node,) = (await api.get("/nodes")).json()
        assert node["name"] == "edge-1"
        return node["last_seen_at"]

    assert await last_seen() is None
    heartbeat = pb.AuditBatch()  # what an idle node sends every 10 s
    await stub.UploadAudit(heartbeat, metadata=node_token)
    first = await last_seen()
    assert first is not None and (await api.get("/nodes")).json()[0]["online"]
    await stub.UploadAudit(
        pb.AuditBatch(events=_events("sess-seen", range(1, 3))), metadata=node_token
    )
    assert await last_seen() == first  # within SEEN_EVERY_SECONDS: not written again
    monkeypatch.setattr(grpc_service, "SEEN_EVERY_SECONDS", 0.0)
    await stub.UploadAudit(heartbeat, metadata=node_token)
    later = await last_seen()
    assert later is not None and later > first


async def test_credentials_go_only_to_a_known_node_that_serves_the_connection(
    stub: pb_grpc.NodeServiceStub, api: Api
) -> None:
    created = (await api.post("/nodes", {"name": "edge-eu", "labels": {"region": "eu"}})).json()
    token = created["token"]
    for name, region in (("eu-db", "eu"), ("us-db", "us")):
        connection = {
            "name": name,
            "host": "db.internal",
            "port": 5432,
            "database": "app",
            "username": f"user-{name}",
            "password": f"secret-{name}",
            "node_labels": {"region": region},
        }
        assert (await api.post("/connections", connection)).status_code == 201

    async def fetch(connection: str, authorization: str = f"Bearer {token}") -> pb.Credentials:
        request = pb.CredentialsRequest(connection=connection, session_id="s-1", identity="ana")
        result: pb.Credentials = await stub.FetchCredentials(
            request, metadata=[("authorization", authorization)]
        )
        return result

    async def refused(connection: str, authorization: str = f"Bearer {token}") -> grpc.StatusCode:
        with pytest.raises(grpc.aio.AioRpcError) as failed:
            await fetch(connection, authorization)
        return failed.value.code()

    got = await fetch("eu-db")
    assert (got.username, got.password) == ("user-eu-db", "secret-eu-db")
    assert await refused("us-db") == grpc.StatusCode.NOT_FOUND  # labels the node lacks
    assert await refused("no-such-db") == grpc.StatusCode.NOT_FOUND
    node_id = token.split("_")[1]
    for wrong in (
        f"Bearer lgn_{node_id}_{'x' * 43}",
        "Bearer lgn_0123456789abcdef_" + "y" * 43,
        "",
    ):
        assert await refused("eu-db", wrong) == grpc.StatusCode.UNAUTHENTICATED
    assert (await api.delete("/nodes/edge-eu")).status_code == 204
    assert await refused("eu-db") == grpc.StatusCode.UNAUTHENTICATED
