"""FastAPI dependencies shared by the routers, as `Annotated` aliases.

`SessionDep` is one database session per request; `CurrentIdentity` is the identity behind the
request's bearer token; `require_role(...)` narrows that to the roles an endpoint admits.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlmodel.ext.asyncio.session import AsyncSession

from control_plane import crud
from control_plane.api.problems import Problem, problem_type
from control_plane.crypto import SecretBox
from control_plane.db import Database
from control_plane.models import Identity
from lockgate.settings import Settings

ROLES = ("admin", "auditor", "member")

_bearer = HTTPBearer(auto_error=False, description="An access token: `lg_<id>_<secret>`")


def get_db(request: Request) -> Database:
    """The app's database."""
    db: Database = request.app.state.db
    return db


async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    """One session per request; whatever it did not commit is rolled back at the end."""
    async with get_db(request).session() as session:
        yield session


def get_settings(request: Request) -> Settings:
    """The app's settings."""
    settings: Settings = request.app.state.settings
    return settings


def get_secret_box(request: Request) -> SecretBox:
    """The box that seals target credentials."""
    box: SecretBox = request.app.state.secret_box
    return box


SessionDep = Annotated[AsyncSession, Depends(get_session)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
SecretBoxDep = Annotated[SecretBox, Depends(get_secret_box)]


def _unauthorized(detail: str) -> Problem:
    return Problem(
        401,
        detail,
        type=problem_type("unauthorized"),
        headers={"WWW-Authenticate": 'Bearer realm="lockgate"'},
    )


async def get_current_identity(
    session: SessionDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Identity:
    """The identity whose valid (known, unrevoked, unexpired) token authorizes the request."""
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise _unauthorized("an access token is required: Authorization: Bearer lg_<id>_<secret>")
    identity = await crud.authenticate(session=session, token=credentials.credentials)
    if identity is None:
        # One answer for unknown, wrong, revoked and expired tokens: no oracle for guessers.
        raise _unauthorized("the access token is invalid, revoked or expired")
    return identity


CurrentIdentity = Annotated[Identity, Depends(get_current_identity)]


def require_role(*roles: str) -> Callable[[Identity], Coroutine[Any, Any, Identity]]:
    """A dependency admitting identities with one of `roles` (admins are always admitted)."""
    unknown = set(roles) - set(ROLES)
    if unknown:
        raise ValueError(f"unknown roles: {sorted(unknown)}")
    allowed = {"admin", *roles}

    async def _check(identity: CurrentIdentity) -> Identity:
        if identity.role not in allowed:
            raise Problem(
                403,
                f"role {identity.role!r} may not do this; it needs one of: "
                + ", ".join(sorted(allowed)),
                type=problem_type("forbidden"),
            )
        return identity

    return _check


AdminIdentity = Annotated[Identity, Depends(require_role("admin"))]
ReaderIdentity = Annotated[Identity, Depends(require_role("admin", "auditor"))]
