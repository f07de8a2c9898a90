"""First start: an empty store gets an `admin` identity, its group, a policy and a token.

The admin token is written once to `$LOCKGATE_HOME/admin-token` (mode 0600) and returned so the
caller can print it. Replicas starting together over one PostgreSQL race here; the loser's
transaction fails on a unique constraint and it simply finds the store already set up.
"""

from __future__ import annotations

import logging

from sqlalchemy.exc import IntegrityError
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from control_plane import changes
from control_plane.db import Database
from control_plane.models import BundleState, Group, Identity, IdentityGroup, Policy, Token
from lockgate import tokens
from lockgate.settings import ADMIN_TOKEN_FILE, Settings, write_private

ADMIN_IDENTITY = "admin"
ADMIN_GROUP = "admins"
ADMIN_POLICY = "admins-full-access"
ADMIN_POLICY_CEDAR = 'permit(principal in Group::"admins", action, resource);'

log = logging.getLogger("lockgate.bootstrap")


async def bootstrap(db: Database, settings: Settings) -> str | None:
    """Set up an empty store and return the new admin token; None when already set up."""
    async with db.session() as session:
        if (await session.exec(select(Identity.id).limit(1))).first() is not None:
            await _ensure_bundle_state(session)
            return None
        try:
            token = await _create_admin(session)
            await session.commit()
        except IntegrityError:
            await session.rollback()
            log.info("store was bootstrapped concurrently by another process")
            return None
    settings.ensure_home()
    write_private(settings.home / ADMIN_TOKEN_FILE, token)
    log.info("bootstrapped: identity %r, token in %s", ADMIN_IDENTITY, ADMIN_TOKEN_FILE)
    return token


async def _create_admin(session: AsyncSession) -> str:
    if await session.get(BundleState, 1) is None:
        session.add(BundleState(id=1, revision=1))
    else:
        await changes.bump(session)
    group = Group(name=ADMIN_GROUP, description="Full access to every connection")
    identity = Identity(
        name=ADMIN_IDENTITY, kind="user", role="admin", scram_salt=tokens.new_scram_salt()
    )
    session.add_all([group, identity])
    await session.flush()
    assert group.id is not None and identity.id is not None
    session.add(IdentityGroup(identity_id=identity.id, group_id=group.id))
    session.add(
        Policy(
            name=ADMIN_POLICY,
            cedar=ADMIN_POLICY_CEDAR,
            description="Members of the admins group may do anything on every connection",
        )
    )
    issued = tokens.issue(identity.scram_salt)
    session.add(
        Token(
            id=issued.id,
            identity_id=identity.id,
            description="bootstrap admin token",
            secret_sha256=issued.secret_sha256,
            scram_stored_key=issued.scram_stored_key,
            scram_server_key=issued.scram_server_key,
            scram_iterations=issued.scram_iterations,
        )
    )
    await session.flush()
    return issued.token


async def _ensure_bundle_state(session: AsyncSession) -> None:
    # A store set up by hand (or restored without the row) still needs the revision counter.
    if await session.get(BundleState, 1) is not None:
        return
    session.add(BundleState(id=1, revision=1))
    try:
        await session.commit()
    except IntegrityError:
        await session.rollback()
