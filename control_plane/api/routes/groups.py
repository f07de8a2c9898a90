"""`/api/v1/groups`: named sets of identities that policies grant access to.

Admins create and delete groups (membership is edited on the identity); admins and auditors read.
"""

from __future__ import annotations

from fastapi import APIRouter, status
from sqlmodel.ext.asyncio.session import AsyncSession

from control_plane import crud
from control_plane.api.deps import AdminIdentity, ReaderIdentity, SessionDep
from control_plane.api.logs import log_write
from control_plane.api.problems import Problem
from control_plane.models import Group
from control_plane.schemas import GroupCreate, GroupPublic

router = APIRouter(prefix="/groups", tags=["groups"])


async def _public(session: AsyncSession, groups: list[Group]) -> list[GroupPublic]:
    members = await crud.members_of(
        session=session, group_ids=[g.id for g in groups if g.id is not None]
    )
    return [
        GroupPublic(
            name=g.name,
            description=g.description,
            members=members.get(g.id or 0, []),
            created_at=g.created_at,
        )
        for g in groups
    ]


async def _load(session: AsyncSession, name: str) -> Group:
    group = await crud.get_group(session=session, name=name)
    if group is None:
        raise Problem(404, f"group {name!r} not found")
    return group


@router.get("", response_model=list[GroupPublic])
async def list_groups(session: SessionDep, _: ReaderIdentity) -> list[GroupPublic]:
    """List groups with their members' names."""
    return await _public(session, await crud.list_groups(session=session))


@router.post("", response_model=GroupPublic, status_code=status.HTTP_201_CREATED)
async def create_group(
    session: SessionDep, actor: AdminIdentity, group_in: GroupCreate
) -> GroupPublic:
    """Create an empty group."""
    group = await crud.create_group(session=session, group_in=group_in)
    log_write(actor=actor, action="create", resource="group", name=group.name)
    return (await _public(session, [group]))[0]


@router.get("/{name}", response_model=GroupPublic)
async def read_group(session: SessionDep, _: ReaderIdentity, name: str) -> GroupPublic:
    """One group with its members' names."""
    return (await _public(session, [await _load(session, name)]))[0]


@router.delete("/{name}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_group(session: SessionDep, actor: AdminIdentity, name: str) -> None:
    """Delete a group; its members remain, outside it."""
    await crud.delete_group(session=session, group=await _load(session, name))
    log_write(actor=actor, action="delete", resource="group", name=name)
