"""SecretBox: sealed credentials open only with the same key and the same associated data."""

from __future__ import annotations

import os

import pytest

from control_plane.crypto import OVERHEAD, DecryptionError, SecretBox, sealed_is_empty
from lockgate.settings import Settings


def test_round_trip_returns_the_plaintext() -> None:
    box = SecretBox(os.urandom(32))
    blob = box.encrypt("s3cret-pässword", aad=b"orders-db")
    assert box.decrypt(blob, aad=b"orders-db") == "s3cret-pässword"


def test_blob_does_not_contain_the_plaintext_and_differs_each_time() -> None:
    box = SecretBox(os.urandom(32))
    first = box.encrypt("hunter2hunter2", aad=b"a")
    second = box.encrypt("hunter2hunter2", aad=b"a")
    assert b"hunter2" not in first
    assert first != second  # fresh nonce per seal
    assert first[0] == 1 and len(first) == OVERHEAD + len("hunter2hunter2")


def test_blob_moved_to_another_connection_does_not_open() -> None:
    box = SecretBox(os.urandom(32))
    blob = box.encrypt("pw", aad=b"orders-db")
    with pytest.raises(DecryptionError):
        box.decrypt(blob, aad=b"billing-db")


def test_tampered_blob_does_not_open() -> None:
    box = SecretBox(os.urandom(32))
    blob = bytearray(box.encrypt("pw", aad=b"x"))
    blob[-1] ^= 1
    with pytest.raises(DecryptionError):
        box.decrypt(bytes(blob), aad=b"x")


def test_other_key_does_not_open() -> None:
    blob = SecretBox(os.urandom(32)).encrypt("pw", aad=b"x")
    with pytest.raises(DecryptionError):
        SecretBox(os.urandom(32)).decrypt(blob, aad=b"x")


def test_truncated_and_unknown_key_id_blobs_are_refused() -> None:
    box = SecretBox(os.urandom(32))
    with pytest.raises(DecryptionError):
        box.decrypt(b"\x01short", aad=b"x")
    blob = box.encrypt("pw", aad=b"x")
    with pytest.raises(DecryptionError, match="unknown key id 9"):
        box.decrypt(b"\x09" + blob[1:], aad=b"x")


def test_rotated_key_still_opens_blobs_sealed_with_the_retired_one() -> None:
    old_key, new_key = os.urandom(32), os.urandom(32)
    old_blob = SecretBox(old_key, key_id=1).encrypt("pw", aad=b"x")
    rotated = SecretBox(new_key, key_id=2, retired={1: old_key})
    assert rotated.decrypt(old_blob, aad=b"x") == "pw"
    assert rotated.encrypt("pw", aad=b"x")[0] == 2


def test_key_must_be_32_bytes() -> None:
    with pytest.raises(ValueError):
        SecretBox(b"short")


def test_empty_password_is_recognisable_without_decrypting() -> None:
    box = SecretBox(os.urandom(32))
    assert sealed_is_empty(box.encrypt("", aad=b"x"))
    assert not sealed_is_empty(box.encrypt("p", aad=b"x"))


def test_box_from_settings_uses_the_master_key(tmp_path) -> None:
    settings = Settings(home=tmp_path, master_key="")
    box = SecretBox.from_settings(settings)
    # Development mode generates a key file once; a second box reads the same key.
    blob = box.encrypt("pw", aad=b"x")
    assert SecretBox.from_settings(settings).decrypt(blob, aad=b"x") == "pw"
