"""The audit trail's end of a turn in C: records written through the shared segment, then the
forwards; whatever it cannot write goes to the Python path."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from data_plane.audit._spoolio import Outbox, SpoolFile
from data_plane.audit.spool import frame
from protos.lockgate.v1 import node_pb2 as pb


class Syncer:
    def __init__(self) -> None:
        self.pending: int | None = None
        self.requests: list[int] = []

    def request(self, fd: int) -> None:
        self.requests.append(fd)
        self.pending = fd


class Socket:
    def __init__(self, closing: bool = False) -> None:
        self.closing = closing
        self.writes: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.writes.append(data)

    def is_closing(self) -> bool:
        return self.closing


def record(seq: int) -> bytes:
    return frame(pb.AuditEvent(session_id="s", seq=seq, kind="statement", payload_json=b"{}"))


@pytest.fixture
def segment(tmp_path: Path) -> Iterator[int]:
    fd = os.open(tmp_path / "000000000001.seg", os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    yield fd
    os.close(fd)


def test_records_are_written_in_one_piece_then_forwarded(segment: int, tmp_path: Path) -> None:
    syncer = Syncer()
    file = SpoolFile(segment, 0, 1 << 20, syncer)
    unwritten = [record(1), record(2)]
    open_socket, closing_socket = Socket(), Socket(closing=True)
    after_write = [(open_socket, b"Q1"), (closing_socket, b"Q2"), (open_socket, b"Q3")]
    fallbacks: list[int] = []
    wakes: list[int] = []
    Outbox(unwritten, after_write, file, lambda: fallbacks.append(1), lambda: wakes.append(1))()
    assert unwritten == [] and after_write == []
    assert open_socket.writes == [b"Q1", b"Q3"] and closing_socket.writes == []
    assert fallbacks == [] and wakes == [1] and syncer.requests == [segment]
    on_disk = (tmp_path / "000000000001.seg").read_bytes()
    assert on_disk == record(1) + record(2)
    assert file.size == len(on_disk) and file.unaccounted == 2
    assert file.take() == (on_disk, 2)
    assert file.take() == (b"", 0) and file.unaccounted == 0


def test_a_pending_fsync_is_not_asked_for_again(segment: int) -> None:
    syncer = Syncer()
    syncer.pending = 99
    file = SpoolFile(segment, 0, 1 << 20, syncer)
    Outbox([record(1)], [], file, lambda: None, lambda: None)()
    assert syncer.requests == [] and file.unaccounted == 1


def test_forwards_alone_write_nothing_to_the_segment(segment: int) -> None:
    file = SpoolFile(segment, 0, 1 << 20, Syncer())
    socket = Socket()
    Outbox([], [(socket, b"Q")], file, lambda: None, lambda: None)()
    assert socket.writes == [b"Q"] and file.size == 0


def test_without_an_fsync_thread_the_python_path_writes(segment: int) -> None:
    file = SpoolFile(segment, 0, 1 << 20, None)
    unwritten = [record(1)]
    socket = Socket()
    fallbacks: list[int] = []
    Outbox(unwritten, [(socket, b"Q")], file, lambda: fallbacks.append(1), lambda: None)()
    assert fallbacks == [1]
    assert unwritten == [record(1)] and socket.writes == []  # left as they were for it
    assert file.size == 0 and file.unaccounted == 0


def test_a_write_past_the_segment_limit_is_left_to_the_python_path(segment: int) -> None:
    size = len(record(1))
    file = SpoolFile(segment, 0, size, Syncer())
    assert file.limit == size  # the spool's own writes rotate by the same limit
    fallbacks: list[int] = []
    Outbox([record(1)], [], file, lambda: fallbacks.append(1), lambda: None)()
    assert fallbacks == [] and file.size == size  # an empty segment takes any write
    Outbox([record(2)], [], file, lambda: fallbacks.append(1), lambda: None)()
    assert fallbacks == [1] and file.size == size and file.unaccounted == 1


def test_a_failed_write_leaves_the_segment_as_it_was(tmp_path: Path) -> None:
    path = tmp_path / "000000000001.seg"
    path.write_bytes(record(1))
    read_only = os.open(path, os.O_RDONLY)
    try:
        file = SpoolFile(read_only, len(record(1)), 1 << 20, Syncer())
        unwritten = [record(2)]
        fallbacks: list[int] = []
        Outbox(unwritten, [], file, lambda: fallbacks.append(1), lambda: None)()
    finally:
        os.close(read_only)
    assert fallbacks == [1] and unwritten == [record(2)]
    assert file.size == len(record(1)) and file.unaccounted == 0
    assert path.read_bytes() == record(1)


def test_records_that_are_not_bytes_go_to_the_python_path(segment: int) -> None:
    file = SpoolFile(segment, 0, 1 << 20, Syncer())
    fallbacks: list[int] = []
    Outbox(["not bytes"], [], file, lambda: fallbacks.append(1), lambda: None)()  # type: ignore[list-item]
    assert fallbacks == [1] and file.size == 0


def test_a_new_segment_waits_for_what_was_written_to_be_taken(segment: int) -> None:
    file = SpoolFile(segment, 0, 1 << 20, Syncer())
    Outbox([record(1)], [], file, lambda: None, lambda: None)()
    with pytest.raises(RuntimeError):
        file.reopen(segment, 0)
    file.take()
    file.reopen(segment, 7)
    assert file.fd == segment and file.size == 7
