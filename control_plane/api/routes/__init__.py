"""The REST API's routers, one per resource, all mounted under `/api/v1`."""

from __future__ import annotations

from fastapi import APIRouter

from control_plane.api.routes import (
    connections,
    groups,
    identities,
    masking_rules,
    nodes,
    policies,
    sessions,
    simulate,
    tokens,
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
):
    api_router.include_router(_module.router)
