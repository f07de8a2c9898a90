"""The audit trail: events of one event-loop turn reach the spool in one write, before anything
forwarded in that turn reaches its socket."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

import pytest

from data_plane.audit import trail as trail_module
from data_plane.audit.spool import frame
from data_plane.audit.trail import AuditTrail
from protos.lockgate.v1 import node_pb2 as pb


class Socket:
    """Stands in for an asyncio transport; notes how many events were spooled at each write."""

    def __init__(self, trail: AuditTrail, closing: bool = False) -> None:
        self.trail = trail
        self.closing = closing
        self.writes: list[tuple[bytes, int]] = []
        self.aborted = False

    def write(self, data: bytes) -> None:
        self.writes.append((data, self.trail.spool.appended))

    def is_closing(self) -> bool:
        return self.closing

    def abort(self) -> None:
        self.aborted = True


@pytest.fixture
def trail(tmp_path: Path) -> AuditTrail:
    return AuditTrail(tmp_path / "spool")


async def test_forwarded_bytes_follow_their_events_into_the_spool(trail: AuditTrail) -> None:
    one, two = trail.session(), trail.session()
    upstream = Socket(trail)
    one.record("statement", sql="SELECT 1")
    trail.forward(upstream, b"Q1")
    two.record("statement", sql="SELECT 2")
    trail.forward(upstream, b"Q2")
    assert upstream.writes == [] and trail.spool.appended == 0  # not before the turn ends
    await asyncio.sleep(0)
    assert upstream.writes == [(b"Q1", 2), (b"Q2", 2)]
    events = trail.spool.peek(10)
    assert [(e.session_id, e.seq) for e in events] == [(one.session_id, 1), (two.session_id, 1)]
    assert json.loads(events[1].payload_json) == {"sql": "SELECT 2"}
    trail.close()


def write_calls() -> int:
    """The write(2) calls this thread has made, as the kernel counts them (C's included)."""
    for line in Path("/proc/thread-self/io").read_text().splitlines():
        if line.startswith("syscw:"):
            return int(line.split()[1])
    raise AssertionError("no syscw line in /proc/thread-self/io")


async def test_one_write_a_turn(trail: AuditTrail) -> None:
    session = trail.session()
    for n in range(20):
        session.record("statement", n=n)
    before = write_calls()
    await asyncio.sleep(0)
    assert write_calls() - before == 1
    assert len(trail.spool) == 20
    assert [e.seq for e in trail.spool.peek(100)] == list(range(1, 21))
    trail.close()


async def test_with_nothing_to_spool_forwarding_is_immediate(trail: AuditTrail) -> None:
    upstream = Socket(trail)
    trail.forward(upstream, b"S")
    assert upstream.writes == [(b"S", 0)]
    trail.close()


async def test_order_holds_for_bytes_forwarded_after_a_deferred_write(trail: AuditTrail) -> None:
    upstream = Socket(trail)
    trail.session().record("statement", sql="SELECT 1")
    trail.forward(upstream, b"first")
    trail.forward(upstream, b"second")  # no event of its own, still after the first
    await asyncio.sleep(0)
    assert [data for data, _ in upstream.writes] == [b"first", b"second"]
    trail.close()


async def test_a_closed_socket_is_skipped(trail: AuditTrail) -> None:
    gone = Socket(trail, closing=True)
    trail.session().record("statement", sql="SELECT 1")
    trail.forward(gone, b"Q")
    await asyncio.sleep(0)
    assert gone.writes == []
    assert trail.spool.appended == 1
    trail.close()


async def test_events_the_spool_refuses_are_not_forwarded(trail: AuditTrail) -> None:
    # The segment's descriptor refuses writes (as a full disk would, with another errno).
    fd = trail.spool.file.fd
    saved = os.dup(fd)
    read_only = os.open(os.devnull, os.O_RDONLY)
    os.dup2(read_only, fd)
    try:
        upstream = Socket(trail)
        trail.session().record("statement", sql="DELETE FROM t")
        trail.forward(upstream, b"Q")
        await asyncio.sleep(0)
        assert upstream.writes == []
        assert upstream.aborted
    finally:
        os.dup2(saved, fd)
        os.close(saved)
        os.close(read_only)
    trail.close()


async def test_the_outbox_spools_at_the_end_of_the_turn_then_forwards(
    trail: AuditTrail,
) -> None:
    unwritten, after_write, schedule = trail.outbox()
    upstream = Socket(trail)
    record = frame(pb.AuditEvent(session_id="s", seq=1, kind="statement", payload_json=b"{}"))
    unwritten.append(record)
    after_write.append((upstream, b"Q1"))
    schedule()
    assert upstream.writes == [] and trail.spool.appended == 0
    await asyncio.sleep(0)
    assert upstream.writes == [(b"Q1", 1)]
    assert unwritten == [] and after_write == []  # the same lists, emptied
    assert trail.outbox()[:2] == (unwritten, after_write)
    trail.close()


async def test_the_outbox_ends_the_turn_in_c(trail: AuditTrail) -> None:
    unwritten, _, schedule = trail.outbox()
    unwritten.append(frame(pb.AuditEvent(session_id="s", seq=1, kind="statement")))
    schedule()
    await asyncio.sleep(0)
    # Written through the spool's segment by `_spoolio.Outbox`, not yet counted by the spool.
    assert trail.spool.file.unaccounted == 1
    assert len(trail.spool) == 1 and trail.spool.file.unaccounted == 0
    trail.close()


async def test_without_the_c_module_python_ends_the_turn(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(trail_module, "_spoolio", None)
    trail = AuditTrail(tmp_path / "spool")
    upstream = Socket(trail)
    trail.session().record("statement", sql="SELECT 1")
    trail.forward(upstream, b"Q")
    assert upstream.writes == []
    await asyncio.sleep(0)
    assert upstream.writes == [(b"Q", 1)]
    assert trail.spool.file.unaccounted == 0
    trail.close()


def test_outside_a_loop_the_outbox_spools_when_scheduled(trail: AuditTrail) -> None:
    unwritten, after_write, schedule = trail.outbox()
    upstream = Socket(trail)
    unwritten.append(frame(pb.AuditEvent(session_id="s", seq=1, kind="statement")))
    after_write.append((upstream, b"Q1"))
    schedule()
    assert upstream.writes == [(b"Q1", 1)]
    trail.close()


def test_without_an_event_loop_an_event_is_spooled_at_once(trail: AuditTrail) -> None:
    trail.session().record("session.start", identity="ada")
    assert trail.spool.appended == 1
    trail.close()


async def test_close_spools_what_the_turn_recorded(tmp_path: Path) -> None:
    trail = AuditTrail(tmp_path / "spool")
    trail.session().record("session.end", outcome="closed")
    trail.close()
    reopened = AuditTrail(tmp_path / "spool")
    assert [e.kind for e in reopened.spool.peek(10)] == ["session.end"]
    reopened.close()


class Uploads:
    """Stands in for the control plane: keeps each batch it is sent."""

    def __init__(self) -> None:
        self.batches: list[list[pb.AuditEvent]] = []
        self.event = asyncio.Event()

    async def upload(self, batch: bytes) -> pb.AuditAck:
        events = list(pb.AuditBatch.FromString(batch).events)
        self.batches.append(events)
        self.event.set()
        return pb.AuditAck(accepted=len(events))


async def test_uploads_are_cut_by_bytes_without_waiting_and_deliver_everything(
    tmp_path: Path,
) -> None:
    # A linger longer than the test: batches cut short by the byte budget must not wait for it.
    trail = AuditTrail(tmp_path / "spool", batch_size=100, linger=60.0, batch_bytes=3000)
    session = trail.session()
    for n in range(10):
        session.record("statement", sql="x" * 1000 + str(n))
    trail.write_pending()
    uploads = Uploads()
    drain = asyncio.create_task(trail.drain(uploads))
    try:
        async with asyncio.timeout(10):
            while sum(map(len, uploads.batches)) < 8:
                uploads.event.clear()
                await uploads.event.wait()
        await asyncio.sleep(0.2)
    finally:
        drain.cancel()
    assert [len(b) for b in uploads.batches] == [2, 2, 2, 2]  # the last two linger: all there is
    assert all(sum(e.ByteSize() for e in b) <= 3000 for b in uploads.batches)
    assert [e.seq for b in uploads.batches for e in b] == list(range(1, 9))
    assert len(trail.spool) == 2
    trail.close()
