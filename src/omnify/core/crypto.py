"""Envelope encryption of secrets at rest (ad-platform tokens and the like).

Why envelopes: each record gets its own random 256-bit data key, so rotating a master
key only re-wraps 60-byte data keys (:func:`rewrap`) instead of decrypting and
re-encrypting every payload, and a leaked data key exposes one record only.

Layout of one :class:`EncryptedBlob`:

* ``wrapped_key`` = wrap-nonce (12) || AES-256-GCM(master key, data key, AAD=header)
  where the header binds the blob version and the master key id, so a wrapped key
  cannot be relabelled with another key id;
* ``nonce`` / ``ciphertext`` = AES-256-GCM(data key, payload, AAD=version || context).
  The caller's *context* (e.g. org id, client id, platform) is not stored: it must be
  supplied again to decrypt, so a ciphertext copied into another row, tenant or
  platform fails authentication instead of decrypting in the wrong place.

Decryption failures raise :class:`DecryptionError` subclasses with fixed messages: no
key material, plaintext or ciphertext ever reaches an exception, a log line or a
problem response.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import struct
import uuid
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from omnify.core.secrets import KEY_ID_PATTERN, KeyRing

BLOB_VERSION = 1
DATA_KEY_BYTES = 32
NONCE_BYTES = 12
TAG_BYTES = 16
_MAGIC = b"OMNE"
_WRAP_AAD_PREFIX = b"omnify:dek-wrap:"
_PAYLOAD_AAD_PREFIX = b"omnify:payload:"
WRAPPED_KEY_BYTES = NONCE_BYTES + DATA_KEY_BYTES + TAG_BYTES


class CryptoError(Exception):
    """Base of every envelope-encryption failure."""


class DecryptionError(CryptoError):
    """The blob is not authentic for this key ring and context (tampered, moved or corrupt)."""

    def __init__(self, message: str = "encrypted secret could not be decrypted") -> None:
        super().__init__(message)


class MalformedBlobError(DecryptionError):
    def __init__(self) -> None:
        super().__init__("encrypted secret is malformed")


class UnsupportedBlobVersionError(DecryptionError):
    def __init__(self) -> None:
        super().__init__("encrypted secret uses an unsupported format version")


class UnknownMasterKeyError(DecryptionError):
    """The wrapping master key is not in the ring (dropped too early, or a forged id)."""

    def __init__(self, key_id: str) -> None:
        # The key id is an identifier, not a secret; naming it tells the operator which
        # key must be restored.
        super().__init__(f"master key {key_id[:64]!r} is not available")
        self.key_id = key_id


# ----------------------------------------------------------------------------- the blob
def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(value: object) -> bytes:
    if not isinstance(value, str):
        raise MalformedBlobError
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise MalformedBlobError from None


@dataclass(frozen=True, slots=True)
class EncryptedBlob:
    """One encrypted record, serialisable to a ``LargeBinary`` (bytes) or JSON column."""

    version: int
    master_key_id: str
    wrapped_key: bytes
    nonce: bytes
    ciphertext: bytes

    def __repr__(self) -> str:  # bytes are not secret, but they are noise in logs
        return f"EncryptedBlob(version={self.version}, master_key_id={self.master_key_id!r})"

    # binary: MAGIC(4) | version(1) | len(kid)(1) | kid | wrapped(60) | nonce(12) | ciphertext
    def to_bytes(self) -> bytes:
        kid = self.master_key_id.encode("ascii")
        return b"".join(
            (_MAGIC, struct.pack(">BB", self.version, len(kid)), kid, self.wrapped_key, self.nonce,
             self.ciphertext)
        )

    @classmethod
    def from_bytes(cls, data: bytes) -> EncryptedBlob:
        head = len(_MAGIC) + 2
        if len(data) < head or data[: len(_MAGIC)] != _MAGIC:
            raise MalformedBlobError
        version, kid_len = struct.unpack_from(">BB", data, len(_MAGIC))
        if version != BLOB_VERSION:
            raise UnsupportedBlobVersionError
        fixed = kid_len + WRAPPED_KEY_BYTES + NONCE_BYTES
        if len(data) < head + fixed + TAG_BYTES:
            raise MalformedBlobError
        pos = head
        kid_raw = data[pos : pos + kid_len]
        pos += kid_len
        wrapped = data[pos : pos + WRAPPED_KEY_BYTES]
        pos += WRAPPED_KEY_BYTES
        nonce = data[pos : pos + NONCE_BYTES]
        pos += NONCE_BYTES
        return cls(version, _decode_kid(kid_raw), wrapped, nonce, data[pos:])

    def to_dict(self) -> dict[str, Any]:
        return {"v": self.version, "kid": self.master_key_id, "wk": _b64(self.wrapped_key),
                "n": _b64(self.nonce), "ct": _b64(self.ciphertext)}

    @classmethod
    def from_dict(cls, doc: object) -> EncryptedBlob:
        if not isinstance(doc, dict):
            raise MalformedBlobError
        version = doc.get("v")
        if not isinstance(version, int) or isinstance(version, bool):
            raise MalformedBlobError
        if version != BLOB_VERSION:
            raise UnsupportedBlobVersionError
        kid = doc.get("kid")
        if not isinstance(kid, str):
            raise MalformedBlobError
        blob = cls(version, _decode_kid(kid.encode("ascii", "replace")), _unb64(doc.get("wk")),
                   _unb64(doc.get("n")), _unb64(doc.get("ct")))
        if (len(blob.wrapped_key) != WRAPPED_KEY_BYTES or len(blob.nonce) != NONCE_BYTES
                or len(blob.ciphertext) < TAG_BYTES):
            raise MalformedBlobError
        return blob

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str | bytes) -> EncryptedBlob:
        try:
            doc = json.loads(text)
        except ValueError:
            raise MalformedBlobError from None
        return cls.from_dict(doc)


def _decode_kid(raw: bytes) -> str:
    try:
        kid = raw.decode("ascii")
    except UnicodeDecodeError:
        raise MalformedBlobError from None
    if not KEY_ID_PATTERN.fullmatch(kid):
        raise MalformedBlobError
    return kid


# ------------------------------------------------------------------------------- context
def build_aad(**context: str | uuid.UUID | int | None) -> bytes:
    """Canonical associated data from named parts, e.g. ``build_aad(org_id=.., platform=..)``.

    Canonical (sorted keys, fixed separators) so the same context always yields the
    same bytes; named so that ``("a", "bc")`` and ``("ab", "c")`` cannot collide.
    """
    if not context:
        raise ValueError("associated data needs at least one context value")
    normalised = {k: (None if v is None else str(v)) for k, v in context.items()}
    return json.dumps(normalised, sort_keys=True, separators=(",", ":")).encode("utf-8")


def _wrap_aad(version: int, key_id: str) -> bytes:
    return _WRAP_AAD_PREFIX + bytes([version]) + key_id.encode("ascii")


def _payload_aad(version: int, aad: bytes) -> bytes:
    return _PAYLOAD_AAD_PREFIX + bytes([version]) + aad


def _wrap(data_key: bytes, keyring: KeyRing) -> tuple[str, bytes]:
    nonce = os.urandom(NONCE_BYTES)
    key_id = keyring.active_key_id
    wrapped = AESGCM(keyring.active_key).encrypt(nonce, data_key, _wrap_aad(BLOB_VERSION, key_id))
    return key_id, nonce + wrapped


def _unwrap(blob: EncryptedBlob, keyring: KeyRing) -> bytes:
    if blob.version != BLOB_VERSION:
        raise UnsupportedBlobVersionError
    master = keyring.get(blob.master_key_id)
    if master is None:
        raise UnknownMasterKeyError(blob.master_key_id)
    if len(blob.wrapped_key) != WRAPPED_KEY_BYTES:
        raise MalformedBlobError
    nonce, body = blob.wrapped_key[:NONCE_BYTES], blob.wrapped_key[NONCE_BYTES:]
    try:
        return AESGCM(master).decrypt(nonce, body, _wrap_aad(blob.version, blob.master_key_id))
    except InvalidTag:
        raise DecryptionError from None


# --------------------------------------------------------------------------- operations
def encrypt(plaintext: bytes, keyring: KeyRing, aad: bytes) -> EncryptedBlob:
    """Encrypt under a fresh data key wrapped by the ring's active master key."""
    data_key = AESGCM.generate_key(bit_length=DATA_KEY_BYTES * 8)
    nonce = os.urandom(NONCE_BYTES)
    ciphertext = AESGCM(data_key).encrypt(nonce, plaintext, _payload_aad(BLOB_VERSION, aad))
    key_id, wrapped = _wrap(data_key, keyring)
    return EncryptedBlob(BLOB_VERSION, key_id, wrapped, nonce, ciphertext)


def decrypt(blob: EncryptedBlob, keyring: KeyRing, aad: bytes) -> bytes:
    """Plaintext, or :class:`DecryptionError` if anything (blob or context) does not match."""
    data_key = _unwrap(blob, keyring)
    if len(blob.nonce) != NONCE_BYTES:
        raise MalformedBlobError
    try:
        return AESGCM(data_key).decrypt(blob.nonce, blob.ciphertext, _payload_aad(blob.version, aad))
    except InvalidTag:
        raise DecryptionError from None


def encrypt_str(plaintext: str, keyring: KeyRing, aad: bytes) -> EncryptedBlob:
    return encrypt(plaintext.encode("utf-8"), keyring, aad)


def decrypt_str(blob: EncryptedBlob, keyring: KeyRing, aad: bytes) -> str:
    raw = decrypt(blob, keyring, aad)
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise DecryptionError from None


def needs_rewrap(blob: EncryptedBlob, keyring: KeyRing) -> bool:
    return blob.master_key_id != keyring.active_key_id


def rewrap(blob: EncryptedBlob, keyring: KeyRing) -> EncryptedBlob:
    """Re-wrap the data key under the active master key; the payload is not touched.

    Needs no associated data, so ``omnify keys rotate`` can walk every row without
    knowing what each one encrypts. Returns ``blob`` itself when it is already under
    the active key, which makes an interrupted rotation safe to run again.
    """
    if not needs_rewrap(blob, keyring):
        return blob
    data_key = _unwrap(blob, keyring)
    key_id, wrapped = _wrap(data_key, keyring)
    return EncryptedBlob(blob.version, key_id, wrapped, blob.nonce, blob.ciphertext)


def mask(secret: str, *, head: int = 4, tail: int = 3) -> str:
    """Hint such as ``EAAB…9xQ`` that lets a person recognise a secret without exposing it.

    Reveals at most a quarter of the characters, so short secrets show less (or
    nothing): a 12-character PIN-like token must not be half printed.
    """
    length = len(secret)
    budget = length // 4
    if budget < 2:
        return "…" if length else ""
    shown_head = min(head, budget - budget // 2)
    shown_tail = min(tail, budget // 2)
    return f"{secret[:shown_head]}…{secret[length - shown_tail:] if shown_tail else ''}"
