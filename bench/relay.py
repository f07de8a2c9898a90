"""A bare TCP relay on uvloop: the floor for any Python proxy on this machine.

It forwards bytes both ways and looks at nothing (no parsing, no policy, no audit), so what it
costs against a direct connection is what the event loop and the kernel's socket calls cost;
the node does the same socket work plus its own. `python -m bench.relay LISTEN_PORT TARGET_PORT`
relays 127.0.0.1:LISTEN_PORT to 127.0.0.1:TARGET_PORT until killed.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import cast

from lockgate.runtime import run as run_loop
from tests.harness.processes import Process, free_port, port_open, wait_until


class _Upstream(asyncio.Protocol):
    def __init__(self, client: _Client) -> None:
        self.client = client

    def data_received(self, data: bytes) -> None:
        self.client.transport.write(data)

    def connection_lost(self, exc: Exception | None) -> None:
        self.client.transport.close()


class _Client(asyncio.Protocol):
    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.early: list[bytes] = []
        self.upstream: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        self._connecting = asyncio.ensure_future(self._connect())

    async def _connect(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            upstream, _ = await loop.create_connection(
                lambda: _Upstream(self), "127.0.0.1", self.target_port
            )
        except OSError:
            self.transport.close()
            return
        self.upstream = upstream
        for data in self.early:
            upstream.write(data)
        self.early.clear()

    def data_received(self, data: bytes) -> None:
        if self.upstream is None:
            self.early.append(data)
        else:
            self.upstream.write(data)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.upstream is not None:
            self.upstream.close()


async def serve(listen_port: int, target_port: int) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: _Client(target_port), "127.0.0.1", listen_port, reuse_address=True
    )
    await server.serve_forever()


ROOT = Path(__file__).resolve().parent.parent


class Relay:
    """The relay as a child process, for a benchmark leg."""

    def __init__(self, target_port: int, log_dir: Path) -> None:
        self.port = free_port()
        self.process = Process(
            f"relay-{self.port}",
            [sys.executable, "-m", "bench.relay", str(self.port), str(target_port)],
            log_dir,
            env={"PYTHONPATH": str(ROOT)},
        )

    def start(self) -> Relay:
        self.process.start()
        wait_until(lambda: port_open(self.port), 30, "the bare relay")
        return self

    @property
    def pid(self) -> int:
        assert self.process.proc is not None
        return self.process.proc.pid

    def stop(self) -> None:
        self.process.stop()


if __name__ == "__main__":
    run_loop(serve(int(sys.argv[1]), int(sys.argv[2])))
