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
    groups = {g.id: g.name for g in (await session.exec(select(Group))).all()}
    members: dict[int, list[str]] = {}
    for link in (await session.exec(select(IdentityGroup))).all():
        members.setdefault(link.identity_id, []).append(groups[link.group_id])
    names: dict[int, str] = {}
    for ident in (await session.exec(select(Identity))).all():
        assert ident.id is not None
        names[ident.id] = ident.name
        bundle.identities.append(
            pb.Identity(
                name=ident.name,
                kind=ident.kind,
                role=ident.role,
                groups=sorted(members.get(ident.id, [])),
                scram_salt=ident.scram_salt,
            )
        )
    now = utcnow()
    live_tokens = select(Token).where(col(Token.revoked_at).is_(None))
    for token in (await session.exec(live_tokens)).all():
        if token.expires_at is not None and token.expires_at <= now:
            continue
        bundle.tokens.append(
            pb.Token(
                id=token.id,
                identity=names.get(token.identity_id, ""),
                secret_sha256=token.secret_sha256,
                scram_stored_key=token.scram_stored_key,
                scram_server_key=token.scram_server_key,
                scram_iterations=token.scram_iterations,
                expires_at_ms=epoch_ms(token.expires_at),
            )
        )
    for conn in (await session.exec(select(Connection).order_by(col(Connection.name)))).all():
        bundle.connections.append(
            pb.Connection(
                name=conn.name,
                type=conn.type,
                host=conn.host,
                port=conn.port,
                database=conn.database,
                username=conn.username,
                node_labels=conn.node_labels,
                guardrails=conn.guardrails,
            )
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
