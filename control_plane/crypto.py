"""Target credentials at rest: AES-256-GCM with the master key, bound to the row they belong to.

A sealed blob is `key id (1 byte) || nonce (12 bytes) || ciphertext || tag (16 bytes)`. The key id
and the caller's associated data (the connection's name) are authenticated, so a blob copied to
another row, or presented under another key id, fails to open instead of decrypting.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from lockgate.settings import Settings

NONCE_BYTES = 12
TAG_BYTES = 16
OVERHEAD = 1 + NONCE_BYTES + TAG_BYTES


class DecryptionError(ValueError):
    """A blob could not be opened: wrong key, wrong associated data, or tampered bytes."""


class SecretBox:
    """Seals short secrets with the current key; opens blobs sealed by it or by retired keys."""

    def __init__(
        self, key: bytes, *, key_id: int = 1, retired: Mapping[int, bytes] | None = None
    ) -> None:
        if not 0 <= key_id <= 255:
            raise ValueError("key_id must fit in one byte")
        keys = {**(retired or {}), key_id: key}
        for kid, material in keys.items():
            if len(material) != 32:
                raise ValueError(f"key {kid} must be 32 bytes for AES-256-GCM")
        self.key_id = key_id
        self._ciphers = {kid: AESGCM(material) for kid, material in keys.items()}

    @classmethod
    def from_settings(cls, settings: Settings) -> SecretBox:
        """The box keyed by LOCKGATE_MASTER_KEY (or the development key file)."""
        return cls(settings.master_key_bytes())

    def encrypt(self, plaintext: str, *, aad: bytes) -> bytes:
        """Seal `plaintext` under the current key, bound to `aad`."""
        header = bytes([self.key_id])
        nonce = os.urandom(NONCE_BYTES)
        sealed = self._ciphers[self.key_id].encrypt(nonce, plaintext.encode(), header + aad)
        return header + nonce + sealed

    def decrypt(self, blob: bytes, *, aad: bytes) -> str:
        """Open a blob sealed by `encrypt` with the same `aad`; raise DecryptionError otherwise."""
        if len(blob) < OVERHEAD:
            raise DecryptionError("sealed secret is truncated")
        cipher = self._ciphers.get(blob[0])
        if cipher is None:
            raise DecryptionError(f"sealed with unknown key id {blob[0]}")
        nonce = blob[1 : 1 + NONCE_BYTES]
        try:
            plaintext = cipher.decrypt(nonce, blob[1 + NONCE_BYTES :], blob[:1] + aad)
        except InvalidTag:
            raise DecryptionError("sealed secret does not authenticate") from None
        return plaintext.decode()


def sealed_is_empty(blob: bytes) -> bool:
    """Whether a sealed blob holds the empty string (its length gives that away, by design)."""
    return len(blob) <= OVERHEAD
