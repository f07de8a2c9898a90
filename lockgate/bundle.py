"""The node's view of a compiled bundle: indexed lookups and the authorization engine.

A `BundleView` is built once per bundle revision and then only read, so sessions can hold on to
the view they started with while a newer one is swapped in.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from lockgate import tokens
from lockgate.policy import Decision, PolicyEngine, Principal, Resource, quote_name
from protos.lockgate.v1 import node_pb2 as pb


@dataclass(frozen=True)
class Authenticated:
    identity: pb.Identity
    token_id: str


class AuthError(Exception):
    """The caller could not be authenticated; the message is safe to show to the caller."""


def now_ms() -> int:
    return int(time.time() * 1000)


def grant_policy(grant: pb.Grant) -> tuple[str, str]:
    """A time-bound grant as a Cedar permit that stops matching at its expiry by itself, so a
    node enforces the expiry from the bundle it has, with or without its control plane."""
    actions = ", ".join(f'Action::"{a}"' for a in grant.actions if a.isidentifier())
    cedar = (
        f'permit(principal == Identity::"{quote_name(grant.identity)}", '
        f"action in [{actions}], "
        f'resource == Connection::"{quote_name(grant.connection)}") '
        f"when {{ context.now < {grant.expires_at_ms // 1000} }};"
    )
    return f"grant/{grant.id}", cedar


class BundleView:
    def __init__(self, bundle: pb.Bundle) -> None:
        self.bundle = bundle
        self.revision = bundle.revision
        self.node_labels = dict(bundle.node_labels)
        self.identities = {i.name: i for i in bundle.identities}
        self.tokens = {t.id: t for t in bundle.tokens}
        self.tokens_by_identity: dict[str, list[pb.Token]] = {}
        for t in bundle.tokens:
            self.tokens_by_identity.setdefault(t.identity, []).append(t)
        self.connections = {c.name: c for c in bundle.connections}
        self.approval_rules = list(bundle.approval_rules)
        self.engine = PolicyEngine(
            [*((p.name, p.cedar) for p in bundle.policies), *map(grant_policy, bundle.grants)],
            (Principal(i.name, i.kind, i.role, tuple(i.groups)) for i in bundle.identities),
            (
                Resource(c.name, c.type, c.database, dict(c.node_labels), tuple(c.guardrails))
                for c in bundle.connections
            ),
        )

    def token_active(self, token_id: str, at_ms: int | None = None) -> bool:
        token = self.tokens.get(token_id)
        if token is None:
            return False
        return token.expires_at_ms == 0 or token.expires_at_ms > (at_ms or now_ms())

    def check_password(self, user: str, password: str) -> Authenticated:
        """Authenticate a token sent as a password by the client named `user`."""
        tid = tokens.token_id(password)
        token = self.tokens.get(tid) if tid else None
        if token is None or not tokens.matches(password, token.secret_sha256):
            raise AuthError(f'token authentication failed for user "{user}"')
        if token.identity != user:
            raise AuthError(f'token authentication failed for user "{user}"')
        if not self.token_active(token.id):
            raise AuthError(f'token for user "{user}" has expired')
        return Authenticated(self.identities[user], token.id)

    def scram_salt(self, user: str) -> tuple[bytes, int]:
        """The salt and iteration count to offer `user`; a stable decoy for unknown users."""
        identity = self.identities.get(user)
        if identity is not None and identity.scram_salt:
            return identity.scram_salt, tokens.SCRAM_ITERATIONS
        # Unknown users get a salt derived from the name, so probing cannot tell them apart.
        return tokens.hash_token(f"decoy:{user}:{self.revision}")[:16], tokens.SCRAM_ITERATIONS

    def scram_tokens(self, user: str) -> list[pb.Token]:
        return self.tokens_by_identity.get(user, [])

    def principal(self, name: str) -> Principal:
        identity = self.identities.get(name)
        if identity is None:
            return Principal(name)
        return Principal(identity.name, identity.kind, identity.role, tuple(identity.groups))

    def can_serve(self, connection: pb.Connection) -> bool:
        """Whether this node's labels include every label the connection asks for."""
        return all(self.node_labels.get(k) == v for k, v in connection.node_labels.items())

    def authorize(
        self, identity: str, action: str, connection: str, context: dict[str, object] | None = None
    ) -> Decision:
        ctx = {"node_labels": self.node_labels, **(context or {})}
        return self.engine.authorize(identity, action, connection, ctx)
