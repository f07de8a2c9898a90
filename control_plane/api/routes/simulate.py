"""`POST /api/v1/policy/simulate`: what a node would decide for a statement, without a target.

The control plane compiles the current bundle and runs the same enforcement code the nodes run
(`lockgate.enforcement`), so the answer is the node's answer: the decision, the rules that made
it, the statement's classification and the masking plan of its result.
"""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

from fastapi import APIRouter

from control_plane import compiler, crud
from control_plane.api.deps import ReaderIdentity, SessionDep
from control_plane.api.problems import Problem
from control_plane.schemas import SimulatePublic, SimulateRequest
from lockgate.bundle import BundleView
from lockgate.enforcement import Enforcer
from lockgate.masking.plan import StatementPlan

router = APIRouter(prefix="/policy", tags=["policy"])


def _plan(plan: StatementPlan) -> dict[str, Any]:
    lineage = plan.lineage
    if lineage is None:
        return {"columns": None, "complete": False, "detectors": sorted(plan.rules.detectors)}
    names = [c.name for c in lineage.columns]
    columns = []
    for column, action in zip(lineage.columns, plan.actions(names), strict=True):
        columns.append(
            {
                "name": column.name,
                "sources": sorted(column.sources),
                "star": sorted(column.star),
                "mask": action.how if action else None,
                "keys": sorted(action.keys) if action else [],
            }
        )
    return {
        "columns": columns,
        "complete": lineage.complete,
        "detectors": sorted(plan.rules.detectors),
    }


@router.post("/simulate", response_model=SimulatePublic)
async def simulate(
    session: SessionDep, _: ReaderIdentity, request: SimulateRequest
) -> SimulatePublic:
    """Decide a statement for an identity on a connection as a node would."""
    if await crud.get_identity(session=session, name=request.identity) is None:
        raise Problem(404, f"identity {request.identity!r} not found")
    if await crud.get_connection(session=session, name=request.connection) is None:
        raise Problem(404, f"connection {request.connection!r} not found")
    bundle = await compiler.compile_bundle(session)
    view = await asyncio.to_thread(BundleView, bundle)
    enforcer = Enforcer(view, request.identity, request.connection)
    decision = enforcer.decide(request.statement)
    classification = dataclasses.asdict(decision.classification)
    for key, value in classification.items():
        if isinstance(value, frozenset):
            classification[key] = sorted(value)
    return SimulatePublic(
        allowed=decision.allowed,
        action=decision.action,
        kind=decision.classification.kind,
        policies=list(decision.policies),
        reason=decision.reason,
        message=decision.client_message() if not decision.allowed else "",
        classification=classification,
        masking=[_plan(p) for p in decision.plans],
        masking_rules=list(enforcer.rules.names) if enforcer.rules else [],
    )
