"""The approval broker: the states of a held request, who may move it, and the writes that do.

    state     event                                      next
    pending   approve by an approver (fewer than n)      pending
    pending   approve by an approver (the n-th)          approved   (access: grant created)
    pending   deny by an approver                        denied
    pending   now >= expires_at (read, decide, sweep)    expired
    approved, denied, expired: final; every event is refused with 409

The requester never decides its own request; an identity counts once. Every write updates only
the version it read (`crud.save_approval`), so replicas racing on one approval cannot lose a
decision, and exactly one of them announces the change: it wakes local waiters, NOTIFYs the
other replicas (in the same transaction) and hands the event to the webhook sinks.
"""

from __future__ import annotations

import asyncio
import fnmatch
import logging
import secrets
import string
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlmodel.ext.asyncio.session import AsyncSession

from control_plane import crud, notify
from control_plane.db import Database
from control_plane.models import Approval, ApprovalRule, Grant, Identity, utcnow
from control_plane.schemas import AccessRequestCreate, ApprovalDecisionPublic, ApprovalPublic

PENDING, APPROVED, DENIED, EXPIRED = "pending", "approved", "denied", "expired"
FINAL = frozenset({APPROVED, DENIED, EXPIRED})
EVENTS = {
    PENDING: "approval.requested",
    APPROVED: "approval.approved",
    DENIED: "approval.denied",
    EXPIRED: "approval.expired",
}
# Access requests no rule covers: admins decide, one of them is enough, within an hour.
FALLBACK_APPROVERS = ['Group::"admins"']
FALLBACK_REQUIRED = 1
FALLBACK_TIMEOUT_SECONDS = 3600
SWEEP_SECONDS = 1.0
SAVE_ATTEMPTS = 10

log = logging.getLogger("lockgate.approvals")


class Refused(Exception):
    """A request the broker will not carry out; `status` is the HTTP status to answer with."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class UnknownRule(Exception):
    """A node asked for approval under a rule the store does not have (any more)."""


ID_ALPHABET = string.ascii_letters + string.digits


def new_id() -> str:
    """A short, random, URL-safe id (12 letters and digits, 71 bits); never starts with `-`,
    so `lockgate approvals approve <id>` cannot take it for an option."""
    return "".join(secrets.choice(ID_ALPHABET) for _ in range(12))


def console_url(base_url: str, approval_id: str) -> str:
    """Where people see and decide an approval in the web console."""
    return f"{base_url.rstrip('/')}/approvals/{approval_id}"


# Pure rules ---------------------------------------------------------------------------------


def is_approver(approvers: Sequence[str], identity: str, groups: Sequence[str]) -> bool:
    """Whether `identity` (a member of `groups`) is named by an `Identity::`/`Group::` entry."""
    names = {f'Identity::"{identity}"', *(f'Group::"{g}"' for g in groups)}
    return any(entry in names for entry in approvers)


def may_see(approval: Approval, identity: Identity, groups: Sequence[str]) -> bool:
    """Admins and auditors see every approval; others the ones they asked for or may decide."""
    return (
        identity.role in ("admin", "auditor")
        or approval.identity == identity.name
        or is_approver(approval.approvers, identity.name, groups)
    )


def overdue(approval: Approval, now: datetime) -> bool:
    """A pending approval whose time is up."""
    return approval.state == PENDING and now >= approval.expires_at


@dataclass(frozen=True)
class Transition:
    state: str
    decisions: list[dict[str, Any]]
    decided_at: datetime | None


def transition(
    approval: Approval,
    *,
    identity: str,
    groups: Sequence[str],
    verdict: str,
    comment: str,
    now: datetime,
) -> Transition:
    """The state after `identity` says `verdict` (approve | deny); raises Refused."""
    if verdict not in ("approve", "deny"):
        raise ValueError(f"unknown verdict {verdict!r}")
    if identity == approval.identity:
        raise Refused(403, "the requester cannot decide its own request")
    if not is_approver(approval.approvers, identity, groups):
        raise Refused(
            403, f"{identity} is not among the approvers: {', '.join(approval.approvers)}"
        )
    if overdue(approval, now):
        raise Refused(409, f"approval {approval.id} has expired")
    if approval.state != PENDING:
        raise Refused(409, f"approval {approval.id} is already {approval.state}")
    if any(d.get("identity") == identity for d in approval.decisions):
        raise Refused(409, f"{identity} has already decided approval {approval.id}")
    decision = {"identity": identity, "verdict": verdict, "comment": comment, "at": now.isoformat()}
    decisions = [*approval.decisions, decision]
    approvals = sum(1 for d in decisions if d.get("verdict") == "approve")
    if verdict == "deny":
        return Transition(DENIED, decisions, now)
    if approvals >= approval.required:
        return Transition(APPROVED, decisions, now)
    return Transition(PENDING, decisions, None)


def outcome(approval: Approval) -> tuple[list[str], str]:
    """Who decided (approvers, or the denier) and the last comment, for a final approval."""
    if approval.state == EXPIRED:
        allowed = round((approval.expires_at - approval.created_at).total_seconds())
        return [], f"nobody decided within {allowed} s"
    verdicts = ("deny",) if approval.state == DENIED else ("approve", "reuse")
    decided = [d for d in approval.decisions if d.get("verdict") in verdicts]
    comments = [str(d.get("comment", "")) for d in decided if d.get("comment")]
    return [str(d.get("identity", "")) for d in decided], comments[-1] if comments else ""


def matches_any(patterns: Sequence[str], value: str) -> bool:
    """Whether `value` matches one of the shell-style `patterns` (case-sensitive)."""
    return any(fnmatch.fnmatchcase(value, pattern) for pattern in patterns)


def access_rule(
    rules: Sequence[ApprovalRule], connection: str, actions: Sequence[str]
) -> ApprovalRule | None:
    """The first rule (by name) covering `connection` and at least one of `actions`."""
    for rule in sorted(rules, key=lambda r: r.name):
        if matches_any(rule.connections, connection) and set(rule.actions) & set(actions):
            return rule
    return None


def public(approval: Approval, base_url: str) -> ApprovalPublic:
    """The API shape of an approval, with its console URL."""
    return ApprovalPublic(
        id=approval.id,
        kind=approval.kind,
        rule=approval.rule,
        request_key=approval.request_key,
        session_id=approval.session_id,
        identity=approval.identity,
        connection=approval.connection,
        statement=approval.statement,
        fingerprint=approval.fingerprint,
        action=approval.action,
        actions=approval.actions,
        tables=approval.tables,
        reason=approval.reason,
        duration_seconds=approval.duration_seconds,
        required=approval.required,
        approvers=approval.approvers,
        decisions=[
            ApprovalDecisionPublic(
                identity=str(d.get("identity", "")),
                verdict=str(d.get("verdict", "")),
                comment=str(d.get("comment", "")),
                at=d["at"],
                reuses=str(d.get("reuses", "")),
            )
            for d in approval.decisions
        ],
        state=approval.state,  # type: ignore[arg-type]
        url=console_url(base_url, approval.id),
        created_at=approval.created_at,
        expires_at=approval.expires_at,
        decided_at=approval.decided_at,
    )


# Writes -------------------------------------------------------------------------------------


async def _expire(session: AsyncSession, approval: Approval, hub: notify.ApprovalHub) -> bool:
    now = utcnow()
    saved = await crud.save_approval(
        session=session,
        approval=approval,
        state=EXPIRED,
        decisions=list(approval.decisions),
        decided_at=now,
    )
    if saved:
        log.info(
            "approval %s expired (%s on %s by %s)",
            approval.id,
            approval.kind,
            approval.connection,
            approval.identity,
            extra={"approval": approval.id, "verdict": "expired"},
        )
        hub.announce(approval, EVENTS[EXPIRED])
    return saved


async def refresh(
    *, session: AsyncSession, approval_id: str, hub: notify.ApprovalHub = notify.hub
) -> Approval | None:
    """The approval as stored now, expired first if its time is up."""
    for _ in range(SAVE_ATTEMPTS):
        approval = await crud.get_approval(session=session, approval_id=approval_id)
        if approval is None or not overdue(approval, utcnow()):
            return approval
        if await _expire(session, approval, hub):
            return approval
    return await crud.get_approval(session=session, approval_id=approval_id)


async def expire_overdue(
    *, session: AsyncSession, hub: notify.ApprovalHub = notify.hub
) -> list[Approval]:
    """Expire every pending approval whose time is up; returns those this call expired."""
    expired = []
    for approval in await crud.overdue_approvals(session=session, now=utcnow()):
        # Another replica may get there first; then its update wins and this one does nothing.
        if await _expire(session, approval, hub):
            expired.append(approval)
    return expired


async def decide(
    *,
    session: AsyncSession,
    approval_id: str,
    identity: Identity,
    verdict: str,
    comment: str = "",
    hub: notify.ApprovalHub = notify.hub,
) -> Approval:
    """Record `identity`'s verdict (approve | deny); raises Refused, or LookupError if unknown."""
    assert identity.id is not None
    groups = (await crud.groups_of(session=session, identity_ids=[identity.id]))[identity.id]
    for _ in range(SAVE_ATTEMPTS):
        approval = await refresh(session=session, approval_id=approval_id, hub=hub)
        if approval is None:
            raise LookupError(approval_id)
        now = utcnow()
        step = transition(
            approval,
            identity=identity.name,
            groups=groups,
            verdict=verdict,
            comment=comment,
            now=now,
        )
        grant = None
        if step.state == APPROVED and approval.kind == "access":
            grant = Grant(
                id=new_id(),
                approval_id=approval.id,
                identity=approval.identity,
                connection=approval.connection,
                actions=approval.actions,
                created_at=now,
                expires_at=now + timedelta(seconds=approval.duration_seconds),
            )
        saved = await crud.save_approval(
            session=session,
            approval=approval,
            state=step.state,
            decisions=step.decisions,
            decided_at=step.decided_at,
            grant=grant,
        )
        if not saved:
            continue  # someone else decided in between: re-read and judge again
        log.info(
            "approval %s: %s by %s (%d/%d), now %s%s",
            approval.id,
            verdict,
            identity.name,
            sum(1 for d in step.decisions if d.get("verdict") == "approve"),
            approval.required,
            step.state,
            f", grant {grant.id} until {grant.expires_at.isoformat()}" if grant else "",
            extra={
                "approval": approval.id,
                "verdict": verdict,
                "actor": identity.name,
                "state": step.state,
            },
        )
        hub.announce(approval, EVENTS[step.state] if step.state in FINAL else None)
        return approval
    raise Refused(409, f"approval {approval_id} is changing too fast; try again")


@dataclass(frozen=True)
class StatementRequest:
    """What a node sends when it holds a statement (see `ApprovalRequest` in node.proto)."""

    request_key: str
    rule: str
    identity: str
    connection: str
    session_id: str = ""
    statement: str = ""
    fingerprint: str = ""
    action: str = ""
    tables: tuple[str, ...] = ()
    reason: str = ""


async def request_statement(
    *, session: AsyncSession, request: StatementRequest, hub: notify.ApprovalHub = notify.hub
) -> tuple[Approval, bool]:
    """The approval for a held statement, created on first ask (idempotent by request_key);
    returns it and whether it was approved at once by an earlier approval (`reuse_seconds`).
    Raises UnknownRule, or Refused when the rule requires a reason and none was given."""
    existing = await crud.get_approval_by_key(session=session, request_key=request.request_key)
    if existing is not None:
        return existing, _is_reuse(existing)
    rule = await crud.get_approval_rule(session=session, name=request.rule)
    if rule is None:
        raise UnknownRule(request.rule)
    if rule.require_reason and not request.reason.strip():
        raise Refused(422, f"approval rule {rule.name!r} requires a reason")
    now = utcnow()
    approval = Approval(
        id=new_id(),
        kind="statement",
        rule=rule.name,
        request_key=request.request_key,
        session_id=request.session_id,
        identity=request.identity,
        connection=request.connection,
        statement=request.statement,
        fingerprint=request.fingerprint,
        action=request.action,
        actions=[request.action] if request.action else [],
        tables=list(request.tables),
        reason=request.reason,
        required=rule.required,
        approvers=list(rule.approvers),
        created_at=now,
        expires_at=now + timedelta(seconds=rule.timeout_seconds),
    )
    reused = await _reusable(session, rule, request, now)
    if reused is not None:
        approval.state = APPROVED
        approval.decided_at = now
        approval.decisions = [
            {**d, "verdict": "reuse", "reuses": reused.id}
            for d in reused.decisions
            if d.get("verdict") == "approve"
        ]
    try:
        await crud.insert_approval(session=session, approval=approval)
    except IntegrityError:
        # The same request_key arrived twice at once (a retrying node, two replicas).
        await session.rollback()
        existing = await crud.get_approval_by_key(session=session, request_key=request.request_key)
        if existing is None:
            raise
        return existing, _is_reuse(existing)
    if reused is not None:
        log.info(
            "approval %s: approved by reuse of %s (%s on %s by %s)",
            approval.id,
            reused.id,
            approval.action,
            approval.connection,
            approval.identity,
            extra={"approval": approval.id, "verdict": "reuse", "state": APPROVED},
        )
        hub.announce(approval, None)
    else:
        log.info(
            "approval %s requested: %s on %s by %s under rule %s",
            approval.id,
            approval.action,
            approval.connection,
            approval.identity,
            rule.name,
            extra={"approval": approval.id, "state": PENDING},
        )
        hub.announce(approval, EVENTS[PENDING])
    return approval, reused is not None


def _is_reuse(approval: Approval) -> bool:
    return bool(approval.decisions) and all(d.get("verdict") == "reuse" for d in approval.decisions)


async def _reusable(
    session: AsyncSession, rule: ApprovalRule, request: StatementRequest, now: datetime
) -> Approval | None:
    if rule.reuse_seconds <= 0 or not request.fingerprint:
        return None
    candidates = await crud.approved_since(
        session=session,
        identity=request.identity,
        connection=request.connection,
        fingerprint=request.fingerprint,
        since=now - timedelta(seconds=rule.reuse_seconds),
    )
    # Only approvals people gave count: a reuse never extends the window by being reused.
    for candidate in candidates:
        if candidate.kind == "statement" and not _is_reuse(candidate):
            return candidate
    return None


async def request_access(
    *,
    session: AsyncSession,
    identity: Identity,
    access_in: AccessRequestCreate,
    hub: notify.ApprovalHub = notify.hub,
) -> Approval:
    """An access request by `identity`: approvers from the first rule covering it, else admins."""
    if await crud.get_connection(session=session, name=access_in.connection) is None:
        raise Refused(404, f"connection {access_in.connection!r} not found")
    actions: list[str] = list(dict.fromkeys(access_in.actions))
    rule = access_rule(
        await crud.list_approval_rules(session=session), access_in.connection, actions
    )
    if rule is not None and rule.require_reason and not access_in.reason.strip():
        raise Refused(422, f"approval rule {rule.name!r} requires a reason")
    now = utcnow()
    approval_id = new_id()
    timeout = rule.timeout_seconds if rule else FALLBACK_TIMEOUT_SECONDS
    approval = Approval(
        id=approval_id,
        kind="access",
        rule=rule.name if rule else "",
        request_key=f"access:{approval_id}",
        identity=identity.name,
        connection=access_in.connection,
        statement=(
            f"access {', '.join(actions)} on {access_in.connection} "
            f"for {access_in.duration_seconds} s"
        ),
        action=",".join(actions),
        actions=actions,
        reason=access_in.reason,
        duration_seconds=access_in.duration_seconds,
        required=rule.required if rule else FALLBACK_REQUIRED,
        approvers=list(rule.approvers) if rule else list(FALLBACK_APPROVERS),
        created_at=now,
        expires_at=now + timedelta(seconds=timeout),
    )
    await crud.insert_approval(session=session, approval=approval)
    log.info(
        "approval %s requested: access %s on %s by %s for %d s",
        approval.id,
        approval.action,
        approval.connection,
        approval.identity,
        approval.duration_seconds,
        extra={"approval": approval.id, "state": PENDING},
    )
    hub.announce(approval, EVENTS[PENDING])
    return approval


async def run_expiry(
    db: Database, *, every: float = SWEEP_SECONDS, hub: notify.ApprovalHub = notify.hub
) -> None:
    """Expire overdue approvals every `every` seconds, until cancelled."""
    while True:
        try:
            async with db.session() as session:
                await expire_overdue(session=session, hub=hub)
        except SQLAlchemyError:
            log.warning("approval expiry sweep failed; retrying", exc_info=True)
        await asyncio.sleep(every)
