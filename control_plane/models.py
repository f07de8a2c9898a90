"""The control plane's tables (SQLModel). Migrations in `migrations/` create exactly these.

Secrets never sit here in clear: target passwords are AEAD-encrypted (`crypto.py`), access and
node tokens are stored as hashes (`lockgate.tokens`).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, Column, LargeBinary, UniqueConstraint
from sqlmodel import Field, SQLModel


def utcnow() -> datetime:
    # Aware: sqlmodel stores `datetime` fields as UTCDateTime, which refuses naive values.
    return datetime.now(UTC)


class Group(SQLModel, table=True):
    __tablename__ = "groups"
    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(unique=True, index=True, max_length=128)
    description: str = ""
    created_at: datetime = Field(default_factory=utcnow)


class IdentityGroup(SQLModel, table=True):
    __tablename__ = "identity_groups"
    identity_id: int = Field(foreign_key="identities.id", primary_key=True, ondelete="CASCADE")
    group_id: int = Field(foreign_key="groups.id", primary_key=True, ondelete="CASCADE")


class Identity(SQLModel, table=True):
    __tablename__ = "identities"
    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(unique=True, index=True, max_length=128)
    kind: str = "user"  # user | service
    role: str = "member"  # admin | auditor | member
    scram_salt: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    created_at: datetime = Field(default_factory=utcnow)


class Token(SQLModel, table=True):
    __tablename__ = "tokens"
    id: str = Field(primary_key=True, max_length=32)
    identity_id: int = Field(foreign_key="identities.id", index=True, ondelete="CASCADE")
    description: str = ""
    secret_sha256: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    scram_stored_key: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    scram_server_key: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    scram_iterations: int = 4096
    created_at: datetime = Field(default_factory=utcnow)
    expires_at: datetime | None = None
    revoked_at: datetime | None = None


class Connection(SQLModel, table=True):
    __tablename__ = "connections"
    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(unique=True, index=True, max_length=128)
    type: str = "postgres"
    host: str
    port: int
    database: str = ""
    username: str = ""
    password_encrypted: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    node_labels: dict[str, str] = Field(
        default_factory=dict, sa_column=Column(JSON, nullable=False)
    )
    guardrails: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)


class Policy(SQLModel, table=True):
    __tablename__ = "policies"
    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(unique=True, index=True, max_length=128)
    description: str = ""
    cedar: str
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)


class Node(SQLModel, table=True):
    __tablename__ = "nodes"
    id: str = Field(primary_key=True, max_length=32)  # the id part of its node token
    name: str = Field(unique=True, index=True, max_length=128)
    labels: dict[str, str] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    token_sha256: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    version: str = ""
    listeners: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    bundle_revision: int = 0
    created_at: datetime = Field(default_factory=utcnow)
    last_seen_at: datetime | None = None


class BundleState(SQLModel, table=True):
    """One row: the revision of the configuration; every change to it bumps the number."""

    __tablename__ = "bundle_state"
    id: int = Field(default=1, primary_key=True)
    revision: int = 0
    updated_at: datetime = Field(default_factory=utcnow)


class AuditSession(SQLModel, table=True):
    __tablename__ = "sessions"
    id: str = Field(primary_key=True, max_length=64)
    identity: str = Field(default="", index=True)
    connection: str = Field(default="", index=True)
    protocol: str = ""
    node: str = ""
    client_addr: str = ""
    started_at: datetime = Field(default_factory=utcnow, index=True)
    ended_at: datetime | None = None
    bytes_in: int = 0
    bytes_out: int = 0
    statements: int = 0
    outcome: str = "open"  # open | closed | denied | auth_failed | error
    last_seq: int = 0  # the last stored event's; a re-sent event is one at or below it


class AuditBlock(SQLModel, table=True):
    """Consecutive events of one session as the node serialized them (a `lockgate.v1.AuditBatch`
    of `first_seq`..`last_seq`): one row per session per upload instead of one per event.

    A busy node sends thousands of statement events a second, and a row per event cost the
    control plane more CPU than the node spent relaying the statements. Events are decoded
    when read (`control_plane.audit.read_events`). Blocks of a session never overlap, so
    ordered by `last_seq` they are in sequence order, and the unique (session_id, last_seq)
    index finds the blocks after any cursor and a session's last stored event."""

    __tablename__ = "audit_blocks"
    __table_args__ = (
        UniqueConstraint("session_id", "last_seq", name="uq_audit_blocks_session_last_seq"),
    )
    id: int | None = Field(default=None, primary_key=True)
    session_id: str = Field(max_length=64)
    first_seq: int
    last_seq: int
    events: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    received_at: datetime = Field(default_factory=utcnow)


class MaskingRule(SQLModel, table=True):
    """Which result values to mask on which connections, and who is exempt."""

    __tablename__ = "masking_rules"
    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(unique=True, index=True, max_length=128)
    description: str = ""
    connections: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    columns: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    detectors: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    exempt: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    # "detect": content detectors still apply where lineage is unknown; "deny": refuse such
    # statements on these connections.
    unresolved: str = "detect"
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)


class ApprovalRule(SQLModel, table=True):
    """Which statements a node holds until people say yes: who may approve, how many, how long."""

    __tablename__ = "approval_rules"
    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(unique=True, index=True, max_length=128)
    connections: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    actions: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    tables: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    commands: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    approvers: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    required: int = 1
    timeout_seconds: int = 600
    require_reason: bool = False
    reuse_seconds: int = 0
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)


class Approval(SQLModel, table=True):
    """One request held for people to decide: a statement (from a node) or access (JIT).

    `version` grows with every write; writers update only the version they read, so two
    replicas deciding at once cannot lose a decision.
    """

    __tablename__ = "approvals"
    id: str = Field(primary_key=True, max_length=32)
    kind: str = Field(default="statement", max_length=16)  # statement | access
    rule: str = Field(default="", max_length=128)
    request_key: str = Field(unique=True, index=True, max_length=255)
    session_id: str = Field(default="", max_length=64)
    identity: str = Field(index=True, max_length=128)
    connection: str = Field(max_length=128)
    statement: str = ""
    fingerprint: str = Field(default="", index=True, max_length=128)
    action: str = Field(default="", max_length=32)
    actions: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    tables: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    reason: str = ""
    duration_seconds: int = 0  # access requests: how long the grant lasts once approved
    required: int = 1
    approvers: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    decisions: list[dict[str, Any]] = Field(
        default_factory=list, sa_column=Column(JSON, nullable=False)
    )
    state: str = Field(default="pending", index=True, max_length=16)
    version: int = 0
    created_at: datetime = Field(default_factory=utcnow, index=True)
    expires_at: datetime
    decided_at: datetime | None = None


class Grant(SQLModel, table=True):
    """Time-bound access from an approved access request; nodes stop honouring it at expiry."""

    __tablename__ = "grants"
    id: str = Field(primary_key=True, max_length=32)
    approval_id: str = Field(index=True, max_length=32)
    identity: str = Field(index=True, max_length=128)
    connection: str = Field(max_length=128)
    actions: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    created_at: datetime = Field(default_factory=utcnow)
    expires_at: datetime = Field(index=True)


class Webhook(SQLModel, table=True):
    """Where approval events are POSTed; the signing secret is sealed like target passwords."""

    __tablename__ = "webhooks"
    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(unique=True, index=True, max_length=128)
    url: str = Field(max_length=2048)
    secret_encrypted: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    format: str = Field(default="json", max_length=16)  # json | slack
    events: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)
