"""Types of the fast path's C module (`_fastpath.c`)."""

from collections.abc import Callable
from typing import Any, Protocol

from data_plane._busypoll import BusyPoll
from data_plane.bulk import BulkReads
from data_plane.busy_poll import PyBusyPoll

class _Transport(Protocol):
    def write(self, data: bytes) -> None: ...

class FastPath:
    enabled: bool
    @property
    def bytes_in(self) -> int: ...
    @property
    def bytes_out(self) -> int: ...
    @property
    def statements(self) -> int: ...
    @property
    def cached(self) -> int: ...
    def __init__(
        self,
        *,
        client: _Transport,
        upstream: _Transport,
        audit: Any,
        outbox: tuple[list[bytes], list[tuple[Any, bytes]], Callable[[], object]],
        slow: Callable[[bytes], object],
        prepared: dict[str, str],
        session_id: bytes,
        bulk: BulkReads | None = None,
        busy: BusyPoll | PyBusyPoll | None = None,
    ) -> None: ...
    def client_data(self, data: bytes) -> None: ...
    def upstream_data(self, data: bytes) -> None: ...
    def learn(self, sql: str, tail: bytes, by_shape: bool, fresh_until: float) -> bool: ...
    def forget(self) -> None: ...

def shape_key(sql: str) -> str | None: ...
