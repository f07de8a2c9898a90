"""One structured log line per API write: who did what to which resource.

Fields go both into the message (for plain log formats) and into `extra` (for JSON formatters).
Callers pass names only, never a body: bodies may hold passwords and tokens.
"""

from __future__ import annotations

import logging

from control_plane.models import Identity

log = logging.getLogger("lockgate.api")


def log_write(*, actor: Identity, action: str, resource: str, name: str) -> None:
    """Log that `actor` did `action` (create, update, delete, revoke) on `resource` `name`."""
    log.info(
        "%s %s %s by %s",
        action,
        resource,
        name,
        actor.name,
        # `name` is taken by LogRecord itself, hence `resource_name`.
        extra={
            "action": action,
            "resource": resource,
            "resource_name": name,
            "actor": actor.name,
        },
    )
