"""The policy compiler: the store's configuration at one revision, as a node's bundle.

A bundle carries identities, token hashes and expiries, the connections a node may serve
(never their secrets), the Cedar policies, masking and approval rules, and the time-bound
grants of approved access requests that have not expired yet. The node-independent part is
compiled once per revision and cached; each node gets a copy stamped with its name and labels.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from datetime import UTC, datetime

from sqlalchemy import select as sa_select
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from control_plane import changes
from control_plane.models import (
    ApprovalRule,
    Connection,
    Grant,
    Group,
    Identity,
    IdentityGroup,
    MaskingRule,
    Policy,
    Token,
    utcnow,
)
from protos.lockgate.v1 import node_pb2 as pb


def epoch_ms(value: datetime | None) -> int:
    """UTC datetimes to epoch milliseconds; 0 for none."""
    if value is None:
        return 0
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return int(value.timestamp() * 1000)


async def compile_bundle(session: AsyncSession) -> pb.Bundle:
    """Read the whole configuration in one transaction and build a node-independent bundle."""
    revision = await changes.current(session)
    bundle = pb.Bundle(revision=revision, compiled_at_ms=int(time.time() * 1000))
    # The large tables are read as plain rows and added to the bundle in place: ORM instances
    # and a copy per appended message cost more than the rest of a 10,000 x 10,000 compile.
    conn = await session.connection()
    groups = dict((await conn.execute(sa_select(col(Group.id), col(Group.name)))).all())
    members: dict[int | None, list[str]] = {}
    links = sa_select(col(IdentityGroup.identity_id), col(IdentityGroup.group_id))
    for identity_id, group_id in await conn.execute(links):
        members.setdefault(identity_id, []).append(groups[group_id])
    names: dict[int | None, str] = {}  # primary keys, never None once stored
    identities = sa_select(
        col(Identity.id),
        col(Identity.name),
        col(Identity.kind),
        col(Identity.role),
        col(Identity.scram_salt),
    )
    add_identity = bundle.identities.add
    for ident_id, name, kind, role, salt in await conn.execute(identities):
        names[ident_id] = name
        add_identity(
            name=name,
            kind=kind,
            role=role,
            groups=sorted(members.get(ident_id, [])),
            scram_salt=salt,
        )
    now = utcnow()
    live_tokens = sa_select(
        col(Token.id),
        col(Token.identity_id),
        col(Token.secret_sha256),
        col(Token.scram_stored_key),
        col(Token.scram_server_key),
        col(Token.scram_iterations),
        col(Token.expires_at),
    ).where(col(Token.revoked_at).is_(None))
    add_token = bundle.tokens.add
    for token_id, owner, sha256, stored, server, iterations, expires_at in await conn.execute(
        live_tokens
    ):
        if expires_at is not None and expires_at <= now:
            continue
        add_token(
            id=token_id,
            identity=names.get(owner, ""),
            secret_sha256=sha256,
            scram_stored_key=stored,
            scram_server_key=server,
            scram_iterations=iterations,
            expires_at_ms=epoch_ms(expires_at),
        )
    connections = sa_select(
        col(Connection.name),
        col(Connection.type),
        col(Connection.host),
        col(Connection.port),
        col(Connection.database),
        col(Connection.username),
        col(Connection.node_labels),
        col(Connection.guardrails),
    ).order_by(col(Connection.name))
    add_connection = bundle.connections.add
    for name, type_, host, port, database, username, labels, guardrails in await conn.execute(
        connections
    ):
        add_connection(
            name=name,
            type=type_,
            host=host,
            port=port,
            database=database,
            username=username,
            node_labels=labels,
            guardrails=guardrails,
        )
    for policy in (await session.exec(select(Policy).order_by(col(Policy.name)))).all():
        bundle.policies.append(pb.Policy(name=policy.name, cedar=policy.cedar))
    for rule in (await session.exec(select(MaskingRule).order_by(col(MaskingRule.name)))).all():
        bundle.masking_rules.append(
            pb.MaskingRule(
                name=rule.name,
                connections=rule.connections,
                columns=rule.columns,
                detectors=rule.detectors,
                exempt=rule.exempt,
                unresolved=rule.unresolved,
            )
        )
    for approval_rule in (
        await session.exec(select(ApprovalRule).order_by(col(ApprovalRule.name)))
    ).all():
        bundle.approval_rules.append(
            pb.ApprovalRule(
                name=approval_rule.name,
                connections=approval_rule.connections,
                actions=approval_rule.actions,
                tables=approval_rule.tables,
                commands=approval_rule.commands,
                approvers=approval_rule.approvers,
                required=approval_rule.required,
                timeout_seconds=approval_rule.timeout_seconds,
                require_reason=approval_rule.require_reason,
                reuse_seconds=approval_rule.reuse_seconds,
            )
        )
    live_grants = (
        select(Grant)
        .where(col(Grant.expires_at) > now)
        .order_by(col(Grant.expires_at), col(Grant.id))
    )
    for grant in (await session.exec(live_grants)).all():
        bundle.grants.append(
            pb.Grant(
                id=grant.id,
                identity=grant.identity,
                connection=grant.connection,
                actions=grant.actions,
                expires_at_ms=epoch_ms(grant.expires_at),
            )
        )
    return bundle


def serves(node_labels: Mapping[str, str], wanted: Mapping[str, str]) -> bool:
    """A node serves a connection when it carries every label the connection names."""
    return all(node_labels.get(k) == v for k, v in wanted.items())


def for_node(base: pb.Bundle, node_name: str, node_labels: Mapping[str, str]) -> pb.Bundle:
    """The base bundle narrowed to the connections this node may serve, stamped with the node."""
    bundle = pb.Bundle()
    bundle.CopyFrom(base)
    bundle.node_name = node_name
    bundle.node_labels.update(node_labels)
    keep = [c for c in base.connections if serves(node_labels, c.node_labels)]
    if len(keep) != len(base.connections):
        del bundle.connections[:]
        bundle.connections.extend(keep)
    return bundle


class BundleCache:
    """Compiles each revision once, however many nodes ask for it at the same time."""

    def __init__(self) -> None:
        self._revision = -1
        self._bundle: pb.Bundle | None = None
        self._lock = asyncio.Lock()

    async def get(self, session: AsyncSession) -> pb.Bundle:
        revision = await changes.current(session)
        async with self._lock:
            if self._bundle is None or revision != self._revision:
                self._bundle = await compile_bundle(session)
                self._revision = self._bundle.revision
            return self._bundle
