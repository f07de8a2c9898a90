"""The gRPC service nodes dial: bundle subscriptions, per-session credentials, audit upload,
and approvals for held statements.

Every call carries the node token in the `authorization` metadata; only its hash is stored.
Bundles are pushed when the configuration revision changes (in-process bus, fed by other
replicas through PostgreSQL NOTIFY) and, as a fallback, whenever a periodic check of the store
sees a newer one. An approval stream wakes on the approval's `ApprovalHub` event, set by a
decision on this replica or by the NOTIFY of a decision on another one, then re-reads the store.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, NoReturn

import grpc
from google.protobuf.message import DecodeError
from sqlalchemy import bindparam, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from control_plane import approvals, changes, compiler, notify
from control_plane.audit import ingest, node_lock
from control_plane.crypto import SecretBox
from control_plane.db import Database
from control_plane.models import Approval, Connection, Node, utcnow
from lockgate import __version__, tokens
from protos.lockgate.v1 import node_pb2 as pb
from protos.lockgate.v1 import node_pb2_grpc as pb_grpc

log = logging.getLogger("lockgate.grpc")

STORE_POLL_SECONDS = 2.0
# A node's last-seen time is written by its uploads at most this often (a busy node uploads
# several times a second; an idle one sends an empty upload every 10 s, and a node is shown
# online while it was seen within 30 s).
SEEN_EVERY_SECONDS = 5.0

_NODES = Node.__table__  # type: ignore[attr-defined]
_CONNECTIONS = Connection.__table__  # type: ignore[attr-defined]
# Built once: the calling node, checked on every call (FetchCredentials finds it with the
# connection it asks for, in the select below).
_NODE_BY_ID = select(_NODES.c.id, _NODES.c.name, _NODES.c.labels, _NODES.c.token_sha256).where(
    _NODES.c.id == bindparam("id")
)
# A new session's one trip to the store: the calling node and the connection it asks for (an
# outer join, so that a connection that does not exist still finds the node).
_NODE_AND_CREDENTIALS = (
    select(
        _NODES.c.id,
        _NODES.c.name,
        _NODES.c.labels,
        _NODES.c.token_sha256,
        _CONNECTIONS.c.name.label("connection"),
        _CONNECTIONS.c.username,
        _CONNECTIONS.c.password_encrypted,
        _CONNECTIONS.c.node_labels,
    )
    .select_from(_NODES.outerjoin(_CONNECTIONS, _CONNECTIONS.c.name == bindparam("name")))
    .where(_NODES.c.id == bindparam("id"))
)


def _node_token(context: grpc.aio.ServicerContext) -> tuple[str | None, str]:  # type: ignore[type-arg]
    """The node id and the whole token a call's `authorization` metadata carries."""
    metadata = dict(context.invocation_metadata() or ())
    secret = str(metadata.get("authorization", "")).removeprefix("Bearer ").strip()
    return tokens.token_id(secret, prefix="lgn"), secret


async def _unauthenticated(context: grpc.aio.ServicerContext) -> NoReturn:  # type: ignore[type-arg]
    await context.abort(grpc.StatusCode.UNAUTHENTICATED, "unknown or revoked node token")
    raise AssertionError("unreachable")


@dataclass(frozen=True)
class CallingNode:
    """The node a call came from, as its token identified it."""

    id: str
    name: str
    labels: dict[str, str]


class NodeService(pb_grpc.NodeServiceServicer):
    def __init__(
        self,
        db: Database,
        box: SecretBox,
        *,
        console_url: str = "",
        hub: notify.ApprovalHub = notify.hub,
    ) -> None:
        self.db = db
        self.box = box
        self.bundles = compiler.BundleCache()
        self.console_url = console_url
        self.hub = hub
        self._seen_written: dict[str, float] = {}  # node id -> monotonic time of the last write

    async def _node(
        self,
        context: grpc.aio.ServicerContext,  # type: ignore[type-arg]
        conn: AsyncConnection | None = None,
    ) -> CallingNode:
        """The calling node, or abort with UNAUTHENTICATED; looked up on `conn` when given (a
        call that goes on to use the store saves opening a second connection). A Core select,
        not an ORM load: every call of every node comes through here."""
        node_id, secret = _node_token(context)
        if node_id:
            async with contextlib.AsyncExitStack() as stack:
                if conn is None:
                    conn = await stack.enter_async_context(self.db.engine.connect())
                row = (await conn.execute(_NODE_BY_ID, {"id": node_id})).first()
                if row is not None and tokens.matches(secret, row.token_sha256):
                    return CallingNode(row.id, row.name, dict(row.labels or {}))
        await _unauthenticated(context)

    async def Subscribe(
        self,
        request: pb.SubscribeRequest,
        context: grpc.aio.ServicerContext,  # type: ignore[type-arg]
    ) -> AsyncIterator[pb.Bundle]:
        node = await self._node(context)
        labels = dict(request.labels) or node.labels
        async with self.db.session() as session:
            row = await session.get(Node, node.id)
            if row is not None:
                row.labels = labels
                row.version = request.version
                row.listeners = list(request.listeners)
                row.last_seen_at = utcnow()
                await session.commit()
        log.info("node %s subscribed (labels %s)", node.name, labels)
        sent = -1
        while True:
            async with self.db.session() as session:
                latest = await changes.current(session)
                if latest != sent:
                    base = await self.bundles.get(session)
                    bundle = compiler.for_node(base, node.name, labels)
                    row = await session.get(Node, node.id)
                    if row is None:
                        await context.abort(grpc.StatusCode.UNAUTHENTICATED, "node was removed")
                    row.bundle_revision = bundle.revision
                    row.last_seen_at = utcnow()
                    await session.commit()
            if latest != sent:
                yield bundle
                sent = bundle.revision
            await changes.bus.wait_newer(sent, within=STORE_POLL_SECONDS)

    async def FetchCredentials(
        self,
        request: pb.CredentialsRequest,
        context: grpc.aio.ServicerContext,  # type: ignore[type-arg]
    ) -> pb.Credentials:
        node_id, secret = _node_token(context)
        if not node_id:
            await _unauthenticated(context)
        async with self.db.engine.connect() as conn:
            query = {"id": node_id, "name": request.connection}
            found = (await conn.execute(_NODE_AND_CREDENTIALS, query)).first()
        if found is None or not tokens.matches(secret, found.token_sha256):
            await _unauthenticated(context)
        if found.connection is None or not compiler.serves(
            dict(found.labels or {}), found.node_labels or {}
        ):
            await context.abort(grpc.StatusCode.NOT_FOUND, "no such connection for this node")
            raise AssertionError("unreachable")
        log.info(
            "credentials for %s issued to node %s (session %s, identity %s)",
            found.connection,
            found.name,
            request.session_id,
            request.identity,
        )
        password = self.box.decrypt(found.password_encrypted, aad=found.connection.encode())
        return pb.Credentials(username=found.username, password=password)

    async def UploadAudit(
        self,
        request: bytes,  # the serialized AuditBatch, as the node sent it: see `register`
        context: grpc.aio.ServicerContext,  # type: ignore[type-arg]
    ) -> pb.AuditAck:
        # One session and transaction for the whole call: a busy node uploads many times a
        # second, and each round trip to the store costs the control plane's event loop.
        async with self.db.session() as session:
            node = await self._node(context, await session.connection())
            try:
                pb.AuditBatch.FromString(request)  # what the parser refuses is not stored
            except DecodeError:
                await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "not an AuditBatch")
            async with node_lock(node.name):
                accepted, duplicates = await ingest(session, request, node.name)
                seen = time.monotonic()
                since = seen - self._seen_written.get(node.id, -SEEN_EVERY_SECONDS)
                due = since >= SEEN_EVERY_SECONDS
                if due:
                    conn = await session.connection()
                    await conn.execute(
                        update(_NODES).where(_NODES.c.id == node.id).values(last_seen_at=utcnow())
                    )
                await session.commit()
                if due:
                    self._seen_written[node.id] = seen
        return pb.AuditAck(accepted=accepted, duplicates=duplicates)

    async def AwaitApproval(
        self,
        request: pb.ApprovalRequest,
        context: grpc.aio.ServicerContext,  # type: ignore[type-arg]
    ) -> AsyncIterator[pb.ApprovalEvent]:
        """pending, then notified (unless approved at once by reuse), then exactly one of
        approved / denied / expired; a repeated request_key resumes the same approval."""
        node = await self._node(context)
        if not request.request_key or not request.identity or not request.rule:
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT, "request_key, rule and identity are required"
            )
        held = approvals.StatementRequest(
            request_key=request.request_key,
            rule=request.rule,
            identity=request.identity,
            connection=request.connection,
            session_id=request.session_id,
            statement=request.statement,
            fingerprint=request.fingerprint,
            action=request.action,
            tables=tuple(request.tables),
            reason=request.reason,
        )
        try:
            async with self.db.session() as session:
                approval, reused = await approvals.request_statement(
                    session=session, request=held, hub=self.hub
                )
        except approvals.UnknownRule:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"no approval rule {request.rule!r}")
            raise AssertionError("unreachable") from None
        except approvals.Refused as refused:
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION, str(refused))
            raise AssertionError("unreachable") from None
        log.info("node %s awaits approval %s (%s)", node.name, approval.id, request.request_key)
        with self.hub.watch(approval.id) as changed:
            yield self._approval_event(approval, approvals.PENDING)
            if not reused:
                # Webhooks for a new approval were handed to the dispatcher when it was stored.
                yield self._approval_event(approval, "notified")
            while True:
                changed.clear()  # before reading: a change after the read sets it again
                async with self.db.session() as session:
                    found = await approvals.refresh(
                        session=session, approval_id=approval.id, hub=self.hub
                    )
                if found is None:  # deleted behind our back: nobody can approve it now
                    yield self._approval_event(approval, approvals.EXPIRED)
                    return
                approval = found
                if approval.state in approvals.FINAL:
                    yield self._approval_event(approval, approval.state)
                    return
                remaining = (approval.expires_at - utcnow()).total_seconds()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(changed.wait(), max(remaining, 0.0) + 0.01)

    def _approval_event(self, approval: Approval, state: str) -> pb.ApprovalEvent:
        event = pb.ApprovalEvent(
            approval_id=approval.id,
            state=state,
            url=approvals.console_url(self.console_url, approval.id),
            expires_at_ms=compiler.epoch_ms(approval.expires_at),
        )
        if state in approvals.FINAL:
            decided_by, comment = approvals.outcome(approval)
            event.decided_by.extend(decided_by)
            event.comment = comment
        return event


async def start_server(
    db: Database, box: SecretBox, bind: str, port: int, *, console_url: str = ""
) -> grpc.aio.Server:
    """Start the node-facing gRPC server; the caller stops it."""
    server = grpc.aio.server(
        options=[
            ("grpc.so_reuseport", 0),
            ("grpc.keepalive_time_ms", 10_000),
            ("grpc.keepalive_permit_without_calls", 1),
            ("grpc.http2.min_ping_interval_without_data_ms", 5_000),
            ("grpc.max_receive_message_length", 64 << 20),
            ("grpc.max_send_message_length", 256 << 20),
        ]
    )
    service = NodeService(db, box, console_url=console_url)
    register(service, server)
    address = f"[{bind}]:{port}" if ":" in bind else f"{bind}:{port}"
    if server.add_insecure_port(address) == 0:
        raise OSError(f"cannot listen for nodes on {address}")
    await server.start()
    log.info("gRPC for nodes on %s (lockgate %s)", address, __version__)
    return server


def register(service: NodeService, server: grpc.aio.Server) -> None:
    """Serve `service`'s methods on `server`, `UploadAudit` taking its request as bytes."""
    handlers = _Handlers()
    pb_grpc.add_NodeServiceServicer_to_server(service, handlers)  # type: ignore[no-untyped-call]
    handlers.add_to(server)


_Methods = dict[str, "grpc.RpcMethodHandler[Any, Any]"]


class _Handlers:
    """What the generated `add_NodeServiceServicer_to_server` registers, collected so that
    `UploadAudit` gets its request as bytes: the node sends its spool's records as they are,
    and the control plane stores them as they came, so parsing into messages only to
    serialize them again cost it a third of a microsecond an event (it still parses them
    once, to refuse what protobuf refuses)."""

    def __init__(self) -> None:
        self.service = ""
        self.methods: _Methods = {}

    def add_generic_rpc_handlers(self, handlers: object) -> None:
        pass  # the same methods come again through add_registered_method_handlers

    def add_registered_method_handlers(self, service: str, methods: _Methods) -> None:
        self.service = service
        self.methods = dict(methods)
        upload = methods["UploadAudit"]
        self.methods["UploadAudit"] = upload._replace(request_deserializer=None)  # type: ignore[attr-defined]

    def add_to(self, server: grpc.aio.Server) -> None:
        server.add_generic_rpc_handlers(
            (grpc.method_handlers_generic_handler(self.service, self.methods),)
        )
        server.add_registered_method_handlers(self.service, self.methods)  # type: ignore[attr-defined]
