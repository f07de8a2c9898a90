"""BusyPoll on a running event loop (asyncio's and uvloop's): armed, the loop keeps turning
until the window since the last arm has passed; the C module and its Python reference behave
the same."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import pytest
import uvloop

from data_plane import busy_poll
from data_plane.busy_poll import PyBusyPoll

IMPLEMENTATIONS: list[Callable[..., Any]] = [PyBusyPoll]
if busy_poll.BusyPoll is not PyBusyPoll:
    IMPLEMENTATIONS.append(busy_poll.BusyPoll)

WINDOW = 0.05  # seconds; long enough for many turns of any loop, short for a test


@pytest.fixture(params=IMPLEMENTATIONS, ids=lambda make: make.__module__)
def make(request: pytest.FixtureRequest) -> Callable[..., Any]:
    return request.param  # type: ignore[no-any-return]


async def run_ended(poll: Any, step: float) -> None:
    """Wait until the run ends by itself (the object has no event to wait on)."""
    while poll.active:  # noqa: ASYNC110
        await asyncio.sleep(step)


def run(loop_factory: Callable[[], asyncio.AbstractEventLoop], body: Callable[..., Any]) -> Any:
    loop = loop_factory()
    try:
        return loop.run_until_complete(body())
    finally:
        loop.close()


LOOPS = [asyncio.new_event_loop, uvloop.new_event_loop]


@pytest.mark.parametrize("loop_factory", LOOPS, ids=["asyncio", "uvloop"])
def test_an_armed_loop_turns_until_the_window_has_passed(
    make: Callable[..., Any], loop_factory: Callable[[], asyncio.AbstractEventLoop]
) -> None:
    async def body() -> tuple[int, int, float, bool]:
        poll = make(asyncio.get_running_loop().call_soon, WINDOW)
        started = time.monotonic()
        poll.arm()
        assert poll.active and poll.runs == 1
        await run_ended(poll, 0.01)
        ended = time.monotonic() - started
        turns = poll.turns
        await asyncio.sleep(0.03)  # nothing armed it since: no turn after the run
        return turns, poll.turns, ended, poll.active

    turns, later, ended, active = run(loop_factory, body)
    # Without polling, the loop would have turned about five times (its own sleeps).
    assert turns > 50
    assert later == turns and not active
    assert ended >= WINDOW


@pytest.mark.parametrize("loop_factory", LOOPS, ids=["asyncio", "uvloop"])
def test_arming_again_extends_the_run_without_starting_another(
    make: Callable[..., Any], loop_factory: Callable[[], asyncio.AbstractEventLoop]
) -> None:
    async def body() -> tuple[bool, float, int]:
        poll = make(asyncio.get_running_loop().call_soon, WINDOW)
        poll.arm()
        await asyncio.sleep(WINDOW / 2)
        still = poll.active
        rearmed = time.monotonic()
        poll.arm()  # while the run goes on
        await run_ended(poll, 0.005)
        return still, time.monotonic() - rearmed, poll.runs

    still, after_rearm, runs = run(loop_factory, body)
    # A whole window from the second arm (uvloop's timers are in milliseconds, so the sleep
    # may end a little before half a window: the first arm is no clock for the end).
    assert still and after_rearm >= WINDOW
    assert runs == 1


def test_stop_ends_the_run_at_its_next_turn(make: Callable[..., Any]) -> None:
    async def body() -> tuple[bool, int]:
        poll = make(asyncio.get_running_loop().call_soon, 60.0)
        poll.arm()
        await asyncio.sleep(0)
        poll.stop()
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        return poll.active, poll.turns

    active, turns = run(uvloop.new_event_loop, body)
    assert not active and turns >= 1


def test_a_zero_window_never_polls(make: Callable[..., Any]) -> None:
    scheduled: list[object] = []
    poll = make(scheduled.append, 0.0)
    poll.arm()
    assert scheduled == [] and not poll.active and poll.runs == 0


def test_each_turn_schedules_the_next_while_the_window_lasts(make: Callable[..., Any]) -> None:
    scheduled: list[Callable[[], None]] = []
    poll = make(scheduled.append, 60.0)
    poll.arm()
    poll.arm()
    assert len(scheduled) == 1 and poll.active  # one run, one pending turn
    scheduled.pop()()
    assert len(scheduled) == 1 and poll.turns == 1
    poll.stop()
    scheduled.pop()()
    assert scheduled == [] and not poll.active and poll.turns == 1


def test_a_refused_schedule_leaves_it_idle_for_the_next_arm(make: Callable[..., Any]) -> None:
    refuse = True
    scheduled: list[object] = []

    def call_soon(callback: object) -> None:
        if refuse:
            raise RuntimeError("Event loop is closed")
        scheduled.append(callback)

    poll = make(call_soon, 60.0)
    with pytest.raises(RuntimeError):
        poll.arm()
    assert not poll.active
    refuse = False
    poll.arm()
    assert poll.active and len(scheduled) == 1


def test_a_negative_window_is_refused(make: Callable[..., Any]) -> None:
    with pytest.raises(ValueError):
        make(lambda callback: None, -0.001)


def test_a_window_set_to_zero_stops_polling_from_the_next_arm(make: Callable[..., Any]) -> None:
    scheduled: list[Callable[[], None]] = []
    poll = make(scheduled.append, 60.0)
    poll.window = 0.0
    poll.arm()
    assert scheduled == [] and poll.runs == 0
    poll.window = 60.0
    poll.arm()
    assert poll.window == 60.0 and len(scheduled) == 1 and poll.runs == 1
    with pytest.raises(ValueError):
        poll.window = -1.0
    with pytest.raises(ValueError):
        poll.window = float("nan")
    assert poll.window == 60.0


class Pressure:
    """A stand-in for /proc/pressure/cpu and the clock: `advance` moves both."""

    def __init__(self) -> None:
        self.now = 100.0
        self.stalled_us = 5_000_000

    def advance(self, seconds: float, stalled_share: float) -> None:
        self.now += seconds
        self.stalled_us += int(seconds * stalled_share * 1e6)


def governed(make: Callable[..., Any]) -> tuple[Any, busy_poll.Governor, Pressure]:
    poll = make(lambda callback: None, 0.00005)
    pressure = Pressure()
    governor = busy_poll.Governor(
        poll,
        0.00005,
        limit=0.3,
        interval=0.1,
        hold=0.95,  # nine intervals of 0.1 s are within it, ten are not (whatever the rounding)
        read=lambda: pressure.stalled_us,
        clock=lambda: pressure.now,
    )
    governor.sample()  # the first reading only sets the baseline
    return poll, governor, pressure


def test_the_governor_pauses_polling_while_the_cpus_are_contended(make: Callable[..., Any]):
    poll, governor, pressure = governed(make)
    pressure.advance(0.1, 0.1)
    governor.sample()
    assert not governor.paused and poll.window == 0.00005
    pressure.advance(0.1, 0.6)  # tasks waited for a CPU 60% of the interval
    governor.sample()
    assert governor.paused and governor.pauses == 1 and poll.window == 0.0


def test_the_governor_holds_a_pause_and_resumes_after_a_quiet_second(make: Callable[..., Any]):
    poll, governor, pressure = governed(make)
    pressure.advance(0.1, 0.8)
    governor.sample()
    for _ in range(9):  # quiet, but within the hold
        pressure.advance(0.1, 0.0)
        governor.sample()
        assert governor.paused
    pressure.advance(0.1, 0.9)  # contended again: the hold starts over
    governor.sample()
    for _ in range(9):
        pressure.advance(0.1, 0.05)
        governor.sample()
    assert governor.paused and poll.window == 0.0
    pressure.advance(0.1, 0.05)
    governor.sample()
    assert not governor.paused and poll.window == 0.00005 and governor.pauses == 1


def test_without_pressure_figures_the_governor_does_nothing(make: Callable[..., Any], tmp_path):
    assert busy_poll.cpu_stall_us(tmp_path / "missing") is None
    (tmp_path / "cpu").write_text("some avg10=1.00 avg60=0.50 avg300=0.20 total=1234\n")
    assert busy_poll.cpu_stall_us(tmp_path / "cpu") == 1234
    poll = make(lambda callback: None, 0.00005)
    governor = busy_poll.Governor(poll, 0.00005, limit=0.3, read=lambda: None)
    assert not governor.available
    governor.sample()
    governor.sample()
    assert not governor.paused and poll.window == 0.00005
