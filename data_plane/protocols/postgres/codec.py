"""Sans-io codec for the PostgreSQL frontend/backend protocol v3: bytes in, messages out.

Startup packets (no type byte) go through StartupReader; regular messages are framed by
split_messages (relay hot path) or MessageReader, and built by the encoders below.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

PROTOCOL_V3 = 196608  # 3 << 16 | 0
SSL_REQUEST_CODE = 80877103  # 1234 << 16 | 5679
GSSENC_REQUEST_CODE = 80877104  # 1234 << 16 | 5680
CANCEL_REQUEST_CODE = 80877102  # 1234 << 16 | 5678

# PostgreSQL rejects larger startup packets (MAX_STARTUP_PACKET_LENGTH in pqcomm.h).
MAX_STARTUP_LENGTH = 10000
# PostgreSQL docs, 55.7 Message Formats (CancelRequest, BackendKeyData): the secret key is
# 4 bytes in protocol 3.0 and at most 256 bytes from protocol 3.2 on.
MIN_SECRET_LENGTH = 4
MAX_SECRET_LENGTH = 256
READY_STATUSES = frozenset(b"ITE")

# What the decoders accept: a message body, possibly sliced out of a receive buffer.
BytesLike = bytes | bytearray | memoryview

_INT32 = struct.Struct("!i")
_UINT32 = struct.Struct("!I")
_UINT16 = struct.Struct("!H")
_HEADER = struct.Struct("!ii")  # length, request/protocol code


class ProtocolError(Exception):
    """A peer broke the wire protocol; `sqlstate` is what to report in an ErrorResponse."""

    def __init__(self, message: str, sqlstate: str = "08P01") -> None:
        super().__init__(message)
        self.sqlstate = sqlstate


# --- startup phase -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StartupMessage:
    """StartupMessage: protocol version (major << 16 | minor) and the connection parameters."""

    protocol: int
    params: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class SSLRequest:
    """SSLRequest: the client asks to switch to TLS before the startup message."""


@dataclass(frozen=True, slots=True)
class GSSEncRequest:
    """GSSENCRequest: the client asks for GSSAPI transport encryption."""


@dataclass(frozen=True, slots=True)
class CancelRequest:
    """CancelRequest: sent on a fresh connection to cancel the query of backend `pid`."""

    pid: int
    secret: bytes


StartupPacket = StartupMessage | SSLRequest | GSSEncRequest | CancelRequest


class StartupReader:
    """Parses the untyped packets a client sends before authentication."""

    def __init__(self) -> None:
        self._buf = bytearray()

    def feed(self, data: bytes) -> None:
        """Append bytes received from the client."""
        self._buf += data

    def next_message(self) -> StartupPacket | None:
        """Return the next complete packet, or None if more bytes are needed."""
        buf = self._buf
        if len(buf) < 4:
            return None
        (length,) = _INT32.unpack_from(buf, 0)
        if length < 8 or length > MAX_STARTUP_LENGTH:
            raise ProtocolError("invalid length of startup packet")
        if len(buf) < length:
            return None
        (code,) = _INT32.unpack_from(buf, 4)
        body = bytes(buf[8:length])
        del buf[:length]
        return _parse_startup(code, body)

    def remainder(self) -> bytes:
        """Take (and drop from the reader) the bytes fed past the last returned packet.

        After an SSLRequest these belong to the TLS layer (e.g. an early ClientHello) and must
        never be parsed as plaintext protocol (CVE-2021-23214).
        """
        rest = bytes(self._buf)
        self._buf.clear()
        return rest


def _parse_startup(code: int, body: bytes) -> StartupPacket:
    # PostgreSQL docs, 55.7 Message Formats: the fixed-size requests carry a magic code in
    # place of the protocol version, with major 1234 so they never collide with a real one.
    if code == SSL_REQUEST_CODE:
        if body:
            raise ProtocolError("invalid length of SSLRequest")
        return SSLRequest()
    if code == GSSENC_REQUEST_CODE:
        if body:
            raise ProtocolError("invalid length of GSSENCRequest")
        return GSSEncRequest()
    if code == CANCEL_REQUEST_CODE:
        if not MIN_SECRET_LENGTH + 4 <= len(body) <= MAX_SECRET_LENGTH + 4:
            raise ProtocolError("invalid length of CancelRequest")
        (pid,) = _UINT32.unpack_from(body, 0)
        return CancelRequest(pid=pid, secret=body[4:])
    major = (code >> 16) & 0xFFFF
    minor = code & 0xFFFF
    if major == 1234:
        raise ProtocolError(f"unknown startup request code {code}")
    if major != 3:
        # Any 3.x minor is accepted here; the session answers NegotiateProtocolVersion.
        raise ProtocolError(f"unsupported frontend protocol {major}.{minor}", "0A000")
    return StartupMessage(protocol=code, params=_parse_startup_params(body))


def _parse_startup_params(body: bytes) -> dict[str, str]:
    # PostgreSQL docs, 55.7 Message Formats (StartupMessage): name/value strings, each
    # NUL-terminated, then one more NUL that must be the last byte of the packet.
    if not body or body[-1] != 0:
        raise ProtocolError("invalid startup packet layout: expected terminator as last byte")
    parts = body[:-1].split(b"\0")
    if parts[-1] != b"":
        raise ProtocolError("invalid startup packet layout: expected terminator as last byte")
    parts.pop()
    if len(parts) % 2:
        raise ProtocolError("invalid startup packet layout: missing value")
    params: dict[str, str] = {}
    for i in range(0, len(parts), 2):
        if not parts[i]:
            raise ProtocolError("invalid startup packet layout: empty parameter name")
        name = parts[i].decode("utf-8", errors="replace")
        params[name] = parts[i + 1].decode("utf-8", errors="replace")
    return params


# --- regular phase: framing ----------------------------------------------------------------

MAX_MESSAGE = 1 << 30  # the longest message length the framing accepts


def split_messages(
    buf: bytes | bytearray | memoryview,
    start: int = 0,
    *,
    max_length: int = MAX_MESSAGE,
    before: bytes = b"",
    limit: int = -1,
) -> tuple[list[tuple[int, int, int]], int]:
    """Find complete messages from `start`: [(type, body_start, body_end)], end of the last.
    With `before`, stop before a message of one of those types other than the first; with
    `limit`, after that many messages."""
    unpack = _INT32.unpack_from
    n = len(buf)
    pos = start
    out: list[tuple[int, int, int]] = []
    append = out.append
    while n - pos >= 5 and len(out) != limit:
        if buf[pos] in before and pos != start:
            break
        # PostgreSQL docs, 55.2 Message Flow: the int32 length counts itself, not the type.
        length = unpack(buf, pos + 1)[0]
        if length < 4 or length > max_length:
            raise ProtocolError(f"invalid message length {length}")
        end = pos + 1 + length
        if end > n:
            break
        append((buf[pos], pos + 5, end))
        pos = end
    return out, pos


class MessageReader:
    """Buffers a byte stream and yields (type, body) messages; used while authenticating."""

    def __init__(self, *, max_length: int = MAX_MESSAGE) -> None:
        self._buf = bytearray()
        self._pos = 0
        self._max_length = max_length

    def feed(self, data: bytes) -> None:
        """Append received bytes."""
        if self._pos:
            del self._buf[: self._pos]
            self._pos = 0
        self._buf += data

    def next_message(self) -> tuple[int, bytes] | None:
        """Return the next (type byte, body), or None if more bytes are needed."""
        buf, pos = self._buf, self._pos
        if len(buf) - pos < 5:
            return None
        (length,) = _INT32.unpack_from(buf, pos + 1)
        if length < 4 or length > self._max_length:
            raise ProtocolError(f"invalid message length {length}")
        end = pos + 1 + length
        if end > len(buf):
            return None
        self._pos = end
        return buf[pos], bytes(buf[pos + 5 : end])

    def pending(self) -> bytes:
        """Take (and drop from the reader) the bytes not yet returned as messages."""
        rest = bytes(self._buf[self._pos :])
        self._buf.clear()
        self._pos = 0
        return rest


# --- encoders ------------------------------------------------------------------------------


def _message(type_: bytes, body: bytes) -> bytes:
    return type_ + _INT32.pack(len(body) + 4) + body


def _cstr(value: str) -> bytes:
    raw = value.encode("utf-8")
    if b"\0" in raw:
        # A NUL would end the string early and let the rest be read as further fields.
        raise ValueError("protocol strings cannot contain NUL")
    return raw + b"\0"


def _check_secret(secret: bytes) -> None:
    if not MIN_SECRET_LENGTH <= len(secret) <= MAX_SECRET_LENGTH:
        raise ValueError("cancel secret must be 4 to 256 bytes")


def authentication_ok() -> bytes:
    """AuthenticationOk."""
    return _message(b"R", _INT32.pack(0))


def authentication_cleartext_password() -> bytes:
    """AuthenticationCleartextPassword."""
    return _message(b"R", _INT32.pack(3))


def authentication_md5_password(salt: bytes) -> bytes:
    """AuthenticationMD5Password with its 4-byte salt."""
    if len(salt) != 4:
        raise ValueError("MD5 salt must be 4 bytes")
    return _message(b"R", _INT32.pack(5) + salt)


def authentication_sasl(mechanisms: list[str]) -> bytes:
    """AuthenticationSASL listing the offered mechanisms."""
    return _message(b"R", _INT32.pack(10) + b"".join(_cstr(m) for m in mechanisms) + b"\0")


def authentication_sasl_continue(data: bytes) -> bytes:
    """AuthenticationSASLContinue carrying a server challenge."""
    return _message(b"R", _INT32.pack(11) + data)


def authentication_sasl_final(data: bytes) -> bytes:
    """AuthenticationSASLFinal carrying the server's additional data (SCRAM `v=`)."""
    return _message(b"R", _INT32.pack(12) + data)


def parameter_status(name: str, value: str) -> bytes:
    """ParameterStatus."""
    return _message(b"S", _cstr(name) + _cstr(value))


def backend_key_data(pid: int, secret: bytes) -> bytes:
    """BackendKeyData: the pid and secret a client later sends in a CancelRequest."""
    _check_secret(secret)
    return _message(b"K", _UINT32.pack(pid) + secret)


def ready_for_query(status: bytes = b"I") -> bytes:
    """ReadyForQuery with transaction status I (idle), T (in transaction) or E (failed)."""
    if len(status) != 1 or status[0] not in READY_STATUSES:
        raise ValueError("transaction status must be b'I', b'T' or b'E'")
    return _message(b"Z", status)


def _field_text(value: str) -> bytes:
    # Error texts may quote client input; never let a NUL cut a field short.
    return value.replace("\0", "\ufffd").encode("utf-8", errors="replace") + b"\0"


def _fields_message(
    type_: bytes,
    sqlstate: str,
    message: str,
    severity: str,
    detail: str | None,
    hint: str | None,
) -> bytes:
    if len(sqlstate) != 5 or not all(c.isascii() and c.isalnum() for c in sqlstate):
        raise ValueError("sqlstate must be 5 ASCII letters or digits")
    # PostgreSQL docs, 55.8 Error and Notice Message Fields: S may be localized, V never is.
    parts = [b"S", _field_text(severity), b"V", _field_text(severity)]
    parts += [b"C", _field_text(sqlstate), b"M", _field_text(message)]
    if detail is not None:
        parts += [b"D", _field_text(detail)]
    if hint is not None:
        parts += [b"H", _field_text(hint)]
    parts.append(b"\0")
    return _message(type_, b"".join(parts))


def error_response(
    sqlstate: str,
    message: str,
    *,
    severity: str = "ERROR",
    detail: str | None = None,
    hint: str | None = None,
) -> bytes:
    """ErrorResponse with fields S, V, C, M and optionally D, H."""
    return _fields_message(b"E", sqlstate, message, severity, detail, hint)


def notice_response(
    message: str,
    *,
    sqlstate: str = "00000",
    severity: str = "NOTICE",
    detail: str | None = None,
    hint: str | None = None,
) -> bytes:
    """NoticeResponse with fields S, V, C, M and optionally D, H."""
    return _fields_message(b"N", sqlstate, message, severity, detail, hint)


def ssl_response(accept: bool) -> bytes:
    """The single unframed byte answering an SSLRequest."""
    return b"S" if accept else b"N"


def startup_message(params: dict[str, str], protocol: int = PROTOCOL_V3) -> bytes:
    """StartupMessage (frontend)."""
    body = _INT32.pack(protocol)
    body += b"".join(_cstr(k) + _cstr(v) for k, v in params.items()) + b"\0"
    return _INT32.pack(len(body) + 4) + body


def ssl_request() -> bytes:
    """SSLRequest (frontend)."""
    return _HEADER.pack(8, SSL_REQUEST_CODE)


def cancel_request(pid: int, secret: bytes) -> bytes:
    """CancelRequest (frontend), sent on its own connection."""
    _check_secret(secret)
    return _HEADER.pack(12 + len(secret), CANCEL_REQUEST_CODE) + _UINT32.pack(pid) + secret


def password_message(data: bytes) -> bytes:
    """PasswordMessage: `data` is the cleartext or md5 password without its terminating NUL."""
    if b"\0" in data:
        raise ValueError("password cannot contain NUL")
    return _message(b"p", data + b"\0")


def sasl_initial_response(mechanism: str, data: bytes | None) -> bytes:
    """SASLInitialResponse; `data` None is sent as length -1 (no initial response)."""
    payload = _INT32.pack(-1) if data is None else _INT32.pack(len(data)) + data
    return _message(b"p", _cstr(mechanism) + payload)


def sasl_response(data: bytes) -> bytes:
    """SASLResponse."""
    return _message(b"p", data)


def query(sql: str) -> bytes:
    """Query (simple query protocol)."""
    return _message(b"Q", _cstr(sql))


def terminate() -> bytes:
    """Terminate."""
    return _message(b"X", b"")


# --- decoders ------------------------------------------------------------------------------


def _bytes(body: BytesLike) -> bytes:
    return body if isinstance(body, bytes) else bytes(body)


def _read_cstr(body: bytes, pos: int, *, errors: str = "strict") -> tuple[str, int]:
    end = body.find(b"\0", pos)
    if end < 0:
        raise ProtocolError("invalid message format: unterminated string")
    try:
        return body[pos:end].decode("utf-8", errors=errors), end + 1
    except UnicodeDecodeError:
        # Strict on purpose: policy must judge exactly the text the upstream will run.
        raise ProtocolError("invalid byte sequence for encoding UTF8", "22021") from None


def _expect_end(body: bytes, pos: int) -> None:
    if pos != len(body):
        raise ProtocolError("invalid message format: trailing bytes")


def parse_query(body: BytesLike) -> str:
    """Query: the SQL text."""
    body = _bytes(body)
    sql, pos = _read_cstr(body, 0)
    _expect_end(body, pos)
    return sql


def parse_parse(body: BytesLike) -> tuple[str, str, list[int]]:
    """Parse: (statement name, query text, parameter type OIDs)."""
    body = _bytes(body)
    name, pos = _read_cstr(body, 0)
    sql, pos = _read_cstr(body, pos)
    if len(body) - pos < 2:
        raise ProtocolError("invalid message format: truncated Parse")
    (count,) = _UINT16.unpack_from(body, pos)
    pos += 2
    if len(body) - pos != 4 * count:
        raise ProtocolError("invalid message format: bad parameter type count")
    oids = list(struct.unpack_from(f"!{count}I", body, pos))
    return name, sql, oids


def parse_bind_portal(body: BytesLike) -> tuple[str, str]:
    """Bind: (portal name, statement name); the parameters are left alone."""
    body = _bytes(body)
    portal, pos = _read_cstr(body, 0)
    statement, _ = _read_cstr(body, pos)
    return portal, statement


def parse_error_fields(body: BytesLike) -> dict[str, str]:
    """ErrorResponse/NoticeResponse: single-letter field codes to values."""
    body = _bytes(body)
    # PostgreSQL docs, 55.8: texts are in the client encoding; they are only shown, so
    # undecodable bytes are replaced rather than refused.
    fields: dict[str, str] = {}
    pos = 0
    while True:
        if pos >= len(body):
            raise ProtocolError("invalid message format: unterminated field list")
        code = body[pos]
        if code == 0:
            _expect_end(body, pos + 1)
            return fields
        value, pos = _read_cstr(body, pos + 1, errors="replace")
        fields[chr(code)] = value


def parse_authentication(body: BytesLike) -> tuple[int, bytes]:
    """Authentication*: (auth code, the rest of the body)."""
    body = _bytes(body)
    if len(body) < 4:
        raise ProtocolError("invalid message format: truncated Authentication")
    return _INT32.unpack_from(body, 0)[0], body[4:]


def parse_sasl_mechanisms(data: BytesLike) -> list[str]:
    """AuthenticationSASL payload: the mechanism names."""
    data = _bytes(data)
    mechanisms: list[str] = []
    pos = 0
    while True:
        name, pos = _read_cstr(data, pos)
        if not name:
            _expect_end(data, pos)
            return mechanisms
        mechanisms.append(name)


def parse_password(body: BytesLike) -> bytes:
    """PasswordMessage (cleartext or md5): the password without its terminating NUL."""
    body = _bytes(body)
    # PostgreSQL rejects a packet whose first NUL is not its last byte ("invalid password
    # packet size"), so a NUL cannot truncate what is checked.
    if not body or body.find(b"\0") != len(body) - 1:
        raise ProtocolError("invalid password packet size")
    return body[:-1]


def parse_sasl_initial_response(body: BytesLike) -> tuple[str, bytes]:
    """SASLInitialResponse: (mechanism, client-first data; b'' when sent as length -1)."""
    body = _bytes(body)
    mechanism, pos = _read_cstr(body, 0)
    if len(body) - pos < 4:
        raise ProtocolError("invalid message format: truncated SASLInitialResponse")
    (length,) = _INT32.unpack_from(body, pos)
    pos += 4
    if length == -1:
        length = 0
    if length < 0 or len(body) - pos != length:
        raise ProtocolError("invalid message format: bad SASL data length")
    return mechanism, body[pos:]


def parse_backend_key_data(body: BytesLike) -> tuple[int, bytes]:
    """BackendKeyData: (pid, secret)."""
    body = _bytes(body)
    if not MIN_SECRET_LENGTH + 4 <= len(body) <= MAX_SECRET_LENGTH + 4:
        raise ProtocolError("invalid message format: bad BackendKeyData length")
    return _UINT32.unpack_from(body, 0)[0], body[4:]


def parse_parameter_status(body: BytesLike) -> tuple[str, str]:
    """ParameterStatus: (name, value)."""
    body = _bytes(body)
    name, pos = _read_cstr(body, 0)
    value, pos = _read_cstr(body, pos)
    _expect_end(body, pos)
    return name, value


def parse_ready_for_query(body: BytesLike) -> bytes:
    """ReadyForQuery: the transaction status byte."""
    body = _bytes(body)
    if len(body) != 1 or body[0] not in READY_STATUSES:
        raise ProtocolError("invalid message format: bad ReadyForQuery")
    return body
