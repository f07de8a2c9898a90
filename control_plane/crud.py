"""Reads and writes of the control plane's tables, as keyword-only functions the routes call.

Every write that changes what a bundle contains bumps the configuration revision inside its
transaction (`changes.bump`) and commits, so nodes hear about it as soon as it is durable.
Secrets come in already sealed or hashed; nothing here sees a plaintext it would store.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, TypeVar, cast

from pydantic import ValidationError
from sqlalchemy import update
from sqlalchemy.orm.attributes import set_committed_value
from sqlmodel import SQLModel, col, delete, func, select
from sqlmodel.ext.asyncio.session import AsyncSession

from control_plane import audit, changes, notify
from control_plane.audit import StoredEvent
from control_plane.crypto import SecretBox
from control_plane.models import (
    Approval,
    ApprovalRule,
    AuditSession,
    Connection,
    Grant,
    Group,
    Identity,
    IdentityGroup,
    MaskingRule,
    Node,
    Policy,
    Token,
    Webhook,
    utcnow,
)
from control_plane.schemas import (
    ApprovalRuleBase,
    ApprovalRuleCreate,
    ApprovalRuleUpdate,
    ConnectionBase,
    ConnectionCreate,
    ConnectionUpdate,
    GroupCreate,
    IdentityCreate,
    IdentityUpdate,
    MaskingRuleCreate,
    MaskingRuleUpdate,
    NodeCreate,
    WebhookCreate,
    WebhookUpdate,
)
from lockgate import tokens

# config rows: everything a bundle is compiled from is named, and every write bumps the revision

Row = TypeVar("Row", bound=SQLModel)


async def _by_name(session: AsyncSession, model: type[Row], name: str) -> Row | None:
    """The row of `model` called `name`, if any."""
    column: Any = cast(Any, model).name
    return (await session.exec(select(model).where(column == name))).first()


async def _all_by_name(session: AsyncSession, model: type[Row]) -> list[Row]:
    """Every row of `model`, by name."""
    column: Any = cast(Any, model).name
    return list((await session.exec(select(model).order_by(column))).all())


async def _save_config(session: AsyncSession, row: SQLModel) -> None:
    """Write a configuration row and bump the revision in the same transaction."""
    session.add(row)
    await changes.bump(session)
    await session.commit()


async def _delete_config(session: AsyncSession, row: SQLModel) -> None:
    """Delete a configuration row and bump the revision in the same transaction."""
    await session.delete(row)
    await changes.bump(session)
    await session.commit()


class Conflict(Exception):
    """A write would break a rule of the data (a name in use, the last admin); safe to show."""


class Invalid(Exception):
    """A partial update would leave a row invalid; the message is safe to show."""


# identities


async def get_identity(*, session: AsyncSession, name: str) -> Identity | None:
    """The identity called `name`, if any."""
    return await _by_name(session, Identity, name)


async def list_identities(*, session: AsyncSession) -> list[Identity]:
    """All identities by name."""
    return await _all_by_name(session, Identity)


async def groups_of(*, session: AsyncSession, identity_ids: Sequence[int]) -> dict[int, list[str]]:
    """Group names per identity id (sorted), for the given identities."""
    rows = await session.exec(
        select(IdentityGroup.identity_id, Group.name)
        .join(Group, col(Group.id) == col(IdentityGroup.group_id))
        .where(col(IdentityGroup.identity_id).in_(identity_ids))
        .order_by(col(Group.name))
    )
    result: dict[int, list[str]] = {i: [] for i in identity_ids}
    for identity_id, group_name in rows.all():
        result[identity_id].append(group_name)
    return result


async def _ensure_groups(*, session: AsyncSession, names: Sequence[str]) -> list[Group]:
    wanted = list(dict.fromkeys(names))
    if not wanted:
        return []
    found = {
        g.name: g for g in (await session.exec(select(Group).where(col(Group.name).in_(wanted))))
    }
    for name in wanted:
        if name not in found:
            group = Group(name=name)
            session.add(group)
            found[name] = group
    await session.flush()
    return [found[name] for name in wanted]


async def _set_groups(*, session: AsyncSession, identity: Identity, names: Sequence[str]) -> None:
    assert identity.id is not None
    await session.exec(delete(IdentityGroup).where(col(IdentityGroup.identity_id) == identity.id))
    for group in await _ensure_groups(session=session, names=names):
        assert group.id is not None
        session.add(IdentityGroup(identity_id=identity.id, group_id=group.id))


async def create_identity(*, session: AsyncSession, identity_in: IdentityCreate) -> Identity:
    """Create an identity (and any group it names that does not exist yet)."""
    if await get_identity(session=session, name=identity_in.name):
        raise Conflict(f"identity {identity_in.name!r} already exists")
    identity = Identity(
        name=identity_in.name,
        kind=identity_in.kind,
        role=identity_in.role,
        scram_salt=tokens.new_scram_salt(),
    )
    session.add(identity)
    await session.flush()
    await _set_groups(session=session, identity=identity, names=identity_in.groups)
    await changes.bump(session)
    await session.commit()
    return identity


async def _admin_count(*, session: AsyncSession) -> int:
    query = select(func.count()).select_from(Identity).where(Identity.role == "admin")
    return int((await session.exec(query)).one())


async def update_identity(
    *, session: AsyncSession, identity: Identity, identity_in: IdentityUpdate
) -> Identity:
    """Apply the fields set in `identity_in`; `groups` replaces the memberships."""
    if (
        identity_in.role is not None
        and identity_in.role != "admin"
        and identity.role == "admin"
        and await _admin_count(session=session) <= 1
    ):
        raise Conflict(f"identity {identity.name!r} is the last admin")
    if identity_in.kind is not None:
        identity.kind = identity_in.kind
    if identity_in.role is not None:
        identity.role = identity_in.role
    session.add(identity)
    if identity_in.groups is not None:
        await _set_groups(session=session, identity=identity, names=identity_in.groups)
    await changes.bump(session)
    await session.commit()
    return identity


async def delete_identity(*, session: AsyncSession, identity: Identity) -> None:
    """Delete an identity with its tokens and memberships."""
    if identity.role == "admin" and await _admin_count(session=session) <= 1:
        raise Conflict(f"identity {identity.name!r} is the last admin")
    await session.exec(delete(Token).where(col(Token.identity_id) == identity.id))
    await session.exec(delete(IdentityGroup).where(col(IdentityGroup.identity_id) == identity.id))
    await _delete_config(session, identity)


# groups


async def get_group(*, session: AsyncSession, name: str) -> Group | None:
    """The group called `name`, if any."""
    return await _by_name(session, Group, name)


async def list_groups(*, session: AsyncSession) -> list[Group]:
    """All groups by name."""
    return await _all_by_name(session, Group)


async def members_of(*, session: AsyncSession, group_ids: Sequence[int]) -> dict[int, list[str]]:
    """Member identity names per group id (sorted), for the given groups."""
    rows = await session.exec(
        select(IdentityGroup.group_id, Identity.name)
        .join(Identity, col(Identity.id) == col(IdentityGroup.identity_id))
        .where(col(IdentityGroup.group_id).in_(group_ids))
        .order_by(col(Identity.name))
    )
    result: dict[int, list[str]] = {g: [] for g in group_ids}
    for group_id, identity_name in rows.all():
        result[group_id].append(identity_name)
    return result


async def create_group(*, session: AsyncSession, group_in: GroupCreate) -> Group:
    """Create an empty group."""
    if await get_group(session=session, name=group_in.name):
        raise Conflict(f"group {group_in.name!r} already exists")
    group = Group(name=group_in.name, description=group_in.description)
    await _save_config(session, group)
    return group


async def delete_group(*, session: AsyncSession, group: Group) -> None:
    """Delete a group; its members stay, without it."""
    await session.exec(delete(IdentityGroup).where(col(IdentityGroup.group_id) == group.id))
    await _delete_config(session, group)


# tokens


@dataclass(frozen=True)
class TokenRow:
    token: Token
    identity: str


async def authenticate(*, session: AsyncSession, token: str) -> Identity | None:
    """The identity a presented access token belongs to, if the token is valid right now."""
    token_id = tokens.token_id(token)
    if token_id is None:
        return None
    row = await session.get(Token, token_id)
    if row is None or not tokens.matches(token, row.secret_sha256):
        return None
    if row.revoked_at is not None:
        return None
    if row.expires_at is not None and row.expires_at <= utcnow():
        return None
    return await session.get(Identity, row.identity_id)


async def get_token(*, session: AsyncSession, token_id: str) -> TokenRow | None:
    """One token (never its secret, which is not stored) with its identity's name."""
    row = (
        await session.exec(
            select(Token, Identity.name)
            .join(Identity, col(Identity.id) == col(Token.identity_id))
            .where(Token.id == token_id)
        )
    ).first()
    return TokenRow(row[0], row[1]) if row else None


async def list_tokens(*, session: AsyncSession, identity_id: int | None = None) -> list[TokenRow]:
    """Tokens, newest first, optionally of one identity only."""
    query = select(Token, Identity.name).join(Identity, col(Identity.id) == col(Token.identity_id))
    if identity_id is not None:
        query = query.where(Token.identity_id == identity_id)
    query = query.order_by(col(Token.created_at).desc(), col(Token.id))
    return [TokenRow(t, name) for t, name in (await session.exec(query)).all()]


async def create_token(
    *,
    session: AsyncSession,
    identity: Identity,
    ttl_seconds: int | None = None,
    description: str = "",
) -> tuple[Token, str]:
    """Mint a token for `identity`; returns the row and the secret to show once."""
    assert identity.id is not None
    issued = tokens.issue(identity.scram_salt)
    now = utcnow()
    row = Token(
        id=issued.id,
        identity_id=identity.id,
        description=description,
        secret_sha256=issued.secret_sha256,
        scram_stored_key=issued.scram_stored_key,
        scram_server_key=issued.scram_server_key,
        scram_iterations=issued.scram_iterations,
        created_at=now,
        expires_at=now + timedelta(seconds=ttl_seconds) if ttl_seconds else None,
    )
    await _save_config(session, row)
    return row, issued.token


async def revoke_token(*, session: AsyncSession, token: Token) -> Token:
    """Revoke a token; revoking a revoked token changes nothing."""
    if token.revoked_at is None:
        token.revoked_at = utcnow()
        session.add(token)
        await changes.bump(session)
        await session.commit()
    return token


# connections


async def get_connection(*, session: AsyncSession, name: str) -> Connection | None:
    """The connection called `name`, if any."""
    return await _by_name(session, Connection, name)


async def list_connections(*, session: AsyncSession) -> list[Connection]:
    """All connections by name."""
    return await _all_by_name(session, Connection)


async def create_connection(
    *, session: AsyncSession, box: SecretBox, connection_in: ConnectionCreate
) -> Connection:
    """Create a connection; its password is sealed with `box`, bound to the connection's name."""
    if await get_connection(session=session, name=connection_in.name):
        raise Conflict(f"connection {connection_in.name!r} already exists")
    connection = Connection(
        name=connection_in.name,
        type=connection_in.type,
        host=connection_in.host,
        port=connection_in.port or 0,
        database=connection_in.database,
        username=connection_in.username,
        password_encrypted=box.encrypt(
            connection_in.password.get_secret_value(), aad=connection_in.name.encode()
        ),
        node_labels=connection_in.node_labels,
        guardrails=connection_in.guardrails,
    )
    await _save_config(session, connection)
    return connection


async def update_connection(
    *,
    session: AsyncSession,
    box: SecretBox,
    connection: Connection,
    connection_in: ConnectionUpdate,
) -> Connection:
    """Apply the fields set in `connection_in`; the result is validated as a whole."""
    changed = connection_in.model_dump(exclude_unset=True, exclude={"password"})
    current = {
        "type": connection.type,
        "host": connection.host,
        "port": connection.port or None,
        "database": connection.database,
        "username": connection.username,
        "node_labels": connection.node_labels,
        "guardrails": connection.guardrails,
    }
    try:
        merged = ConnectionBase.model_validate(
            {**current, **{k: v for k, v in changed.items() if v is not None}}
        )
    except ValidationError as exc:
        errors = exc.errors(include_input=False, include_context=False, include_url=False)
        raise Invalid("; ".join(str(e["msg"]) for e in errors)) from None
    connection.type = merged.type
    connection.host = merged.host
    connection.port = merged.port or 0
    connection.database = merged.database
    connection.username = merged.username
    connection.node_labels = merged.node_labels
    connection.guardrails = merged.guardrails
    if connection_in.password is not None:
        connection.password_encrypted = box.encrypt(
            connection_in.password.get_secret_value(), aad=connection.name.encode()
        )
    connection.updated_at = utcnow()
    await _save_config(session, connection)
    return connection


async def delete_connection(*, session: AsyncSession, connection: Connection) -> None:
    """Delete a connection and its sealed credentials."""
    await _delete_config(session, connection)


# policies


async def get_policy(*, session: AsyncSession, name: str) -> Policy | None:
    """The policy called `name`, if any."""
    return await _by_name(session, Policy, name)


async def list_policies(*, session: AsyncSession) -> list[Policy]:
    """All policies by name."""
    return await _all_by_name(session, Policy)


async def create_policy(
    *, session: AsyncSession, name: str, cedar: str, description: str = ""
) -> Policy:
    """Create a policy; the caller has validated the Cedar text."""
    if await get_policy(session=session, name=name):
        raise Conflict(f"policy {name!r} already exists")
    policy = Policy(name=name, cedar=cedar, description=description)
    await _save_config(session, policy)
    return policy


async def update_policy(
    *,
    session: AsyncSession,
    policy: Policy,
    cedar: str | None = None,
    description: str | None = None,
) -> Policy:
    """Replace the text and/or description of a policy; the caller has validated the Cedar."""
    if cedar is not None:
        policy.cedar = cedar
    if description is not None:
        policy.description = description
    policy.updated_at = utcnow()
    await _save_config(session, policy)
    return policy


async def delete_policy(*, session: AsyncSession, policy: Policy) -> None:
    """Delete a policy."""
    await _delete_config(session, policy)


# nodes


async def get_node(*, session: AsyncSession, name: str) -> Node | None:
    """The node called `name`, if any."""
    return await _by_name(session, Node, name)


async def list_nodes(*, session: AsyncSession) -> list[Node]:
    """All registered nodes by name."""
    return await _all_by_name(session, Node)


async def create_node(*, session: AsyncSession, node_in: NodeCreate) -> tuple[Node, str]:
    """Register a node; returns the row and its token, to show once."""
    if await get_node(session=session, name=node_in.name):
        raise Conflict(f"node {node_in.name!r} already exists")
    issued = tokens.issue(b"\x00" * 16, prefix="lgn")
    node = Node(
        id=issued.id, name=node_in.name, labels=node_in.labels, token_sha256=issued.secret_sha256
    )
    await _save_config(session, node)
    return node, issued.token


async def delete_node(*, session: AsyncSession, node: Node) -> None:
    """Forget a node; its token stops working."""
    await _delete_config(session, node)


def node_online(node: Node, *, now: datetime | None = None, window_seconds: int = 30) -> bool:
    """Whether the node reported in within the last `window_seconds`."""
    if node.last_seen_at is None:
        return False
    return (now or utcnow()) - node.last_seen_at <= timedelta(seconds=window_seconds)


# audit sessions (written by audit ingestion, read here)


async def list_sessions(
    *,
    session: AsyncSession,
    identity: str | None = None,
    connection: str | None = None,
    limit: int = 100,
    offset: int = 0,
) -> list[AuditSession]:
    """Recorded sessions, newest first, optionally filtered."""
    query = select(AuditSession)
    if identity is not None:
        query = query.where(AuditSession.identity == identity)
    if connection is not None:
        query = query.where(AuditSession.connection == connection)
    query = query.order_by(col(AuditSession.started_at).desc(), col(AuditSession.id).desc())
    return list((await session.exec(query.offset(offset).limit(limit))).all())


async def get_audit_session(*, session: AsyncSession, session_id: str) -> AuditSession | None:
    """One recorded session, if any."""
    return await session.get(AuditSession, session_id)


async def list_session_events(
    *, session: AsyncSession, session_id: str, after_seq: int = 0, limit: int = 1000
) -> list[StoredEvent]:
    """A session's events with `seq > after_seq`, in order."""
    return await audit.read_events(session, session_id, after_seq, limit)


# masking rules


async def get_masking_rule(*, session: AsyncSession, name: str) -> MaskingRule | None:
    """The masking rule called `name`, if any."""
    return await _by_name(session, MaskingRule, name)


async def list_masking_rules(*, session: AsyncSession) -> list[MaskingRule]:
    """All masking rules by name."""
    return await _all_by_name(session, MaskingRule)


async def create_masking_rule(*, session: AsyncSession, rule_in: MaskingRuleCreate) -> MaskingRule:
    """Create a masking rule."""
    if await get_masking_rule(session=session, name=rule_in.name):
        raise Conflict(f"masking rule {rule_in.name!r} already exists")
    rule = MaskingRule(**rule_in.model_dump())
    await _save_config(session, rule)
    return rule


async def update_masking_rule(
    *, session: AsyncSession, rule: MaskingRule, rule_in: MaskingRuleUpdate
) -> MaskingRule:
    """Change the given fields of a masking rule."""
    for key, value in rule_in.model_dump(exclude_none=True).items():
        setattr(rule, key, value)
    rule.updated_at = utcnow()
    await _save_config(session, rule)
    return rule


async def delete_masking_rule(*, session: AsyncSession, rule: MaskingRule) -> None:
    """Delete a masking rule."""
    await _delete_config(session, rule)


# approval rules


async def get_approval_rule(*, session: AsyncSession, name: str) -> ApprovalRule | None:
    """The approval rule called `name`, if any."""
    return await _by_name(session, ApprovalRule, name)


async def list_approval_rules(*, session: AsyncSession) -> list[ApprovalRule]:
    """All approval rules by name (the order access requests match them in)."""
    return await _all_by_name(session, ApprovalRule)


async def create_approval_rule(
    *, session: AsyncSession, rule_in: ApprovalRuleCreate
) -> ApprovalRule:
    """Create an approval rule."""
    if await get_approval_rule(session=session, name=rule_in.name):
        raise Conflict(f"approval rule {rule_in.name!r} already exists")
    rule = ApprovalRule(**rule_in.model_dump())
    await _save_config(session, rule)
    return rule


async def update_approval_rule(
    *, session: AsyncSession, rule: ApprovalRule, rule_in: ApprovalRuleUpdate
) -> ApprovalRule:
    """Change the given fields of an approval rule; the result is validated as a whole."""
    current = ApprovalRuleBase.model_validate(rule, from_attributes=True).model_dump()
    try:
        merged = ApprovalRuleBase.model_validate(
            {**current, **rule_in.model_dump(exclude_none=True)}
        )
    except ValidationError as exc:
        errors = exc.errors(include_input=False, include_context=False, include_url=False)
        raise Invalid("; ".join(str(e["msg"]) for e in errors)) from None
    for key, value in merged.model_dump().items():
        setattr(rule, key, value)
    rule.updated_at = utcnow()
    await _save_config(session, rule)
    return rule


async def delete_approval_rule(*, session: AsyncSession, rule: ApprovalRule) -> None:
    """Delete an approval rule; approvals it already caused keep their approvers."""
    await _delete_config(session, rule)


# approvals (the broker in `approvals.py` decides; these only read and write rows)


async def get_approval(*, session: AsyncSession, approval_id: str) -> Approval | None:
    """One approval, freshly read (never a stale copy from the session)."""
    query = select(Approval).where(Approval.id == approval_id)
    return (await session.exec(query.execution_options(populate_existing=True))).first()


async def get_approval_by_key(*, session: AsyncSession, request_key: str) -> Approval | None:
    """The approval a node asked for with `request_key`, if any."""
    query = select(Approval).where(Approval.request_key == request_key)
    return (await session.exec(query.execution_options(populate_existing=True))).first()


async def list_approvals(
    *,
    session: AsyncSession,
    state: str | None = None,
    kind: str | None = None,
    identity: str | None = None,
    limit: int = 100,
) -> list[Approval]:
    """Approvals, newest first, optionally filtered by state, kind and requester."""
    query = select(Approval)
    if state is not None:
        query = query.where(Approval.state == state)
    if kind is not None:
        query = query.where(Approval.kind == kind)
    if identity is not None:
        query = query.where(Approval.identity == identity)
    query = query.order_by(col(Approval.created_at).desc(), col(Approval.id).desc()).limit(limit)
    return list((await session.exec(query.execution_options(populate_existing=True))).all())


async def overdue_approvals(*, session: AsyncSession, now: datetime) -> list[Approval]:
    """Pending approvals whose time ran out at or before `now`."""
    query = select(Approval).where(Approval.state == "pending", col(Approval.expires_at) <= now)
    return list((await session.exec(query.execution_options(populate_existing=True))).all())


async def approved_since(
    *, session: AsyncSession, identity: str, connection: str, fingerprint: str, since: datetime
) -> list[Approval]:
    """Approvals of the same statement by the same identity decided at or after `since`."""
    query = (
        select(Approval)
        .where(
            Approval.identity == identity,
            Approval.connection == connection,
            Approval.fingerprint == fingerprint,
            Approval.state == "approved",
            col(Approval.decided_at) >= since,
        )
        .order_by(col(Approval.decided_at).desc())
    )
    return list((await session.exec(query)).all())


async def insert_approval(*, session: AsyncSession, approval: Approval) -> Approval:
    """Store a new approval and tell the other replicas; a taken request_key raises
    IntegrityError (the caller reads the existing one)."""
    session.add(approval)
    await session.flush()
    await notify.send(session, notify.APPROVALS_CHANNEL, approval.id)
    await session.commit()
    return approval


async def save_approval(
    *,
    session: AsyncSession,
    approval: Approval,
    state: str,
    decisions: list[dict[str, Any]],
    decided_at: datetime | None,
    grant: Grant | None = None,
) -> bool:
    """Move `approval` to a new state if nobody changed it since it was read; False otherwise
    (the transaction is rolled back and the caller re-reads). A grant, if given, is stored in
    the same transaction and bumps the configuration revision."""
    values: dict[str, Any] = {
        "state": state,
        "decisions": decisions,
        "decided_at": decided_at,
        "version": approval.version + 1,
    }
    result = await session.exec(
        update(Approval)
        .where(col(Approval.id) == approval.id, col(Approval.version) == approval.version)
        .values(**values),
        execution_options={"synchronize_session": False},
    )
    if result.rowcount != 1:
        await session.rollback()
        return False
    if grant is not None:
        session.add(grant)
        await changes.bump(session)
    await notify.send(session, notify.APPROVALS_CHANNEL, approval.id)
    await session.commit()
    for key, value in values.items():
        set_committed_value(approval, key, value)
    return True


# grants


async def list_grants(
    *, session: AsyncSession, identity: str | None = None, live_at: datetime | None = None
) -> list[Grant]:
    """Grants by expiry (soonest first), optionally one identity's, optionally only those
    still live at `live_at`."""
    query = select(Grant)
    if identity is not None:
        query = query.where(Grant.identity == identity)
    if live_at is not None:
        query = query.where(col(Grant.expires_at) > live_at)
    query = query.order_by(col(Grant.expires_at), col(Grant.id))
    return list((await session.exec(query)).all())


# webhooks (not part of any bundle: writes do not bump the revision)


async def get_webhook(*, session: AsyncSession, name: str) -> Webhook | None:
    """The webhook called `name`, if any."""
    return await _by_name(session, Webhook, name)


async def list_webhooks(*, session: AsyncSession, event: str | None = None) -> list[Webhook]:
    """All webhooks by name, optionally only those subscribed to `event`."""
    hooks = list((await session.exec(select(Webhook).order_by(col(Webhook.name)))).all())
    return [h for h in hooks if event is None or event in h.events]


async def create_webhook(
    *, session: AsyncSession, box: SecretBox, webhook_in: WebhookCreate
) -> Webhook:
    """Create a webhook; its signing secret is sealed with `box`, bound to the webhook's name."""
    if await get_webhook(session=session, name=webhook_in.name):
        raise Conflict(f"webhook {webhook_in.name!r} already exists")
    webhook = Webhook(
        name=webhook_in.name,
        url=webhook_in.url,
        format=webhook_in.format,
        events=list(dict.fromkeys(webhook_in.events)),
        secret_encrypted=box.encrypt(
            webhook_in.secret.get_secret_value(), aad=webhook_in.name.encode()
        ),
    )
    session.add(webhook)
    await session.commit()
    return webhook


async def update_webhook(
    *, session: AsyncSession, box: SecretBox, webhook: Webhook, webhook_in: WebhookUpdate
) -> Webhook:
    """Change the given fields; a given `secret` replaces the sealed one."""
    if webhook_in.url is not None:
        webhook.url = webhook_in.url
    if webhook_in.format is not None:
        webhook.format = webhook_in.format
    if webhook_in.events is not None:
        webhook.events = list(dict.fromkeys(webhook_in.events))
    if webhook_in.secret is not None:
        webhook.secret_encrypted = box.encrypt(
            webhook_in.secret.get_secret_value(), aad=webhook.name.encode()
        )
    webhook.updated_at = utcnow()
    session.add(webhook)
    await session.commit()
    return webhook


async def delete_webhook(*, session: AsyncSession, webhook: Webhook) -> None:
    """Delete a webhook and its sealed secret."""
    await session.delete(webhook)
    await session.commit()
