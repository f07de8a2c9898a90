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

Polling is only cheap while a core has nothing better to do. Where the node shares its cores
with the client and the database and they are all busy, a polling loop takes the time they
wait for (on 2 cores, pgbench at 8 clients through two polling workers lost 10-15% of its
tps). `Governor` watches the kernel's CPU pressure (PSI, /proc/pressure/cpu: the share of time
some runnable task waited for a CPU) and pauses polling while it is above a limit.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol


class PyBusyPoll:
    """`arm()` keeps the loop whose `call_soon` this is polling for `window` seconds."""

    def __init__(self, call_soon: Callable[[Callable[[], object]], Any], window: float) -> None:
        if window < 0:
            raise ValueError("window must not be negative")
        self._call_soon = call_soon
        self._window = window
        self._until = 0.0
        self.active = False
        self.turns = 0
        self.runs = 0

    @property
    def window(self) -> float:
        return self._window

    @window.setter
    def window(self, value: float) -> None:
        """A new window applies from the next arm; 0 stops polling after the current run."""
        if not value >= 0:
            raise ValueError("window must not be negative")
        self._window = value

    def arm(self) -> None:
        if self._window <= 0:
            return
        self._until = time.monotonic() + self._window
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


PRESSURE = Path("/proc/pressure/cpu")


def cpu_stall_us(path: Path = PRESSURE) -> int | None:
    """Microseconds some runnable task has waited for a CPU since boot (PSI's `some total`),
    or None where the kernel does not report it."""
    try:
        with open(path) as f:
            return int(f.readline().rsplit("total=", 1)[1])
    except (OSError, IndexError, ValueError):
        return None


class _Windowed(Protocol):
    window: float

    def stop(self) -> None: ...


class Governor:
    """Pauses a busy poll while the host's CPUs are contended.

    Every `interval` seconds it reads the stall time; when tasks waited for a CPU more than
    `limit` (a fraction) of the interval, it sets the poll's window to 0 and keeps it there for
    at least `hold` seconds, then gives it back once an interval shows less. The hold keeps a
    saturated host from polling again every other interval, since its own polling is part of
    what it measures."""

    def __init__(
        self,
        poll: _Windowed,
        window: float,
        limit: float,
        interval: float = 0.1,
        hold: float = 1.0,
        read: Callable[[], int | None] = cpu_stall_us,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.poll = poll
        self.window = window
        self.limit = limit
        self.interval = interval
        self.hold = hold
        self._read = read
        self._clock = clock
        self.paused = False
        self.pauses = 0
        self._paused_at = 0.0
        self._last: tuple[float, int] | None = None

    @property
    def available(self) -> bool:
        return self._read() is not None

    def sample(self) -> None:
        """One reading: pause or resume the poll from the stall since the previous one."""
        now, stalled = self._clock(), self._read()
        if stalled is None:
            return
        last, self._last = self._last, (now, stalled)
        if last is None or now <= last[0]:
            return
        share = (stalled - last[1]) / 1e6 / (now - last[0])
        if share > self.limit:
            if not self.paused:
                self.paused = True
                self.pauses += 1
                self.poll.window = 0.0
                self.poll.stop()
            self._paused_at = now  # held from the last contended reading
        elif self.paused and now - self._paused_at >= self.hold:
            self.paused = False
            self.poll.window = self.window

    async def run(self) -> None:
        while True:
            self.sample()
            await asyncio.sleep(self.interval)


try:
    from data_plane._busypoll import BusyPoll as BusyPoll
except ImportError:  # not built
    BusyPoll = PyBusyPoll  # type: ignore[assignment,misc]
