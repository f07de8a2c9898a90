"""The node's side of the gRPC contract: bundle subscription, credentials, audit upload.

The subscription reconnects forever with capped backoff; while the control plane is away the
node keeps enforcing the last bundle it received.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence

import grpc

from lockgate import __version__
from protos.lockgate.v1 import node_pb2 as pb
from protos.lockgate.v1 import node_pb2_grpc as pb_grpc

log = logging.getLogger("lockgate.node.control")
FINAL_STATES = frozenset({"approved", "denied", "expired"})


class ControlPlaneClient:
    def __init__(self, target: str, node_token: str) -> None:
        self.target = target
        self._metadata = (("authorization", f"Bearer {node_token}"),)
        self._channel = grpc.aio.insecure_channel(
            target,
            options=[
                ("grpc.keepalive_time_ms", 5_000),
                ("grpc.keepalive_timeout_ms", 3_000),
                ("grpc.keepalive_permit_without_calls", 1),
                ("grpc.initial_reconnect_backoff_ms", 200),
                ("grpc.max_reconnect_backoff_ms", 2_000),
                ("grpc.max_receive_message_length", 256 << 20),
            ],
        )
        self._stub = pb_grpc.NodeServiceStub(self._channel)  # type: ignore[no-untyped-call]
        # UploadAudit with the batch already serialized: the spool holds events serialized,
        # and parsing them only to serialize them again would cost the node per event.
        self._upload_serialized = self._channel.unary_unary(
            "/lockgate.v1.NodeService/UploadAudit",
            request_serializer=None,
            response_deserializer=pb.AuditAck.FromString,
        )
        self.connected = False

    async def subscribe(
        self,
        labels: dict[str, str],
        listeners: Sequence[str],
        on_bundle: Callable[[pb.Bundle], Awaitable[None]],
    ) -> None:
        """Receive bundles until cancelled, reconnecting after every failure."""
        delay = 0.2
        request = pb.SubscribeRequest(version=__version__, labels=labels, listeners=listeners)
        while True:
            try:
                call = self._stub.Subscribe(request, metadata=self._metadata)
                async for bundle in call:
                    if not self.connected:
                        log.info("connected to control plane %s", self.target)
                    self.connected = True
                    delay = 0.2
                    await on_bundle(bundle)
            except grpc.aio.AioRpcError as exc:
                if exc.code() == grpc.StatusCode.UNAUTHENTICATED:
                    log.error("control plane refused the node token: %s", exc.details())
                elif self.connected:
                    log.warning("lost the control plane (%s); retrying", exc.code().name)
            self.connected = False
            await asyncio.sleep(delay)
            delay = min(delay * 2, 2.0)

    async def credentials(self, connection: str, session_id: str, identity: str) -> pb.Credentials:
        request = pb.CredentialsRequest(
            connection=connection, session_id=session_id, identity=identity
        )
        result: pb.Credentials = await self._stub.FetchCredentials(
            request, metadata=self._metadata, timeout=5.0
        )
        return result

    async def await_approval(
        self, request: pb.ApprovalRequest, within: float
    ) -> AsyncIterator[pb.ApprovalEvent]:
        """Events of one approval until it is decided or `within` seconds pass.

        A broken stream (control-plane restart) is asked again with the same request key,
        which the control plane answers with the same approval.
        """
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            try:
                call = self._stub.AwaitApproval(
                    request, metadata=self._metadata, timeout=max(0.1, deadline - time.monotonic())
                )
                async for event in call:
                    yield event
                    if event.state in FINAL_STATES:
                        return
                return
            except grpc.aio.AioRpcError as exc:
                if exc.code() in (
                    grpc.StatusCode.DEADLINE_EXCEEDED,
                    grpc.StatusCode.UNAUTHENTICATED,
                ):
                    return
                await asyncio.sleep(0.2)

    async def upload(self, batch: bytes) -> pb.AuditAck:
        """Upload a serialized `AuditBatch` as it is."""
        result: pb.AuditAck = await self._upload_serialized(
            batch, metadata=self._metadata, timeout=10.0
        )
        return result

    async def close(self) -> None:
        await self._channel.close(grace=None)
