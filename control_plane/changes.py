"""Configuration revisions and the in-process bus that tells bundle subscribers about them.

Every REST mutation that changes what a bundle contains calls `await changes.bump(session)`
before committing; once the transaction commits, subscribers (the gRPC bundle streams) wake up
and send the newly compiled bundle. On PostgreSQL the same commit NOTIFYs `lockgate_bundles`
with the revision, so the other replicas' buses publish it too (`notify.Listener`).
"""

from __future__ import annotations

import asyncio
import contextlib

from sqlalchemy import event, update
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from control_plane import notify
from control_plane.models import BundleState, utcnow


class ChangeBus:
    """Latest known revision plus a condition that wakes every waiter on change."""

    def __init__(self) -> None:
        self.revision = 0
        self._changed = asyncio.Condition()

    def publish(self, revision: int) -> None:
        if revision <= self.revision:
            return
        self.revision = revision
        asyncio.get_running_loop().create_task(self._notify())

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    async def wait_newer(self, than: int, within: float | None = None) -> int:
        """Wait until the revision exceeds `than` (at most `within` seconds); return the latest."""
        async with self._changed:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait_for(lambda: self.revision > than), within)
        return self.revision


bus = ChangeBus()


async def current(session: AsyncSession) -> int:
    state = (await session.exec(select(BundleState))).first()
    return state.revision if state else 0


async def bump(session: AsyncSession) -> int:
    """Increment the configuration revision inside the caller's transaction."""
    stmt = (
        update(BundleState)
        .where(col(BundleState.id) == 1)
        .values(revision=col(BundleState.revision) + 1, updated_at=utcnow())
        .returning(col(BundleState.revision))
    )
    result = await session.exec(stmt)
    revision = int(result.scalar_one())
    # Transactional: PostgreSQL delivers it to every replica's listener once this commits.
    await notify.send(session, notify.BUNDLES_CHANNEL, str(revision))

    def _after_commit(_sync_session: object) -> None:
        bus.publish(revision)

    event.listen(session.sync_session, "after_commit", _after_commit, once=True)
    return revision
