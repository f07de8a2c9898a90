"""The node's audit trail: sessions number their events, the spool keeps them, the uploader
drains the spool to the control plane in batches and acknowledges only what was stored.

A protocol session records an event before it forwards the request it describes, and forwards
through `AuditTrail.forward`: the events recorded in one turn of the event loop go to the
spool in one write at the end of that turn, and what was forwarded meanwhile is written to its
socket after them. Nothing reaches a target before its event is in the spool (page cache), and
a busy node makes one write(2) a turn instead of one an event. Events are framed as the spool
stores them when they are recorded; the PostgreSQL fast path frames its own and puts them in
the trail's `outbox` from C. The end of the turn runs in C too when `_spoolio` is built
(`_spoolio.Outbox`, with `write_pending` as its reference and its fallback).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from data_plane.audit.spool import AuditSpool, frame
from protos.lockgate.v1 import node_pb2 as pb

try:
    from data_plane.audit import _spoolio
except ImportError:  # not built: `write_pending` ends every turn
    _spoolio = None  # type: ignore[assignment]

log = logging.getLogger("lockgate.node.audit")

HEARTBEAT_SECONDS = 10.0
# A batch that is not full waits this long for company: a node running thousands of statements
# a second then uploads a few large batches instead of one call per event, which is what keeps
# the control plane's ingestion cheap (each upload costs it a few milliseconds whatever its
# size: at 0.05 s a node at 11,000 statements/s cost the control plane 15 µs a statement, at
# 0.2 s 6 µs). It is also the added delay before an event is stored.
LINGER_SECONDS = 0.2
# Serialized bytes per upload, well under the control plane's 64 MiB message limit; a batch
# of large statements is cut short rather than refused (an event larger than this goes alone).
BATCH_BYTES = 8 << 20

encode_json = json.JSONEncoder(separators=(",", ":"), default=str).encode
"""How event payloads are encoded (compact; anything JSON does not know as its `str`)."""


class _Writable(Protocol):
    def write(self, data: bytes) -> None: ...

    def is_closing(self) -> bool: ...

    def abort(self) -> None: ...


class Uploader(Protocol):
    async def upload(self, batch: bytes) -> pb.AuditAck:
        """Store a serialized `AuditBatch`."""
        ...


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
        self,
        directory: Path,
        batch_size: int = 1000,
        linger: float = LINGER_SECONDS,
        batch_bytes: int = BATCH_BYTES,
    ) -> None:
        self.spool = AuditSpool(directory, background_sync=True)
        self.batch_size = batch_size
        self.batch_bytes = batch_bytes
        self.linger = linger
        self._wake = asyncio.Event()
        self.uploaded = 0
        # What this turn recorded and forwarded: written at its end by `write_pending`, which
        # is scheduled whenever both lists stop being empty (see `outbox`).
        self._unwritten: list[bytes] = []  # framed events, not yet spooled
        self._after_write: list[tuple[_Writable, bytes]] = []  # forwarded meanwhile
        # What ends a turn: `write_pending` done in C (`_spoolio.Outbox`), which hands it
        # what it does not do itself (a new segment, a failed write).
        self._end_turn: Callable[[], object] = self.write_pending
        file = self.spool.file
        if _spoolio is not None and isinstance(file, _spoolio.SpoolFile):
            self._end_turn = _spoolio.Outbox(
                self._unwritten,
                self._after_write,
                file,
                self.write_pending,
                self._wake.set,
            )

    def session(self, session_id: str | None = None) -> SessionAudit:
        return SessionAudit(self, session_id or new_session_id())

    def append(self, session_id: str, seq: int, kind: str, payload: dict[str, Any]) -> None:
        """Record an event; it is in the spool by the end of this turn of the event loop (at
        once when no loop runs), before anything forwarded after it."""
        self.append_encoded(session_id, seq, kind, encode_json(payload).encode())

    def append_encoded(self, session_id: str, seq: int, kind: str, payload_json: bytes) -> None:
        """`append` with the payload already encoded as a JSON object."""
        record = frame(
            pb.AuditEvent(
                session_id=session_id,
                seq=seq,
                time_ms=int(time.time() * 1000),
                kind=kind,
                payload_json=payload_json,
            )
        )
        idle = not self._unwritten and not self._after_write
        self._unwritten.append(record)
        if idle:
            self._schedule_write()

    def forward(self, transport: _Writable, data: bytes) -> None:
        """Write `data` to `transport` once every event recorded so far is in the spool."""
        if self._unwritten or self._after_write:
            self._after_write.append((transport, data))
        else:
            transport.write(data)

    def outbox(
        self,
    ) -> tuple[list[bytes], list[tuple[_Writable, bytes]], Callable[[], object]]:
        """Where code that frames its own events (as `spool.frame` does) records them and
        forwards after them without a Python call per event, as the PostgreSQL fast path does
        from C: a framed record goes to the first list and (transport, data) to the second,
        then the third is called if both lists were empty before. They stay the same lists
        for the trail's life. Called in a running loop, the third is that loop's `call_soon`
        bound to what ends the turn (no Python frame of ours a turn)."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return self._unwritten, self._after_write, self._schedule_write
        return (
            self._unwritten,
            self._after_write,
            functools.partial(loop.call_soon, self._end_turn),
        )

    def _schedule_write(self) -> None:
        """Have the turn's events spooled at its end (at once when no loop runs)."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self._end_turn()
            return
        loop.call_soon(self._end_turn)

    def write_pending(self) -> None:
        """Spool the events recorded so far in one write, then release what waited for them.

        If the spool cannot take them (a full disk), what waited is not forwarded: those
        sessions are aborted, since their requests would reach the target unaudited."""
        events = self._unwritten[:]
        self._unwritten.clear()
        waiting = self._after_write[:]
        self._after_write.clear()
        try:
            if events:
                self.spool.append_frames(events)
                self._wake.set()
        except Exception:
            log.exception("cannot spool %d audit events; aborting their sessions", len(events))
            for transport, _ in waiting:
                transport.abort()
            return
        for transport, data in waiting:
            if not transport.is_closing():
                transport.write(data)

    async def drain(self, uploader: Uploader) -> None:
        """Upload spooled events forever; on failure keep them and retry with backoff."""
        delay = 0.2
        last_upload = 0.0
        while True:
            batch, count = self._peek()
            if not count and time.monotonic() - last_upload < HEARTBEAT_SECONDS:
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), timeout=HEARTBEAT_SECONDS)
                continue
            if count < self.batch_size and count == len(self.spool) and self.linger > 0:
                await asyncio.sleep(self.linger)
                batch, count = self._peek()
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
            if count:
                self.spool.ack(count)
                self.uploaded += count

    def _peek(self) -> tuple[bytes, int]:
        return self.spool.peek_batch(self.batch_size, self.batch_bytes)

    def close(self) -> None:
        self.write_pending()
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

    def record_encoded(self, kind: str, payload_json: bytes) -> None:
        """`record` with the payload already encoded as a JSON object."""
        self.seq += 1
        self.trail.append_encoded(self.session_id, self.seq, kind, payload_json)
