"""Binding listening sockets up front, so a taken port is a one-line error, not a traceback."""

from __future__ import annotations

import socket


class PortTaken(Exception):
    """A port Lockgate was told to listen on is in use or not bindable."""


def bind(host: str, port: int, *, what: str) -> socket.socket:
    """A bound, listening TCP socket, or PortTaken naming `what` and the port."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
        sock.listen(1024)
    except OSError as exc:
        sock.close()
        raise PortTaken(f"{what} port {host}:{port} is not available: {exc.strerror}") from None
    sock.setblocking(False)
    return sock


def check_free(host: str, port: int, *, what: str) -> None:
    """Raise PortTaken when the port cannot be bound now."""
    bind(host, port, what=what).close()
