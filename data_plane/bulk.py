"""Fewer, larger reads from a target that is streaming a large reply.

A relay that forwards each chunk as it arrives reads a large result in the pieces the target's
writes leave in the socket between two reads (about 16 KiB from PostgreSQL), and each piece is
a wake-up, a copy into a new bytes object and a write that wakes the client in turn. Once a
target has sent `after` bytes since the client last sent anything, `BulkReads` raises the
socket's receive low-water mark (SO_RCVLOWAT), so the event loop reports it readable only when
`low_water` bytes wait. A timer of `tick` seconds, restarted by every read, lowers the mark
again when no read comes in time, so no byte waits much more than a tick: the last ones of a
reply, and those of a target that sends less than `low_water` a tick (the next read raises the
mark again, so such a reply is read a tick's worth at a time). When less than a sixteenth of
the mark came in that tick, the reply has slowed down and the count starts again from zero, so
a trickle (a replication stream, a slow cursor) is read as it comes. The client sending
anything lowers the mark at once.

The relay counts the bytes and calls `read` for each read past `after` and `reset` when the
client sends; the PostgreSQL fast path does so in C, for sessions whose replies pass unchanged.
(Masked replies are read as they come: in one measurement, masking larger chunks cost more
CPU than the reads it saved.) Linux re-checks a socket's readiness when the mark is lowered,
so bytes under the old mark are read at once. Where the option or the socket is missing,
nothing changes.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import socket
import struct
import termios
from typing import Any

AFTER = 1 << 20
LOW_WATER = 1 << 20
TICK = 0.001


class BulkReads:
    """The low-water mark of one relayed target socket (see the module)."""

    def __init__(
        self,
        transport: asyncio.BaseTransport,
        *,
        after: int = AFTER,
        low_water: int = LOW_WATER,
        tick: float = TICK,
    ) -> None:
        self.after = after
        self.low_water = low_water
        self.tick = tick
        self._sock: Any = transport.get_extra_info("socket")
        self._loop = asyncio.get_running_loop()
        self._timer: asyncio.TimerHandle | None = None
        self._slowed = False
        # Times the mark was raised: replies (or parts of one) read in bulk.
        self.raised = 0

    @property
    def active(self) -> bool:
        """Whether the mark is raised now."""
        return self._timer is not None

    def read(self, n: int) -> bool:
        """A read of `n` bytes with `after` or more since the client last sent; False when the
        reply slowed down since the last one, and the count should start again."""
        if self._slowed:
            self._slowed = False
            return False
        if self._timer is None:
            if not self._set(self.low_water):
                return False
            self.raised += 1
        else:
            self._timer.cancel()
        self._timer = self._loop.call_later(self.tick, self._expire)
        return True

    def reset(self) -> None:
        """The client sent something: the next reply is counted from zero."""
        self._slowed = False
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
            self._set(1)

    def close(self) -> None:
        """Before the socket closes: no timer may touch its descriptor number afterwards."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._sock = None

    def _expire(self) -> None:
        self._timer = None
        self._set(1)
        self._slowed = self._waiting() < self.low_water // 16

    def _waiting(self) -> int:
        """Bytes received and not yet read."""
        if self._sock is None:
            return 0
        with contextlib.suppress(OSError, ValueError):
            raw = fcntl.ioctl(self._sock.fileno(), termios.FIONREAD, b"\0\0\0\0")
            return int(struct.unpack("i", raw)[0])
        return 0

    def _set(self, mark: int) -> bool:
        if self._sock is None:
            return False
        with contextlib.suppress(OSError, ValueError):  # closed meanwhile, or an old kernel
            self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT, mark)
            return True
        return False
