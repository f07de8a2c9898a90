"""The node's event loop kept polling for a moment after it forwards something.

A relayed statement is a chain of wake-ups: the client's bytes wake the node, which forwards
them and sleeps in epoll_wait until the target answers; the answer wakes it again, and it
sleeps until the client's next statement. Each sleep is a context switch, and on a virtual
machine whose idle vCPU halts, being woken from it costs tens of microseconds more than the
work it waits for. The answer usually comes within tens of microseconds, and an agent's next
statement often as soon: so after a relay forwards something it calls `arm`, and for `window`
seconds from the last call the loop keeps turning with a callback scheduled each turn, which
makes it poll its sockets without sleeping (libuv and asyncio both poll with a zero timeout
while a callback is ready). Timers and I/O are handled as usual meanwhile; the run ends by
itself when the window passes without an `arm`.

The price is CPU: at most `window` of polling per forwarded chunk, less when chunks come
closer together than that (a busy loop hardly ever finds nothing to do). `LOCKGATE_BUSY_POLL_US`
sets the window; 0 turns it off. The C module (`_busypoll.c`) is what the node uses; the class
here is its reference and its fallback when that is not built.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any


class PyBusyPoll:
    """`arm()` keeps the loop whose `call_soon` this is polling for `window` seconds."""

    def __init__(self, call_soon: Callable[[Callable[[], object]], Any], window: float) -> None:
        if window < 0:
            raise ValueError("window must not be negative")
        self._call_soon = call_soon
        self.window = window
        self._until = 0.0
        self.active = False
        self.turns = 0
        self.runs = 0

    def arm(self) -> None:
        if self.window <= 0:
            return
        self._until = time.monotonic() + self.window
        if not self.active:
            self._schedule()
            self.runs += 1

    def stop(self) -> None:
        """End the current run at its next turn."""
        self._until = 0.0

    def __call__(self) -> None:
        if time.monotonic() >= self._until:
            self.active = False
            return
        self.turns += 1
        self._schedule()

    def _schedule(self) -> None:
        self.active = False
        self._call_soon(self)
        self.active = True


try:
    from data_plane._busypoll import BusyPoll as BusyPoll
except ImportError:  # not built
    BusyPoll = PyBusyPoll  # type: ignore[assignment,misc]
