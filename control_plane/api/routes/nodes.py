"""`/api/v1/nodes`: data-plane nodes registered with the control plane.

Registering a node mints its token (`lgn_<id>_<secret>`, shown once; only a hash is kept, and the
node's id is the token's id). Nodes report their version, listeners and bundle revision over gRPC;
a node seen within the last 30 seconds is online.
"""

from __future__ import annotations

from fastapi import APIRouter, status
from sqlmodel.ext.asyncio.session import AsyncSession

from control_plane import crud
from control_plane.api.deps import AdminIdentity, ReaderIdentity, SessionDep
from control_plane.api.logs import log_write
from control_plane.api.problems import Problem
from control_plane.models import Node, utcnow
from control_plane.schemas import NodeCreate, NodeCreated, NodePublic

router = APIRouter(prefix="/nodes", tags=["nodes"])


def _public(n: Node) -> NodePublic:
    return NodePublic(
        id=n.id,
        name=n.name,
        labels=n.labels,
        last_seen_at=n.last_seen_at,
        bundle_revision=n.bundle_revision,
        version=n.version,
        listeners=n.listeners,
        online=crud.node_online(n, now=utcnow()),
    )


async def _load(session: AsyncSession, name: str) -> Node:
    node = await crud.get_node(session=session, name=name)
    if node is None:
        raise Problem(404, f"node {name!r} not found")
    return node


@router.get("", response_model=list[NodePublic])
async def list_nodes(session: SessionDep, _: ReaderIdentity) -> list[NodePublic]:
    """List nodes with their last report."""
    return [_public(n) for n in await crud.list_nodes(session=session)]


@router.post("", response_model=NodeCreated, status_code=status.HTTP_201_CREATED)
async def create_node(
    session: SessionDep, actor: AdminIdentity, node_in: NodeCreate
) -> NodeCreated:
    """Register a node; its token is in this response only."""
    node, token = await crud.create_node(session=session, node_in=node_in)
    log_write(actor=actor, action="create", resource="node", name=node.name)
    return NodeCreated(id=node.id, name=node.name, token=token, labels=node.labels)


@router.get("/{name}", response_model=NodePublic)
async def read_node(session: SessionDep, _: ReaderIdentity, name: str) -> NodePublic:
    """One node with its last report."""
    return _public(await _load(session, name))


@router.delete("/{name}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_node(session: SessionDep, actor: AdminIdentity, name: str) -> None:
    """Forget a node; its token stops working."""
    await crud.delete_node(session=session, node=await _load(session, name))
    log_write(actor=actor, action="delete", resource="node", name=name)
