"""BulkReads on real loopback TCP sockets: the receive low-water mark it sets, and that no
byte stays stuck under it."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest

from data_plane.bulk import BulkReads

TICK = 0.02  # seconds; long enough that a test's own steps fit inside one


class Receiver(asyncio.Protocol):
    def __init__(self) -> None:
        self.received = bytearray()
        self.more = asyncio.Event()

    def data_received(self, data: bytes) -> None:
        self.received += data
        self.more.set()


@dataclass
class Pair:
    """The reading side as a transport (the relay's target socket), the sending side plain."""

    transport: asyncio.Transport
    receiver: Receiver
    sender: socket.socket
    bulk: BulkReads = field(init=False)

    def mark(self) -> int:
        sock = self.transport.get_extra_info("socket")
        return int(sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT))

    async def got(self, size: int) -> None:
        while len(self.receiver.received) < size:
            self.receiver.more.clear()
            await asyncio.wait_for(self.receiver.more.wait(), 5)


@pytest.fixture
async def pair() -> AsyncIterator[Pair]:
    loop = asyncio.get_running_loop()
    listener = socket.create_server(("127.0.0.1", 0))
    listener.setblocking(False)
    connecting = loop.create_connection(Receiver, *listener.getsockname())
    (transport, receiver), (sender, _) = await asyncio.gather(
        connecting, loop.sock_accept(listener)
    )
    p = Pair(transport, receiver, sender)
    p.bulk = BulkReads(transport, after=0, low_water=64 * 1024, tick=TICK)
    yield p
    p.bulk.close()
    transport.close()
    sender.close()
    listener.close()


async def test_a_read_raises_the_mark_and_the_timer_lowers_it(pair: Pair) -> None:
    assert pair.mark() == 1
    assert pair.bulk.read(100) and pair.bulk.active and pair.mark() == 64 * 1024
    assert pair.bulk.read(100) and pair.bulk.raised == 1  # still raised, timer restarted
    await asyncio.sleep(TICK * 3)
    assert not pair.bulk.active and pair.mark() == 1


async def test_bytes_under_the_mark_arrive_after_a_tick_and_not_before(pair: Pair) -> None:
    pair.bulk.read(100)
    pair.sender.sendall(b"a" * 1000)  # far under the mark
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert pair.receiver.received == b""  # the mark holds them back...
    await pair.got(1000)  # ...until the timer lowers it
    assert pair.receiver.received == b"a" * 1000 and pair.mark() == 1


async def test_bytes_at_the_mark_arrive_at_once(pair: Pair) -> None:
    pair.bulk.read(100)
    pair.sender.sendall(b"b" * 64 * 1024)
    await pair.got(64 * 1024)
    assert pair.bulk.active  # read before the timer, which is still running


async def test_a_reply_that_slowed_down_is_counted_again(pair: Pair) -> None:
    pair.bulk.read(100)
    await asyncio.sleep(TICK * 3)  # nothing came in a tick
    assert not pair.bulk.read(100)  # count from zero: the mark stays down
    assert pair.mark() == 1 and pair.bulk.raised == 1
    assert pair.bulk.read(100) and pair.mark() == 64 * 1024 and pair.bulk.raised == 2


async def test_a_reply_still_flowing_keeps_its_bulk_reads(pair: Pair) -> None:
    pair.bulk.read(100)
    pair.transport.pause_reading()  # so the bytes wait in the socket through the tick
    pair.sender.sendall(b"c" * 8 * 1024)  # more than a sixteenth of the mark
    await asyncio.sleep(TICK * 3)
    assert pair.mark() == 1  # lowered, so they are read at once...
    assert pair.bulk.read(100) and pair.mark() == 64 * 1024  # ...and the next read raises it
    pair.transport.resume_reading()
    await pair.got(8 * 1024)


async def test_the_client_speaking_lowers_the_mark_at_once(pair: Pair) -> None:
    pair.bulk.read(100)
    pair.sender.sendall(b"d" * 10)
    pair.bulk.reset()
    assert not pair.bulk.active and pair.mark() == 1
    await pair.got(10)


async def test_after_close_no_timer_touches_the_socket(pair: Pair) -> None:
    pair.bulk.read(100)
    pair.bulk.close()
    assert not pair.bulk.active
    await asyncio.sleep(TICK * 3)
    assert pair.mark() == 64 * 1024  # left as it was; the socket is about to close
    assert not pair.bulk.read(100)  # and nothing is raised any more


async def test_a_transport_without_a_socket_is_left_alone() -> None:
    class NoSocket(asyncio.BaseTransport):
        def get_extra_info(self, name: str, default: object = None) -> object:
            return default

    bulk = BulkReads(NoSocket(), after=0)
    assert not bulk.read(100) and not bulk.active and bulk.raised == 0
    bulk.reset()
