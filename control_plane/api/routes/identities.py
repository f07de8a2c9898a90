"""`/api/v1/identities`: the people and services that hold access tokens.

Admins manage identities; auditors read them; a member may read its own. Naming a group that
does not exist creates it.
"""

from __future__ import annotations

from fastapi import APIRouter, status
from sqlmodel.ext.asyncio.session import AsyncSession

from control_plane import crud
from control_plane.api.deps import AdminIdentity, CurrentIdentity, ReaderIdentity, SessionDep
from control_plane.api.logs import log_write
from control_plane.api.problems import Problem
from control_plane.models import Identity
from control_plane.schemas import IdentityCreate, IdentityPublic, IdentityUpdate

router = APIRouter(prefix="/identities", tags=["identities"])


def _not_found(name: str) -> Problem:
    return Problem(404, f"identity {name!r} not found")


async def _public(session: AsyncSession, identities: list[Identity]) -> list[IdentityPublic]:
    ids = [i.id for i in identities if i.id is not None]
    groups = await crud.groups_of(session=session, identity_ids=ids)
    return [
        IdentityPublic(
            name=i.name,
            kind=i.kind,  # type: ignore[arg-type]
            role=i.role,  # type: ignore[arg-type]
            groups=groups.get(i.id or 0, []),
            created_at=i.created_at,
        )
        for i in identities
    ]


async def _load(session: AsyncSession, name: str) -> Identity:
    identity = await crud.get_identity(session=session, name=name)
    if identity is None:
        raise _not_found(name)
    return identity


@router.get("", response_model=list[IdentityPublic])
async def list_identities(session: SessionDep, _: ReaderIdentity) -> list[IdentityPublic]:
    """List identities with their groups."""
    return await _public(session, await crud.list_identities(session=session))


@router.post("", response_model=IdentityPublic, status_code=status.HTTP_201_CREATED)
async def create_identity(
    session: SessionDep, actor: AdminIdentity, identity_in: IdentityCreate
) -> IdentityPublic:
    """Create an identity; groups it names are created when missing."""
    identity = await crud.create_identity(session=session, identity_in=identity_in)
    log_write(actor=actor, action="create", resource="identity", name=identity.name)
    return (await _public(session, [identity]))[0]


@router.get("/{name}", response_model=IdentityPublic)
async def read_identity(session: SessionDep, caller: CurrentIdentity, name: str) -> IdentityPublic:
    """One identity; members may read only themselves."""
    if caller.role == "member" and caller.name != name:
        raise _not_found(name)
    return (await _public(session, [await _load(session, name)]))[0]


@router.patch("/{name}", response_model=IdentityPublic)
async def update_identity(
    session: SessionDep, actor: AdminIdentity, name: str, identity_in: IdentityUpdate
) -> IdentityPublic:
    """Change kind, role or groups (a given `groups` list replaces the memberships)."""
    identity = await _load(session, name)
    identity = await crud.update_identity(
        session=session, identity=identity, identity_in=identity_in
    )
    log_write(actor=actor, action="update", resource="identity", name=name)
    return (await _public(session, [identity]))[0]


@router.delete("/{name}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_identity(session: SessionDep, actor: AdminIdentity, name: str) -> None:
    """Delete an identity and its tokens."""
    await crud.delete_identity(session=session, identity=await _load(session, name))
    log_write(actor=actor, action="delete", resource="identity", name=name)
