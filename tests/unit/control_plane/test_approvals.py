"""The broker's rules without a store: who may decide, what each verdict leads to, and which
rule an access request falls under."""

from __future__ import annotations

from datetime import timedelta

import pytest

from control_plane import approvals
from control_plane.models import Approval, ApprovalRule, utcnow

NOW = utcnow()


def pending(**fields: object) -> Approval:
    values: dict[str, object] = {
        "id": "a1",
        "request_key": "s:1",
        "identity": "alice",
        "connection": "prod",
        "approvers": ['Group::"dba"', 'Identity::"ops-lead"'],
        "required": 1,
        "created_at": NOW,
        "expires_at": NOW + timedelta(minutes=10),
        **fields,
    }
    return Approval(**values)


def decide(approval: Approval, who: str, verdict: str = "approve", groups: tuple[str, ...] = ()):
    return approvals.transition(
        approval, identity=who, groups=groups, verdict=verdict, comment="c", now=NOW
    )


@pytest.mark.parametrize(
    ("who", "groups", "expected"),
    [
        ("ops-lead", (), True),
        ("dana", ("dba",), True),
        ("dana", ("dev", "dba"), True),
        ("dana", ("dev",), False),
        ("ops", (), False),  # names match exactly, never by prefix
        ("dba", (), False),  # an identity named like a group is not the group
    ],
)
def test_who_is_an_approver(who: str, groups: tuple[str, ...], expected: bool) -> None:
    assert approvals.is_approver(['Group::"dba"', 'Identity::"ops-lead"'], who, groups) is expected


def test_the_state_table() -> None:
    assert decide(pending(), "ops-lead").state == "approved"
    assert decide(pending(), "ops-lead", "deny").state == "denied"
    two = pending(required=2)
    first = decide(two, "ops-lead")
    assert first.state == "pending" and first.decided_at is None
    two.decisions = first.decisions
    second = decide(two, "dana", groups=("dba",))
    assert second.state == "approved" and second.decided_at == NOW
    assert [d["identity"] for d in second.decisions] == ["ops-lead", "dana"]


@pytest.mark.parametrize(
    ("approval", "who", "status"),
    [
        (pending(), "alice", 403),  # the requester
        (pending(approvers=['Identity::"alice"']), "alice", 403),  # even when named
        (pending(), "mallory", 403),
        (pending(state="approved"), "ops-lead", 409),
        (pending(expires_at=NOW), "ops-lead", 409),
        (pending(decisions=[{"identity": "ops-lead", "verdict": "approve"}]), "ops-lead", 409),
    ],
)
def test_refusals(approval: Approval, who: str, status: int) -> None:
    with pytest.raises(approvals.Refused) as refused:
        decide(approval, who)
    assert refused.value.status == status


def test_outcome_names_the_deciders_and_the_last_comment() -> None:
    approved = pending(
        state="approved",
        decisions=[
            {"identity": "a", "verdict": "approve", "comment": "first"},
            {"identity": "b", "verdict": "approve", "comment": ""},
        ],
    )
    assert approvals.outcome(approved) == (["a", "b"], "first")
    denied = pending(
        state="denied",
        decisions=[
            {"identity": "a", "verdict": "approve", "comment": "yes"},
            {"identity": "b", "verdict": "deny", "comment": "no"},
        ],
    )
    assert approvals.outcome(denied) == (["b"], "no")
    assert approvals.outcome(pending(state="expired"))[0] == []


def test_access_requests_fall_under_the_first_rule_by_name() -> None:
    rules = [
        ApprovalRule(name="b", connections=["prod*"], actions=["write"], approvers=["x"]),
        ApprovalRule(name="a", connections=["staging"], actions=["write"], approvers=["y"]),
        ApprovalRule(name="c", connections=["*"], actions=["write", "read"], approvers=["z"]),
    ]
    assert approvals.access_rule(rules, "prod-db", ["write"]).name == "b"  # type: ignore[union-attr]
    assert approvals.access_rule(rules, "staging", ["connect", "write"]).name == "a"  # type: ignore[union-attr]
    assert approvals.access_rule(rules, "prod-db", ["read"]).name == "c"  # type: ignore[union-attr]
    assert approvals.access_rule(rules, "prod-db", ["connect"]) is None


def test_ids_are_short_url_safe_and_distinct() -> None:
    ids = {approvals.new_id() for _ in range(1000)}
    assert len(ids) == 1000
    assert all(len(i) == 12 and i.isascii() and i.isalnum() for i in ids)
