"""Access tokens: `lg_<id>_<secret>`, stored only as hashes.

Two hashes are kept per token: SHA-256 of the whole token (checked when a client sends the token
as a password over TLS, a single hash) and a SCRAM-SHA-256 verifier computed with a salt shared by
all tokens of one identity, so a node can run the SCRAM exchange before it knows which token the
client holds (RFC 7677; the verifier layout is PostgreSQL's).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass

from scramp import ScramMechanism

SCRAM_ITERATIONS = 4096
_TOKEN = re.compile(r"^(lgn?)_([0-9a-f]{16})_([A-Za-z0-9_-]{20,})$")
_SCRAM = ScramMechanism("SCRAM-SHA-256")


@dataclass(frozen=True)
class IssuedToken:
    id: str
    token: str
    secret_sha256: bytes
    scram_stored_key: bytes
    scram_server_key: bytes
    scram_iterations: int


def new_scram_salt() -> bytes:
    return secrets.token_bytes(16)


def issue(scram_salt: bytes, prefix: str = "lg") -> IssuedToken:
    """Mint a token; the caller shows `token` once and stores only the hashes."""
    token_id = secrets.token_hex(8)
    token = f"{prefix}_{token_id}_{secrets.token_urlsafe(32)}"
    _, stored_key, server_key, iterations = _SCRAM.make_auth_info(
        token, iteration_count=SCRAM_ITERATIONS, salt=scram_salt
    )
    return IssuedToken(
        id=token_id,
        token=token,
        secret_sha256=hash_token(token),
        scram_stored_key=stored_key,
        scram_server_key=server_key,
        scram_iterations=iterations,
    )


def hash_token(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def token_id(token: str, prefix: str = "lg") -> str | None:
    """The id part of a well-formed token with this prefix (`lg` access, `lgn` node), or None."""
    match = _TOKEN.match(token)
    return match.group(2) if match and match.group(1) == prefix else None


def matches(token: str, secret_sha256: bytes) -> bool:
    return hmac.compare_digest(hash_token(token), secret_sha256)
