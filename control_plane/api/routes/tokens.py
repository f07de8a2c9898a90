"""`/api/v1/tokens`: access tokens (`lg_<id>_<secret>`), shown once and stored as hashes.

Admins manage every token and auditors read every token; a member creates, lists and revokes
its own. Creating and revoking bump the configuration revision, so nodes learn within a second.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, status

from control_plane import crud
from control_plane.api.deps import CurrentIdentity, SessionDep
from control_plane.api.logs import log_write
from control_plane.api.problems import Problem, problem_type
from control_plane.schemas import TokenCreate, TokenCreated, TokenPublic

router = APIRouter(prefix="/tokens", tags=["tokens"])


def _public(row: crud.TokenRow) -> TokenPublic:
    t = row.token
    return TokenPublic(
        id=t.id,
        identity=row.identity,
        description=t.description,
        created_at=t.created_at,
        expires_at=t.expires_at,
        revoked=t.revoked_at is not None,
        revoked_at=t.revoked_at,
    )


@router.post("", response_model=TokenCreated, status_code=status.HTTP_201_CREATED)
async def create_token(
    session: SessionDep, caller: CurrentIdentity, token_in: TokenCreate
) -> TokenCreated:
    """Mint a token for an identity (default: the caller); the secret is in this response only."""
    name = token_in.identity or caller.name
    if caller.role != "admin" and name != caller.name:
        raise Problem(
            403,
            f"role {caller.role!r} may create tokens for itself only",
            type=problem_type("forbidden"),
        )
    identity = (
        caller if name == caller.name else await crud.get_identity(session=session, name=name)
    )
    if identity is None:
        raise Problem(404, f"identity {name!r} not found")
    row, secret = await crud.create_token(
        session=session,
        identity=identity,
        ttl_seconds=token_in.ttl_seconds,
        description=token_in.description,
    )
    log_write(actor=caller, action="create", resource="token", name=f"{row.id} for {name}")
    return TokenCreated(
        id=row.id,
        token=secret,
        identity=name,
        description=row.description,
        expires_at=row.expires_at,
    )


@router.get("", response_model=list[TokenPublic])
async def list_tokens(
    session: SessionDep,
    caller: CurrentIdentity,
    identity: Annotated[str | None, Query(description="only this identity's tokens")] = None,
) -> list[TokenPublic]:
    """List tokens without their secrets; members see their own only."""
    if caller.role == "member":
        if identity not in (None, caller.name):
            return []
        identity_id = caller.id
    elif identity is not None:
        owner = await crud.get_identity(session=session, name=identity)
        if owner is None:
            return []
        identity_id = owner.id
    else:
        identity_id = None
    return [_public(r) for r in await crud.list_tokens(session=session, identity_id=identity_id)]


async def _visible(session: SessionDep, caller: CurrentIdentity, token_id: str) -> crud.TokenRow:
    row = await crud.get_token(session=session, token_id=token_id)
    # A member is told nothing about other identities' tokens, not even that they exist.
    if row is None or (caller.role == "member" and row.token.identity_id != caller.id):
        raise Problem(404, f"token {token_id!r} not found")
    return row


@router.get("/{token_id}", response_model=TokenPublic)
async def read_token(session: SessionDep, caller: CurrentIdentity, token_id: str) -> TokenPublic:
    """One token, without its secret."""
    return _public(await _visible(session, caller, token_id))


@router.delete("/{token_id}", status_code=status.HTTP_204_NO_CONTENT)
async def revoke_token(session: SessionDep, caller: CurrentIdentity, token_id: str) -> None:
    """Revoke a token; nodes stop accepting it once they have the next bundle."""
    row = await _visible(session, caller, token_id)
    if caller.role == "auditor" and row.token.identity_id != caller.id:
        raise Problem(
            403, "role 'auditor' may revoke its own tokens only", type=problem_type("forbidden")
        )
    await crud.revoke_token(session=session, token=row.token)
    log_write(actor=caller, action="revoke", resource="token", name=token_id)
