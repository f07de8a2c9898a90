"""The control-plane process: migrate, bootstrap, then serve HTTP (uvicorn) and gRPC together.

Both servers share one event loop and one database engine; SIGINT and SIGTERM stop both. Beside
them run the approval expiry sweep, the webhook dispatcher for this replica's approval events
and, on PostgreSQL, the LISTEN connection that hears the other replicas' changes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys

import uvicorn

from control_plane import approvals, changes, migrate, notify
from control_plane.app import create_app
from control_plane.bootstrap import bootstrap
from control_plane.crypto import SecretBox
from control_plane.db import Database
from control_plane.grpc_service import start_server
from control_plane.webhooks import Dispatcher
from lockgate import runtime
from lockgate.ports import PortTaken, bind
from lockgate.settings import ADMIN_TOKEN_FILE, Settings

log = logging.getLogger("lockgate.control_plane")


async def serve(settings: Settings) -> None:
    settings.ensure_home()
    http_socket = bind(settings.bind, settings.http_port, what="control-plane HTTP")
    await asyncio.to_thread(migrate.upgrade, settings.db_url)
    db = Database(settings.db_url)
    admin_token = await bootstrap(db, settings)
    if admin_token:
        print(
            f"Lockgate admin token (shown once, also in {settings.home / ADMIN_TOKEN_FILE}):\n"
            f"  {admin_token}",
            flush=True,
        )
    async with db.session() as session:
        changes.bus.revision = await changes.current(session)
    box = SecretBox(settings.master_key_bytes())
    try:
        grpc_server = await start_server(
            db, box, settings.bind, settings.grpc_port, console_url=settings.http_url
        )
    except (OSError, RuntimeError) as exc:
        http_socket.close()
        raise PortTaken(
            f"control-plane gRPC port {settings.bind}:{settings.grpc_port} is not available"
        ) from exc
    listener = None
    if notify.is_postgres(settings.db_url):
        listener = notify.Listener(settings.db_url, hub=notify.hub, bus=changes.bus)
        await listener.start()
    dispatcher = Dispatcher(db, box, settings.http_url)
    dispatcher.attach(notify.hub)
    expiry = asyncio.create_task(approvals.run_expiry(db), name="lockgate-approval-expiry")
    app = create_app(settings, db)
    config = uvicorn.Config(
        app,
        log_level=settings.log_level,
        access_log=False,
        lifespan="off",
        loop="none",
    )
    server = runtime.Server(config)
    log.info("control plane on %s", settings.http_url)
    try:
        await server.serve(sockets=[http_socket])
    finally:
        expiry.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await expiry
        await grpc_server.stop(grace=1.0)
        await dispatcher.close()
        if listener is not None:
            await listener.stop()
        await db.dispose()


def run(settings: Settings) -> int:
    """Run until SIGINT or SIGTERM; returns the process exit code."""
    runtime.setup_logging(settings.log_level)
    try:
        runtime.run(serve(settings))
    except PortTaken as exc:
        print(f"lockgate: {exc}", file=sys.stderr)
        return 1
    return 0
