"""`runtime.Server` stops on SIGTERM and SIGINT and lets the code after `serve` run (uvicorn's
own handling raises the signal again, which ends the process on SIGTERM)."""

from __future__ import annotations

import asyncio
import os
import signal

import pytest
import uvicorn
from starlette.applications import Starlette

from lockgate import runtime
from lockgate.ports import bind


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_stops_the_server_and_the_caller_cleans_up(sig: int):
    steps: list[str] = []

    async def main() -> None:
        server = runtime.Server(runtime_config())
        loop = asyncio.get_running_loop()
        loop.call_later(0.3, os.kill, os.getpid(), sig)
        try:
            await server.serve(sockets=[bind("127.0.0.1", 0, what="test")])
            steps.append("served")
        finally:
            steps.append("cleaned up")

    before = signal.getsignal(sig)
    runtime.run(main())
    assert steps == ["served", "cleaned up"]
    assert signal.getsignal(sig) == before  # the loop's handler is gone again


def test_a_second_sigint_forces_the_exit():
    server = runtime.Server(runtime_config())
    server._stop(signal.SIGINT)
    assert server.should_exit and not server.force_exit
    server._stop(signal.SIGINT)
    assert server.force_exit


def runtime_config() -> uvicorn.Config:
    return uvicorn.Config(Starlette(), log_level="warning", lifespan="off", loop="none")
