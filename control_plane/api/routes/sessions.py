"""`/api/v1/sessions`: recorded sessions and their ordered audit events (read-only).

Admins and auditors see every session; a member sees only sessions it opened itself.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from sqlmodel.ext.asyncio.session import AsyncSession

from control_plane import crud
from control_plane.api.deps import CurrentIdentity, SessionDep
from control_plane.api.problems import Problem
from control_plane.models import AuditSession, Identity
from control_plane.schemas import SessionEventPublic, SessionPublic

router = APIRouter(prefix="/sessions", tags=["sessions"])


def _public(s: AuditSession) -> SessionPublic:
    return SessionPublic.model_validate(s, from_attributes=True)


async def _load(session: AsyncSession, caller: Identity, session_id: str) -> AuditSession:
    found = await crud.get_audit_session(session=session, session_id=session_id)
    if found is None or (caller.role == "member" and found.identity != caller.name):
        raise Problem(404, f"session {session_id!r} not found")
    return found


@router.get("", response_model=list[SessionPublic])
async def list_sessions(
    session: SessionDep,
    caller: CurrentIdentity,
    identity: str | None = None,
    connection: str | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> list[SessionPublic]:
    """Sessions, newest first, optionally by identity and connection."""
    if caller.role == "member":
        if identity not in (None, caller.name):
            return []
        identity = caller.name
    rows = await crud.list_sessions(
        session=session, identity=identity, connection=connection, limit=limit, offset=offset
    )
    return [_public(s) for s in rows]


@router.get("/{session_id}", response_model=SessionPublic)
async def read_session(
    session: SessionDep, caller: CurrentIdentity, session_id: str
) -> SessionPublic:
    """One session."""
    return _public(await _load(session, caller, session_id))


@router.get("/{session_id}/events", response_model=list[SessionEventPublic])
async def list_session_events(
    session: SessionDep,
    caller: CurrentIdentity,
    session_id: str,
    after_seq: Annotated[int, Query(ge=0)] = 0,
    limit: Annotated[int, Query(ge=1, le=10000)] = 1000,
) -> list[SessionEventPublic]:
    """A session's events after `after_seq`, in sequence order."""
    await _load(session, caller, session_id)
    events = await crud.list_session_events(
        session=session, session_id=session_id, after_seq=after_seq, limit=limit
    )
    return [
        SessionEventPublic(seq=e.seq, time=e.time, kind=e.kind, payload=e.payload) for e in events
    ]
