"""What every protocol listener looks like to the node, and what the node offers to them.

A `ProtocolServer` binds its port, serves until closed, and reaches the rest of the node only
through a `NodeContext`: the current bundle, target credentials, the audit trail and the registry
of live sessions (which the node uses to end sessions whose token was revoked).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Protocol

from data_plane.audit.trail import AuditTrail
from data_plane.busy_poll import BusyPoll
from lockgate.bundle import BundleView
from protos.lockgate.v1 import node_pb2 as pb


class NoBundle(Exception):
    """The node has not received a policy bundle yet."""


class LiveSession(Protocol):
    token_id: str

    def terminate(self, reason: str) -> None: ...

    def on_bundle(self, bundle: BundleView) -> None: ...


class NodeContext(Protocol):
    name: str
    audit: AuditTrail
    # What relays arm after forwarding something, when the node's loop polls for a moment.
    busy_poll: BusyPoll | None

    async def bundle(self) -> BundleView:
        """The current bundle, waiting briefly for the first one after start-up."""
        ...

    async def credentials(
        self, connection: str, session_id: str, identity: str
    ) -> pb.Credentials: ...

    def await_approval(
        self, request: pb.ApprovalRequest, within: float
    ) -> AsyncIterator[pb.ApprovalEvent]: ...

    def register(self, session: LiveSession) -> None: ...

    def unregister(self, session: LiveSession) -> None: ...

    def count_fast_path(self, statements: int) -> None:
        """Statements a session's fast path audited and forwarded (counted as it ends)."""
        ...

    def count_bulk_reads(self, times: int) -> None:
        """Times a session's target socket was switched to bulk reads (`data_plane.bulk`),
        counted as the session ends."""
        ...


class ProtocolServer(Protocol):
    name: str

    async def bind(self) -> None:
        """Open the listening socket; raise PortTaken when it cannot."""
        ...

    async def serve(self) -> None:
        """Accept connections until cancelled."""
        ...

    async def close(self) -> None: ...
