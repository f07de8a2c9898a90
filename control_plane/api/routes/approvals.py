"""`/api/v1/approvals`: requests held for people to decide, and the live stream of them.

Admins and auditors see every approval; anyone else sees those it asked for or may decide.
Only an identity the approval names (`Identity::"x"`, or `Group::"g"` it belongs to) decides,
never the requester, and once each. `GET /stream` is server-sent events (`event: approval`,
`data: <approval JSON>`) for every creation, decision and expiry, on this replica or another.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Sequence
from typing import Annotated

from fastapi import APIRouter, Body, Query, Request
from fastapi.responses import StreamingResponse

from control_plane import approvals, crud, notify
from control_plane.api.deps import CurrentIdentity, SessionDep, SettingsDep, get_db
from control_plane.api.problems import Problem, problem_type
from control_plane.db import Database
from control_plane.models import Identity
from control_plane.schemas import ApprovalDecide, ApprovalPublic, ApprovalState

router = APIRouter(prefix="/approvals", tags=["approvals"])

KEEPALIVE_SECONDS = 15.0


async def _groups(session: SessionDep, identity: Identity) -> list[str]:
    assert identity.id is not None
    return (await crud.groups_of(session=session, identity_ids=[identity.id]))[identity.id]


@router.get("", response_model=list[ApprovalPublic])
async def list_approvals(
    session: SessionDep,
    settings: SettingsDep,
    caller: CurrentIdentity,
    state: Annotated[
        ApprovalState | None, Query(description="only approvals in this state")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[ApprovalPublic]:
    """Approvals the caller may see, newest first; overdue ones are expired as they are read."""
    await approvals.expire_overdue(session=session)
    groups = await _groups(session, caller)
    rows = await crud.list_approvals(session=session, state=state, limit=limit)
    return [
        approvals.public(a, settings.http_url) for a in rows if approvals.may_see(a, caller, groups)
    ]


async def _may_stream(session: SessionDep, caller: Identity, groups: Sequence[str]) -> bool:
    if caller.role in ("admin", "auditor"):
        return True
    named = {a for rule in await crud.list_approval_rules(session=session) for a in rule.approvers}
    named.update(approvals.FALLBACK_APPROVERS)
    return approvals.is_approver(sorted(named), caller.name, groups)


@router.get(
    "/stream",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}}, "description": "server-sent events"}},
)
async def stream_approvals(
    request: Request, session: SessionDep, settings: SettingsDep, caller: CurrentIdentity
) -> StreamingResponse:
    """Server-sent events: `event: approval` with the approval's JSON on every change."""
    groups = await _groups(session, caller)
    if not await _may_stream(session, caller, groups):
        raise Problem(
            403,
            "only admins, auditors and approvers may follow approvals",
            type=problem_type("forbidden"),
        )
    # The stream outlives this request's session; give its connection back now.
    await session.close()
    events = _events(get_db(request), request, caller, groups, settings.http_url)
    return StreamingResponse(
        events,
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


async def _events(
    db: Database, request: Request, caller: Identity, groups: list[str], base_url: str
) -> AsyncIterator[str]:
    sent: dict[str, int] = {}  # approval id -> version last sent (a change can arrive twice)
    with notify.hub.subscribe() as changes:
        # A comment first: once a client reads it, no later change can be missed.
        yield "retry: 2000\n: subscribed\n\n"
        while True:
            try:
                approval_id = await asyncio.wait_for(changes.get(), KEEPALIVE_SECONDS)
            except TimeoutError:
                if await request.is_disconnected():
                    return
                yield ": keepalive\n\n"
                continue
            async with db.session() as session:
                approval = await crud.get_approval(session=session, approval_id=approval_id)
            if approval is None or not approvals.may_see(approval, caller, groups):
                continue
            if sent.get(approval.id, -1) >= approval.version:
                continue
            sent[approval.id] = approval.version
            data = json.dumps(approvals.public(approval, base_url).model_dump(mode="json"))
            yield f"event: approval\nid: {approval.id}.{approval.version}\ndata: {data}\n\n"


@router.get("/{approval_id}", response_model=ApprovalPublic)
async def read_approval(
    session: SessionDep, settings: SettingsDep, caller: CurrentIdentity, approval_id: str
) -> ApprovalPublic:
    """One approval (expired first if its time is up)."""
    approval = await approvals.refresh(session=session, approval_id=approval_id)
    if approval is None or not approvals.may_see(approval, caller, await _groups(session, caller)):
        raise Problem(404, f"approval {approval_id!r} not found")
    return approvals.public(approval, settings.http_url)


async def _decide(
    session: SessionDep,
    settings: SettingsDep,
    caller: Identity,
    approval_id: str,
    verdict: str,
    decide_in: ApprovalDecide | None,
) -> ApprovalPublic:
    comment = decide_in.comment if decide_in else ""
    try:
        approval = await approvals.decide(
            session=session,
            approval_id=approval_id,
            identity=caller,
            verdict=verdict,
            comment=comment,
        )
    except LookupError:
        raise Problem(404, f"approval {approval_id!r} not found") from None
    return approvals.public(approval, settings.http_url)


@router.post("/{approval_id}/approve", response_model=ApprovalPublic)
async def approve(
    session: SessionDep,
    settings: SettingsDep,
    caller: CurrentIdentity,
    approval_id: str,
    decide_in: Annotated[ApprovalDecide | None, Body()] = None,
) -> ApprovalPublic:
    """Approve; the approval is granted once `required` distinct approvers have approved."""
    return await _decide(session, settings, caller, approval_id, "approve", decide_in)


@router.post("/{approval_id}/deny", response_model=ApprovalPublic)
async def deny(
    session: SessionDep,
    settings: SettingsDep,
    caller: CurrentIdentity,
    approval_id: str,
    decide_in: Annotated[ApprovalDecide | None, Body()] = None,
) -> ApprovalPublic:
    """Deny; one deny by an approver settles it, with the comment passed on to the requester."""
    return await _decide(session, settings, caller, approval_id, "deny", decide_in)
