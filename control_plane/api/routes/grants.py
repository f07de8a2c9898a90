"""`/api/v1/grants`: the live time-bound grants of approved access requests.

Admins and auditors see every grant; anyone else its own. Expired grants are not listed (nor
shipped in bundles); nodes also enforce each grant's expiry themselves.
"""

from __future__ import annotations

from fastapi import APIRouter

from control_plane import crud
from control_plane.api.deps import CurrentIdentity, SessionDep
from control_plane.models import utcnow
from control_plane.schemas import GrantPublic

router = APIRouter(prefix="/grants", tags=["grants"])


@router.get("", response_model=list[GrantPublic])
async def list_grants(session: SessionDep, caller: CurrentIdentity) -> list[GrantPublic]:
    """Live grants, soonest to expire first."""
    mine_only = caller.role not in ("admin", "auditor")
    grants = await crud.list_grants(
        session=session, identity=caller.name if mine_only else None, live_at=utcnow()
    )
    return [GrantPublic.model_validate(g, from_attributes=True) for g in grants]
