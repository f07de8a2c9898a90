"""The node supervisor: subscribes to bundles, runs the protocol listeners, drains the audit
spool, serves health and metrics, and ends live sessions whose token was revoked or expired.

Enforcement is local: a session reads the bundle it was handed, never the control plane, so the
node keeps working (and keeps auditing to its spool) while the control plane is away.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import uvicorn
from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from data_plane import workers
from data_plane.audit.trail import AuditTrail
from data_plane.busy_poll import BusyPoll, Governor
from data_plane.control import ControlPlaneClient
from data_plane.server import LiveSession, NoBundle, ProtocolServer
from lockgate import runtime
from lockgate.bundle import BundleView, now_ms
from lockgate.ports import PortTaken, bind
from lockgate.settings import Settings
from protos.lockgate.v1 import node_pb2 as pb

log = logging.getLogger("lockgate.node")

FIRST_BUNDLE_WAIT = 10.0


class Node:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.name = "node"
        home = settings.ensure_home()
        self.audit = AuditTrail(
            workers.spool_dir(home, settings.node_worker),
            batch_size=settings.audit_batch_size,
            linger=settings.audit_linger,
        )
        self.control = ControlPlaneClient(settings.control_plane, settings.node_token)
        self._bundle: BundleView | None = None
        self._have_bundle = asyncio.Event()
        self._sessions: set[LiveSession] = set()
        self.servers: list[ProtocolServer] = []
        self.busy_poll: BusyPoll | None = None  # made in `run`, on the node's loop
        self.poll_governor: Governor | None = None  # pauses it while the CPUs are contended
        self.registry = CollectorRegistry()
        self.m_sessions = Gauge("lockgate_node_sessions", "live sessions", registry=self.registry)
        self.m_revision = Gauge(
            "lockgate_node_bundle_revision", "bundle revision in force", registry=self.registry
        )
        self.m_spool = Gauge(
            "lockgate_node_audit_pending",
            "audit events not yet acknowledged",
            registry=self.registry,
        )
        self.m_fast_path = Counter(
            "lockgate_node_pg_fast_path_statements",
            "PostgreSQL statements audited and forwarded by the fast path (counted at session end)",
            registry=self.registry,
        )
        self.m_bulk_reads = Counter(
            "lockgate_node_bulk_reads",
            "times a target socket streaming a long reply was switched to reads of a MiB at a "
            "time (data_plane/bulk.py; counted at session end)",
            registry=self.registry,
        )
        self.registry.register(self)  # `collect`: what the busy poll counts itself
        self.m_terminated = Counter(
            "lockgate_node_sessions_terminated",
            "sessions ended by the node (revoked or expired token)",
            registry=self.registry,
        )

    # NodeContext -------------------------------------------------------------------------

    async def bundle(self) -> BundleView:
        if self._bundle is None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._have_bundle.wait(), FIRST_BUNDLE_WAIT)
        if self._bundle is None:
            raise NoBundle("the node has not received its policy bundle yet")
        return self._bundle

    async def credentials(self, connection: str, session_id: str, identity: str) -> pb.Credentials:
        return await self.control.credentials(connection, session_id, identity)

    def await_approval(
        self, request: pb.ApprovalRequest, within: float
    ) -> AsyncIterator[pb.ApprovalEvent]:
        return self.control.await_approval(request, within)

    def register(self, session: LiveSession) -> None:
        self._sessions.add(session)
        self.m_sessions.set(len(self._sessions))

    def unregister(self, session: LiveSession) -> None:
        self._sessions.discard(session)
        self.m_sessions.set(len(self._sessions))

    def count_fast_path(self, statements: int) -> None:
        self.m_fast_path.inc(statements)

    def count_bulk_reads(self, times: int) -> None:
        self.m_bulk_reads.inc(times)

    def collect(self) -> Iterator[Metric]:
        """Metrics read from their source at each scrape (the registry calls this)."""
        yield CounterMetricFamily(
            "lockgate_node_busy_poll_turns",
            "event-loop turns spent polling after forwarding (data_plane/busy_poll.py)",
            value=self.busy_poll.turns if self.busy_poll is not None else 0,
        )
        yield CounterMetricFamily(
            "lockgate_node_busy_poll_pauses",
            "times polling was paused because tasks waited for a CPU (data_plane/busy_poll.py)",
            value=self.poll_governor.pauses if self.poll_governor is not None else 0,
        )
        yield GaugeMetricFamily(
            "lockgate_node_busy_poll_paused",
            "1 while polling is paused because tasks wait for a CPU",
            value=1 if self.poll_governor is not None and self.poll_governor.paused else 0,
        )
        yield CounterMetricFamily(
            "lockgate_node_pg_cancels_forwarded",
            "PostgreSQL CancelRequests passed on to the worker that gave out their key "
            "(data_plane/workers.py)",
            value=sum(getattr(srv, "forwarded_cancels", 0) for srv in self.servers),
        )

    # bundles and token lifetimes ---------------------------------------------------------

    async def _on_bundle(self, bundle: pb.Bundle) -> None:
        view = await asyncio.to_thread(BundleView, bundle)
        first = self._bundle is None
        self._bundle = view
        self.name = bundle.node_name or self.name
        self.m_revision.set(view.revision)
        self._have_bundle.set()
        if first:
            log.info("bundle revision %d in force (%s)", view.revision, self.name)
        self._end_invalid_sessions(view)
        for session in list(self._sessions):
            session.on_bundle(view)

    def _end_invalid_sessions(self, view: BundleView) -> None:
        at = now_ms()
        for session in list(self._sessions):
            if not view.token_active(session.token_id, at):
                self.m_terminated.inc()
                session.terminate("the session's token was revoked or has expired")

    async def _watch_expiry(self) -> None:
        # Expiry is enforced from the bundle alone, so it holds without the control plane.
        while True:
            await asyncio.sleep(1.0)
            if self._bundle is not None:
                self._end_invalid_sessions(self._bundle)
            self.m_spool.set(len(self.audit.spool))

    # health ------------------------------------------------------------------------------

    def _health_app(self) -> Starlette:
        async def healthz(_: Request) -> Response:
            ok = self._bundle is not None
            return JSONResponse(
                {
                    "status": "ok" if ok else "waiting for bundle",
                    "node": self.name,
                    "revision": self._bundle.revision if self._bundle else 0,
                    "control_plane": "connected" if self.control.connected else "unreachable",
                    "sessions": len(self._sessions),
                    "audit_pending": len(self.audit.spool),
                    "pid": os.getpid(),
                },
                status_code=200 if ok else 503,
            )

        async def metrics(_: Request) -> Response:
            self.m_spool.set(len(self.audit.spool))
            return Response(generate_latest(self.registry), media_type="text/plain; version=0.0.4")

        return Starlette(routes=[Route("/healthz", healthz), Route("/metrics", metrics)])

    # lifecycle ---------------------------------------------------------------------------

    async def run(self) -> None:
        from data_plane.protocols.postgres.adapter import PostgresServer

        s = self.settings
        if s.busy_poll_us:
            window = s.busy_poll_us / 1e6
            self.busy_poll = BusyPoll(asyncio.get_running_loop().call_soon, window)
            if s.busy_poll_max_stall < 100:
                governor = Governor(self.busy_poll, window, s.busy_poll_max_stall / 100)
                self.poll_governor = governor if governor.available else None
        if s.node_worker is None:
            health_socket = bind(s.bind, s.node_http_port, what="node health")
        else:  # the supervisor serves the port and asks each worker here
            health_socket = workers.unix_listener(workers.health_socket(s.home, s.node_worker))
        self.servers = [PostgresServer(self, s)]
        for server in self.servers:
            await server.bind()
        tasks = [
            asyncio.create_task(
                self.control.subscribe(
                    s.node_labels, [srv.name for srv in self.servers], self._on_bundle
                )
            ),
            asyncio.create_task(self.audit.drain(self.control)),
            asyncio.create_task(self._watch_expiry()),
            *([asyncio.create_task(self.poll_governor.run())] if self.poll_governor else []),
            *(
                asyncio.create_task(self._drain_orphan(spool))
                for spool in (
                    workers.orphan_spools(s.home, s.node_workers) if not s.node_worker else []
                )
            ),
            *(asyncio.create_task(srv.serve()) for srv in self.servers),
        ]
        health = runtime.Server(
            uvicorn.Config(self._health_app(), log_level="warning", lifespan="off", loop="none")
        )
        if s.node_worker is not None:
            tasks.append(asyncio.create_task(self._watch_supervisor(health)))
        try:
            await health.serve(sockets=[health_socket])
        finally:
            for server in self.servers:
                await server.close()
            for session in list(self._sessions):
                session.terminate("the node is shutting down")
            deadline = time.monotonic() + 3.0
            while self._sessions and time.monotonic() < deadline:  # noqa: ASYNC110
                await asyncio.sleep(0.02)  # each records its end as its task finishes
            await self._flush_audit(deadline)
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await self.control.close()
            self.audit.close()

    async def _watch_supervisor(self, health: uvicorn.Server) -> None:
        """A worker whose supervisor is gone (killed, so it could not stop its workers) stops
        as on SIGTERM instead of holding the port for no one."""
        parent = os.getppid()
        while os.getppid() == parent:  # noqa: ASYNC110
            await asyncio.sleep(1.0)
        log.warning("worker %s: the node supervisor is gone; stopping", self.settings.node_worker)
        health.should_exit = True

    async def _drain_orphan(self, directory: Path) -> None:
        """Upload what a worker that no longer exists left in its spool, then remove it."""
        trail = AuditTrail(directory, batch_size=self.settings.audit_batch_size, linger=0)
        log.info("uploading %d audit events left in %s", len(trail.spool), directory)
        uploading = asyncio.create_task(trail.drain(self.control))
        try:
            while len(trail.spool):  # noqa: ASYNC110
                await asyncio.sleep(0.5)
        finally:
            uploading.cancel()
            await asyncio.gather(uploading, return_exceptions=True)
            trail.close()
        shutil.rmtree(directory.parent, ignore_errors=True)

    async def _flush_audit(self, deadline: float) -> None:
        """Give the uploader a moment to deliver what is spooled; the rest waits on disk."""
        self.audit.write_pending()  # what this turn recorded, before the spool is counted
        while len(self.audit.spool) and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.05)


def run(settings: Settings) -> int:
    """Run a node until SIGINT or SIGTERM; returns the process exit code."""
    import sys

    runtime.setup_logging(settings.log_level)
    if not settings.control_plane or not settings.node_token:
        print("lockgate node: --control-plane and --token are required", file=sys.stderr)
        return 2

    if settings.node_workers > 1 and settings.node_worker is None:
        return workers.run(settings)

    async def main() -> None:
        await Node(settings).run()

    try:
        runtime.run(main())
    except PortTaken as exc:
        print(f"lockgate node: {exc}", file=sys.stderr)
        return 1
    return 0
