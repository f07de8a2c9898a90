"""`/api/v1/masking-rules`: which result values nodes mask, on which connections, for whom.

A rule names columns by pattern (`*.email`, `users.ssn`, `public.users.*`) and content
detectors (`email`, `credit_card`, ...); identities and groups in `exempt` see clear values.
Admins write; admins and auditors read.
"""

from __future__ import annotations

from fastapi import APIRouter, status
from sqlmodel.ext.asyncio.session import AsyncSession

from control_plane import crud
from control_plane.api.deps import AdminIdentity, ReaderIdentity, SessionDep
from control_plane.api.logs import log_write
from control_plane.api.problems import Problem
from control_plane.models import MaskingRule
from control_plane.schemas import MaskingRuleCreate, MaskingRulePublic, MaskingRuleUpdate

router = APIRouter(prefix="/masking-rules", tags=["masking rules"])


def _public(rule: MaskingRule) -> MaskingRulePublic:
    return MaskingRulePublic.model_validate(rule, from_attributes=True)


async def _load(session: AsyncSession, name: str) -> MaskingRule:
    found = await crud.get_masking_rule(session=session, name=name)
    if found is None:
        raise Problem(404, f"masking rule {name!r} not found")
    return found


@router.get("", response_model=list[MaskingRulePublic])
async def list_masking_rules(session: SessionDep, _: ReaderIdentity) -> list[MaskingRulePublic]:
    """List masking rules."""
    return [_public(r) for r in await crud.list_masking_rules(session=session)]


@router.post("", response_model=MaskingRulePublic, status_code=status.HTTP_201_CREATED)
async def create_masking_rule(
    session: SessionDep, actor: AdminIdentity, rule_in: MaskingRuleCreate
) -> MaskingRulePublic:
    """Create a masking rule."""
    rule = await crud.create_masking_rule(session=session, rule_in=rule_in)
    log_write(actor=actor, action="create", resource="masking-rule", name=rule.name)
    return _public(rule)


@router.get("/{name}", response_model=MaskingRulePublic)
async def read_masking_rule(session: SessionDep, _: ReaderIdentity, name: str) -> MaskingRulePublic:
    """One masking rule."""
    return _public(await _load(session, name))


@router.patch("/{name}", response_model=MaskingRulePublic)
async def update_masking_rule(
    session: SessionDep, actor: AdminIdentity, name: str, rule_in: MaskingRuleUpdate
) -> MaskingRulePublic:
    """Change the given fields of a masking rule."""
    rule = await crud.update_masking_rule(
        session=session, rule=await _load(session, name), rule_in=rule_in
    )
    log_write(actor=actor, action="update", resource="masking-rule", name=name)
    return _public(rule)


@router.delete("/{name}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_masking_rule(session: SessionDep, actor: AdminIdentity, name: str) -> None:
    """Delete a masking rule."""
    await crud.delete_masking_rule(session=session, rule=await _load(session, name))
    log_write(actor=actor, action="delete", resource="masking-rule", name=name)
