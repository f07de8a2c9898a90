"""The node's audit trail: sessions number their events, the spool keeps them, the uploader
drains the spool to the control plane in batches and acknowledges only what was stored.

Appending is synchronous and cheap (one write to the spool), so a protocol session records an
event before it forwards the request it describes.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid
from pathlib import Path
from typing import Any, Protocol

from data_plane.audit.spool import AuditSpool
from protos.lockgate.v1 import node_pb2 as pb

log = logging.getLogger("lockgate.node.audit")

HEARTBEAT_SECONDS = 10.0
# A batch that is not full waits this long for company: a node running thousands of statements
# a second then uploads a few large batches instead of one call per event, which is what keeps
# the control plane's ingestion cheap. It is also the added delay before an event is stored.
LINGER_SECONDS = 0.05


class Uploader(Protocol):
    async def upload(self, events: list[pb.AuditEvent]) -> pb.AuditAck: ...


def new_session_id() -> str:
    """Time-ordered session ids (UUIDv7 layout) so lists sort by start without a join."""
    ms = int(time.time() * 1000)
    rand = uuid.uuid4().int & ((1 << 74) - 1)
    value = (
        (ms << 80) | (0x7 << 76) | ((rand >> 62) << 64) | (0b10 << 62) | (rand & ((1 << 62) - 1))
    )
    return str(uuid.UUID(int=value))


class AuditTrail:
    def __init__(
        self, directory: Path, batch_size: int = 1000, linger: float = LINGER_SECONDS
    ) -> None:
        self.spool = AuditSpool(directory, background_sync=True)
        self.batch_size = batch_size
        self.linger = linger
        self._wake = asyncio.Event()
        self.uploaded = 0

    def session(self, session_id: str | None = None) -> SessionAudit:
        return SessionAudit(self, session_id or new_session_id())

    def append(self, session_id: str, seq: int, kind: str, payload: dict[str, Any]) -> None:
        event = pb.AuditEvent(
            session_id=session_id,
            seq=seq,
            time_ms=int(time.time() * 1000),
            kind=kind,
            payload_json=json.dumps(payload, separators=(",", ":"), default=str).encode(),
        )
        self.spool.append(event)
        self._wake.set()

    async def drain(self, uploader: Uploader) -> None:
        """Upload spooled events forever; on failure keep them and retry with backoff."""
        delay = 0.2
        last_upload = 0.0
        while True:
            batch = self.spool.peek(self.batch_size)
            if not batch and time.monotonic() - last_upload < HEARTBEAT_SECONDS:
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), timeout=HEARTBEAT_SECONDS)
                continue
            if len(batch) < self.batch_size and self.linger > 0:
                await asyncio.sleep(self.linger)
                batch = self.spool.peek(self.batch_size)
            try:
                # An empty batch is the node's heartbeat (it updates "last seen").
                await uploader.upload(batch)
            except Exception as exc:  # grpc errors, timeouts: the spool keeps everything
                log.debug("audit upload failed (%s); %d events wait", exc, len(self.spool))
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)
                continue
            delay = 0.2
            last_upload = time.monotonic()
            if batch:
                self.spool.ack(len(batch))
                self.uploaded += len(batch)

    def close(self) -> None:
        self.spool.close()


class SessionAudit:
    """One session's events, numbered from 1 in the order they happened."""

    def __init__(self, trail: AuditTrail, session_id: str) -> None:
        self.trail = trail
        self.session_id = session_id
        self.seq = 0

    def record(self, kind: str, /, **payload: Any) -> None:
        self.seq += 1
        self.trail.append(self.session_id, self.seq, kind, payload)
