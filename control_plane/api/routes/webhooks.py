"""`/api/v1/webhooks`: where approval events are POSTed (signed JSON, or Slack messages).

The signing secret is write-only: sealed with the master key (bound to the webhook's name) and
never returned; responses only say whether one is set. Admins write; admins and auditors read.
"""

from __future__ import annotations

from fastapi import APIRouter, status
from sqlmodel.ext.asyncio.session import AsyncSession

from control_plane import crud
from control_plane.api.deps import AdminIdentity, ReaderIdentity, SecretBoxDep, SessionDep
from control_plane.api.logs import log_write
from control_plane.api.problems import Problem
from control_plane.crypto import sealed_is_empty
from control_plane.models import Webhook
from control_plane.schemas import WebhookCreate, WebhookPublic, WebhookUpdate

router = APIRouter(prefix="/webhooks", tags=["webhooks"])


def _public(w: Webhook) -> WebhookPublic:
    return WebhookPublic(
        name=w.name,
        url=w.url,
        format=w.format,  # type: ignore[arg-type]
        events=w.events,  # type: ignore[arg-type]
        has_secret=not sealed_is_empty(w.secret_encrypted),
        created_at=w.created_at,
        updated_at=w.updated_at,
    )


async def _load(session: AsyncSession, name: str) -> Webhook:
    found = await crud.get_webhook(session=session, name=name)
    if found is None:
        raise Problem(404, f"webhook {name!r} not found")
    return found


@router.get("", response_model=list[WebhookPublic])
async def list_webhooks(session: SessionDep, _: ReaderIdentity) -> list[WebhookPublic]:
    """List webhooks, without their secrets."""
    return [_public(w) for w in await crud.list_webhooks(session=session)]


@router.post("", response_model=WebhookPublic, status_code=status.HTTP_201_CREATED)
async def create_webhook(
    session: SessionDep, box: SecretBoxDep, actor: AdminIdentity, webhook_in: WebhookCreate
) -> WebhookPublic:
    """Create a webhook; the secret is sealed and never shown again."""
    webhook = await crud.create_webhook(session=session, box=box, webhook_in=webhook_in)
    log_write(actor=actor, action="create", resource="webhook", name=webhook.name)
    return _public(webhook)


@router.get("/{name}", response_model=WebhookPublic)
async def read_webhook(session: SessionDep, _: ReaderIdentity, name: str) -> WebhookPublic:
    """One webhook, without its secret."""
    return _public(await _load(session, name))


@router.patch("/{name}", response_model=WebhookPublic)
async def update_webhook(
    session: SessionDep,
    box: SecretBoxDep,
    actor: AdminIdentity,
    name: str,
    webhook_in: WebhookUpdate,
) -> WebhookPublic:
    """Change some fields; a given `secret` replaces the sealed one."""
    webhook = await crud.update_webhook(
        session=session, box=box, webhook=await _load(session, name), webhook_in=webhook_in
    )
    log_write(actor=actor, action="update", resource="webhook", name=name)
    return _public(webhook)


@router.delete("/{name}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_webhook(session: SessionDep, actor: AdminIdentity, name: str) -> None:
    """Delete a webhook."""
    await crud.delete_webhook(session=session, webhook=await _load(session, name))
    log_write(actor=actor, action="delete", resource="webhook", name=name)
