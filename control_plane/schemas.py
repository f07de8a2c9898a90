"""Request and response shapes of the REST API, one `XBase / XCreate / XUpdate / XPublic` family
per resource. The tables live in `models.py`; nothing here is persisted as is.

Write-only secrets (connection passwords) are `SecretStr`, so they never show up in a repr or a
log line, and no `XPublic` shape has a field that could carry one.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    StringConstraints,
    model_validator,
)

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,127}$"
Name = Annotated[str, StringConstraints(pattern=NAME_PATTERN)]
IdentityKind = Literal["user", "service"]
Role = Literal["admin", "auditor", "member"]
ConnectionType = Literal["postgres", "mysql", "ssh", "http", "kubernetes"]
CONNECTION_TYPES: frozenset[str] = frozenset({"postgres", "mysql", "ssh", "http", "kubernetes"})
Port = Annotated[int, Field(ge=1, le=65535)]


def _known_guardrails(names: list[str]) -> list[str]:
    from lockgate.guardrails import PROFILES

    unknown = sorted(set(names) - set(PROFILES))
    if unknown:
        raise ValueError(f"unknown guardrail profiles {unknown}; known: {', '.join(PROFILES)}")
    return names


Guardrails = Annotated[list[str], AfterValidator(_known_guardrails)]


def _as_utc(value: datetime) -> datetime:
    # The tables hold naive UTC; the API says so explicitly (`...Z`).
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


UtcDatetime = Annotated[datetime, AfterValidator(_as_utc)]


class Schema(BaseModel):
    """Unknown fields are rejected, so a typo is an error rather than a silent no-op."""

    model_config = ConfigDict(extra="forbid")


# identities


class IdentityBase(Schema):
    kind: IdentityKind = "user"
    role: Role = "member"


class IdentityCreate(IdentityBase):
    name: Name
    groups: list[Name] = Field(default_factory=list)


class IdentityUpdate(Schema):
    kind: IdentityKind | None = None
    role: Role | None = None
    groups: list[Name] | None = None


class IdentityPublic(IdentityBase):
    name: str
    groups: list[str]
    created_at: UtcDatetime


# groups


class GroupBase(Schema):
    description: str = Field(default="", max_length=1024)


class GroupCreate(GroupBase):
    name: Name


class GroupPublic(GroupBase):
    name: str
    members: list[str]
    created_at: UtcDatetime


# tokens


class TokenCreate(Schema):
    identity: Name | None = Field(default=None, description="defaults to the caller")
    ttl_seconds: int | None = Field(default=None, ge=1, le=10 * 365 * 86400)
    description: str = Field(default="", max_length=1024)


class TokenPublic(Schema):
    id: str
    identity: str
    description: str
    created_at: UtcDatetime
    expires_at: UtcDatetime | None
    revoked: bool
    revoked_at: UtcDatetime | None


class TokenCreated(Schema):
    """The only response that ever carries a token's secret."""

    id: str
    token: str
    identity: str
    description: str
    expires_at: UtcDatetime | None


# connections


class ConnectionBase(Schema):
    type: ConnectionType = "postgres"
    host: str = Field(default="", max_length=255)
    port: Port | None = None
    database: str = Field(default="", max_length=255)
    username: str = Field(default="", max_length=255)
    node_labels: dict[str, str] = Field(default_factory=dict)
    guardrails: Guardrails = Field(default_factory=list)

    @model_validator(mode="after")
    def _required_by_type(self) -> ConnectionBase:
        if self.type == "postgres":
            missing = [
                field
                for field in ("host", "port", "database", "username")
                if not getattr(self, field)
            ]
            if missing:
                raise ValueError(f"a postgres connection needs {', '.join(missing)}")
        return self


class ConnectionCreate(ConnectionBase):
    name: Name
    password: SecretStr = Field(default=SecretStr(""), max_length=4096)


class ConnectionUpdate(Schema):
    type: ConnectionType | None = None
    host: str | None = Field(default=None, max_length=255)
    port: Port | None = None
    database: str | None = Field(default=None, max_length=255)
    username: str | None = Field(default=None, max_length=255)
    password: SecretStr | None = Field(default=None, max_length=4096)
    node_labels: dict[str, str] | None = None
    guardrails: Guardrails | None = None


class ConnectionPublic(Schema):
    name: str
    type: str
    host: str
    port: int | None
    database: str
    username: str
    node_labels: dict[str, str]
    guardrails: list[str]
    has_password: bool
    created_at: UtcDatetime
    updated_at: UtcDatetime


class ConnectionSummary(Schema):
    """What a member may know about a connection: that it exists, and what it is."""

    name: str
    type: str


# policies


class PolicyBase(Schema):
    cedar: str = Field(max_length=256 * 1024)
    description: str = Field(default="", max_length=1024)


class PolicyCreate(PolicyBase):
    name: Name


class PolicyReplace(PolicyBase):
    """PUT body: the whole policy except its name, which the path gives."""


class PolicyUpdate(Schema):
    cedar: str | None = Field(default=None, max_length=256 * 1024)
    description: str | None = Field(default=None, max_length=1024)


class PolicyPublic(PolicyBase):
    name: str
    created_at: UtcDatetime
    updated_at: UtcDatetime


# nodes


class NodeBase(Schema):
    labels: dict[str, str] = Field(default_factory=dict)


class NodeCreate(NodeBase):
    name: Name


class NodeCreated(NodeBase):
    """The only response that ever carries a node token."""

    id: str
    name: str
    token: str


class NodePublic(NodeBase):
    id: str
    name: str
    last_seen_at: UtcDatetime | None
    bundle_revision: int
    version: str
    listeners: list[str]
    online: bool


# sessions (read-only)


class SessionPublic(Schema):
    id: str
    identity: str
    connection: str
    protocol: str
    node: str
    client_addr: str
    started_at: UtcDatetime
    ended_at: UtcDatetime | None
    bytes_in: int
    bytes_out: int
    statements: int
    outcome: str


class SessionEventPublic(Schema):
    seq: int
    time: UtcDatetime
    kind: str
    payload: dict[str, Any]


# health


class Health(Schema):
    status: str
    revision: int


# masking rules

EXEMPT_PATTERN = r'^(Identity|Group)::"[A-Za-z0-9][A-Za-z0-9_.@-]{0,127}"$'
COLUMN_PATTERN = r"^[A-Za-z0-9_*?\[\]-]+(\.[A-Za-z0-9_*?\[\]-]+){0,2}$"


def _known_detectors(names: list[str]) -> list[str]:
    from lockgate.masking.detectors import ALL

    unknown = sorted(set(names) - set(ALL))
    if unknown:
        raise ValueError(f"unknown detectors {unknown}; known: {', '.join(ALL)}")
    return names


class MaskingRuleBase(Schema):
    description: str = Field(default="", max_length=1024)
    connections: list[Annotated[str, StringConstraints(min_length=1, max_length=128)]] = Field(
        default_factory=lambda: ["*"]
    )
    columns: list[Annotated[str, StringConstraints(pattern=COLUMN_PATTERN)]] = Field(
        default_factory=list
    )
    detectors: Annotated[list[str], AfterValidator(_known_detectors)] = Field(default_factory=list)
    exempt: list[Annotated[str, StringConstraints(pattern=EXEMPT_PATTERN)]] = Field(
        default_factory=list
    )
    unresolved: Literal["detect", "deny"] = "detect"

    @model_validator(mode="after")
    def _masks_something(self) -> MaskingRuleBase:
        if not self.columns and not self.detectors:
            raise ValueError("a masking rule needs columns, detectors or both")
        return self


class MaskingRuleCreate(MaskingRuleBase):
    name: Name


class MaskingRuleUpdate(Schema):
    description: str | None = Field(default=None, max_length=1024)
    connections: list[str] | None = None
    columns: list[Annotated[str, StringConstraints(pattern=COLUMN_PATTERN)]] | None = None
    detectors: Annotated[list[str], AfterValidator(_known_detectors)] | None = None
    exempt: list[Annotated[str, StringConstraints(pattern=EXEMPT_PATTERN)]] | None = None
    unresolved: Literal["detect", "deny"] | None = None


class MaskingRulePublic(MaskingRuleBase):
    name: str
    created_at: UtcDatetime
    updated_at: UtcDatetime


# policy simulation


class SimulateRequest(Schema):
    identity: Name
    connection: Name
    statement: str = Field(max_length=1024 * 1024)


class SimulatePublic(Schema):
    allowed: bool
    action: str
    kind: str
    policies: list[str]
    reason: str
    message: str
    classification: dict[str, Any]
    masking: list[dict[str, Any]]
    masking_rules: list[str]


# approval rules

PRINCIPAL_PATTERN = EXEMPT_PATTERN
Principal = Annotated[str, StringConstraints(pattern=PRINCIPAL_PATTERN)]
HeldAction = Literal["write", "ddl", "admin", "exec", "read"]
Glob = Annotated[str, StringConstraints(min_length=1, max_length=256)]


def _enough_approvers(approvers: list[str], required: int) -> None:
    # Groups may have any number of members; only a list of identities alone is countable.
    countable = approvers and all(a.startswith("Identity::") for a in approvers)
    if countable and required > len(set(approvers)):
        raise ValueError(
            f"required is {required} but only {len(set(approvers))} identities may approve"
        )


class ApprovalRuleBase(Schema):
    connections: list[Annotated[str, StringConstraints(min_length=1, max_length=128)]] = Field(
        min_length=1, description="connection names or globs"
    )
    actions: list[HeldAction] = Field(min_length=1, description="statement classes to hold")
    tables: list[Glob] = Field(default_factory=list, description="globs over schema.table")
    commands: list[Glob] = Field(
        default_factory=list, description="globs over the lower-cased statement text"
    )
    approvers: list[Principal] = Field(min_length=1, description='Identity::"x" / Group::"y"')
    required: int = Field(default=1, ge=1, le=10)
    timeout_seconds: int = Field(default=600, ge=1, le=7 * 86400)
    require_reason: bool = False
    reuse_seconds: int = Field(default=0, ge=0, le=86400)

    @model_validator(mode="after")
    def _approvable(self) -> ApprovalRuleBase:
        _enough_approvers(self.approvers, self.required)
        return self


class ApprovalRuleCreate(ApprovalRuleBase):
    name: Name


class ApprovalRuleUpdate(Schema):
    connections: list[Annotated[str, StringConstraints(min_length=1, max_length=128)]] | None = (
        Field(default=None, min_length=1)
    )
    actions: list[HeldAction] | None = Field(default=None, min_length=1)
    tables: list[Glob] | None = None
    commands: list[Glob] | None = None
    approvers: list[Principal] | None = Field(default=None, min_length=1)
    required: int | None = Field(default=None, ge=1, le=10)
    timeout_seconds: int | None = Field(default=None, ge=1, le=7 * 86400)
    require_reason: bool | None = None
    reuse_seconds: int | None = Field(default=None, ge=0, le=86400)


class ApprovalRulePublic(ApprovalRuleBase):
    name: str
    created_at: UtcDatetime
    updated_at: UtcDatetime


# approvals

ApprovalState = Literal["pending", "approved", "denied", "expired"]


class ApprovalDecisionPublic(Schema):
    identity: str
    verdict: str  # approve | deny | reuse
    comment: str
    at: UtcDatetime
    reuses: str = Field(default="", description="for verdict reuse: the approval reused")


class ApprovalDecide(Schema):
    comment: str = Field(default="", max_length=2048)


class ApprovalPublic(Schema):
    id: str
    kind: str
    rule: str
    request_key: str
    session_id: str
    identity: str
    connection: str
    statement: str
    fingerprint: str
    action: str
    actions: list[str]
    tables: list[str]
    reason: str
    duration_seconds: int
    required: int
    approvers: list[str]
    decisions: list[ApprovalDecisionPublic]
    state: ApprovalState
    url: str
    created_at: UtcDatetime
    expires_at: UtcDatetime
    decided_at: UtcDatetime | None


# access requests and grants

GrantAction = Literal["connect", "read", "write", "ddl", "admin", "exec"]


class AccessRequestCreate(Schema):
    connection: Name
    actions: list[GrantAction] = Field(min_length=1)
    duration_seconds: int = Field(default=3600, ge=1, le=30 * 86400)
    reason: str = Field(default="", max_length=1024)


class AccessRequestPublic(ApprovalPublic):
    """An access request is an approval of kind `access`; `approval_id` is where to decide it."""

    approval_id: str


class GrantPublic(Schema):
    id: str
    approval_id: str
    identity: str
    connection: str
    actions: list[str]
    created_at: UtcDatetime
    expires_at: UtcDatetime


# webhooks

WebhookEvent = Literal[
    "approval.requested", "approval.approved", "approval.denied", "approval.expired"
]
WEBHOOK_EVENTS: tuple[str, ...] = (
    "approval.requested",
    "approval.approved",
    "approval.denied",
    "approval.expired",
)
WebhookUrl = Annotated[
    str, StringConstraints(pattern=r"^https?://[^\s/?#]+[^\s]*$", max_length=2048)
]


class WebhookBase(Schema):
    url: WebhookUrl
    format: Literal["json", "slack"] = "json"
    events: list[WebhookEvent] = Field(
        default_factory=lambda: list(WEBHOOK_EVENTS),  # type: ignore[arg-type]
        min_length=1,
    )


class WebhookCreate(WebhookBase):
    name: Name
    secret: SecretStr = Field(
        default=SecretStr(""), max_length=4096, description="HMAC key for X-Lockgate-Signature"
    )


class WebhookUpdate(Schema):
    url: WebhookUrl | None = None
    format: Literal["json", "slack"] | None = None
    events: list[WebhookEvent] | None = Field(default=None, min_length=1)
    secret: SecretStr | None = Field(default=None, max_length=4096)


class WebhookPublic(WebhookBase):
    name: str
    has_secret: bool
    created_at: UtcDatetime
    updated_at: UtcDatetime
