"""The node's audit spool: every audit event lands in append-only segment files before upload.

A record is a uint32 length, a uint32 CRC32 of the payload and the serialized `AuditEvent`; a small
`cursor` file marks how far the control plane has acknowledged, and segments behind it are deleted.

Writes reach the page cache at once, so a crashed process loses nothing; fsync (what a power cut
needs) runs at most once per interval. The node lets a background thread do it
(`background_sync`): an fsync can take milliseconds to tens of milliseconds under load, and on
the event loop that is every session's latency. There the cursor is written without fsync too,
except before acknowledged segments are deleted: a cursor lost to a power cut only means
events are sent again, which the control plane stores once.
"""

from __future__ import annotations

import contextlib
import enum
import json
import logging
import os
import re
import threading
import time
import zlib
from bisect import bisect_right
from collections import deque
from collections.abc import Iterable
from pathlib import Path
from typing import NamedTuple

from google.protobuf.message import DecodeError

from lockgate.audit_batch import (
    FRAME_HEADER,
    batch_of,
    event_spans,
    events_of,
    frames_to_batch,
    prefix,
)
from protos.lockgate.v1 import node_pb2 as pb

try:
    from data_plane.audit import _spoolio
except ImportError:  # not built: the trail's Python path writes everything
    _spoolio = None  # type: ignore[assignment]

log = logging.getLogger("lockgate.audit.spool")

_HEADER = FRAME_HEADER  # payload length, CRC32 of the payload
_MAX_PAYLOAD = 0xFFFFFFFF
_READ_CHUNK = 64 << 10
_KEPT = 20000  # appended records kept as pending, at most (see append_frames)
_SEGMENT_NAME = re.compile(r"(\d{12})\.seg")
_CURSOR = "cursor"
_CURSOR_TMP = "cursor.tmp"

Position = tuple[int, int]
"""(segment number, byte offset of the next record in it)."""


class _Run(NamedTuple):
    """Consecutive records of one segment, pending upload: one write's worth as appended, or
    one record as read back from disk."""

    batch: bytes  # their events as an `AuditBatch` encodes them (field 1 each)
    records: int
    size: int  # bytes of serialized events (what a peek's `max_bytes` counts)
    start: Position  # where the first record starts
    end: Position  # just after the last


def _split_run(run: _Run, count: int) -> tuple[_Run, _Run]:
    """The first `count` records of a run (0 < count < run.records) and the rest."""
    at, _, size = prefix(run.batch, count, None, True)
    segment, offset = run.start
    middle = (segment, offset + count * _HEADER.size + size)
    return (
        _Run(run.batch[:at], count, size, run.start, middle),
        _Run(run.batch[at:], run.records - count, run.size - size, middle, run.end),
    )


def _first_that_fit(run: _Run, limit: int, budget: int | None, alone: bool) -> _Run:
    """The first records of `run`, at most `limit` of them and of at most `budget` bytes of
    events; when `alone` (the first of a peek), the first record whatever its size."""
    at, count, size = prefix(run.batch, limit, budget, alone)
    if count == run.records:
        return run
    segment, offset = run.start
    end = (segment, offset + count * _HEADER.size + size)
    return _Run(run.batch[:at], count, size, run.start, end)


def _singles(run: _Run) -> list[_Run]:
    """A run as runs of one record each."""
    runs = []
    segment, offset = run.start
    for start, end in event_spans(run.batch):
        after = offset + _HEADER.size + end - start
        event = run.batch[start:end]
        runs.append(_Run(batch_of([event]), 1, len(event), (segment, offset), (segment, after)))
        offset = after
    return runs


class _SegmentFile:
    """The current segment as `_spoolio.SpoolFile` keeps it, for when that is not built (no
    outbox then writes through it, so nothing is ever left to take)."""

    unaccounted = 0

    def __init__(self, fd: int, size: int, limit: int, syncer: object) -> None:
        self.fd = fd
        self.size = size
        self.limit = limit

    def take(self) -> tuple[bytes, int]:
        return b"", 0

    def reopen(self, fd: int, size: int) -> None:
        self.fd, self.size = fd, size


class _Stop(enum.Enum):
    END = "end"  # no further complete record before the known end of the segment
    BAD = "bad"  # a torn or corrupt record starts at the reader's offset


def frame(event: pb.AuditEvent) -> bytes:
    """The spool's record of `event`: its length, its CRC32 and the event serialized."""
    payload = event.SerializeToString()
    if not payload:
        # An empty record would be indistinguishable from the zero-filled tail a filesystem can
        # leave after a power loss, so recovery treats length 0 as damage and we never write one.
        raise ValueError("cannot spool an empty AuditEvent")
    if len(payload) > _MAX_PAYLOAD:
        raise ValueError(f"audit event of {len(payload)} bytes is too large to spool")
    return _HEADER.pack(len(payload), zlib.crc32(payload)) + payload


class _SegmentReader:
    """Reads the records of one segment forward from a byte offset, a chunk at a time."""

    def __init__(self, path: Path, number: int, offset: int) -> None:
        self.number = number
        self.offset = offset
        self._fd = os.open(path, os.O_RDONLY)
        self._buf = b""
        self._buf_start = offset

    def size(self) -> int:
        return os.fstat(self._fd).st_size

    def next(self, end: int) -> bytes | _Stop:
        """The next record's payload, reading no further than byte `end` of the file."""
        if self.offset >= end:
            return _Stop.END
        if end - self.offset < _HEADER.size:
            return _Stop.BAD
        header = self._bytes(_HEADER.size)
        if header is None:
            return _Stop.BAD
        length, crc = _HEADER.unpack(header)
        if length == 0 or self.offset + _HEADER.size + length > end:
            return _Stop.BAD
        record = self._bytes(_HEADER.size + length)
        if record is None:
            return _Stop.BAD
        payload = record[_HEADER.size :]
        if zlib.crc32(payload) != crc:
            return _Stop.BAD
        self.offset += _HEADER.size + length
        return payload

    def close(self) -> None:
        os.close(self._fd)

    def _bytes(self, n: int) -> bytes | None:
        # Segments only grow and bytes never change in place, so a cached chunk stays valid.
        start = self.offset - self._buf_start
        if start < 0 or start + n > len(self._buf):
            self._buf = os.pread(self._fd, max(n, _READ_CHUNK), self.offset)
            self._buf_start = self.offset
            start = 0
            if len(self._buf) < n:
                return None
        return self._buf[start : start + n]


class _Syncer(threading.Thread):
    """Fsyncs a file at most once per interval, off the caller's thread.

    It is handed a duplicate of the descriptor, so the spool may rotate or close its own
    descriptor while an fsync is running."""

    def __init__(self, interval: float) -> None:
        super().__init__(name="audit-spool-fsync", daemon=True)
        self._interval = interval
        self._wake = threading.Condition()
        # The descriptor an fsync is pending for (a duplicate), read without the lock by
        # writers: an fsync still pending starts after their write, so it covers it.
        self.pending: int | None = None
        self._stopping = False
        self.synced = 0

    def request(self, fd: int) -> None:
        if self.pending is not None:
            return  # a pending fsync starts after this write, so it covers it
        with self._wake:
            if self.pending is None:
                self.pending = os.dup(fd)
                self._wake.notify()

    def stop(self) -> None:
        with self._wake:
            self._stopping = True
            self._wake.notify()
        self.join()

    def run(self) -> None:
        while True:
            with self._wake:
                while self.pending is None and not self._stopping:
                    self._wake.wait()
                fd, self.pending = self.pending, None
                stopping = self._stopping
            if fd is not None:
                try:
                    os.fsync(fd)
                    self.synced += 1
                except OSError as exc:
                    log.warning("audit spool fsync failed: %s", exc)
                finally:
                    os.close(fd)
            if stopping:
                return
            with self._wake:  # the interval between fsyncs, cut short by stop()
                self._wake.wait_for(lambda: self._stopping, self._interval)


class AuditSpool:
    """Append-only segment files plus a persisted acknowledgement cursor."""

    def __init__(
        self,
        directory: Path,
        *,
        segment_bytes: int = 16 << 20,
        fsync_interval: float = 0.05,
        background_sync: bool = False,
    ) -> None:
        """Open the spool in `directory`, creating it or recovering what a crash left behind."""
        if segment_bytes <= 0:
            raise ValueError("segment_bytes must be positive")
        self._dir = directory
        self._fsync_interval = fsync_interval
        self._appended = 0
        self._last_peek = 0
        self._closed = False
        # Records from the cursor onward, in runs: read from the segments (a run each), or
        # kept as they were appended (a run from one peek to the next: see append_frames).
        self._pending: deque[_Run] = deque()
        self._pending_count = 0  # records in those runs and in the open run
        # What was appended while the reader had caught up, since the spool was last peeked:
        # one run grown in place, after everything in `_pending`, sealed into it by the next
        # peek. A busy node appends a few records a turn; a run for each made every peek and
        # every acknowledgement a Python step per turn.
        self._open = bytearray()
        self._open_records = 0
        self._open_size = 0
        self._open_start: Position = (0, 0)
        self._open_end: Position = (0, 0)
        # Where a corrupt record was found, so each is reported once and counted consistently.
        self._damaged: set[Position] = set()

        directory.mkdir(parents=True, exist_ok=True)
        (directory / _CURSOR_TMP).unlink(missing_ok=True)
        self._segments, self._cursor = self._recover_layout()
        self._write_seg = self._segments[-1]
        size = self._recover_tail(self._write_seg)
        fd = os.open(self._path(self._write_seg), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        os.fsync(fd)  # makes a tail truncation durable before anything is appended
        self._last_sync = time.monotonic()
        self._syncer: _Syncer | None = None
        if background_sync:
            self._syncer = _Syncer(fsync_interval)
            self._syncer.start()
        # The segment appends go to: its descriptor and size, shared with the trail's outbox,
        # which writes a turn's records through it from C (see `file`).
        make = _spoolio.SpoolFile if _spoolio is not None else _SegmentFile
        self._file = make(fd, size, segment_bytes, self._syncer)
        self._count = self._count_from(self._cursor)
        self._reader = _SegmentReader(self._path(self._cursor[0]), *self._cursor)

    @property
    def file(self) -> _spoolio.SpoolFile | _SegmentFile:
        """The current segment as writers share it. What an outbox (`_spoolio.Outbox`) writes
        through it is counted and kept for upload by the spool's next operation."""
        return self._file

    @property
    def appended(self) -> int:
        """Events appended since this spool was opened."""
        self._take_outbox_writes()
        return self._appended

    def __len__(self) -> int:
        """Number of unacknowledged events."""
        self._take_outbox_writes()
        return self._count

    def append(self, event: pb.AuditEvent) -> None:
        """Write one event to the current segment."""
        self._check_open()
        self._take_outbox_writes()
        self._write(frame(event))
        self._count += 1
        self._appended += 1

    def append_many(self, events: Iterable[pb.AuditEvent]) -> None:
        """Write several events with a single write call."""
        self.append_frames([frame(event) for event in events])

    def append_frames(self, records: list[bytes]) -> None:
        """Write records made by `frame` (or framed as it frames) with a single write call.

        While the reader has caught up with the writer, the records are also kept as pending,
        so that peeking does not read back what was just written (up to `_KEPT` of them: a
        control plane that is away leaves the rest on disk, read when it is back). They join
        the open run, already encoded as an upload sends them: a busy node writes a few
        records a turn, and a Python object per record or per turn cost more than the write."""
        self._check_open()
        if not records:
            return
        self._take_outbox_writes()
        data = b"".join(records)
        self._write(data)
        self._account(data, len(records))

    def _take_outbox_writes(self) -> None:
        """Count what outboxes wrote to the segment since the spool's last operation."""
        if self._file.unaccounted:
            data, count = self._file.take()
            self._account(data, count)

    def _account(self, data: bytes, count: int) -> None:
        """Count `count` records just written at the end of the segment (`data`), and keep
        them in the open run while the reader has caught up with them."""
        self._count += count
        self._appended += count
        reader = self._reader
        end = self._file.size
        start = end - len(data)
        if (
            reader.offset == start
            and reader.number == self._write_seg
            and self._pending_count + count <= _KEPT
        ):
            if not self._open_records:
                self._open_start = (self._write_seg, start)
            self._open += frames_to_batch(data)
            self._open_records += count
            self._open_size += len(data) - _HEADER.size * count
            self._open_end = (self._write_seg, end)
            self._pending_count += count
            reader.offset = end

    def peek(self, limit: int, max_bytes: int | None = None) -> list[pb.AuditEvent]:
        """The oldest unacknowledged events in append order, without consuming: at most `limit`,
        and with `max_bytes`, no more than fit in that many serialized bytes (but always the
        first, however large)."""
        return [pb.AuditEvent.FromString(r) for r in self.peek_serialized(limit, max_bytes)]

    def peek_serialized(self, limit: int, max_bytes: int | None = None) -> list[bytes]:
        """`peek`, each event as its serialized bytes."""
        return events_of(self.peek_batch(limit, max_bytes)[0])

    def peek_batch(self, limit: int, max_bytes: int | None = None) -> tuple[bytes, int]:
        """`peek` as the events' `AuditBatch` encoding, and how many they are: what an upload
        sends. Records that do not decode are skipped with a warning, as damage is."""
        self._check_open()
        if limit < 0:
            raise ValueError("limit must not be negative")
        while True:
            self._fill(limit)
            parts: list[bytes] = []
            count = size = 0
            for run in self._pending:
                room = limit - count
                if room <= 0:
                    break
                budget = None if max_bytes is None else max_bytes - size
                if run.records > room or (budget is not None and run.size > budget):
                    # The first records of this run that fit, and nothing after them.
                    run = _first_that_fit(run, room, budget, alone=count == 0)
                    if run.records:
                        parts.append(run.batch)
                        count += run.records
                    break
                parts.append(run.batch)
                count += run.records
                size += run.size
            batch = b"".join(parts)
            try:
                pb.AuditBatch.FromString(batch)  # one check for the whole batch
            except DecodeError:
                if self._drop_undecodable(count):
                    continue
                log.error("an audit batch does not decode though each of its events does")
            self._last_peek = count
            return batch, count

    def _seal(self) -> None:
        """Move the open run to the end of `_pending` (before anything read from disk)."""
        if self._open_records:
            run = _Run(
                bytes(self._open),
                self._open_records,
                self._open_size,
                self._open_start,
                self._open_end,
            )
            self._pending.append(run)
            self._open.clear()
            self._open_records = self._open_size = 0

    def _drop_undecodable(self, within: int) -> int:
        """Drop the records among the first `within` pending that do not decode; how many."""
        before = self._pending_count
        kept: deque[_Run] = deque()
        seen = 0
        for run in self._pending:
            if seen >= within:
                kept.append(run)
                continue
            seen += run.records
            for single in _singles(run):
                try:
                    pb.AuditEvent.FromString(events_of(single.batch)[0])
                except DecodeError:
                    log.warning(
                        "skipping undecodable audit record in segment %d ending at offset %d",
                        *single.end,
                    )
                    self._count -= 1
                    self._pending_count -= 1
                    continue
                kept.append(single)
        self._pending = kept
        return before - self._pending_count

    def ack(self, count: int) -> None:
        """Mark the first `count` events of the last peek delivered and drop what is behind them."""
        self._check_open()
        if count < 0 or count > self._last_peek:
            raise ValueError(f"cannot ack {count} events, the last peek returned {self._last_peek}")
        if count == 0:
            return
        left = count
        while left:
            run = self._pending[0]
            if run.records > left:
                done, self._pending[0] = _split_run(run, left)
                position = done.end
                break
            self._pending.popleft()
            left -= run.records
            position = run.end
        self._pending_count -= count
        self._last_peek -= count
        self._count -= count
        self._cursor = self._normalize(position)
        deleting = self._segments[0] < self._cursor[0]
        self._persist_cursor(durable=deleting or self._syncer is None)
        while self._segments[0] < self._cursor[0]:
            number = self._segments.pop(0)
            self._path(number).unlink(missing_ok=True)
            self._damaged = {p for p in self._damaged if p[0] != number}

    def sync(self) -> None:
        """Fsync the current segment now."""
        self._check_open()
        os.fsync(self._file.fd)
        self._last_sync = time.monotonic()

    def close(self) -> None:
        """Fsync and close the spool; closing twice is harmless."""
        if self._closed:
            return
        self._closed = True
        if self._syncer is not None:
            self._syncer.stop()
        try:
            os.fsync(self._file.fd)
        finally:
            os.close(self._file.fd)
            self._reader.close()

    # -- writing -----------------------------------------------------------------------------

    def _write(self, data: bytes) -> None:
        size = len(data)
        file = self._file
        if file.size > 0 and file.size + size > file.limit:
            self._rotate()
        view = memoryview(data)
        written = 0
        try:
            while written < size:
                written += os.write(file.fd, view[written:])
        except OSError:
            # Leave no torn record behind (a full disk, say) for readers or for recovery.
            with contextlib.suppress(OSError):
                os.ftruncate(file.fd, file.size)
            raise
        file.size += size
        if self._syncer is not None:
            self._syncer.request(file.fd)
            return
        now = time.monotonic()
        if now - self._last_sync >= self._fsync_interval:
            os.fsync(file.fd)
            self._last_sync = now

    def _rotate(self) -> None:
        self._take_outbox_writes()  # they belong to the segment being closed
        number = self._write_seg + 1
        fd = os.open(self._path(number), os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_EXCL, 0o644)
        self._fsync_dir()
        try:
            os.fsync(self._file.fd)
        finally:
            os.close(self._file.fd)
        self._segments.append(number)
        self._write_seg = number
        self._file.reopen(fd, 0)
        self._last_sync = time.monotonic()

    # -- reading -----------------------------------------------------------------------------

    def _fill(self, want: int) -> None:
        """Read records past the pending ones until `want` are pending or none are left."""
        self._take_outbox_writes()
        self._seal()  # what is read comes after it
        while self._pending_count < want:
            reader = self._reader
            sealed = reader.number != self._write_seg
            end = reader.size() if sealed else self._file.size
            stop = self._read_into_pending(reader, end, want)
            if stop is None or (stop is _Stop.END and not sealed):
                return
            recount = False
            if stop is _Stop.BAD:
                recount = (reader.number, reader.offset) not in self._damaged
                self._note_damage(reader.number, reader.offset)
                if not sealed:
                    self._rotate()  # appends must land after the damage to stay readable
            number = self._segments[bisect_right(self._segments, reader.number)]
            reader.close()
            self._reader = _SegmentReader(self._path(number), number, 0)
            if recount:
                # The damage appeared after open, so the records behind it were counted.
                self._count = self._pending_count + self._count_from((number, 0))

    def _read_into_pending(self, reader: _SegmentReader, end: int, want: int) -> _Stop | None:
        while self._pending_count < want:
            start = (reader.number, reader.offset)
            record = reader.next(end)
            if isinstance(record, _Stop):
                return record
            end_at = (reader.number, reader.offset)
            self._pending.append(_Run(batch_of([record]), 1, len(record), start, end_at))
            self._pending_count += 1
        return None

    def _count_from(self, position: Position) -> int:
        first, offset = position
        count = 0
        for number in self._segments[self._segments.index(first) :]:
            reader = _SegmentReader(self._path(number), number, offset if number == first else 0)
            try:
                end = self._file.size if number == self._write_seg else reader.size()
                while not isinstance(stop := reader.next(end), _Stop):
                    count += 1
                if stop is _Stop.BAD:
                    self._note_damage(number, reader.offset)
            finally:
                reader.close()
        return count

    def _note_damage(self, number: int, offset: int) -> None:
        if (number, offset) in self._damaged:
            return
        self._damaged.add((number, offset))
        log.warning(
            "audit spool segment %s is corrupt at offset %d; skipping the rest of it",
            self._path(number).name,
            offset,
        )

    # -- cursor and recovery -----------------------------------------------------------------

    def _normalize(self, position: Position) -> Position:
        number, offset = position
        if number != self._write_seg and offset >= self._path(number).stat().st_size:
            # The end of a sealed segment is the start of the next one; it can then be deleted.
            return self._segments[bisect_right(self._segments, number)], 0
        return position

    def _persist_cursor(self, durable: bool = True) -> None:
        number, offset = self._cursor
        data = json.dumps({"segment": number, "offset": offset}).encode()
        tmp = self._dir / _CURSOR_TMP
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            os.write(fd, data)
            if durable:
                os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, self._dir / _CURSOR)
        if durable:
            self._fsync_dir()

    def _load_cursor(self) -> Position | None:
        try:
            raw = (self._dir / _CURSOR).read_bytes()
        except FileNotFoundError:
            return None
        try:
            data = json.loads(raw)
            number, offset = data["segment"], data["offset"]
            if not (type(number) is int and type(offset) is int and number >= 1 and offset >= 0):
                raise ValueError(data)
        except (ValueError, KeyError, TypeError):
            # Re-sending acknowledged events is harmless (the control plane dedupes by
            # (session_id, seq)); refusing to start would lose everything spooled.
            log.warning("audit spool cursor is unreadable; re-reading from the oldest segment")
            return None
        return number, offset

    def _recover_layout(self) -> tuple[list[int], Position]:
        numbers = sorted(
            int(m.group(1))
            for p in self._dir.iterdir()
            if (m := _SEGMENT_NAME.fullmatch(p.name)) and p.is_file()
        )
        cursor = self._load_cursor() or (numbers[0] if numbers else 1, 0)
        number, offset = cursor
        for stale in (n for n in numbers if n < number):
            # A crash between persisting the cursor and deleting the segments behind it.
            self._path(stale).unlink(missing_ok=True)
        numbers = [n for n in numbers if n >= number]
        if not numbers:
            numbers = [number if offset == 0 else number + 1]
            self._path(numbers[0]).touch()
            self._fsync_dir()
        if numbers[0] != number:
            cursor = (numbers[0], 0)
        elif offset > self._path(number).stat().st_size:
            # The cursor reached the disk but the segment tail did not (power loss before the
            # segment's fsync); re-deliver the segment rather than guess a record boundary.
            log.warning("audit spool cursor is past the end of its segment; re-reading it")
            cursor = (number, 0)
        return numbers, cursor

    def _recover_tail(self, number: int) -> int:
        """Truncate a torn or corrupt tail of the last segment; return its valid length."""
        start = self._cursor[1] if self._cursor[0] == number else 0
        reader = _SegmentReader(self._path(number), number, start)
        try:
            size = reader.size()
            while not isinstance(reader.next(size), _Stop):
                pass
            valid = reader.offset
        finally:
            reader.close()
        if valid < size:
            log.warning(
                "audit spool segment %s: dropping %d bytes of torn or corrupt tail at offset %d",
                self._path(number).name,
                size - valid,
                valid,
            )
            os.truncate(self._path(number), valid)
        return valid

    def _path(self, number: int) -> Path:
        return self._dir / f"{number:012d}.seg"

    def _fsync_dir(self) -> None:
        fd = os.open(self._dir, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def _check_open(self) -> None:
        if self._closed:
            raise ValueError("audit spool is closed")
