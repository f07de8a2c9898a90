"""Cedar policies: validation with a location, and authorization against a compiled bundle.

Principals are `Identity::"name"` (members of `Group::"name"`), resources `Connection::"name"`,
actions `Action::"connect" | "read" | "write" | "ddl" | "admin" | "exec"`. Named policies may each
hold several Cedar statements; decisions report the names of the policies that decided.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import cedarpy

from lockgate import guardrails

ACTIONS = ("connect", "read", "write", "ddl", "admin", "exec")
DECIDED_LIMIT = 4096  # decisions an engine keeps (all dropped when full)


@dataclass(frozen=True)
class CedarError:
    message: str
    line: int
    column: int
    policy_index: int

    def __str__(self) -> str:
        return f"line {self.line}, column {self.column}: {self.message}"


@dataclass(frozen=True)
class Decision:
    """The outcome of one authorization: data, so tests and the audit trail can assert on it."""

    allowed: bool
    action: str
    policies: tuple[str, ...] = ()
    errors: tuple[str, ...] = ()
    reason: str = ""
    message: str = ""  # the deciding forbid rule's @message, shown to the client


@dataclass(frozen=True)
class Principal:
    name: str
    kind: str = "user"
    role: str = "member"
    groups: tuple[str, ...] = ()


@dataclass(frozen=True)
class Resource:
    name: str
    type: str
    database: str = ""
    node_labels: Mapping[str, str] = field(default_factory=dict)
    guardrails: tuple[str, ...] = ()


def statement_messages(est: str) -> list[str]:
    """The `@message` annotation of each statement of a policy text in Cedar's JSON form (as
    `cedarpy.policies_to_json_str` gives it), in order."""
    static = json.loads(est)["staticPolicies"]
    return [
        str((static[key].get("annotations") or {}).get("message", ""))
        for key in sorted(static, key=lambda k: int(k.removeprefix("policy")))
    ]


def default_context() -> dict[str, Any]:
    """Every context attribute a policy may test, at its neutral value, so a `when` clause
    over an attribute the request does not set never errors out (and so never silently fails
    to forbid)."""
    now = datetime.now(UTC)
    return {
        "kind": "other",
        "tables": [],
        "tables_written": [],
        "columns": [],
        "unfiltered_write": False,
        "multi_statement": False,
        "data_modifying_cte": False,
        "functions": [],
        "statement_types": [],
        "dangers": [],
        "hour": now.hour,
        "now": int(now.timestamp()),
        "node_labels": {},
    }


def validate(cedar: str) -> CedarError | None:
    """None when `cedar` parses; otherwise the first error with its line and column."""
    try:
        cedarpy.policies_to_json_str(cedar)
        return None
    except ValueError as exc:
        message = str(exc)
    offset = _error_offset(cedar, message)
    line = cedar.count("\n", 0, offset) + 1
    column = offset - (cedar.rfind("\n", 0, offset) + 1) + 1
    index = sum(1 for _ in _statement_ends(cedar[:offset]))
    return CedarError(message=message, line=line, column=column, policy_index=index)


def _statement_ends(text: str) -> Iterable[int]:
    """Offsets of the `;` ending each statement, skipping strings and comments."""
    i, depth, n = 0, 0, len(text)
    while i < n:
        c = text[i]
        if c == '"':
            i += 1
            while i < n and text[i] != '"':
                i += 2 if text[i] == "\\" else 1
        elif c == "/" and text.startswith("//", i):
            i = text.find("\n", i)
            if i < 0:
                return
        elif c in "({[":
            depth += 1
        elif c in ")}]":
            depth -= 1
        elif c == ";" and depth <= 0:
            yield i
        i += 1


def _error_offset(cedar: str, message: str) -> int:
    """Where the error is: Cedar's parser reports no position, so it is found here.

    The failing statement is located by parsing statement by statement; within it, an
    "unexpected token" is placed at the shortest prefix that fails with the same message, an
    "unexpected end of input" at the end of the text, anything else at the statement's start.
    """
    if "unexpected end of input" in message:
        return len(cedar.rstrip())
    start = 0
    for end in _statement_ends(cedar):
        try:
            cedarpy.policies_to_json_str(cedar[start : end + 1])
        except ValueError:
            break
        start = end + 1
    else:
        end = len(cedar) - 1
    stmt = cedar[start : end + 1]
    lead = len(stmt) - len(stmt.lstrip())
    if message.startswith("unexpected token"):
        for stop in range(lead + 1, len(stmt) + 1):
            if stmt[stop - 1].isspace():
                continue
            try:
                cedarpy.policies_to_json_str(stmt[:stop])
            except ValueError as exc:
                if str(exc) == message:
                    return start + stop - 1
    return start + lead


class PolicyEngine:
    """Pre-parsed Cedar policies and entities of one bundle revision."""

    def __init__(
        self,
        policies: Iterable[tuple[str, str]],
        principals: Iterable[Principal],
        resources: Iterable[Resource],
    ) -> None:
        texts: list[str] = []
        self._owners: list[str] = []
        self._messages: list[str] = []
        reads_now = False
        for name, cedar in [*guardrails.policy_texts(), *policies]:
            try:
                est = cedarpy.policies_to_json_str(cedar)
            except ValueError:
                continue  # rejected at write time; never let one bad policy disable the rest
            texts.append(cedar)
            messages = statement_messages(est)
            self._owners.extend([name] * len(messages))
            self._messages.extend(messages)
            # In the JSON form, escapes in the text are resolved: an attribute or a string
            # spelled "now" shows as `now`.
            reads_now = reads_now or "now" in est
        self._policies = cedarpy.PolicySet.from_str("\n".join(texts))
        # Cedar's answer is a function of the policies, the entities and the request, all
        # fixed for this engine, so a request asked again gets the answer it got before.
        # `context.now` changes every second; when no policy can read it, it is left out of
        # the key (an attribute no policy names cannot change an answer).
        self._decided: dict[str, Decision] = {}
        self._reads_now = reads_now
        entities: list[dict[str, Any]] = []
        groups: set[str] = set()
        for p in principals:
            groups.update(p.groups)
            entities.append(
                {
                    "uid": {"type": "Identity", "id": p.name},
                    "attrs": {"name": p.name, "kind": p.kind, "role": p.role},
                    "parents": [{"type": "Group", "id": g} for g in p.groups],
                }
            )
        entities.extend(
            {"uid": {"type": "Group", "id": g}, "attrs": {}, "parents": []} for g in sorted(groups)
        )
        for r in resources:
            entities.append(
                {
                    "uid": {"type": "Connection", "id": r.name},
                    "attrs": {
                        "name": r.name,
                        "type": r.type,
                        "database": r.database,
                        "node_labels": dict(r.node_labels),
                        "guardrails": list(r.guardrails),
                    },
                    "parents": [],
                }
            )
        self._entities = cedarpy.Entities.from_json_str(json.dumps(entities))

    def authorize(
        self, identity: str, action: str, connection: str, context: Mapping[str, Any] | None = None
    ) -> Decision:
        full = {**default_context(), **(context or {})}
        keyed = full if self._reads_now else {**full, "now": 0}
        key = json.dumps([identity, action, connection, keyed])
        decision = self._decided.get(key)
        if decision is None:
            decision = self._authorize(identity, action, connection, full)
            if len(self._decided) >= DECIDED_LIMIT:
                self._decided.clear()
            self._decided[key] = decision
        return decision

    def _authorize(
        self, identity: str, action: str, connection: str, context: Mapping[str, Any]
    ) -> Decision:
        # Entity ids in their JSON form: Cedar's parser for `Type::"id"` text costs more than
        # the evaluation itself, and the JSON form needs no escaping.
        request = {
            "principal": {"type": "Identity", "id": identity},
            "action": {"type": "Action", "id": action},
            "resource": {"type": "Connection", "id": connection},
            "context": json.dumps(context),
        }
        result = cedarpy.is_authorized(request, self._policies, self._entities)
        # Cedar reports the deciding policies as a set: in policy order, the same every time.
        indexes = sorted(self._index(pid) for pid in result.diagnostics.reasons)
        names = tuple(dict.fromkeys(self._owners[i] if i >= 0 else "?" for i in indexes))
        errors = tuple(result.diagnostics.errors)
        if result.allowed:
            return Decision(True, action, names, errors)
        message = next((self._messages[i] for i in indexes if i >= 0 and self._messages[i]), "")
        if names:
            reason = f"{action} on {connection} forbidden by {', '.join(names)}"
        else:
            reason = f"no policy permits {identity} to {action} on {connection}"
        return Decision(False, action, names, errors, reason, message)

    def _index(self, policy_id: str) -> int:
        if policy_id.startswith("policy") and policy_id[6:].isdigit():
            index = int(policy_id[6:])
            if index < len(self._owners):
                return index
        return -1


def quote_name(name: str) -> str:
    """A name made safe inside a Cedar string literal."""
    return name.replace("\\", "\\\\").replace('"', '\\"')
