"""The PostgreSQL listener: the only module of this protocol that touches sockets.

It walks a client connection through the states listed in `session.py`: TLS and start-up,
token authentication (cleartext over TLS or SCRAM-SHA-256), the `connect` decision, the upstream
login with credentials fetched for this session, then the relay, where every statement is
audited before it is forwarded. Errors reach the client as native ErrorResponses with SQLSTATEs.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import re
import secrets
import socket
import ssl
from collections import deque
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, cast

import grpc

from data_plane import tls, workers
from data_plane.audit.statements import StatementPayloads
from data_plane.audit.trail import SessionAudit
from data_plane.bulk import BulkReads
from data_plane.protocols.postgres import codec
from data_plane.protocols.postgres.auth import (
    AuthFailed,
    ScramCandidate,
    ScramServer,
    UpstreamAuth,
)
from data_plane.protocols.postgres.session import (
    QUERY,
    SYNC,
    ClientStream,
    Group,
    ServerStream,
    State,
    Statement,
    deny_query,
)
from data_plane.server import NoBundle, NodeContext
from lockgate.bundle import AuthError, BundleView
from lockgate.enforcement import Enforcer, StatementDecision
from lockgate.masking import masks
from lockgate.masking.copy_text import CopyTextMasker
from lockgate.masking.data_rows import DataRowMasker
from lockgate.masking.detectors import Scanner, scanner_for
from lockgate.masking.plan import ColumnAction, StatementPlan
from lockgate.ports import bind
from lockgate.settings import Settings
from protos.lockgate.v1 import node_pb2 as pb

log = logging.getLogger("lockgate.node.pg")

try:
    from data_plane.protocols.postgres._fastpath import FastPath
except ImportError:  # not built (`make setup` builds it): every statement takes the Python path
    FastPath = None  # type: ignore[assignment,misc]
    log.warning("the PostgreSQL fast path is not built; statements take the Python path")

READ_SIZE = 1 << 16
SYNC_MESSAGE = b"S\x00\x00\x00\x04"
VIEWS_SQL = (
    "SELECT n.nspname || '.' || c.relname, pg_catalog.pg_get_viewdef(c.oid) "
    "FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace "
    "WHERE c.relkind IN ('v', 'm') AND n.nspname NOT IN ('pg_catalog', 'information_schema')"
)
UPSTREAM_CONNECT_TIMEOUT = 10.0
# Start-up parameters the node sets itself on the upstream leg.
OWN_PARAMS = {"user", "database", "replication"}


@dataclass(frozen=True, slots=True)
class Held:
    """A statement waiting for approval, with the result plans of its whole group."""

    statement: Statement
    decision: StatementDecision
    plans: list[tuple[StatementPlan, ...]]


class SessionError(Exception):
    """Ends the session with a FATAL ErrorResponse carrying this SQLSTATE."""

    def __init__(self, sqlstate: str, message: str, detail: str | None = None) -> None:
        super().__init__(message)
        self.sqlstate = sqlstate
        self.detail = detail


class PostgresServer:
    name = "pg"

    def __init__(self, node: NodeContext, settings: Settings) -> None:
        self.node = node
        self.settings = settings
        self.server: asyncio.Server | None = None
        self.peers: asyncio.Server | None = None  # other workers' forwarded CancelRequests
        # A worker's connections come from its supervisor over this socket pair instead.
        self.handoff: socket.socket | None = None
        self._handed: set[asyncio.Task[None]] = set()
        self.forwarded_cancels = 0  # CancelRequests passed on to the worker that owns them
        self.ssl_context: ssl.SSLContext | None = None
        # client cancel key -> (upstream host, port, upstream pid, upstream secret)
        self.cancel_keys: dict[tuple[int, bytes], tuple[str, int, int, bytes]] = {}

    async def bind(self) -> None:
        s = self.settings
        if s.tls_cert and s.tls_key:
            cert, key = s.tls_cert, s.tls_key
        else:
            cert, key = tls.self_signed(s.home / "tls")
        self.ssl_context = tls.server_context(cert, key)
        self.handoff = workers.handoff_socket() if s.node_worker is not None else None
        if self.handoff is None:
            sock = bind(s.bind, s.pg_port, what="PostgreSQL")
            self.server = await asyncio.start_server(self._accept, sock=sock, start_serving=False)
        if s.node_worker is not None:
            # CancelRequests for this worker's sessions that reached another worker.
            peers = workers.unix_listener(workers.cancel_socket(s.home, s.node_worker))
            self.peers = await asyncio.start_unix_server(
                self._accept_forwarded, sock=peers, start_serving=False
            )

    async def serve(self) -> None:
        if self.peers is not None:
            await self.peers.start_serving()
        if self.handoff is not None:
            log.info("PostgreSQL connections from the node supervisor")
            ended = asyncio.Event()
            asyncio.get_running_loop().add_reader(self.handoff, self._adopt_handed, ended)
            await ended.wait()  # the supervisor is gone
            return
        assert self.server is not None
        log.info("PostgreSQL listener on %s:%d", self.settings.bind, self.settings.pg_port)
        await self.server.serve_forever()

    async def close(self) -> None:
        for server in (self.server, self.peers):
            if server is not None:
                server.close()
        if self.handoff is not None:
            asyncio.get_running_loop().remove_reader(self.handoff)
            self.handoff.close()
            self.handoff = None

    def _adopt_handed(self, ended: asyncio.Event) -> None:
        """Connections the supervisor accepted and passed over (data_plane/workers.py)."""
        assert self.handoff is not None
        while True:  # a message per connection: each carries one descriptor
            try:
                data, fds, _, _ = socket.recv_fds(self.handoff, 256, 16)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                data, fds = b"", []
            for fd in fds:
                conn = socket.socket(fileno=fd)
                self._handed.add(asyncio.create_task(self._serve_handed(conn)))
            if not data and not fds:
                asyncio.get_running_loop().remove_reader(self.handoff)
                ended.set()
                return

    async def _serve_handed(self, conn: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        served = loop.create_future()

        async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            try:
                await self._accept(reader, writer)
            finally:
                served.set_result(None)

        try:
            # A server-side stream, as `start_server` makes (TLS is then started server-side).
            reader = asyncio.StreamReader(limit=READ_SIZE, loop=loop)
            await loop.connect_accepted_socket(
                lambda: asyncio.StreamReaderProtocol(reader, serve, loop=loop), sock=conn
            )
            await served
        except OSError:
            conn.close()
        finally:
            self._handed.discard(cast("asyncio.Task[None]", asyncio.current_task()))
            if self.handoff is not None:
                with contextlib.suppress(OSError):
                    self.handoff.send(b"e")  # one ended: the supervisor counts it off

    def new_cancel_pid(self) -> int:
        """The process id of a client's cancel key; with workers, it names this one."""
        s = self.settings
        return workers.cancel_pid(s.node_worker or 0, s.node_workers)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = ClientConnection(self, reader, writer)
        try:
            await conn.run()
        except Exception:  # a bug in one session must never take the node down
            log.exception("session %s failed", conn.session_id)
        finally:
            await conn.close()

    async def cancel(self, request: codec.CancelRequest) -> None:
        """Forward a CancelRequest to the upstream backend it names (protocol 55.2.7), or to
        the worker that gave out its key when that is another one."""
        target = self.cancel_keys.get((request.pid, request.secret))
        if target is None:
            s = self.settings
            if s.node_worker is not None and s.node_workers > 1:
                peer = workers.owner(request.pid, s.node_workers)
                if peer != s.node_worker:
                    path = os.fspath(workers.cancel_socket(s.home, peer))
                    if await _send_cancel(
                        asyncio.open_unix_connection(path), request.pid, request.secret
                    ):
                        self.forwarded_cancels += 1
            return
        host, port, pid, secret = target
        await _send_cancel(asyncio.open_connection(host, port), pid, secret)

    async def _accept_forwarded(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        """A CancelRequest another worker received for one of this worker's sessions."""
        try:
            with contextlib.suppress(OSError, TimeoutError, asyncio.IncompleteReadError):
                data = await asyncio.wait_for(reader.readexactly(16), 5.0)
                startup = codec.StartupReader()
                startup.feed(data)
                msg = startup.next_message()
                if isinstance(msg, codec.CancelRequest):
                    await self.cancel(msg)
        finally:
            writer.close()


async def _send_cancel(
    connecting: Coroutine[Any, Any, tuple[asyncio.StreamReader, asyncio.StreamWriter]],
    pid: int,
    secret: bytes,
) -> bool:
    """Send a CancelRequest on the connection `connecting` opens; whether it was sent."""
    with contextlib.suppress(OSError, TimeoutError):
        _, w = await asyncio.wait_for(connecting, 5.0)
        w.write(codec.cancel_request(pid, secret))
        await w.drain()
        w.close()
        return True
    return False


class ClientConnection:
    """One client connection, from the first byte to the session's end."""

    def __init__(
        self, server: PostgresServer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        self.server = server
        self.node = server.node
        self.reader = reader
        self.writer = writer
        self.state = State.NEGOTIATING
        self.tls = False
        self.token_id = ""
        self.audit: SessionAudit | None = None
        self._payloads = StatementPayloads()
        self.session_id = ""
        peer = writer.get_extra_info("peername")
        self.client_addr = f"{peer[0]}:{peer[1]}" if peer else ""
        self.messages = codec.MessageReader()
        self.upstream_writer: asyncio.StreamWriter | None = None
        self.cancel_key: tuple[int, bytes] | None = None
        self.bytes_in = 0
        self.bytes_out = 0
        self.outcome = "closed"
        self.registered = False
        self.enforcer: Enforcer | None = None
        self.server_stream: ServerStream | None = None
        self.scanner: Scanner | None = None
        self.skip_until_sync = False
        self.denied = 0
        self._stream = ClientStream()
        self._queue: deque[Group] = deque()
        self._holding: asyncio.Future[None] | None = None
        self._done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.fast: FastPath | None = None
        self.bulk: BulkReads | None = None

    # the session, state by state ---------------------------------------------------------

    async def run(self) -> None:
        try:
            # One deadline for the whole start-up rather than one per read: a client that
            # trickles bytes cannot hold a session in start-up past it, and it is one timer.
            async with asyncio.timeout(self.server.settings.pg_login_timeout):
                startup = await self._negotiate()
                if startup is None:
                    return
                await self._start(startup)
        except SessionError as exc:
            await self._fatal(exc.sqlstate, str(exc), exc.detail)
            return
        except codec.ProtocolError as exc:
            await self._fatal(exc.sqlstate, f"protocol violation: {exc}")
            self.outcome = "error"
            return
        except (ConnectionError, TimeoutError, asyncio.IncompleteReadError):
            self.outcome = "client_gone"
            return
        await self._relay()

    async def _negotiate(self) -> codec.StartupMessage | None:
        """SSLRequest, GSSENCRequest and CancelRequest until the StartupMessage arrives."""
        reader = codec.StartupReader()
        while True:
            msg = reader.next_message()
            if msg is None:
                data = await self.reader.read(READ_SIZE)
                if not data:
                    return None
                try:
                    reader.feed(data)
                    continue
                except codec.ProtocolError as exc:
                    await self._fatal(exc.sqlstate, f"invalid start-up packet: {exc}")
                    return None
            if isinstance(msg, codec.SSLRequest):
                if self.tls or reader.remainder():
                    await self._fatal("08P01", "unexpected data after SSLRequest")
                    return None
                self.writer.write(codec.ssl_response(True))
                await self.writer.drain()
                await self.writer.start_tls(self.server.ssl_context)  # type: ignore[arg-type]
                self.tls = True
                reader = codec.StartupReader()
            elif isinstance(msg, codec.GSSEncRequest):
                self.writer.write(b"N")
                await self.writer.drain()
            elif isinstance(msg, codec.CancelRequest):
                await self.server.cancel(msg)
                return None
            else:
                self.messages.feed(reader.remainder())
                return msg

    async def _start(self, startup: codec.StartupMessage) -> None:
        params = startup.params
        user = params.get("user", "")
        connection_name = params.get("database") or user
        if not user:
            raise SessionError("28000", "no user name in the start-up packet")
        if "replication" in params and params["replication"] not in ("", "false", "0", "off"):
            raise SessionError("0A000", "replication connections are not supported by Lockgate")
        self.audit = self.node.audit.session()
        self.session_id = self.audit.session_id
        self.audit.record(
            "session.start",
            identity=user,
            connection=connection_name,
            protocol="postgres",
            node=self.node.name,
            client_addr=self.client_addr,
            tls=self.tls,
            application_name=params.get("application_name", ""),
        )
        self.state = State.AUTHENTICATING
        try:
            bundle = await self.node.bundle()
        except NoBundle as exc:
            self.outcome = "error"
            raise SessionError("08006", str(exc)) from None
        await self._authenticate(bundle, user)

        self.state = State.CONNECTING
        connection = bundle.connections.get(connection_name)
        if connection is None or connection.type != "postgres":
            self.outcome = "denied"
            self.audit.record("connect.denied", reason="unknown connection")
            raise SessionError(
                "3D000", f'connection "{connection_name}" does not exist on this node'
            )
        decision = bundle.authorize(
            user, "connect", connection.name, {"hour": datetime.now(UTC).hour}
        )
        self.audit.record(
            "decision",
            action="connect",
            allowed=decision.allowed,
            policies=list(decision.policies),
            reason=decision.reason,
        )
        if not decision.allowed:
            self.outcome = "denied"
            raise SessionError("42501", f"permission denied: {decision.reason}")
        # The target's connection (and its server process) gets going while the control plane
        # answers for the credentials: neither waits for the other.
        dialing = asyncio.ensure_future(self._dial(connection.host, connection.port))
        try:
            self._setup_enforcement(bundle, user, connection.name)
            self.node.register(self)
            self.registered = True
            creds = await self.node.credentials(connection.name, self.session_id, user)
        except BaseException as exc:
            dialing.cancel()
            with contextlib.suppress(asyncio.CancelledError, SessionError):
                await dialing
            if not isinstance(exc, grpc.aio.AioRpcError):
                raise
            self.outcome = "error"
            raise SessionError(
                "08006",
                f'credentials for connection "{connection.name}" are unavailable',
                detail=f"control plane: {exc.code().name}",
            ) from None
        await dialing
        await self._login_upstream(
            connection.host, connection.port, connection.database, creds, params
        )

    async def _authenticate(self, bundle: BundleView, user: str) -> None:
        assert self.audit is not None
        # Cleartext only inside TLS; SCRAM otherwise or when configured (protocol 55.3).
        method = "password" if self.tls and self.server.settings.pg_auth == "auto" else "scram"
        try:
            if method == "password":
                self.writer.write(codec.authentication_cleartext_password())
                body = await self._expect(ord("p"))
                password = codec.parse_password(body).decode("utf-8", "replace")
                who = bundle.check_password(user, password)
                self.token_id = who.token_id
            else:
                self.token_id = await self._scram(bundle, user)
        except (AuthError, AuthFailed) as exc:
            self.outcome = "auth_failed"
            self.audit.record("auth.failed", reason=str(exc))
            raise SessionError("28P01", str(exc)) from None
        self.audit.record("auth.ok", token_id=self.token_id, method=method)

    async def _scram(self, bundle: BundleView, user: str) -> str:
        """SCRAM-SHA-256 against every token of `user` (protocol 55.3.1); the matching token id."""
        salt, iterations = bundle.scram_salt(user)
        candidates = [
            ScramCandidate(t.id, t.scram_stored_key, t.scram_server_key)
            for t in bundle.scram_tokens(user)
        ]
        scram = ScramServer(salt, iterations, candidates)
        self.writer.write(codec.authentication_sasl(["SCRAM-SHA-256"]))
        mechanism, first = codec.parse_sasl_initial_response(await self._expect(ord("p")))
        if mechanism != "SCRAM-SHA-256":
            raise AuthFailed(f"unsupported SASL mechanism {mechanism!r}")
        self.writer.write(codec.authentication_sasl_continue(scram.handle_client_first(first)))
        token_id, final = scram.handle_client_final(await self._expect(ord("p")))
        if not bundle.token_active(token_id):
            raise AuthFailed(f'token for user "{user}" has expired')
        self.writer.write(codec.authentication_sasl_final(final))
        return token_id

    async def _dial(self, host: str, port: int) -> None:
        """Open the target's connection (`upstream_reader`, `upstream_writer`)."""
        assert self.audit is not None
        try:
            self.upstream_reader, self.upstream_writer = await asyncio.wait_for(
                asyncio.open_connection(host, port), UPSTREAM_CONNECT_TIMEOUT
            )
        except (OSError, TimeoutError) as exc:
            self.outcome = "error"
            self.audit.record("upstream.error", error=f"cannot reach {host}:{port}")
            raise SessionError(
                "08001", f"could not connect to the target at {host}:{port}", detail=str(exc)
            ) from None

    async def _login_upstream(
        self,
        host: str,
        port: int,
        database: str,
        creds: pb.Credentials,
        client_params: dict[str, str],
    ) -> None:
        """Log in on the connection `_dial` opened with the credentials from the control plane."""
        assert self.audit is not None
        assert self.upstream_reader is not None and self.upstream_writer is not None
        username, password = creds.username, creds.password
        up_reader, up_writer = self.upstream_reader, self.upstream_writer
        params = {k: v for k, v in client_params.items() if k not in OWN_PARAMS}
        params.update(user=username, database=database)
        up_writer.write(codec.startup_message(params))
        upstream = codec.MessageReader()
        auth = UpstreamAuth(username, password)
        while not auth.done:
            kind, body = await self._read_from(up_reader, upstream)
            if kind == ord("R"):
                try:
                    reply = auth.respond(*codec.parse_authentication(body))
                except AuthFailed as exc:
                    raise SessionError("08004", f"the target refused the login: {exc}") from None
                if reply:
                    up_writer.write(reply)
            elif kind == ord("E"):
                fields = codec.parse_error_fields(body)
                self.outcome = "error"
                self.audit.record("upstream.error", error=fields.get("M", ""))
                raise SessionError(
                    "08004", f"the target refused the login: {fields.get('M', 'unknown error')}"
                )
            else:
                raise SessionError("08P01", f"unexpected message {chr(kind)!r} from the target")
        # AuthenticationOk to the client, then the target's ParameterStatus, our own
        # BackendKeyData in place of the target's, and ReadyForQuery (protocol 55.2.1), in
        # one write: a write per message would wake the client for each of them.
        out = bytearray(codec.authentication_ok())
        while True:
            kind, body = await self._read_from(up_reader, upstream)
            if kind == ord("K"):
                up_pid, up_secret = codec.parse_backend_key_data(body)
                pid = self.server.new_cancel_pid()
                secret = secrets.token_bytes(4)
                self.cancel_key = (pid, secret)
                self.server.cancel_keys[self.cancel_key] = (host, port, up_pid, up_secret)
                out += codec.backend_key_data(pid, secret)
            elif kind == ord("Z"):
                break
            else:
                out += bytes([kind]) + (len(body) + 4).to_bytes(4, "big") + body
                if kind == ord("E"):
                    self.writer.write(out)
                    fields = codec.parse_error_fields(body)
                    raise SessionError(fields.get("C", "08004"), fields.get("M", "target error"))
        if self.enforcer is not None and self.enforcer.masking:
            await self._load_views(up_reader, up_writer, upstream)
        out += codec.ready_for_query(codec.parse_ready_for_query(body))
        out += upstream.pending()
        self.writer.write(out)
        await self.writer.drain()
        self.audit.record("session.connected", target=f"{host}:{port}", database=database)

    async def _load_views(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        messages: codec.MessageReader,
    ) -> None:
        """Read the target's view definitions so masking lineage follows views.

        Runs on the session's own upstream connection before the client's first statement.
        """
        assert self.enforcer is not None
        writer.write(codec.query(VIEWS_SQL))
        while True:
            kind, body = await self._read_from(reader, messages)
            if kind == ord("D"):
                name, definition = _text_cells(body)
                if name and definition:
                    self.enforcer.learn_view(name, definition)
            elif kind == ord("E"):
                log.warning(
                    "could not read view definitions: %s",
                    codec.parse_error_fields(body).get("M", ""),
                )
            elif kind == ord("Z"):
                return

    async def _relay(self) -> None:
        """Relay until either side goes away, with callback protocols on both sockets.

        After start-up the two transports get `_RelaySide` protocols: bytes are handled in
        `data_received` and written straight to the other transport, with no task switch per
        chunk; each side pauses reading from its peer while its own write buffer is full.
        """
        assert self.audit is not None and self.upstream_writer is not None
        self.state = State.RELAYING
        client = cast(asyncio.Transport, self.writer.transport)
        upstream = cast(asyncio.Transport, self.upstream_writer.transport)
        self.client_transport, self.upstream_transport = client, upstream
        # Bytes the stream readers buffered before the switch are handled first.
        early_client = _drain_buffer(self.reader)
        early_upstream = _drain_buffer(self.upstream_reader)
        on_client, on_upstream = self._from_client, self._from_upstream
        if (
            FastPath is not None
            and self.server.settings.pg_fast_path
            and self.server_stream is None
        ):
            # Results pass as they are, so statements decided before can take the fast path.
            if self.server.settings.bulk_reads:
                self.bulk = BulkReads(upstream)
            self.fast = FastPath(
                client=client,
                upstream=upstream,
                audit=self.audit,
                outbox=self.audit.trail.outbox(),
                slow=self._from_client,
                prepared=self._stream.prepared,
                session_id=self.session_id.encode(),
                bulk=self.bulk,
                busy=self.node.busy_poll,
            )
            on_client, on_upstream = self.fast.client_data, self.fast.upstream_data
        client.set_protocol(_RelaySide(on_client, self._lost, peer=upstream))
        upstream.set_protocol(_RelaySide(on_upstream, self._lost, peer=client))
        if early_upstream:
            self._from_upstream(early_upstream)
        if early_client:
            self._from_client(early_client)
        try:
            await self._done
        finally:
            if self.bulk is not None:
                self.bulk.close()
        client.close()
        upstream.close()

    def _lost(self, exc: Exception | None) -> None:
        if not self._done.done():
            self._done.set_result(None)

    def _from_client(self, data: bytes) -> None:
        self.bytes_in += len(data)
        if self.fast is None and self.node.busy_poll is not None:
            self.node.busy_poll.arm()  # (the fast path arms before it hands bytes here)
        try:
            self._queue.extend(self._stream.feed(data))
        except codec.ProtocolError as exc:
            self.outcome = "error"
            self.client_transport.write(
                codec.error_response(exc.sqlstate, f"protocol violation: {exc}", severity="FATAL")
            )
            self._lost(None)
            return
        if self._holding is None:
            self._pump()
        self._allow_fast()

    def _allow_fast(self) -> None:
        """Let client bytes take the fast path only while this path has nothing of its own in
        progress (a held statement, queued groups, half a message, a skip to the next Sync)."""
        if self.fast is not None:
            self.fast.enabled = not (
                self._holding is not None
                or self._queue
                or self.skip_until_sync
                or self._stream.pending
                or self._stream.terminated
            )

    def _pump(self) -> None:
        """Decide queued groups in order and forward them; stop at a held statement."""
        assert self.audit is not None
        record_encoded = self.audit.record_encoded
        # Written after the events recorded for it are in the spool.
        forward = self.audit.trail.forward
        out: list[bytes] = []
        while self._queue:
            group = self._queue.popleft()
            try:
                data, held = self._decide_group(group, record_encoded)
            except codec.ProtocolError as exc:
                self.outcome = "error"
                self.client_transport.write(
                    codec.error_response(exc.sqlstate, f"protocol violation: {exc}")
                )
                self._lost(None)
                return
            if held is not None:
                # Earlier groups go now; nothing after the held one until it is decided, so
                # no later statement of the session jumps ahead.
                if out:
                    forward(self.upstream_transport, b"".join(out))
                self.client_transport.pause_reading()
                self._holding = asyncio.ensure_future(self._hold_then_resume(group, held))
                return
            if data:
                out.append(data)
        if out:
            forward(self.upstream_transport, b"".join(out))

    async def _hold_then_resume(self, group: Group, held: Held) -> None:
        try:
            data = await self._hold(group, held)
            if data and not self._done.done():
                assert self.audit is not None
                self.audit.trail.forward(self.upstream_transport, data)
        except Exception:
            log.exception("approval hold failed in session %s", self.session_id)
            self._lost(None)
            return
        finally:
            self._holding = None
        if not self._done.done():
            self.client_transport.resume_reading()
            self._pump()
            self._allow_fast()

    def _from_upstream(self, data: bytes) -> None:
        self.bytes_out += len(data)
        if self.node.busy_poll is not None:
            self.node.busy_poll.arm()
        servers = self.server_stream
        if servers is not None:
            data = servers.feed(data)
            if not data:
                return
        self.client_transport.write(data)

    def _setup_enforcement(self, bundle: BundleView, user: str, connection: str) -> None:
        """The session's enforcer and, when masking rules bind it, the result masker."""
        self.enforcer = Enforcer(bundle, user, connection)
        rules = self.enforcer.rules
        if rules is None:
            self.server_stream = None
            self.scanner = None
            return
        self.scanner = scanner_for(rules.detectors) if rules.detectors else None
        masked_columns = {c for _, _, c in rules.patterns if c != "*"}
        scanner = self.scanner

        def mask_cell(raw: bytes, oid: int, binary: bool, action: ColumnAction) -> bytes | None:
            return masks.mask_cell(
                raw, oid=oid, binary=binary, how=action.how, keys=action.keys, scanner=scanner
            )

        def mask_error(fields: dict[str, str]) -> dict[str, str]:
            return masks.mask_error_fields(fields, masked_columns, scanner)

        # Masks text COPY rows and runs of DataRows in bulk where that gives what mask_cell
        # gives row by row.
        self.server_stream = ServerStream(
            mask_cell, mask_error, CopyTextMasker(scanner), DataRowMasker(scanner)
        )

    def on_bundle(self, bundle: BundleView) -> None:
        """A new bundle: decide with its policies from now on (live sessions included)."""
        if self.enforcer is None or self.state is not State.RELAYING:
            return
        fresh = Enforcer(bundle, self.enforcer.identity, self.enforcer.connection)
        if fresh.masking and self.server_stream is None:
            # Results were not being inspected; masking cannot start mid-stream.
            self.terminate("masking rules for this session changed; reconnect")
            return
        fresh.prepared = self.enforcer.prepared
        fresh.views = self.enforcer.views
        self.enforcer = fresh
        if self.fast is not None:
            self.fast.forget()  # decided under the old bundle

    def _audit_sql(self, sql: str) -> str:
        if self.scanner is None:
            return sql
        return masks.mask_text(sql, self.scanner)[0]

    def _decide_group(
        self, group: Group, record_encoded: Callable[[str, bytes], None]
    ) -> tuple[bytes, Held | None]:
        """Decide and audit a group's statements: the bytes to forward in its place, and the
        statement to hold for approval, if any (then the bytes are forwarded once approved)."""
        assert self.enforcer is not None
        servers = self.server_stream
        if self.skip_until_sync:
            if group.end != SYNC:
                return b"", None
            self.skip_until_sync = False
            if servers is not None:
                servers.expect_sync()
            return SYNC_MESSAGE, None
        if not group.statements:
            if servers is not None:
                servers.expect_group(group, ())
            return group.data, None
        enforcer = self.enforcer
        denied = None
        held: tuple[Statement, StatementDecision] | None = None
        decisions = []
        fast = self.fast
        for st in group.statements:
            decision = enforcer.decide(st.sql)
            decisions.append(decision)
            record_encoded(
                "statement",
                self._payloads.encode(self._audit_sql(st.sql), st.protocol, st.name, decision),
            )
            if fast is not None and st.protocol != "fastpath":
                reuse = enforcer.reuse(decision)
                if reuse is not None:
                    tail = self._payloads.tail(decision).encode()
                    fast.learn(st.sql, tail, reuse == "shape", enforcer.fresh_until)
            if not decision.allowed and denied is None:
                denied = decision
            elif decision.hold is not None and held is None:
                held = (st, decision)
        if denied is not None:
            return self._deny_group(group, denied.client_message()), None
        if held is not None:
            return b"", Held(*held, plans=[d.plans for d in decisions])
        if servers is not None:
            servers.expect_group(group, [d.plans for d in decisions])
        return group.data, None

    def _deny_group(self, group: Group, message: str) -> bytes:
        """What goes upstream in place of a denied group (see `session.deny_query`)."""
        self.denied += 1
        servers = self.server_stream
        if group.end in (QUERY, SYNC):
            if servers is not None:
                servers.expect_query(())
            return deny_query(message)
        # A Flush-terminated group: answer now, then drop messages up to the Sync, as the
        # target itself does after an error (protocol 55.2.3).
        self.writer.write(codec.error_response("42501", message))
        self.skip_until_sync = True
        return b""

    async def _hold(self, group: Group, held: Held) -> bytes:
        """Ask for approval of a held statement and wait: the group's bytes once approved,
        a denial in its place otherwise (denied, expired, timed out, no control plane)."""
        assert self.audit is not None and self.enforcer is not None
        st, decision = held.statement, held.decision
        rule = decision.hold
        assert rule is not None
        reason = _reason(st.sql)
        if rule.require_reason and not reason:
            return self._deny_group(
                group,
                f"approval rule {rule.name} needs a reason: add "
                "/* lockgate-reason: why */ to the statement",
            )
        audit_sql = self._audit_sql(st.sql)
        c = decision.classification
        fingerprint = hashlib.sha256(
            st.sql.encode() if st.protocol == "simple" else group.data
        ).hexdigest()
        request = pb.ApprovalRequest(
            request_key=f"{self.session_id}:{self.audit.seq}",
            rule=rule.name,
            session_id=self.session_id,
            identity=self.enforcer.identity,
            connection=self.enforcer.connection,
            statement=audit_sql,
            fingerprint=fingerprint,
            kind=c.kind,
            action=decision.action,
            tables=sorted(c.tables),
            reason=reason,
        )
        within = float(rule.timeout_seconds or 600) + 2.0
        final: pb.ApprovalEvent | None = None
        async for event in self.node.await_approval(request, within):
            if event.state == "pending":
                self.audit.record(
                    "approval.requested",
                    approval_id=event.approval_id,
                    rule=rule.name,
                    url=event.url,
                    sql=audit_sql,
                )
                self.writer.write(
                    codec.notice_response(
                        f"Lockgate: approval {event.approval_id} is needed to run this "
                        f"statement (rule {rule.name}); waiting. {event.url}",
                        sqlstate="01000",
                    )
                )
            elif event.state == "notified":
                self.audit.record("approval.notified", approval_id=event.approval_id)
            else:
                final = event
        if final is not None and final.state == "approved":
            self.audit.record(
                "approval.approved",
                approval_id=final.approval_id,
                decided_by=list(final.decided_by),
                comment=final.comment,
            )
            self.audit.record("approval.executed", approval_id=final.approval_id, sql=audit_sql)
            if self.server_stream is not None:
                self.server_stream.expect_group(group, held.plans)
            return group.data
        if final is None:
            self.audit.record("approval.expired", rule=rule.name, reason="no answer in time")
            return self._deny_group(
                group, f"approval for this statement timed out (rule {rule.name})"
            )
        self.audit.record(
            f"approval.{final.state}",
            approval_id=final.approval_id,
            decided_by=list(final.decided_by),
            comment=final.comment,
        )
        verdict = "was denied" if final.state == "denied" else "expired"
        comment = f": {final.comment}" if final.comment else ""
        return self._deny_group(group, f"approval {final.approval_id} {verdict}{comment}")

    # helpers -----------------------------------------------------------------------------

    async def _expect(self, kind: int) -> bytes:
        await self.writer.drain()
        got, body = await self._read_from(self.reader, self.messages)
        if got != kind:
            raise codec.ProtocolError(f"expected message {chr(kind)!r}, got {chr(got)!r}")
        return body

    @staticmethod
    async def _read_from(
        reader: asyncio.StreamReader, messages: codec.MessageReader
    ) -> tuple[int, bytes]:
        while True:
            msg = messages.next_message()
            if msg is not None:
                return msg
            data = await reader.read(READ_SIZE)
            if not data:
                raise ConnectionError("peer closed the connection")
            messages.feed(data)

    async def _fatal(self, sqlstate: str, message: str, detail: str | None = None) -> None:
        if self.outcome == "closed":
            self.outcome = "error"
        if self.audit is not None:
            self.audit.record("error", sqlstate=sqlstate, message=message)
        with contextlib.suppress(Exception):
            self.writer.write(
                codec.error_response(sqlstate, message, severity="FATAL", detail=detail)
            )
            await asyncio.wait_for(self.writer.drain(), 5.0)

    def terminate(self, reason: str) -> None:
        """End the session now (token revoked or expired, node shutting down).

        Before the relay starts every write is a whole message, so the client gets a FATAL
        error it can show; during the relay the connection is cut, since a message from the
        target may be half-forwarded.
        """
        self.outcome = "terminated"
        if self.audit is not None:
            self.audit.record("session.terminated", reason=reason)
        if self.state is not State.RELAYING:
            with contextlib.suppress(Exception):
                self.writer.write(codec.error_response("28P01", reason, severity="FATAL"))
            self.writer.close()
            if self.upstream_writer is not None:
                self.upstream_writer.transport.abort()
            return
        for w in (self.writer, self.upstream_writer):
            if w is not None:
                w.transport.abort()

    async def close(self) -> None:
        self.state = State.CLOSED
        if self.registered:
            self.node.unregister(self)
        if self.cancel_key is not None:
            self.server.cancel_keys.pop(self.cancel_key, None)
        if self.fast is not None:
            self.node.count_fast_path(self.fast.statements)
        if self.bulk is not None and self.bulk.raised:
            self.node.count_bulk_reads(self.bulk.raised)
        if self.audit is not None:
            self.audit.record(
                "session.end",
                outcome=self.outcome,
                bytes_in=self.bytes_in + (self.fast.bytes_in if self.fast else 0),
                bytes_out=self.bytes_out + (self.fast.bytes_out if self.fast else 0),
                denied=self.denied,
                masked_cells=self.server_stream.masked_cells if self.server_stream else 0,
            )
        for w in (self.upstream_writer, self.writer):
            if w is not None:
                with contextlib.suppress(Exception):
                    w.close()


def _text_cells(body: bytes) -> tuple[str, ...]:
    """The text-format cells of a DataRow (NULL as "")."""
    count = int.from_bytes(body[:2], "big")
    pos, cells = 2, []
    for _ in range(count):
        size = int.from_bytes(body[pos : pos + 4], "big", signed=True)
        pos += 4
        if size < 0:
            cells.append("")
            continue
        cells.append(body[pos : pos + size].decode("utf-8", "replace"))
        pos += size
    return tuple(cells)


_REASON = re.compile(r"lockgate-reason:\s*([^*\n]+)", re.IGNORECASE)


def _reason(sql: str) -> str:
    """The requester's reason, from a `/* lockgate-reason: ... */` or `--` comment."""
    match = _REASON.search(sql)
    return match.group(1).strip() if match else ""


class _RelaySide(asyncio.Protocol):
    """One socket of a relayed session: bytes in go to `on_data`; while this socket's write
    buffer is full, reading from the peer pauses (back-pressure across the relay)."""

    def __init__(
        self,
        on_data: Callable[[bytes], None],
        on_lost: Callable[[Exception | None], None],
        peer: asyncio.Transport,
    ) -> None:
        # The transport calls `on_data` itself, without a method of ours in between.
        self.data_received = on_data  # type: ignore[method-assign,assignment]
        self.on_lost = on_lost
        self.peer = peer

    def data_received(self, data: bytes) -> None:  # replaced per instance in __init__
        raise NotImplementedError

    def eof_received(self) -> bool:
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.on_lost(exc)

    def pause_writing(self) -> None:
        self.peer.pause_reading()

    def resume_writing(self) -> None:
        self.peer.resume_reading()


def _drain_buffer(reader: asyncio.StreamReader) -> bytes:
    """Bytes a StreamReader has buffered but nobody read yet (before a protocol switch)."""
    # No public accessor exists; read once, at the switch to protocols.
    buffered: bytearray = reader._buffer  # type: ignore[attr-defined]
    data = bytes(buffered)
    buffered.clear()
    return data
