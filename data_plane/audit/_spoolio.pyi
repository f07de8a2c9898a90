"""Types of `_spoolio.c`."""

from collections.abc import Callable
from typing import Any, Protocol

class _Syncer(Protocol):
    pending: int | None
    def request(self, fd: int) -> None: ...

class SpoolFile:
    fd: int
    size: int
    limit: int
    unaccounted: int
    def __init__(self, fd: int, size: int, limit: int, syncer: _Syncer | None) -> None: ...
    def take(self) -> tuple[bytes, int]: ...
    def reopen(self, fd: int, size: int, /) -> None: ...

class Outbox:
    def __init__(
        self,
        unwritten: list[bytes],
        after_write: list[tuple[Any, bytes]],
        file: SpoolFile,
        fallback: Callable[[], object],
        wake: Callable[[], object],
    ) -> None: ...
    def __call__(self) -> None: ...
