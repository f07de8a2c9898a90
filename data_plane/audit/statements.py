"""The payload of `statement` audit events, as JSON text.

Every statement a node relays is an event, so its payload is built here rather than by
`json` from a dict: the part that depends only on the decision (kind, action, verdict,
policies, reason) is encoded once per decision and reused for every statement that shares it
(the enforcer hands out one decision object per cached statement shape), and only the text,
protocol and name are encoded per statement. The result is byte for byte what `json` makes of
`statement_fields(...)` with the trail's settings.
"""

from __future__ import annotations

from json.encoder import encode_basestring_ascii as _json_str
from typing import Any

from data_plane.audit.trail import encode_json
from lockgate.enforcement import StatementDecision

# Statement text kept in an event: PostgreSQL accepts statements up to 1 GiB, and an event
# larger than the control plane takes in one message would stop a node's uploads.
SQL_CHARS = 1 << 20
_DECISIONS_KEPT = 4096


def _decision_fields(decision: StatementDecision) -> dict[str, Any]:
    """The fields of a statement's payload that depend only on its decision."""
    return {
        "kind": decision.classification.kind,
        "action": decision.action,
        "decision": "allow" if decision.allowed else "deny",
        "policies": list(decision.policies),
        "reason": decision.reason,
    }


def statement_fields(
    sql: str, protocol: str, name: str, decision: StatementDecision
) -> dict[str, Any]:
    """The event's payload as a dict (what `StatementPayloads.encode` encodes)."""
    fields: dict[str, Any] = {
        "sql": sql[:SQL_CHARS],
        "protocol": protocol,
        "name": name,
        **_decision_fields(decision),
    }
    if len(sql) > SQL_CHARS:
        # Kept to a size every upload can carry, with the length of the whole.
        fields["sql_truncated"] = True
        fields["sql_chars"] = len(sql)
    return fields


class StatementPayloads:
    """Encodes `statement` payloads, remembering the encoded tail of recent decisions."""

    def __init__(self) -> None:
        # id(decision) -> (decision, its fields from "kind" on, without the braces); holding
        # the decision keeps its id from being reused while the entry exists.
        self._tails: dict[int, tuple[StatementDecision, str]] = {}

    def tail(self, decision: StatementDecision) -> str:
        """The payload's fields from "kind" on, encoded, without the braces."""
        entry = self._tails.get(id(decision))
        if entry is None or entry[0] is not decision:
            tail = encode_json(_decision_fields(decision))[1:-1]
            if len(self._tails) >= _DECISIONS_KEPT:
                self._tails.clear()
            entry = self._tails[id(decision)] = (decision, tail)
        return entry[1]

    def encode(self, sql: str, protocol: str, name: str, decision: StatementDecision) -> bytes:
        tail = self.tail(decision)
        cut = ""
        if len(sql) > SQL_CHARS:
            cut = f',"sql_truncated":true,"sql_chars":{len(sql)}'
            sql = sql[:SQL_CHARS]
        return (
            f'{{"sql":{_json_str(sql)},"protocol":{_json_str(protocol)},'
            f'"name":{_json_str(name)},{tail}{cut}}}'
        ).encode()
