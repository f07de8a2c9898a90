"""`/api/v1/policies`: named Cedar texts granting identities and groups actions on connections.

Every write is parsed first; invalid Cedar is a 422 problem that says where (line, column).
Admins write, admins and auditors read. PUT creates or replaces; PATCH changes given fields.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Response, status
from sqlmodel.ext.asyncio.session import AsyncSession

from control_plane import crud
from control_plane.api.deps import AdminIdentity, ReaderIdentity, SessionDep
from control_plane.api.logs import log_write
from control_plane.api.problems import Problem, problem_type
from control_plane.models import Policy
from control_plane.schemas import (
    NAME_PATTERN,
    PolicyCreate,
    PolicyPublic,
    PolicyReplace,
    PolicyUpdate,
)
from lockgate import policy as cedar_policy

router = APIRouter(prefix="/policies", tags=["policies"])


def check_cedar(cedar: str) -> None:
    """Raise a 422 problem locating the first error when `cedar` does not parse."""
    error = cedar_policy.validate(cedar)
    if error is None:
        return
    raise Problem(
        422,
        f"invalid Cedar at line {error.line}, column {error.column}: {error.message}",
        type=problem_type("invalid-cedar"),
        title="Invalid Cedar policy",
        errors=[{"line": error.line, "column": error.column, "message": error.message}],
    )


def _public(p: Policy) -> PolicyPublic:
    return PolicyPublic(
        name=p.name,
        description=p.description,
        cedar=p.cedar,
        created_at=p.created_at,
        updated_at=p.updated_at,
    )


async def _load(session: AsyncSession, name: str) -> Policy:
    found = await crud.get_policy(session=session, name=name)
    if found is None:
        raise Problem(404, f"policy {name!r} not found")
    return found


@router.get("", response_model=list[PolicyPublic])
async def list_policies(session: SessionDep, _: ReaderIdentity) -> list[PolicyPublic]:
    """List policies with their Cedar text."""
    return [_public(p) for p in await crud.list_policies(session=session)]


@router.post("", response_model=PolicyPublic, status_code=status.HTTP_201_CREATED)
async def create_policy(
    session: SessionDep, actor: AdminIdentity, policy_in: PolicyCreate
) -> PolicyPublic:
    """Create a policy from valid Cedar."""
    check_cedar(policy_in.cedar)
    created = await crud.create_policy(
        session=session,
        name=policy_in.name,
        cedar=policy_in.cedar,
        description=policy_in.description,
    )
    log_write(actor=actor, action="create", resource="policy", name=created.name)
    return _public(created)


@router.get("/{name}", response_model=PolicyPublic)
async def read_policy(session: SessionDep, _: ReaderIdentity, name: str) -> PolicyPublic:
    """One policy."""
    return _public(await _load(session, name))


@router.put(
    "/{name}",
    response_model=PolicyPublic,
    responses={201: {"model": PolicyPublic, "description": "Created"}},
)
async def replace_policy(
    session: SessionDep,
    actor: AdminIdentity,
    name: Annotated[str, Path(pattern=NAME_PATTERN)],
    policy_in: PolicyReplace,
    response: Response,
) -> PolicyPublic:
    """Create or replace a policy (201 when created, 200 when replaced)."""
    check_cedar(policy_in.cedar)
    existing = await crud.get_policy(session=session, name=name)
    if existing is None:
        saved = await crud.create_policy(
            session=session, name=name, cedar=policy_in.cedar, description=policy_in.description
        )
        response.status_code = status.HTTP_201_CREATED
        log_write(actor=actor, action="create", resource="policy", name=name)
    else:
        saved = await crud.update_policy(
            session=session,
            policy=existing,
            cedar=policy_in.cedar,
            description=policy_in.description,
        )
        log_write(actor=actor, action="update", resource="policy", name=name)
    return _public(saved)


@router.patch("/{name}", response_model=PolicyPublic)
async def update_policy(
    session: SessionDep, actor: AdminIdentity, name: str, policy_in: PolicyUpdate
) -> PolicyPublic:
    """Change the Cedar text and/or the description."""
    if policy_in.cedar is not None:
        check_cedar(policy_in.cedar)
    saved = await crud.update_policy(
        session=session,
        policy=await _load(session, name),
        cedar=policy_in.cedar,
        description=policy_in.description,
    )
    log_write(actor=actor, action="update", resource="policy", name=name)
    return _public(saved)


@router.delete("/{name}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_policy(session: SessionDep, actor: AdminIdentity, name: str) -> None:
    """Delete a policy."""
    await crud.delete_policy(session=session, policy=await _load(session, name))
    log_write(actor=actor, action="delete", resource="policy", name=name)
