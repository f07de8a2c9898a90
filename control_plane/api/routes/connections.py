"""`/api/v1/connections`: the targets nodes reach, with credentials sealed at rest.

A password is write-only: sealed with the master key (bound to the connection's name) on the
way in and never returned; responses only say whether one is set. Members may list names and
types; admins and auditors read the rest; only admins write.
"""

from __future__ import annotations

from fastapi import APIRouter, status
from sqlmodel.ext.asyncio.session import AsyncSession

from control_plane import crud
from control_plane.api.deps import (
    AdminIdentity,
    CurrentIdentity,
    ReaderIdentity,
    SecretBoxDep,
    SessionDep,
)
from control_plane.api.logs import log_write
from control_plane.api.problems import Problem
from control_plane.crypto import sealed_is_empty
from control_plane.models import Connection
from control_plane.schemas import (
    ConnectionCreate,
    ConnectionPublic,
    ConnectionSummary,
    ConnectionUpdate,
)

router = APIRouter(prefix="/connections", tags=["connections"])


def _public(c: Connection) -> ConnectionPublic:
    return ConnectionPublic(
        name=c.name,
        type=c.type,
        host=c.host,
        port=c.port or None,
        database=c.database,
        username=c.username,
        node_labels=c.node_labels,
        guardrails=c.guardrails,
        has_password=not sealed_is_empty(c.password_encrypted),
        created_at=c.created_at,
        updated_at=c.updated_at,
    )


async def _load(session: AsyncSession, name: str) -> Connection:
    connection = await crud.get_connection(session=session, name=name)
    if connection is None:
        raise Problem(404, f"connection {name!r} not found")
    return connection


@router.get("", response_model=list[ConnectionPublic] | list[ConnectionSummary])
async def list_connections(
    session: SessionDep, caller: CurrentIdentity
) -> list[ConnectionPublic] | list[ConnectionSummary]:
    """List connections; members get names and types only."""
    connections = await crud.list_connections(session=session)
    if caller.role == "member":
        return [ConnectionSummary(name=c.name, type=c.type) for c in connections]
    return [_public(c) for c in connections]


@router.post("", response_model=ConnectionPublic, status_code=status.HTTP_201_CREATED)
async def create_connection(
    session: SessionDep, box: SecretBoxDep, actor: AdminIdentity, connection_in: ConnectionCreate
) -> ConnectionPublic:
    """Create a connection; the password is sealed and never shown again."""
    connection = await crud.create_connection(session=session, box=box, connection_in=connection_in)
    log_write(actor=actor, action="create", resource="connection", name=connection.name)
    return _public(connection)


@router.get("/{name}", response_model=ConnectionPublic)
async def read_connection(session: SessionDep, _: ReaderIdentity, name: str) -> ConnectionPublic:
    """One connection, without its password."""
    return _public(await _load(session, name))


@router.patch("/{name}", response_model=ConnectionPublic)
async def update_connection(
    session: SessionDep,
    box: SecretBoxDep,
    actor: AdminIdentity,
    name: str,
    connection_in: ConnectionUpdate,
) -> ConnectionPublic:
    """Change some fields; a given `password` replaces the sealed one."""
    connection = await crud.update_connection(
        session=session, box=box, connection=await _load(session, name), connection_in=connection_in
    )
    log_write(actor=actor, action="update", resource="connection", name=name)
    return _public(connection)


@router.delete("/{name}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_connection(session: SessionDep, actor: AdminIdentity, name: str) -> None:
    """Delete a connection and its sealed credentials."""
    await crud.delete_connection(session=session, connection=await _load(session, name))
    log_write(actor=actor, action="delete", resource="connection", name=name)
