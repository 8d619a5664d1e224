"""Envelope encryption: round trips, tamper detection, context binding and rotation."""

from __future__ import annotations

import os
import uuid

import pytest

from omnify.core.crypto import (
    BLOB_VERSION,
    DecryptionError,
    EncryptedBlob,
    MalformedBlobError,
    UnknownMasterKeyError,
    UnsupportedBlobVersionError,
    build_aad,
    decrypt,
    decrypt_str,
    encrypt,
    encrypt_str,
    mask,
    needs_rewrap,
    rewrap,
)
from omnify.core.secrets import KeyRing

SECRET = "EAABsbCS1iHgBAExampleLongLivedAccessToken9xQ"


def ring(*ids: str) -> KeyRing:
    return KeyRing(active_key_id=ids[0], keys={i: os.urandom(32) for i in ids})


def context(**over: object) -> bytes:
    base: dict[str, object] = {"org_id": uuid.UUID(int=1), "client_id": uuid.UUID(int=2), "platform": "meta_ads"}
    base.update(over)
    return build_aad(**base)  # type: ignore[arg-type]


def test_round_trip_bytes_and_json() -> None:
    keys = ring("k1")
    blob = encrypt_str(SECRET, keys, context())
    assert blob.version == BLOB_VERSION and blob.master_key_id == "k1"
    assert decrypt_str(EncryptedBlob.from_bytes(blob.to_bytes()), keys, context()) == SECRET
    assert decrypt_str(EncryptedBlob.from_json(blob.to_json()), keys, context()) == SECRET


def test_plaintext_never_appears_in_serialised_forms_or_repr() -> None:
    keys = ring("k1")
    blob = encrypt_str(SECRET, keys, context())
    for form in (blob.to_bytes(), blob.to_json().encode(), repr(blob).encode()):
        assert SECRET.encode() not in form
        assert SECRET[:12].encode() not in form
    assert keys.active_key not in blob.to_bytes()
    assert repr(keys) == "KeyRing(active_key_id='k1')"


def test_each_encryption_uses_fresh_data_key_and_nonce() -> None:
    keys = ring("k1")
    a, b = encrypt(b"same", keys, context()), encrypt(b"same", keys, context())
    assert a.wrapped_key != b.wrapped_key and a.nonce != b.nonce and a.ciphertext != b.ciphertext


def test_flipping_any_byte_of_the_serialised_blob_is_refused() -> None:
    keys = ring("k1", "k0")  # "k0" is one bit away from "k1": relabelling must still fail
    aad = context()
    raw = encrypt(b"token-value", keys, aad).to_bytes()
    for i in range(len(raw)):
        tampered = bytearray(raw)
        tampered[i] ^= 0x01
        with pytest.raises(DecryptionError):
            decrypt(EncryptedBlob.from_bytes(bytes(tampered)), keys, aad)


@pytest.mark.parametrize("part", ["wrapped_key", "nonce", "ciphertext"])
def test_flipping_each_field_is_refused(part: str) -> None:
    keys = ring("k1")
    blob = encrypt(b"token-value", keys, context())
    doc = blob.to_dict()
    field = bytearray(getattr(blob, part))
    field[len(field) // 2] ^= 0x80
    tampered = EncryptedBlob(**{**{f: getattr(blob, f) for f in blob.__slots__}, part: bytes(field)})
    with pytest.raises(DecryptionError) as err:
        decrypt(tampered, keys, context())
    assert "token" not in str(err.value)
    assert doc["kid"] == "k1"


def test_relabelled_master_key_id_is_refused() -> None:
    keys = ring("k1", "k2")
    blob = encrypt(b"x", keys, context())
    moved = EncryptedBlob(blob.version, "k2", blob.wrapped_key, blob.nonce, blob.ciphertext)
    with pytest.raises(DecryptionError):
        decrypt(moved, keys, context())


def test_unknown_version_and_garbage_are_typed_errors() -> None:
    keys = ring("k1")
    raw = bytearray(encrypt(b"x", keys, context()).to_bytes())
    raw[4] = 2
    with pytest.raises(UnsupportedBlobVersionError):
        EncryptedBlob.from_bytes(bytes(raw))
    for junk in (b"", b"OMNE", b"not a blob at all", bytes(raw[:20])):
        with pytest.raises(DecryptionError):
            EncryptedBlob.from_bytes(junk)
    with pytest.raises(MalformedBlobError):
        EncryptedBlob.from_json('{"v": 1, "kid": "k1", "wk": "!!", "n": "", "ct": ""}')
    with pytest.raises(MalformedBlobError):
        EncryptedBlob.from_json("[1, 2]")


@pytest.mark.parametrize(
    "other",
    [
        {"org_id": uuid.UUID(int=99)},
        {"client_id": uuid.UUID(int=99)},
        {"platform": "google_ads"},
        {"extra": "x"},
    ],
)
def test_wrong_associated_data_is_refused(other: dict[str, object]) -> None:
    keys = ring("k1")
    blob = encrypt_str(SECRET, keys, context())
    with pytest.raises(DecryptionError):
        decrypt(blob, keys, context(**other))


def test_build_aad_is_canonical_and_unambiguous() -> None:
    assert build_aad(a="1", b="2") == build_aad(b="2", a="1")
    assert build_aad(a="x", b="yz") != build_aad(a="xy", b="z")
    with pytest.raises(ValueError):
        build_aad()


def test_unknown_master_key_names_the_id_only() -> None:
    blob = encrypt(b"x", ring("k1"), context())
    with pytest.raises(UnknownMasterKeyError) as err:
        decrypt(blob, ring("k9"), context())
    assert err.value.key_id == "k1"


def test_rotation_rewraps_without_touching_payload_and_old_key_can_be_dropped() -> None:
    old = ring("k1")
    aad = context()
    blobs = [encrypt_str(f"{SECRET}-{i}", old, aad) for i in range(5)]

    new_key = os.urandom(32)
    during = old.with_new_active("k2", new_key)
    # During rotation both generations decrypt.
    assert all(decrypt_str(b, during, aad).startswith(SECRET) for b in blobs)

    rewrapped = [rewrap(b, during) for b in blobs]
    for before, after in zip(blobs, rewrapped, strict=True):
        assert after.master_key_id == "k2" and not needs_rewrap(after, during)
        assert after.nonce == before.nonce and after.ciphertext == before.ciphertext
        assert after.wrapped_key != before.wrapped_key
    assert rewrap(rewrapped[0], during) is rewrapped[0]  # idempotent

    after_rotation = during.without("k1")
    assert after_rotation.key_ids == ("k2",)
    assert [decrypt_str(b, after_rotation, aad) for b in rewrapped] == [f"{SECRET}-{i}" for i in range(5)]
    with pytest.raises(UnknownMasterKeyError):
        decrypt(blobs[0], after_rotation, aad)


def test_rewrap_of_tampered_blob_is_refused() -> None:
    keys = ring("k1")
    blob = encrypt(b"x", keys, context())
    wk = bytearray(blob.wrapped_key)
    wk[-1] ^= 1
    rotated = keys.with_new_active("k2", os.urandom(32))
    with pytest.raises(DecryptionError):
        rewrap(EncryptedBlob(blob.version, blob.master_key_id, bytes(wk), blob.nonce, blob.ciphertext), rotated)


@pytest.mark.parametrize(
    ("secret", "expected"),
    [
        ("EAABsbCS1iHgBAExampleToken9xQ", "EAAB…9xQ"),
        ("EAABsbCS1iHgBAExample9xQ", "EAA…9xQ"),
        ("abcdefghijkl", "ab…l"),
        ("abcdefgh", "a…h"),
        ("short", "…"),
        ("", ""),
    ],
)
def test_mask(secret: str, expected: str) -> None:
    assert mask(secret) == expected
    if len(secret) >= 8:
        shown = len(mask(secret)) - 1
        assert shown <= len(secret) // 4
