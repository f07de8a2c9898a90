"""More than one node process on one host: a supervisor and its workers.

With `LOCKGATE_NODE_WORKERS=N` (N > 1), `lockgate node` starts N worker processes, each a whole
node (its own event loop, bundle subscription, audit spool and uploader). One event loop is
one core at most; on a host where the node's loop is the bottleneck, more of them carry more.

The supervisor accepts the connections on the node's PostgreSQL port and hands each to the
worker with the fewest open connections it handed over (the descriptor passed over a Unix
socket pair, `SCM_RIGHTS`; the worker writes a byte back as each one ends). The kernel's own
spreading (`SO_REUSEPORT`, a hash of each connection's addresses) splits a few long
connections unevenly, and a worker with more of them holds the others back.

The supervisor itself relays nothing. It makes what the workers would race to make (the
self-signed certificate), serves `/healthz` and `/metrics` on the node's HTTP port for all of
them (each worker serves its own on a Unix socket in its directory, `workers/<i>/`), and
restarts a worker that dies.

A PostgreSQL CancelRequest arrives on a connection of its own, which may go to any worker. The
key a worker gives its clients says which worker it is (`cancel_pid`), and a worker that
receives a request for another one passes it on over that worker's Unix socket
(`cancel_socket`).

Each worker spools its audit to its own directory (worker 0 to the node's `spool/`, as a single
node does); worker 0 also uploads what is left in the spools of workers that no longer exist
(after N was lowered), then removes them.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import secrets
import signal
import socket
import sys
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

import httpx
import uvicorn
from prometheus_client import CollectorRegistry, Counter, generate_latest
from prometheus_client.core import Metric
from prometheus_client.parser import text_string_to_metric_families
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from data_plane import tls
from lockgate import runtime
from lockgate.ports import PortTaken, bind
from lockgate.settings import Settings

log = logging.getLogger("lockgate.node.workers")

UNIX_PATH_MAX = 107  # sun_path holds 108 bytes with its terminating NUL
RESTART_DELAY_MAX = 30.0
HANDOFF_ENV = "LOCKGATE_NODE_HANDOFF_FD"  # the worker's end of its socket pair
SCRAPE_TIMEOUT = 5.0


# Where each worker keeps its own things --------------------------------------------------------


def worker_dir(home: Path, index: int) -> Path:
    return home / "workers" / str(index)


def spool_dir(home: Path, index: int | None) -> Path:
    """A worker's audit spool: the node's own for a single node and for worker 0."""
    return home / "spool" if not index else worker_dir(home, index) / "spool"


def health_socket(home: Path, index: int) -> Path:
    return worker_dir(home, index) / "http.sock"


def cancel_socket(home: Path, index: int) -> Path:
    return worker_dir(home, index) / "pg-cancel.sock"


def orphan_spools(home: Path, workers: int) -> list[Path]:
    """Spools of workers with an index of `workers` or more (left when N was lowered)."""
    root = home / "workers"
    if not root.is_dir():
        return []
    return sorted(
        d / "spool"
        for d in root.iterdir()
        if d.name.isdigit() and int(d.name) >= max(workers, 1) and (d / "spool").is_dir()
    )


def unix_listener(path: Path) -> socket.socket:
    """A listening Unix socket at `path` (a stale one from an earlier run replaced), readable
    and writable by the node's user only."""
    if len(os.fsencode(path)) > UNIX_PATH_MAX:
        raise PortTaken(
            f"socket path {path} is longer than {UNIX_PATH_MAX} bytes: shorten the home"
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old = os.umask(0o177)
    try:
        sock.bind(os.fspath(path))
    finally:
        os.umask(old)
    sock.listen(128)
    sock.setblocking(False)
    return sock


# Cancel keys ------------------------------------------------------------------------------------


def cancel_pid(worker: int, workers: int) -> int:
    """A random process id for a client's cancel key that names `worker` (`owner` reads it)."""
    return secrets.randbelow((1 << 31) // workers) * workers + worker


def owner(pid: int, workers: int) -> int:
    """The worker that gave out a cancel key's process id."""
    return pid % workers


# Handing connections to workers ----------------------------------------------------------------


def handoff_socket() -> socket.socket | None:
    """A worker's end of the socket pair its supervisor hands it connections on, if any."""
    fd = os.environ.get(HANDOFF_ENV)
    if not fd:
        return None
    sock = socket.socket(fileno=int(fd))
    sock.setblocking(False)
    return sock


def least_loaded(loads: list[int | None], start: int) -> list[int]:
    """Worker indexes to try for a new connection: those running (a load, not None), fewest
    open connections first, ties in turn from `start`."""
    n = len(loads)
    order = [(start + k) % n for k in range(n)]
    return sorted((i for i in order if loads[i] is not None), key=lambda i: loads[i] or 0)


# Health and metrics of all workers --------------------------------------------------------------


def merge_metrics(expositions: Iterable[tuple[int, str]]) -> Iterator[Metric]:
    """The metric families of every worker's exposition as one set, each sample labelled with
    its `worker`. Families are keyed by name; a worker that does not report one adds nothing."""
    merged: dict[str, Metric] = {}
    for index, text in expositions:
        for family in text_string_to_metric_families(text):
            into = merged.get(family.name)
            if into is None:
                into = merged[family.name] = Metric(
                    family.name, family.documentation, family.type, family.unit
                )
            for sample in family.samples:
                into.add_sample(
                    sample.name,
                    {**sample.labels, "worker": str(index)},
                    sample.value,
                    sample.timestamp,
                    sample.exemplar,
                )
    yield from merged.values()


def merge_health(workers: list[dict[str, object]]) -> tuple[dict[str, object], int]:
    """The node's `/healthz` body and status from its workers' (each with `worker` and `pid`,
    and `status` "unreachable" when it did not answer): ok when every worker is, at the
    revision all of them enforce."""
    ok = bool(workers) and all(w.get("status") == "ok" for w in workers)
    connected = all(w.get("control_plane") == "connected" for w in workers)
    body: dict[str, object] = {
        "status": "ok" if ok else "degraded",
        "node": next((w["node"] for w in workers if w.get("node")), "node"),
        "revision": min((_int(w.get("revision")) for w in workers), default=0),
        "control_plane": "connected" if connected else "unreachable",
        "sessions": sum(_int(w.get("sessions")) for w in workers),
        "audit_pending": sum(_int(w.get("audit_pending")) for w in workers),
        "workers": workers,
    }
    return body, 200 if ok else 503


def _int(value: object) -> int:
    return value if isinstance(value, int) else 0


# The supervisor ---------------------------------------------------------------------------------


def worker_env(settings: Settings, index: int) -> dict[str, str]:
    """The environment of worker `index`: the supervisor's settings (flags included) as the
    `LOCKGATE_*` variables a worker reads."""
    env = dict(os.environ)
    for name, value in settings.model_dump(mode="json").items():
        if value is None:
            env.pop(f"LOCKGATE_{name.upper()}", None)
        else:
            env[f"LOCKGATE_{name.upper()}"] = value if isinstance(value, str) else json.dumps(value)
    env["LOCKGATE_NODE_WORKER"] = str(index)
    return env


class Worker:
    def __init__(self, index: int) -> None:
        self.index = index
        self.process: asyncio.subprocess.Process | None = None
        self.restarts = 0
        self.channel: socket.socket | None = None  # the supervisor's end of the socket pair
        self.load = 0  # connections handed over and not yet reported ended


class Supervisor:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.home = settings.ensure_home().resolve()
        logging.getLogger("httpx").setLevel(logging.WARNING)  # a line per worker per scrape
        self.workers = [Worker(i) for i in range(settings.node_workers)]
        self.stopping = False
        self.turn = 0  # where ties between equally loaded workers start
        self.registry = CollectorRegistry()
        self.m_restarts = Counter(
            "lockgate_node_worker_restarts",
            "worker processes the supervisor started again after they ended",
            registry=self.registry,
        )

    async def run(self) -> None:
        s = self.settings
        health = bind(s.bind, s.node_http_port, what="node health")
        listener = bind(s.bind, s.pg_port, what="PostgreSQL")
        if not (s.tls_cert and s.tls_key):
            tls.self_signed(self.home / "tls")  # once, before the workers would race for it
        loop = asyncio.get_running_loop()
        loop.add_reader(listener, self._accept, listener)
        keepers = [asyncio.create_task(self._keep(w)) for w in self.workers]
        server = runtime.Server(
            uvicorn.Config(self._app(), log_level="warning", lifespan="off", loop="none")
        )
        log.info("node supervisor: %d workers on port %d", len(self.workers), s.pg_port)
        try:
            await server.serve(sockets=[health])
        finally:
            self.stopping = True
            loop.remove_reader(listener)
            listener.close()
            await asyncio.gather(*(self._stop(w) for w in self.workers))
            for task in keepers:
                task.cancel()
            await asyncio.gather(*keepers, return_exceptions=True)

    async def _keep(self, worker: Worker) -> None:
        """Run the worker, and again after it ends (sooner the longer it had run)."""
        delay = 0.5
        loop = asyncio.get_running_loop()
        while not self.stopping:
            started = time.monotonic()
            ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
            env = worker_env(self.settings, worker.index)
            env[HANDOFF_ENV] = str(theirs.fileno())
            try:
                worker.process = await asyncio.create_subprocess_exec(
                    sys.executable,
                    "-m",
                    "lockgate",
                    "node",
                    env=env,
                    pass_fds=(theirs.fileno(),),
                    start_new_session=True,  # a terminal's Ctrl-C reaches the supervisor alone
                )
            finally:
                theirs.close()
            ours.setblocking(False)
            worker.channel, worker.load = ours, 0
            loop.add_reader(ours, self._ended, worker)
            try:
                code = await worker.process.wait()
            finally:
                loop.remove_reader(ours)
                worker.channel = None
                ours.close()
            if self.stopping:
                return
            ran = time.monotonic() - started
            delay = 0.5 if ran > RESTART_DELAY_MAX else min(delay * 2, RESTART_DELAY_MAX)
            log.warning(
                "worker %d (pid %d) ended with %s after %.0f s; starting it again in %.1f s",
                worker.index,
                worker.process.pid,
                code,
                ran,
                delay,
            )
            await asyncio.sleep(delay)
            worker.restarts += 1
            self.m_restarts.inc()

    def _accept(self, listener: socket.socket) -> None:
        """Hand each waiting connection to the least loaded running worker."""
        while True:
            try:
                conn, _ = listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # EMFILE and the like: the next readable event retries
                log.warning("cannot accept a connection: %s", exc)
                return
            with conn:
                self._hand_over(conn)

    def _hand_over(self, conn: socket.socket) -> None:
        loads = [w.load if w.channel is not None else None for w in self.workers]
        self.turn += 1
        for index in least_loaded(loads, self.turn):
            worker = self.workers[index]
            assert worker.channel is not None
            try:
                socket.send_fds(worker.channel, [b"c"], [conn.fileno()])
            except OSError:  # its pipe is full or it is ending: the next one
                continue
            worker.load += 1
            return
        log.warning("no worker is running; connection from %s closed", _peer(conn))

    def _ended(self, worker: Worker) -> None:
        """Bytes from a worker: one per handed-over connection that ended."""
        if worker.channel is None:
            return
        try:
            data = worker.channel.recv(4096)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:  # the worker is ending; its process's exit is handled in `_keep`
            asyncio.get_running_loop().remove_reader(worker.channel)
            return
        worker.load = max(0, worker.load - len(data))

    async def _stop(self, worker: Worker, grace: float = 10.0) -> None:
        proc = worker.process
        if proc is None or proc.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(proc.wait(), grace)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()

    async def _ask(self, worker: Worker, path: str) -> httpx.Response | None:
        transport = httpx.AsyncHTTPTransport(uds=os.fspath(health_socket(self.home, worker.index)))
        try:
            async with httpx.AsyncClient(transport=transport, timeout=SCRAPE_TIMEOUT) as client:
                return await client.get(f"http://worker{path}")
        except httpx.HTTPError:
            return None

    async def _worker_health(self, worker: Worker) -> dict[str, object]:
        answer = await self._ask(worker, "/healthz")
        body: dict[str, object] = {"status": "unreachable"}
        if answer is not None:
            with contextlib.suppress(ValueError):
                body = dict(answer.json())
        pid = worker.process.pid if worker.process is not None else None
        return {
            **body,
            "worker": worker.index,
            "pid": pid,
            "restarts": worker.restarts,
            "connections": worker.load,  # handed over and not yet ended
        }

    def _app(self) -> Starlette:
        async def healthz(_: Request) -> Response:
            workers = await asyncio.gather(*(self._worker_health(w) for w in self.workers))
            body, status = merge_health(list(workers))
            return JSONResponse(body, status_code=status)

        async def metrics(_: Request) -> Response:
            answers = await asyncio.gather(*(self._ask(w, "/metrics") for w in self.workers))
            texts = [
                (w.index, a.text)
                for w, a in zip(self.workers, answers, strict=True)
                if a is not None and a.status_code == 200
            ]
            families = list(merge_metrics(texts))
            registry = CollectorRegistry()
            registry.register(_Fixed(families))
            body = generate_latest(registry) + generate_latest(self.registry)
            return Response(body, media_type="text/plain; version=0.0.4")

        return Starlette(routes=[Route("/healthz", healthz), Route("/metrics", metrics)])


def _peer(conn: socket.socket) -> str:
    try:
        return str(conn.getpeername())
    except OSError:
        return "?"


class _Fixed:
    """A collector that yields the families it was made with."""

    def __init__(self, families: list[Metric]) -> None:
        self.families = families

    def collect(self) -> Iterator[Metric]:
        return iter(self.families)


def run(settings: Settings) -> int:
    """Run the supervisor and its workers until SIGINT or SIGTERM; the process exit code."""
    try:
        runtime.run(Supervisor(settings).run())
    except PortTaken as exc:
        print(f"lockgate node: {exc}", file=sys.stderr)
        return 1
    return 0
