"""`/api/v1/access-requests`: just-in-time access, asked for by the caller, decided by people.

A request becomes an approval of kind `access`; its approvers come from the first approval rule
(by name) covering the connection and one of the actions, or are the admins when none does.
Once approved, a grant lasting `duration_seconds` is created and shipped in the next bundle.
Anyone may ask; each identity lists its own requests, admins list everyone's.
"""

from __future__ import annotations

from fastapi import APIRouter, status

from control_plane import approvals, crud
from control_plane.api.deps import CurrentIdentity, SessionDep, SettingsDep
from control_plane.models import Approval
from control_plane.schemas import AccessRequestCreate, AccessRequestPublic

router = APIRouter(prefix="/access-requests", tags=["access requests"])


def _public(approval: Approval, base_url: str) -> AccessRequestPublic:
    shown = approvals.public(approval, base_url)
    return AccessRequestPublic(**shown.model_dump(), approval_id=approval.id)


@router.post("", response_model=AccessRequestPublic, status_code=status.HTTP_201_CREATED)
async def request_access(
    session: SessionDep,
    settings: SettingsDep,
    caller: CurrentIdentity,
    access_in: AccessRequestCreate,
) -> AccessRequestPublic:
    """Ask for time-bound access to a connection; answers with the pending approval."""
    approval = await approvals.request_access(session=session, identity=caller, access_in=access_in)
    return _public(approval, settings.http_url)


@router.get("", response_model=list[AccessRequestPublic])
async def list_access_requests(
    session: SessionDep, settings: SettingsDep, caller: CurrentIdentity
) -> list[AccessRequestPublic]:
    """The caller's access requests, newest first (admins: everyone's)."""
    await approvals.expire_overdue(session=session)
    rows = await crud.list_approvals(
        session=session,
        kind="access",
        identity=None if caller.role == "admin" else caller.name,
        limit=1000,
    )
    return [_public(a, settings.http_url) for a in rows]
