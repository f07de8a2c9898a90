from __future__ import annotations

import logging
import os
import shutil
import tempfile
import threading
import time
import zlib
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from data_plane.audit import spool as spool_module
from data_plane.audit._spoolio import Outbox
from data_plane.audit.spool import AuditSpool, frame
from protos.lockgate.v1 import node_pb2 as pb

HEADER = 8  # uint32 length + uint32 CRC32


def event(n: int, session: str = "s1") -> pb.AuditEvent:
    return pb.AuditEvent(
        session_id=session,
        seq=n,
        time_ms=1_700_000_000_000 + n,
        kind="statement",
        payload_json=f'{{"n": {n:04d}}}'.encode(),
    )


def record_size(n: int) -> int:
    return HEADER + len(event(n).SerializeToString())


RECORD = record_size(1)  # every event numbered 1..127 frames to the same size


def seqs(events: list[pb.AuditEvent]) -> list[int]:
    return [e.seq for e in events]


def segment_files(directory: Path) -> list[Path]:
    return sorted(directory.glob("*.seg"))


# -- append, peek, ack ----------------------------------------------------------------------


def test_peek_returns_oldest_events_in_append_order_without_consuming(tmp_path: Path) -> None:
    spool = AuditSpool(tmp_path)
    for n in range(5):
        spool.append(event(n))
    assert seqs(spool.peek(3)) == [0, 1, 2]
    assert seqs(spool.peek(3)) == [0, 1, 2]
    assert seqs(spool.peek(10)) == [0, 1, 2, 3, 4]
    assert len(spool) == 5
    assert spool.appended == 5
    spool.close()


def test_peek_stops_at_a_byte_budget_but_always_gives_the_first_event(tmp_path: Path) -> None:
    spool = AuditSpool(tmp_path)
    for n in range(1, 6):
        spool.append(event(n))
    size = event(1).ByteSize()
    assert seqs(spool.peek(10, max_bytes=2 * size)) == [1, 2]
    assert seqs(spool.peek(10, max_bytes=2 * size - 1)) == [1]
    assert seqs(spool.peek(10, max_bytes=1)) == [1]  # larger than the budget, alone
    assert seqs(spool.peek(3, max_bytes=100 * size)) == [1, 2, 3]
    spool.ack(3)
    assert seqs(spool.peek(10, max_bytes=2 * size)) == [4, 5]
    spool.close()


def test_ack_removes_acknowledged_events(tmp_path: Path) -> None:
    spool = AuditSpool(tmp_path)
    spool.append_many(event(n) for n in range(6))
    assert seqs(spool.peek(4)) == [0, 1, 2, 3]
    spool.ack(4)
    assert len(spool) == 2
    assert seqs(spool.peek(10)) == [4, 5]
    spool.ack(2)
    assert len(spool) == 0
    assert spool.peek(10) == []
    spool.close()


def test_ack_of_part_of_a_peek_keeps_the_rest(tmp_path: Path) -> None:
    spool = AuditSpool(tmp_path)
    spool.append_many(event(n) for n in range(5))
    spool.peek(4)
    spool.ack(1)
    assert seqs(spool.peek(10)) == [1, 2, 3, 4]
    spool.peek(4)
    spool.ack(2)
    spool.ack(1)  # the rest of the same peek
    assert seqs(spool.peek(10)) == [4]
    spool.close()


def test_events_appended_between_peek_and_ack_survive_the_ack(tmp_path: Path) -> None:
    spool = AuditSpool(tmp_path, segment_bytes=3 * RECORD)
    spool.append_many(event(n) for n in range(1, 4))
    batch = spool.peek(10)
    for n in range(4, 11):  # rotates into new segments while the batch is in flight
        spool.append(event(n))
    assert len(segment_files(tmp_path)) == 4
    spool.ack(len(batch))
    assert len(spool) == 7
    assert len(segment_files(tmp_path)) == 3  # the batch filled the first segment exactly
    assert seqs(spool.peek(100)) == list(range(4, 11))
    spool.close()
    reopened = AuditSpool(tmp_path, segment_bytes=3 * RECORD)
    assert seqs(reopened.peek(100)) == list(range(4, 11))
    reopened.close()


def test_ack_beyond_the_last_peek_is_refused(tmp_path: Path) -> None:
    spool = AuditSpool(tmp_path)
    spool.append_many(event(n) for n in range(5))
    with pytest.raises(ValueError):
        spool.ack(1)
    spool.peek(2)
    with pytest.raises(ValueError):
        spool.ack(3)
    assert len(spool) == 5
    spool.close()


def test_append_many_issues_one_write(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spool = AuditSpool(tmp_path)
    writes: list[int] = []
    real_write = os.write

    def counting_write(fd: int, data: bytes) -> int:
        writes.append(fd)
        return real_write(fd, data)

    monkeypatch.setattr(os, "write", counting_write)
    spool.append_many(event(n) for n in range(50))
    assert len(writes) == 1
    assert len(spool) == 50
    spool.close()


def test_records_appended_while_caught_up_are_not_read_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spool = AuditSpool(tmp_path)
    spool.append_many([event(1), event(2)])
    spool.peek(10)
    spool.ack(2)

    def no_reading(*args: object) -> None:
        raise AssertionError("read back from the segment")

    monkeypatch.setattr(spool_module._SegmentReader, "_bytes", no_reading)
    spool.append_many([event(3), event(4)])
    spool.append_frames([frame(event(5))])
    assert seqs(spool.peek(10)) == [3, 4, 5]
    spool.ack(2)
    monkeypatch.undo()
    spool.close()
    reopened = AuditSpool(tmp_path)  # what was kept in memory is on disk too
    assert seqs(reopened.peek(10)) == [5]
    reopened.close()


def test_a_record_that_does_not_decode_is_skipped_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    spool = AuditSpool(tmp_path)
    garbage = b"\xff\xff\xff"  # its CRC is right: only decoding can tell
    bad = len(garbage).to_bytes(4, "little") + zlib.crc32(garbage).to_bytes(4, "little") + garbage
    spool.append_frames([frame(event(1)), bad, frame(event(2))])
    with caplog.at_level(logging.WARNING, logger="lockgate.audit.spool"):
        assert seqs(spool.peek(10)) == [1, 2]
    assert len(spool) == 2
    assert any("undecodable" in r.getMessage() for r in caplog.records)
    spool.ack(2)
    assert len(spool) == 0
    spool.close()


def test_empty_event_is_refused_and_nothing_is_written(tmp_path: Path) -> None:
    spool = AuditSpool(tmp_path)
    with pytest.raises(ValueError):
        spool.append_many([event(1), pb.AuditEvent()])
    assert len(spool) == 0
    assert spool.peek(10) == []
    spool.close()


def test_closed_spool_refuses_appends(tmp_path: Path) -> None:
    spool = AuditSpool(tmp_path)
    spool.close()
    spool.close()
    with pytest.raises(ValueError):
        spool.append(event(1))


# -- restarts -------------------------------------------------------------------------------


def test_reopen_after_close_keeps_unacked_events_only(tmp_path: Path) -> None:
    spool = AuditSpool(tmp_path)
    spool.append_many(event(n) for n in range(10))
    spool.peek(4)
    spool.ack(4)
    spool.close()

    reopened = AuditSpool(tmp_path)
    assert len(reopened) == 6
    assert reopened.appended == 0
    assert seqs(reopened.peek(100)) == list(range(4, 10))
    reopened.close()


def test_process_crash_without_close_keeps_every_appended_event(tmp_path: Path) -> None:
    spool = AuditSpool(tmp_path / "live", fsync_interval=3600)
    spool.append_many(event(n) for n in range(3))
    spool.peek(1)
    spool.ack(1)
    for n in range(3, 8):
        spool.append(event(n))
    # What another process sees on disk right now is what survives a process crash.
    shutil.copytree(tmp_path / "live", tmp_path / "crashed")
    spool.close()

    recovered = AuditSpool(tmp_path / "crashed")
    assert len(recovered) == 7
    assert seqs(recovered.peek(100)) == list(range(1, 8))
    recovered.close()


def test_segments_behind_the_cursor_left_by_a_crash_are_deleted_on_open(tmp_path: Path) -> None:
    size = 2 * RECORD
    spool = AuditSpool(tmp_path, segment_bytes=size)
    spool.append_many([event(1), event(2)])
    spool.append_many([event(3), event(4)])
    first = segment_files(tmp_path)[0]
    saved = first.read_bytes()
    spool.peek(3)
    spool.ack(3)
    spool.close()
    assert not first.exists()
    first.write_bytes(saved)  # as if the crash came between the cursor write and the unlink

    reopened = AuditSpool(tmp_path, segment_bytes=size)
    assert not first.exists()
    assert seqs(reopened.peek(10)) == [4]
    reopened.close()


# -- damage ---------------------------------------------------------------------------------


def test_torn_tail_is_truncated_and_appending_continues(tmp_path: Path) -> None:
    spool = AuditSpool(tmp_path)
    spool.append_many(event(n) for n in range(5))
    spool.close()
    (segment,) = segment_files(tmp_path)
    os.truncate(segment, segment.stat().st_size - 3)

    recovered = AuditSpool(tmp_path)
    assert seqs(recovered.peek(100)) == [0, 1, 2, 3]
    recovered.append(event(99))
    recovered.close()

    again = AuditSpool(tmp_path)
    assert seqs(again.peek(100)) == [0, 1, 2, 3, 99]
    again.close()


@pytest.mark.parametrize(
    "garbage",
    [b"\x00" * 64, b"\xff\xff\xff\x7f" + b"x" * 12, b"\x05\x00\x00\x00\x00\x00\x00\x00hello"],
    ids=["zero-filled", "huge-length", "bad-crc"],
)
def test_garbage_after_the_last_record_is_dropped(tmp_path: Path, garbage: bytes) -> None:
    spool = AuditSpool(tmp_path)
    spool.append_many(event(n) for n in range(3))
    spool.close()
    (segment,) = segment_files(tmp_path)
    clean_size = segment.stat().st_size
    with segment.open("ab") as f:
        f.write(garbage)

    recovered = AuditSpool(tmp_path)
    assert segment.stat().st_size == clean_size
    assert seqs(recovered.peek(100)) == [0, 1, 2]
    recovered.append(event(3))
    recovered.close()
    assert seqs(AuditSpool(tmp_path).peek(100)) == [0, 1, 2, 3]


def flip_byte(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0xFF
    path.write_bytes(bytes(data))


def test_corrupt_record_in_an_older_segment_skips_the_rest_of_it_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    size = 3 * RECORD
    spool = AuditSpool(tmp_path, segment_bytes=size)
    for n in range(1, 10):  # three segments of three events
        spool.append(event(n))
    spool.close()
    first = segment_files(tmp_path)[0]
    flip_byte(first, RECORD + HEADER + 2)  # inside the payload of event 2

    with caplog.at_level(logging.WARNING, logger="lockgate.audit.spool"):
        recovered = AuditSpool(tmp_path, segment_bytes=size)
        assert len(recovered) == 7
        assert seqs(recovered.peek(100)) == [1, 4, 5, 6, 7, 8, 9]
    warnings = [r for r in caplog.records if r.name == "lockgate.audit.spool"]
    assert len(warnings) == 1
    assert first.name in warnings[0].getMessage()
    recovered.peek(7)
    recovered.ack(7)
    assert len(recovered) == 0
    assert not first.exists()
    recovered.close()


def test_corruption_appearing_while_open_is_skipped_and_recounted(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    size = 3 * RECORD
    spool = AuditSpool(tmp_path, segment_bytes=size)
    for n in range(1, 10):
        spool.append(event(n))
    second = segment_files(tmp_path)[1]
    flip_byte(second, HEADER + 2)  # event 4, the first record of the second segment

    with caplog.at_level(logging.WARNING, logger="lockgate.audit.spool"):
        assert seqs(spool.peek(100)) == [1, 2, 3, 7, 8, 9]
    assert len(spool) == 6
    assert any(second.name in r.getMessage() for r in caplog.records)
    spool.close()


def test_unreadable_cursor_redelivers_rather_than_loses(tmp_path: Path) -> None:
    spool = AuditSpool(tmp_path)
    spool.append_many(event(n) for n in range(4))
    spool.peek(2)
    spool.ack(2)
    spool.close()
    (tmp_path / "cursor").write_text("{not json")

    reopened = AuditSpool(tmp_path)
    assert seqs(reopened.peek(10)) == [0, 1, 2, 3]
    reopened.close()


@settings(max_examples=100, deadline=None)
@given(
    count=st.integers(min_value=0, max_value=8),
    cut=st.integers(min_value=0, max_value=400),
    garbage=st.binary(max_size=40),
)
def test_any_tail_damage_recovers_the_complete_records_before_it(
    count: int, cut: int, garbage: bytes
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        spool = AuditSpool(directory)
        spool.append_many(event(n) for n in range(count))
        spool.close()
        (segment,) = segment_files(directory)
        cut = min(cut, segment.stat().st_size)
        os.truncate(segment, cut)
        with segment.open("ab") as f:
            f.write(garbage)
        complete = 0
        while complete < count and sum(map(record_size, range(complete + 1))) <= cut:
            complete += 1

        recovered = AuditSpool(directory)
        assert seqs(recovered.peek(100)) == list(range(complete))
        recovered.append(event(50))
        recovered.close()
        assert seqs(AuditSpool(directory).peek(100)) == [*range(complete), 50]


# -- segments and fsync ---------------------------------------------------------------------


def test_rotation_deletes_acked_segments_and_keeps_unacked_ones(tmp_path: Path) -> None:
    size = 4 * RECORD
    spool = AuditSpool(tmp_path, segment_bytes=size)
    for n in range(1, 41):
        spool.append(event(n))
    files = segment_files(tmp_path)
    assert [f.name for f in files[:2]] == ["000000000001.seg", "000000000002.seg"]
    assert len(files) == 10
    assert all(f.stat().st_size <= size for f in files)

    spool.peek(10)
    spool.ack(10)  # segments 1 and 2 fully, half of segment 3
    assert [f.name for f in segment_files(tmp_path)] == [f.name for f in files[2:]]
    spool.peek(2)
    spool.ack(2)  # the end of segment 3 is the start of segment 4
    assert [f.name for f in segment_files(tmp_path)] == [f.name for f in files[3:]]
    spool.close()

    reopened = AuditSpool(tmp_path, segment_bytes=size)
    assert seqs(reopened.peek(100)) == list(range(13, 41))
    reopened.peek(28)
    reopened.ack(28)
    assert len(segment_files(tmp_path)) == 1  # only the current segment remains
    reopened.append(event(41))
    reopened.close()
    assert seqs(AuditSpool(tmp_path, segment_bytes=size).peek(100)) == [41]


def test_fsync_is_lazy_and_at_most_once_per_interval(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    now = [1000.0]

    class Clock:
        @staticmethod
        def monotonic() -> float:
            return now[0]

    monkeypatch.setattr(spool_module, "time", Clock)
    spool = AuditSpool(tmp_path, fsync_interval=1.0)
    fsyncs: list[int] = []
    real_fsync = os.fsync

    def counting_fsync(fd: int) -> None:
        fsyncs.append(fd)
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", counting_fsync)
    for n in range(5):
        spool.append(event(n))
    assert fsyncs == []
    now[0] += 1.5
    spool.append(event(5))
    spool.append(event(6))
    assert len(fsyncs) == 1
    spool.sync()
    assert len(fsyncs) == 2
    spool.close()
    assert len(fsyncs) == 3


def test_background_sync_keeps_fsync_off_the_callers_thread(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    callers: list[str] = []
    real_fsync = os.fsync

    def recording_fsync(fd: int) -> None:
        callers.append(threading.current_thread().name)
        real_fsync(fd)

    spool = AuditSpool(tmp_path, fsync_interval=0.01, background_sync=True)
    monkeypatch.setattr(os, "fsync", recording_fsync)
    for n in range(1, 6):
        spool.append(event(n))
    spool.peek(2)
    spool.ack(2)  # no segment is deleted: the cursor is written without fsync
    assert threading.current_thread().name not in callers
    # The syncer catches up with what was written (a wait, not a timing assertion).
    deadline = time.monotonic() + 10
    while "audit-spool-fsync" not in callers and time.monotonic() < deadline:
        time.sleep(0.01)
    assert "audit-spool-fsync" in callers
    spool.close()
    assert callers[-1] == threading.current_thread().name  # close syncs on the spot

    reopened = AuditSpool(tmp_path)
    assert seqs(reopened.peek(10)) == [3, 4, 5]
    reopened.close()


def test_background_sync_makes_the_cursor_durable_before_deleting_segments(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    size = 2 * RECORD
    spool = AuditSpool(tmp_path, segment_bytes=size, background_sync=True)
    spool.append_many([event(1), event(2)])
    spool.append_many([event(3), event(4)])
    main_fsyncs: list[int] = []
    real_fsync = os.fsync

    def recording_fsync(fd: int) -> None:
        if threading.current_thread() is threading.main_thread():
            main_fsyncs.append(fd)
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", recording_fsync)
    spool.peek(3)
    spool.ack(3)  # the first segment goes: cursor file and directory are fsynced first
    assert len(main_fsyncs) == 2
    assert len(segment_files(tmp_path)) == 1
    spool.close()


def test_closing_does_not_wait_out_the_fsync_interval(tmp_path: Path) -> None:
    spool = AuditSpool(tmp_path, fsync_interval=3600, background_sync=True)
    spool.append(event(1))
    syncer = spool._syncer
    assert syncer is not None
    deadline = time.monotonic() + 10
    while syncer.synced < 1 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert syncer.synced == 1  # the syncer now rests for the interval
    closing = threading.Thread(target=spool.close)
    closing.start()
    closing.join(timeout=10)  # a bound on a hang, not a timing check
    assert not closing.is_alive()
    assert seqs(AuditSpool(tmp_path).peek(10)) == [1]


def test_background_sync_loses_nothing_to_a_process_crash(tmp_path: Path) -> None:
    spool = AuditSpool(tmp_path / "live", fsync_interval=3600, background_sync=True)
    spool.append_many(event(n) for n in range(1, 4))
    spool.peek(1)
    spool.ack(1)
    spool.append(event(4))
    shutil.copytree(tmp_path / "live", tmp_path / "crashed")
    spool.close()

    recovered = AuditSpool(tmp_path / "crashed")
    assert seqs(recovered.peek(100)) == [2, 3, 4]
    recovered.close()


# -- model-based ----------------------------------------------------------------------------

audit_events = st.builds(
    pb.AuditEvent,
    session_id=st.text(min_size=1, max_size=8),
    seq=st.integers(min_value=0, max_value=2**63 - 1),
    time_ms=st.integers(min_value=0, max_value=2**53),
    kind=st.sampled_from(["session.start", "statement", "session.end", "auth.failed"]),
    payload_json=st.binary(max_size=120),
)


def test_appends_after_a_peek_wait_for_the_next_one(tmp_path: Path) -> None:
    spool = AuditSpool(tmp_path)
    for n in range(1, 11):
        spool.append_frames([frame(event(n))])
    assert seqs(spool.peek(4)) == [1, 2, 3, 4]  # a limit inside what was appended
    spool.append_frames([frame(event(11)), frame(event(12))])
    spool.ack(4)
    assert seqs(spool.peek(100)) == list(range(5, 13))
    spool.append_frames([frame(event(13))])
    spool.ack(8)
    assert seqs(spool.peek(100)) == [13]
    assert len(spool) == 1
    spool.close()


def test_without_the_c_module_the_spool_writes_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(spool_module, "_spoolio", None)
    spool = AuditSpool(tmp_path, segment_bytes=2 * record_size(1), background_sync=True)
    assert isinstance(spool.file, spool_module._SegmentFile)
    for n in range(1, 6):
        spool.append_frames([frame(event(n))])  # rotating every two records
    assert seqs(spool.peek(100)) == [1, 2, 3, 4, 5]
    spool.ack(5)
    assert len(spool) == 0
    spool.close()
    assert len(AuditSpool(tmp_path)) == 0


class SpoolMachine(RuleBasedStateMachine):
    """The spool behaves like a list that is appended to at the back and acked from the front."""

    def __init__(self) -> None:
        super().__init__()
        self.root = Path(tempfile.mkdtemp(prefix="lockgate-spool-"))
        self.generation = 0
        self.model: list[pb.AuditEvent] = []
        self.last_peek = 0

    @property
    def directory(self) -> Path:
        return self.root / str(self.generation)

    @initialize(
        segment_bytes=st.sampled_from([64, 400, 16 << 20]), kept=st.sampled_from([3, 20000])
    )
    def open(self, segment_bytes: int, kept: int) -> None:
        # How many appended records stay pending in memory: a few (the rest is read back from
        # the segments, as after a long control-plane outage) or all of them here.
        self.kept = spool_module._KEPT
        spool_module._KEPT = kept
        self.segment_bytes = segment_bytes
        self.spool = self.open_spool()

    def open_spool(self) -> AuditSpool:
        # With the fsync thread, as the node runs it: what lets an outbox write from C.
        return AuditSpool(self.directory, segment_bytes=self.segment_bytes, background_sync=True)

    @rule(e=audit_events)
    def append(self, e: pb.AuditEvent) -> None:
        self.spool.append(e)
        self.model.append(e)

    @rule(batch=st.lists(audit_events, max_size=6))
    def append_many(self, batch: list[pb.AuditEvent]) -> None:
        self.spool.append_many(batch)
        self.model.extend(batch)

    @rule(batch=st.lists(audit_events, min_size=1, max_size=6))
    def outbox_append(self, batch: list[pb.AuditEvent]) -> None:
        # As the trail's outbox ends a turn: written from C, counted by the spool's next
        # operation, or handed back to Python (a segment about to fill).
        unwritten = [frame(e) for e in batch]

        def write_pending() -> None:
            self.spool.append_frames(unwritten[:])
            unwritten.clear()

        Outbox(unwritten, [], self.spool.file, write_pending, lambda: None)()
        assert unwritten == []
        self.model.extend(batch)

    @rule(
        limit=st.integers(min_value=0, max_value=12),
        max_bytes=st.none() | st.integers(min_value=0, max_value=300),
    )
    def peek(self, limit: int, max_bytes: int | None) -> None:
        # A peek may end inside what one append wrote (a run), and an ack too.
        batch, count = self.spool.peek_batch(limit, max_bytes)
        expected = self.model[:limit]
        if max_bytes is not None:
            total = 0
            for n, event in enumerate(expected):
                total += event.ByteSize()
                if total > max_bytes and n > 0:
                    del expected[n:]
                    break
        assert list(pb.AuditBatch.FromString(batch).events) == expected
        assert count == len(expected)
        assert batch == pb.AuditBatch(events=expected).SerializeToString()
        self.last_peek = count

    @rule(data=st.data())
    def ack(self, data: st.DataObject) -> None:
        count = data.draw(st.integers(min_value=0, max_value=self.last_peek))
        self.spool.ack(count)
        del self.model[:count]
        self.last_peek -= count

    @rule()
    def reopen(self) -> None:
        self.spool.close()
        self.spool = self.open_spool()
        self.last_peek = 0

    @rule()
    def crash(self) -> None:
        old = self.directory
        self.generation += 1
        shutil.copytree(old, self.directory)
        self.spool.close()
        self.spool = self.open_spool()
        self.last_peek = 0

    @invariant()
    def length_matches(self) -> None:
        if hasattr(self, "spool"):
            assert len(self.spool) == len(self.model)

    def teardown(self) -> None:
        if hasattr(self, "spool"):
            self.spool.close()
            spool_module._KEPT = self.kept
        shutil.rmtree(self.root, ignore_errors=True)


SpoolMachine.TestCase.settings = settings(max_examples=100, stateful_step_count=25, deadline=None)
TestSpoolAgainstModel = SpoolMachine.TestCase
