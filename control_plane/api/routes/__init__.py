"""The REST API's routers, one per resource, all mounted under `/api/v1`."""

from __future__ import annotations

from fastapi import APIRouter

from control_plane.api.routes import (
    access_requests,
    approval_rules,
    approvals,
    connections,
    grants,
    groups,
    identities,
    masking_rules,
    nodes,
    policies,
    sessions,
    simulate,
    tokens,
    webhooks,
)

api_router = APIRouter()
for _module in (
    identities,
    groups,
    tokens,
    connections,
    policies,
    masking_rules,
    simulate,
    nodes,
    sessions,
    approval_rules,
    approvals,
    access_requests,
    grants,
    webhooks,
):
    api_router.include_router(_module.router)
