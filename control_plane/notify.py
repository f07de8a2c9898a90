"""How a replica learns that something changed: in-process fan-out, and PostgreSQL LISTEN/NOTIFY
between replicas sharing one database.

Writers call `send` inside their transaction; PostgreSQL delivers the notification when (and
only if) it commits. Every replica keeps one `Listener` connection on `lockgate_approvals`
(payload: an approval id) and `lockgate_bundles` (payload: a revision) and feeds what it hears
into its `ApprovalHub` and `ChangeBus`. With SQLite there is one process and nothing to send.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, Protocol

import asyncpg
from sqlalchemy.engine import make_url
from sqlmodel import func, select
from sqlmodel.ext.asyncio.session import AsyncSession

if TYPE_CHECKING:
    from control_plane.models import Approval

APPROVALS_CHANNEL = "lockgate_approvals"
BUNDLES_CHANNEL = "lockgate_bundles"
KEEPALIVE_SECONDS = 10.0
RECONNECT_SECONDS = 1.0

log = logging.getLogger("lockgate.notify")


def is_postgres(url_or_session: str | AsyncSession) -> bool:
    """Whether a database URL, or the database behind a session, is PostgreSQL."""
    if isinstance(url_or_session, str):
        return make_url(url_or_session).get_backend_name() == "postgresql"
    bind = url_or_session.bind
    return bind is not None and bind.dialect.name == "postgresql"


async def send(session: AsyncSession, channel: str, payload: str) -> None:
    """NOTIFY `channel` when the session's transaction commits (PostgreSQL only)."""
    if is_postgres(session):
        await session.exec(select(func.pg_notify(channel, payload)))


# The in-process half -----------------------------------------------------------------------

ApprovalSink = Callable[["Approval", str], None]


class ApprovalHub:
    """Wakes whoever waits on an approval (AwaitApproval streams, SSE streams) when it changes.

    `publish(id)` is all a remote change carries. `announce(approval, event)` is a change this
    replica committed: it also goes to the sinks (webhooks), so exactly one replica sends them.
    """

    def __init__(self) -> None:
        self._watchers: dict[str, set[asyncio.Event]] = {}
        self._streams: set[asyncio.Queue[str]] = set()
        self._sinks: list[ApprovalSink] = []

    def publish(self, approval_id: str) -> None:
        """Approval `approval_id` changed (here or on another replica)."""
        for event in self._watchers.get(approval_id, ()):
            event.set()
        for queue in self._streams:
            queue.put_nowait(approval_id)

    def publish_all(self) -> None:
        """Wake every watcher, e.g. after notifications may have been missed."""
        for events in self._watchers.values():
            for event in events:
                event.set()

    def announce(self, approval: Approval, event: str | None) -> None:
        """This replica committed a change to `approval`; `event` names it for the sinks."""
        self.publish(approval.id)
        if event is None:
            return
        for sink in list(self._sinks):
            try:
                sink(approval, event)
            except Exception:
                log.exception("approval sink failed for %s (%s)", approval.id, event)

    @contextlib.contextmanager
    def watch(self, approval_id: str) -> Iterator[asyncio.Event]:
        """An event set on every change of `approval_id` while the block runs; clear it, then
        read the approval, then wait on it, and no change can slip between."""
        event = asyncio.Event()
        self._watchers.setdefault(approval_id, set()).add(event)
        try:
            yield event
        finally:
            watchers = self._watchers.get(approval_id)
            if watchers is not None:
                watchers.discard(event)
                if not watchers:
                    del self._watchers[approval_id]

    @contextlib.contextmanager
    def subscribe(self) -> Iterator[asyncio.Queue[str]]:
        """A queue receiving the id of every approval that changes while the block runs."""
        queue: asyncio.Queue[str] = asyncio.Queue()
        self._streams.add(queue)
        try:
            yield queue
        finally:
            self._streams.discard(queue)

    def attach(self, callback: ApprovalSink) -> Callable[[], None]:
        """Call `callback(approval, event)` for this replica's own changes; returns a detach."""
        self._sinks.append(callback)
        return lambda: self._sinks.remove(callback)


hub = ApprovalHub()


# The cross-replica half --------------------------------------------------------------------


class RevisionSink(Protocol):
    def publish(self, revision: int) -> None: ...


def asyncpg_dsn(url: str) -> str:
    """The plain libpq DSN asyncpg takes, from a `postgresql+asyncpg://` SQLAlchemy URL."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


class Listener:
    """One dedicated connection LISTENing on both channels, reconnected whenever it drops.

    After every (re)connect it catches up on what it may have missed: it publishes the current
    revision and wakes every approval watcher, which then re-read the store.
    """

    def __init__(
        self,
        url: str,
        *,
        hub: ApprovalHub,
        bus: RevisionSink,
        reconnect_seconds: float = RECONNECT_SECONDS,
        keepalive_seconds: float = KEEPALIVE_SECONDS,
    ) -> None:
        self.dsn = asyncpg_dsn(url)
        self.hub = hub
        self.bus = bus
        self.reconnect_seconds = reconnect_seconds
        self.keepalive_seconds = keepalive_seconds
        self.connected = asyncio.Event()
        self.connections = 0  # how many times it has connected (tests watch reconnects)
        self.backend_pid: int | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self, wait: float = 5.0) -> None:
        """Start listening; waits up to `wait` seconds for the first connection."""
        self._task = asyncio.create_task(self._run(), name="lockgate-notify-listener")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.connected.wait(), wait)

    async def stop(self) -> None:
        """Stop listening and close the connection."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        while True:
            try:
                await self._listen_once()
            except Exception as exc:  # whatever broke, the replica must keep listening
                log.warning("notification listener lost its connection: %s", type(exc).__name__)
            await asyncio.sleep(self.reconnect_seconds)

    async def _listen_once(self) -> None:
        conn: Any = await asyncpg.connect(self.dsn)
        lost = asyncio.Event()
        conn.add_termination_listener(lambda _conn: lost.set())
        try:
            await conn.add_listener(APPROVALS_CHANNEL, self._on_approval)
            await conn.add_listener(BUNDLES_CHANNEL, self._on_bundle)
            self.backend_pid = conn.get_server_pid()
            self.connections += 1
            await self._catch_up(conn)
            self.connected.set()
            log.info("listening for approval and bundle notifications")
            while not lost.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(lost.wait(), self.keepalive_seconds)
                if not lost.is_set():
                    # A silently dead TCP connection only shows when it is used.
                    await asyncio.wait_for(conn.fetchval("SELECT 1"), self.keepalive_seconds)
            raise ConnectionResetError("listener connection closed")
        finally:
            self.connected.clear()
            conn.terminate()

    async def _catch_up(self, conn: Any) -> None:
        try:
            revision = await conn.fetchval("SELECT revision FROM bundle_state WHERE id = 1")
        except asyncpg.PostgresError:
            revision = None  # not migrated yet
        if revision is not None:
            self.bus.publish(int(revision))
        self.hub.publish_all()

    def _on_approval(self, _conn: object, _pid: int, _channel: str, payload: str) -> None:
        self.hub.publish(payload)

    def _on_bundle(self, _conn: object, _pid: int, _channel: str, payload: str) -> None:
        try:
            revision = int(payload)
        except ValueError:
            log.warning("ignoring a bundle notification that is not a revision")
            return
        self.bus.publish(revision)
