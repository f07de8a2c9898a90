from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class SubscribeRequest(_message.Message):
    __slots__ = ("version", "labels", "listeners")
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    VERSION_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    LISTENERS_FIELD_NUMBER: _ClassVar[int]
    version: str
    labels: _containers.ScalarMap[str, str]
    listeners: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, version: _Optional[str] = ..., labels: _Optional[_Mapping[str, str]] = ..., listeners: _Optional[_Iterable[str]] = ...) -> None: ...

class Bundle(_message.Message):
    __slots__ = ("revision", "compiled_at_ms", "node_name", "node_labels", "identities", "tokens", "connections", "policies", "masking_rules", "approval_rules", "grants")
    class NodeLabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    REVISION_FIELD_NUMBER: _ClassVar[int]
    COMPILED_AT_MS_FIELD_NUMBER: _ClassVar[int]
    NODE_NAME_FIELD_NUMBER: _ClassVar[int]
    NODE_LABELS_FIELD_NUMBER: _ClassVar[int]
    IDENTITIES_FIELD_NUMBER: _ClassVar[int]
    TOKENS_FIELD_NUMBER: _ClassVar[int]
    CONNECTIONS_FIELD_NUMBER: _ClassVar[int]
    POLICIES_FIELD_NUMBER: _ClassVar[int]
    MASKING_RULES_FIELD_NUMBER: _ClassVar[int]
    APPROVAL_RULES_FIELD_NUMBER: _ClassVar[int]
    GRANTS_FIELD_NUMBER: _ClassVar[int]
    revision: int
    compiled_at_ms: int
    node_name: str
    node_labels: _containers.ScalarMap[str, str]
    identities: _containers.RepeatedCompositeFieldContainer[Identity]
    tokens: _containers.RepeatedCompositeFieldContainer[Token]
    connections: _containers.RepeatedCompositeFieldContainer[Connection]
    policies: _containers.RepeatedCompositeFieldContainer[Policy]
    masking_rules: _containers.RepeatedCompositeFieldContainer[MaskingRule]
    approval_rules: _containers.RepeatedCompositeFieldContainer[ApprovalRule]
    grants: _containers.RepeatedCompositeFieldContainer[Grant]
    def __init__(self, revision: _Optional[int] = ..., compiled_at_ms: _Optional[int] = ..., node_name: _Optional[str] = ..., node_labels: _Optional[_Mapping[str, str]] = ..., identities: _Optional[_Iterable[_Union[Identity, _Mapping]]] = ..., tokens: _Optional[_Iterable[_Union[Token, _Mapping]]] = ..., connections: _Optional[_Iterable[_Union[Connection, _Mapping]]] = ..., policies: _Optional[_Iterable[_Union[Policy, _Mapping]]] = ..., masking_rules: _Optional[_Iterable[_Union[MaskingRule, _Mapping]]] = ..., approval_rules: _Optional[_Iterable[_Union[ApprovalRule, _Mapping]]] = ..., grants: _Optional[_Iterable[_Union[Grant, _Mapping]]] = ...) -> None: ...

class ApprovalRule(_message.Message):
    __slots__ = ("name", "connections", "actions", "tables", "commands", "approvers", "required", "timeout_seconds", "require_reason", "reuse_seconds")
    NAME_FIELD_NUMBER: _ClassVar[int]
    CONNECTIONS_FIELD_NUMBER: _ClassVar[int]
    ACTIONS_FIELD_NUMBER: _ClassVar[int]
    TABLES_FIELD_NUMBER: _ClassVar[int]
    COMMANDS_FIELD_NUMBER: _ClassVar[int]
    APPROVERS_FIELD_NUMBER: _ClassVar[int]
    REQUIRED_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_SECONDS_FIELD_NUMBER: _ClassVar[int]
    REQUIRE_REASON_FIELD_NUMBER: _ClassVar[int]
    REUSE_SECONDS_FIELD_NUMBER: _ClassVar[int]
    name: str
    connections: _containers.RepeatedScalarFieldContainer[str]
    actions: _containers.RepeatedScalarFieldContainer[str]
    tables: _containers.RepeatedScalarFieldContainer[str]
    commands: _containers.RepeatedScalarFieldContainer[str]
    approvers: _containers.RepeatedScalarFieldContainer[str]
    required: int
    timeout_seconds: int
    require_reason: bool
    reuse_seconds: int
    def __init__(self, name: _Optional[str] = ..., connections: _Optional[_Iterable[str]] = ..., actions: _Optional[_Iterable[str]] = ..., tables: _Optional[_Iterable[str]] = ..., commands: _Optional[_Iterable[str]] = ..., approvers: _Optional[_Iterable[str]] = ..., required: _Optional[int] = ..., timeout_seconds: _Optional[int] = ..., require_reason: _Optional[bool] = ..., reuse_seconds: _Optional[int] = ...) -> None: ...

class Grant(_message.Message):
    __slots__ = ("id", "identity", "connection", "actions", "expires_at_ms")
    ID_FIELD_NUMBER: _ClassVar[int]
    IDENTITY_FIELD_NUMBER: _ClassVar[int]
    CONNECTION_FIELD_NUMBER: _ClassVar[int]
    ACTIONS_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_MS_FIELD_NUMBER: _ClassVar[int]
    id: str
    identity: str
    connection: str
    actions: _containers.RepeatedScalarFieldContainer[str]
    expires_at_ms: int
    def __init__(self, id: _Optional[str] = ..., identity: _Optional[str] = ..., connection: _Optional[str] = ..., actions: _Optional[_Iterable[str]] = ..., expires_at_ms: _Optional[int] = ...) -> None: ...

class ApprovalRequest(_message.Message):
    __slots__ = ("request_key", "rule", "session_id", "identity", "connection", "statement", "fingerprint", "kind", "action", "tables", "reason")
    REQUEST_KEY_FIELD_NUMBER: _ClassVar[int]
    RULE_FIELD_NUMBER: _ClassVar[int]
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    IDENTITY_FIELD_NUMBER: _ClassVar[int]
    CONNECTION_FIELD_NUMBER: _ClassVar[int]
    STATEMENT_FIELD_NUMBER: _ClassVar[int]
    FINGERPRINT_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    ACTION_FIELD_NUMBER: _ClassVar[int]
    TABLES_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    request_key: str
    rule: str
    session_id: str
    identity: str
    connection: str
    statement: str
    fingerprint: str
    kind: str
    action: str
    tables: _containers.RepeatedScalarFieldContainer[str]
    reason: str
    def __init__(self, request_key: _Optional[str] = ..., rule: _Optional[str] = ..., session_id: _Optional[str] = ..., identity: _Optional[str] = ..., connection: _Optional[str] = ..., statement: _Optional[str] = ..., fingerprint: _Optional[str] = ..., kind: _Optional[str] = ..., action: _Optional[str] = ..., tables: _Optional[_Iterable[str]] = ..., reason: _Optional[str] = ...) -> None: ...

class ApprovalEvent(_message.Message):
    __slots__ = ("approval_id", "state", "url", "decided_by", "comment", "expires_at_ms")
    APPROVAL_ID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    URL_FIELD_NUMBER: _ClassVar[int]
    DECIDED_BY_FIELD_NUMBER: _ClassVar[int]
    COMMENT_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_MS_FIELD_NUMBER: _ClassVar[int]
    approval_id: str
    state: str
    url: str
    decided_by: _containers.RepeatedScalarFieldContainer[str]
    comment: str
    expires_at_ms: int
    def __init__(self, approval_id: _Optional[str] = ..., state: _Optional[str] = ..., url: _Optional[str] = ..., decided_by: _Optional[_Iterable[str]] = ..., comment: _Optional[str] = ..., expires_at_ms: _Optional[int] = ...) -> None: ...

class Identity(_message.Message):
    __slots__ = ("name", "kind", "groups", "scram_salt", "role")
    NAME_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    GROUPS_FIELD_NUMBER: _ClassVar[int]
    SCRAM_SALT_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    name: str
    kind: str
    groups: _containers.RepeatedScalarFieldContainer[str]
    scram_salt: bytes
    role: str
    def __init__(self, name: _Optional[str] = ..., kind: _Optional[str] = ..., groups: _Optional[_Iterable[str]] = ..., scram_salt: _Optional[bytes] = ..., role: _Optional[str] = ...) -> None: ...

class Token(_message.Message):
    __slots__ = ("id", "identity", "secret_sha256", "scram_stored_key", "scram_server_key", "scram_iterations", "expires_at_ms")
    ID_FIELD_NUMBER: _ClassVar[int]
    IDENTITY_FIELD_NUMBER: _ClassVar[int]
    SECRET_SHA256_FIELD_NUMBER: _ClassVar[int]
    SCRAM_STORED_KEY_FIELD_NUMBER: _ClassVar[int]
    SCRAM_SERVER_KEY_FIELD_NUMBER: _ClassVar[int]
    SCRAM_ITERATIONS_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_MS_FIELD_NUMBER: _ClassVar[int]
    id: str
    identity: str
    secret_sha256: bytes
    scram_stored_key: bytes
    scram_server_key: bytes
    scram_iterations: int
    expires_at_ms: int
    def __init__(self, id: _Optional[str] = ..., identity: _Optional[str] = ..., secret_sha256: _Optional[bytes] = ..., scram_stored_key: _Optional[bytes] = ..., scram_server_key: _Optional[bytes] = ..., scram_iterations: _Optional[int] = ..., expires_at_ms: _Optional[int] = ...) -> None: ...

class Connection(_message.Message):
    __slots__ = ("name", "type", "host", "port", "database", "username", "node_labels", "guardrails")
    class NodeLabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    NAME_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    HOST_FIELD_NUMBER: _ClassVar[int]
    PORT_FIELD_NUMBER: _ClassVar[int]
    DATABASE_FIELD_NUMBER: _ClassVar[int]
    USERNAME_FIELD_NUMBER: _ClassVar[int]
    NODE_LABELS_FIELD_NUMBER: _ClassVar[int]
    GUARDRAILS_FIELD_NUMBER: _ClassVar[int]
    name: str
    type: str
    host: str
    port: int
    database: str
    username: str
    node_labels: _containers.ScalarMap[str, str]
    guardrails: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, name: _Optional[str] = ..., type: _Optional[str] = ..., host: _Optional[str] = ..., port: _Optional[int] = ..., database: _Optional[str] = ..., username: _Optional[str] = ..., node_labels: _Optional[_Mapping[str, str]] = ..., guardrails: _Optional[_Iterable[str]] = ...) -> None: ...

class Policy(_message.Message):
    __slots__ = ("name", "cedar")
    NAME_FIELD_NUMBER: _ClassVar[int]
    CEDAR_FIELD_NUMBER: _ClassVar[int]
    name: str
    cedar: str
    def __init__(self, name: _Optional[str] = ..., cedar: _Optional[str] = ...) -> None: ...

class MaskingRule(_message.Message):
    __slots__ = ("name", "connections", "columns", "detectors", "exempt", "unresolved")
    NAME_FIELD_NUMBER: _ClassVar[int]
    CONNECTIONS_FIELD_NUMBER: _ClassVar[int]
    COLUMNS_FIELD_NUMBER: _ClassVar[int]
    DETECTORS_FIELD_NUMBER: _ClassVar[int]
    EXEMPT_FIELD_NUMBER: _ClassVar[int]
    UNRESOLVED_FIELD_NUMBER: _ClassVar[int]
    name: str
    connections: _containers.RepeatedScalarFieldContainer[str]
    columns: _containers.RepeatedScalarFieldContainer[str]
    detectors: _containers.RepeatedScalarFieldContainer[str]
    exempt: _containers.RepeatedScalarFieldContainer[str]
    unresolved: str
    def __init__(self, name: _Optional[str] = ..., connections: _Optional[_Iterable[str]] = ..., columns: _Optional[_Iterable[str]] = ..., detectors: _Optional[_Iterable[str]] = ..., exempt: _Optional[_Iterable[str]] = ..., unresolved: _Optional[str] = ...) -> None: ...

class CredentialsRequest(_message.Message):
    __slots__ = ("connection", "session_id", "identity")
    CONNECTION_FIELD_NUMBER: _ClassVar[int]
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    IDENTITY_FIELD_NUMBER: _ClassVar[int]
    connection: str
    session_id: str
    identity: str
    def __init__(self, connection: _Optional[str] = ..., session_id: _Optional[str] = ..., identity: _Optional[str] = ...) -> None: ...

class Credentials(_message.Message):
    __slots__ = ("username", "password")
    USERNAME_FIELD_NUMBER: _ClassVar[int]
    PASSWORD_FIELD_NUMBER: _ClassVar[int]
    username: str
    password: str
    def __init__(self, username: _Optional[str] = ..., password: _Optional[str] = ...) -> None: ...

class AuditEvent(_message.Message):
    __slots__ = ("session_id", "seq", "time_ms", "kind", "payload_json")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    SEQ_FIELD_NUMBER: _ClassVar[int]
    TIME_MS_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_JSON_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    seq: int
    time_ms: int
    kind: str
    payload_json: bytes
    def __init__(self, session_id: _Optional[str] = ..., seq: _Optional[int] = ..., time_ms: _Optional[int] = ..., kind: _Optional[str] = ..., payload_json: _Optional[bytes] = ...) -> None: ...

class AuditBatch(_message.Message):
    __slots__ = ("events",)
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    events: _containers.RepeatedCompositeFieldContainer[AuditEvent]
    def __init__(self, events: _Optional[_Iterable[_Union[AuditEvent, _Mapping]]] = ...) -> None: ...

class AuditAck(_message.Message):
    __slots__ = ("accepted", "duplicates")
    ACCEPTED_FIELD_NUMBER: _ClassVar[int]
    DUPLICATES_FIELD_NUMBER: _ClassVar[int]
    accepted: int
    duplicates: int
    def __init__(self, accepted: _Optional[int] = ..., duplicates: _Optional[int] = ...) -> None: ...
