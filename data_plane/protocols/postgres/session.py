"""A PostgreSQL session after start-up, without I/O: frames what the client sends and says
which statements it carries, so the adapter can audit (and later decide) before forwarding.

States of a client connection, in order (the adapter walks them; each accepts only the input
named here):

    NEGOTIATING   SSLRequest / GSSENCRequest / CancelRequest / StartupMessage
    AUTHENTICATING  PasswordMessage (cleartext token over TLS) or SASL messages (SCRAM)
    CONNECTING    nothing from the client; the node authorizes, fetches credentials, logs in
    RELAYING      any frontend message; Query ('Q') and Parse ('P') are audited
    CLOSED
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from data_plane.protocols.postgres import codec

QUERY = ord("Q")
PARSE = ord("P")
TERMINATE = ord("X")


class State(Enum):
    NEGOTIATING = "negotiating"
    AUTHENTICATING = "authenticating"
    CONNECTING = "connecting"
    RELAYING = "relaying"
    CLOSED = "closed"


@dataclass(frozen=True, slots=True)
class Statement:
    """One statement as the client sent it: simple Query or extended-protocol Parse."""

    sql: str
    protocol: str  # "simple" | "extended"
    name: str = ""  # prepared statement name (extended protocol)


class ClientStream:
    """Frames frontend messages; returns the complete ones to forward and their statements."""

    def __init__(self) -> None:
        self._pending = bytearray()
        self.terminated = False

    def feed(self, data: bytes) -> tuple[bytes, list[Statement]]:
        """Bytes ready to forward upstream (whole messages only) and the statements in them."""
        if self._pending:
            self._pending += data
            buf: bytes | bytearray = self._pending
        else:
            buf = data
        spans, consumed = codec.split_messages(buf)
        statements: list[Statement] = []
        for kind, start, end in spans:
            if kind == QUERY:
                statements.append(Statement(codec.parse_query(buf[start:end]), "simple"))
            elif kind == PARSE:
                name, sql, _ = codec.parse_parse(buf[start:end])
                statements.append(Statement(sql, "extended", name))
            elif kind == TERMINATE:
                self.terminated = True
        if buf is data:
            out = data if consumed == len(data) else data[:consumed]
            if consumed < len(data):
                self._pending += data[consumed:]
        else:
            out = bytes(self._pending[:consumed])
            del self._pending[:consumed]
        return out, statements
