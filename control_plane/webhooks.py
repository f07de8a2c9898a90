"""Approval events to HTTP endpoints: signed JSON, or Slack incoming-webhook messages, retried.

Each delivery is a POST with `X-Lockgate-Event`, `X-Lockgate-Delivery` (one id per event and
webhook, the same on every retry), `X-Lockgate-Timestamp` (Unix seconds) and
`X-Lockgate-Signature: sha256=<hex HMAC-SHA256(secret, timestamp + "." + body)>` when the
webhook has a secret. Non-2xx answers and connection errors are retried after 0.5, 1, 2, 4 and
8 seconds (six attempts), in background tasks. The dispatcher is a sink of the replica's
`ApprovalHub`, which only hands it changes this replica committed: no event goes out twice.
Neither secrets nor URLs (a Slack URL is a credential) are logged; webhooks go by name.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import time
import uuid
from collections.abc import Callable, Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

import httpx

from control_plane import approvals, crud, notify
from control_plane.crypto import DecryptionError, SecretBox
from control_plane.db import Database
from control_plane.models import Approval
from control_plane.schemas import ApprovalPublic

BACKOFF: tuple[float, ...] = (0.5, 1.0, 2.0, 4.0, 8.0)
TIMEOUT_SECONDS = 10.0
SHUTDOWN_GRACE_SECONDS = 2.0
STATEMENT_LIMIT = 2800  # Slack refuses section texts over 3000 characters

TITLES = {
    "approval.requested": "Approval requested",
    "approval.approved": "Approved",
    "approval.denied": "Denied",
    "approval.expired": "Expired",
}

log = logging.getLogger("lockgate.webhooks")

_delivering: ContextVar[bool] = ContextVar("lockgate_webhook_delivery", default=False)


class _HideDeliveryUrls(logging.Filter):
    """httpx logs each request's URL at INFO; a webhook URL may be a credential (Slack's is)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not _delivering.get()


logging.getLogger("httpx").addFilter(_HideDeliveryUrls())


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """The `X-Lockgate-Signature` value for `body` sent at `timestamp`."""
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def encode(message: dict[str, Any]) -> bytes:
    """Compact UTF-8 JSON: the exact bytes that are signed and sent."""
    return json.dumps(message, separators=(",", ":"), ensure_ascii=False).encode()


def json_message(event: str, delivery_id: str, approval: ApprovalPublic) -> dict[str, Any]:
    """The body of a `json` webhook."""
    return {"event": event, "delivery": delivery_id, "approval": approval.model_dump(mode="json")}


def _slack_escape(value: str) -> str:
    # Slack mrkdwn: only these three are control characters.
    return value.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def slack_message(event: str, approval: ApprovalPublic) -> dict[str, Any]:
    """An incoming-webhook message: summary text plus blocks with the statement, the people
    involved, and approve/deny links to the console."""
    title = TITLES.get(event, event)
    what = approval.action if approval.kind == "statement" else f"access ({approval.action})"
    rule = approval.rule or "admins (no rule)"
    text = (
        f"{title}: {what} on {approval.connection} by {approval.identity} "
        f"(rule {rule}): {approval.url}"
    )
    statement = approval.statement
    if len(statement) > STATEMENT_LIMIT:
        statement = statement[:STATEMENT_LIMIT] + " …"
    statement = _slack_escape(statement).replace("```", "`\u200b``")

    def fact(label: str, value: str) -> dict[str, str]:
        return {"type": "mrkdwn", "text": f"*{label}*\n{_slack_escape(value)}"}

    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": f"Lockgate: {title}"}},
        {
            "type": "section",
            "fields": [
                fact("Requester", approval.identity),
                fact("Connection", approval.connection),
                fact("Rule", rule),
                fact("Action", what),
            ],
        },
        {"type": "section", "text": {"type": "mrkdwn", "text": f"```{statement}```"}},
    ]
    if approval.reason:
        blocks.append(
            {
                "type": "context",
                "elements": [
                    {"type": "mrkdwn", "text": f"Reason: {_slack_escape(approval.reason)}"}
                ],
            }
        )
    if event == "approval.requested":
        blocks.append(
            {
                "type": "actions",
                "elements": [
                    {
                        "type": "button",
                        "text": {"type": "plain_text", "text": "Approve"},
                        "style": "primary",
                        "url": f"{approval.url}?decision=approve",
                        "action_id": "approve",
                    },
                    {
                        "type": "button",
                        "text": {"type": "plain_text", "text": "Deny"},
                        "style": "danger",
                        "url": f"{approval.url}?decision=deny",
                        "action_id": "deny",
                    },
                ],
            }
        )
        blocks.append(
            {
                "type": "context",
                "elements": [
                    {
                        "type": "mrkdwn",
                        "text": (
                            f"Needs {approval.required} of {', '.join(approval.approvers)}; "
                            f"expires {approval.expires_at.isoformat(timespec='seconds')}"
                        ),
                    }
                ],
            }
        )
    else:
        decided = [d for d in approval.decisions if d.verdict in ("approve", "deny", "reuse")]
        lines = [
            f"{d.verdict} by {_slack_escape(d.identity)}"
            + (f": {_slack_escape(d.comment)}" if d.comment else "")
            for d in decided
        ] or ["no decision in time"]
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": "\n".join(lines)}})
        blocks.append(
            {
                "type": "context",
                "elements": [{"type": "mrkdwn", "text": f"<{approval.url}|Open in Lockgate>"}],
            }
        )
    return {"text": text, "blocks": blocks}


@dataclass(frozen=True)
class Delivery:
    """One event for one webhook, as sent on every attempt (only the timestamp changes)."""

    webhook: str
    url: str
    event: str
    delivery_id: str
    body: bytes
    secret: str = field(repr=False)


class Dispatcher:
    """Sends this replica's approval events to the webhooks subscribed to them."""

    def __init__(
        self,
        db: Database,
        box: SecretBox,
        base_url: str,
        *,
        backoff: Sequence[float] = BACKOFF,
        timeout: float = TIMEOUT_SECONDS,
    ) -> None:
        self.db = db
        self.box = box
        self.base_url = base_url
        self.backoff = tuple(backoff)
        self.timeout = timeout
        self._client: httpx.AsyncClient | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._detach: Callable[[], None] | None = None

    def attach(self, hub: notify.ApprovalHub) -> None:
        """Receive the changes `hub` announces (this replica's own)."""
        self._detach = hub.attach(self.dispatch)

    def dispatch(self, approval: Approval, event: str) -> None:
        """Queue `event` about `approval` for every webhook subscribed to it."""
        snapshot = approvals.public(approval, self.base_url)  # as of now, not as of sending
        self._spawn(self._fan_out(event, snapshot))

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _fan_out(self, event: str, approval: ApprovalPublic) -> None:
        async with self.db.session() as session:
            hooks = await crud.list_webhooks(session=session, event=event)
        for hook in hooks:
            try:
                secret = self.box.decrypt(hook.secret_encrypted, aad=hook.name.encode())
            except DecryptionError:
                log.error("webhook %s: its secret does not open; not sending %s", hook.name, event)
                continue
            delivery_id = uuid.uuid4().hex
            message = (
                slack_message(event, approval)
                if hook.format == "slack"
                else json_message(event, delivery_id, approval)
            )
            body = encode(message)
            self._spawn(
                self.deliver(Delivery(hook.name, hook.url, event, delivery_id, body, secret))
            )

    async def deliver(self, delivery: Delivery) -> bool:
        """POST `delivery` until a 2xx answer or the attempts run out; whether it arrived."""
        hiding = _delivering.set(True)
        try:
            return await self._deliver(delivery)
        finally:
            _delivering.reset(hiding)

    async def _deliver(self, delivery: Delivery) -> bool:
        client = self._http()
        attempts = len(self.backoff) + 1
        for attempt in range(1, attempts + 1):
            timestamp = str(int(time.time()))
            headers = {
                "Content-Type": "application/json",
                "User-Agent": "Lockgate-Webhooks",
                "X-Lockgate-Event": delivery.event,
                "X-Lockgate-Delivery": delivery.delivery_id,
                "X-Lockgate-Timestamp": timestamp,
            }
            if delivery.secret:
                headers["X-Lockgate-Signature"] = sign(delivery.secret, timestamp, delivery.body)
            try:
                response = await client.post(delivery.url, content=delivery.body, headers=headers)
                if 200 <= response.status_code < 300:
                    log.info(
                        "webhook %s: %s delivered (%s, attempt %d)",
                        delivery.webhook,
                        delivery.event,
                        delivery.delivery_id,
                        attempt,
                    )
                    return True
                problem = f"HTTP {response.status_code}"
            except httpx.HTTPError as exc:
                problem = type(exc).__name__
            if attempt == attempts:
                break
            delay = self.backoff[attempt - 1]
            log.info(
                "webhook %s: %s attempt %d failed (%s); retrying in %.1f s",
                delivery.webhook,
                delivery.event,
                attempt,
                problem,
                delay,
            )
            await asyncio.sleep(delay)
        log.warning(
            "webhook %s: giving up on %s (%s) after %d attempts (%s)",
            delivery.webhook,
            delivery.event,
            delivery.delivery_id,
            attempts,
            problem,
        )
        return False

    def _http(self) -> httpx.AsyncClient:
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=self.timeout, follow_redirects=False)
        return self._client

    async def drain(self) -> None:
        """Wait until every queued delivery has arrived or given up."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def close(self, grace: float = SHUTDOWN_GRACE_SECONDS) -> None:
        """Stop taking events, give deliveries in flight `grace` seconds, then cancel them."""
        if self._detach is not None:
            self._detach()
            self._detach = None
        if self._tasks:
            _done, pending = await asyncio.wait(list(self._tasks), timeout=grace)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        if self._client is not None:
            await self._client.aclose()
            self._client = None
