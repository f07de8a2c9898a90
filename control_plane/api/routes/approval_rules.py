"""`/api/v1/approval-rules`: which statements nodes hold for approval, and who approves them.

A rule names connections (globs), statement classes (`write`, `ddl`, ...), optionally tables and
command globs, the approvers (`Identity::"x"`, `Group::"y"`), how many approvals are needed and
for how long the request waits. Rules travel in the bundle. Admins write; admins and auditors
read.
"""

from __future__ import annotations

from fastapi import APIRouter, status
from sqlmodel.ext.asyncio.session import AsyncSession

from control_plane import crud
from control_plane.api.deps import AdminIdentity, ReaderIdentity, SessionDep
from control_plane.api.logs import log_write
from control_plane.api.problems import Problem
from control_plane.models import ApprovalRule
from control_plane.schemas import ApprovalRuleCreate, ApprovalRulePublic, ApprovalRuleUpdate

router = APIRouter(prefix="/approval-rules", tags=["approval rules"])


def _public(rule: ApprovalRule) -> ApprovalRulePublic:
    return ApprovalRulePublic.model_validate(rule, from_attributes=True)


async def _load(session: AsyncSession, name: str) -> ApprovalRule:
    found = await crud.get_approval_rule(session=session, name=name)
    if found is None:
        raise Problem(404, f"approval rule {name!r} not found")
    return found


@router.get("", response_model=list[ApprovalRulePublic])
async def list_approval_rules(session: SessionDep, _: ReaderIdentity) -> list[ApprovalRulePublic]:
    """List approval rules."""
    return [_public(r) for r in await crud.list_approval_rules(session=session)]


@router.post("", response_model=ApprovalRulePublic, status_code=status.HTTP_201_CREATED)
async def create_approval_rule(
    session: SessionDep, actor: AdminIdentity, rule_in: ApprovalRuleCreate
) -> ApprovalRulePublic:
    """Create an approval rule."""
    rule = await crud.create_approval_rule(session=session, rule_in=rule_in)
    log_write(actor=actor, action="create", resource="approval-rule", name=rule.name)
    return _public(rule)


@router.get("/{name}", response_model=ApprovalRulePublic)
async def read_approval_rule(
    session: SessionDep, _: ReaderIdentity, name: str
) -> ApprovalRulePublic:
    """One approval rule."""
    return _public(await _load(session, name))


@router.patch("/{name}", response_model=ApprovalRulePublic)
async def update_approval_rule(
    session: SessionDep, actor: AdminIdentity, name: str, rule_in: ApprovalRuleUpdate
) -> ApprovalRulePublic:
    """Change the given fields of an approval rule."""
    rule = await crud.update_approval_rule(
        session=session, rule=await _load(session, name), rule_in=rule_in
    )
    log_write(actor=actor, action="update", resource="approval-rule", name=name)
    return _public(rule)


@router.delete("/{name}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_approval_rule(session: SessionDep, actor: AdminIdentity, name: str) -> None:
    """Delete an approval rule."""
    await crud.delete_approval_rule(session=session, rule=await _load(session, name))
    log_write(actor=actor, action="delete", resource="approval-rule", name=name)
