"""Streaming authenticated encryption of backup archives (AES-256-GCM).

Backups hold every tenant's data, so they are encrypted before they leave the machine, whatever
the storage's own server-side encryption does. Archives can be many gigabytes, so the plaintext is
cut into 1 MiB chunks, each sealed with AES-GCM under a per-file random nonce prefix plus the
chunk index. The associated data binds every chunk to the file header, its position and whether
it is the last one: reordering, dropping, duplicating or truncating chunks fails decryption
instead of yielding a silently shorter backup.

Keys come from the environment, never from files next to the backups:

* ``OMNIFY_BACKUP_ENCRYPTION_KEY``: the active key, 32 bytes in URL-safe or standard base64.
* ``OMNIFY_BACKUP_PREVIOUS_KEYS``: optional comma-separated older keys, for reading archives made
  before a rotation. The header of every archive names its key by a fingerprint (not the key), so
  rotation needs no re-encryption: add the new key as active, move the old one to the previous
  list, and drop it once the last archive it sealed has aged out of retention (30 days).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from typing import BinaryIO

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

MAGIC = b"OMNIBAK1"
CHUNK = 1024 * 1024
KEY_ENV = "OMNIFY_BACKUP_ENCRYPTION_KEY"
PREVIOUS_KEYS_ENV = "OMNIFY_BACKUP_PREVIOUS_KEYS"
_NONCE_PREFIX = 8
_LEN = struct.Struct(">I")
_AAD_TAIL = struct.Struct(">QB")


class BackupCryptoError(RuntimeError):
    """Missing/invalid key, or an archive that fails authentication."""


@dataclass(frozen=True)
class BackupKey:
    key: bytes

    @property
    def key_id(self) -> str:
        """Fingerprint naming the key in archive headers; reveals nothing usable about the key."""
        return hashlib.sha256(b"omnify-backup-key:" + self.key).hexdigest()[:16]

    @classmethod
    def parse(cls, text: str) -> BackupKey:
        raw = text.strip()
        try:
            key = base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4))
        except (binascii.Error, ValueError) as exc:
            raise BackupCryptoError("backup key is not valid base64") from exc
        if len(key) != 32:
            raise BackupCryptoError(f"backup key must decode to 32 bytes, got {len(key)}")
        return cls(key)

    @classmethod
    def generate(cls) -> BackupKey:
        return cls(AESGCM.generate_key(bit_length=256))

    def encoded(self) -> str:
        return base64.urlsafe_b64encode(self.key).decode("ascii")


@dataclass(frozen=True)
class KeyRing:
    active: BackupKey
    previous: tuple[BackupKey, ...] = ()

    def by_id(self, key_id: str) -> BackupKey:
        for candidate in (self.active, *self.previous):
            if candidate.key_id == key_id:
                return candidate
        raise BackupCryptoError(
            f"archive was sealed with key {key_id}, which is neither {KEY_ENV} nor in {PREVIOUS_KEYS_ENV}"
        )

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> KeyRing:
        env = os.environ if environ is None else environ
        active = env.get(KEY_ENV, "").strip()
        if not active:
            raise BackupCryptoError(f"{KEY_ENV} is not set: refusing to write or read unencrypted backups")
        previous = tuple(BackupKey.parse(k) for k in env.get(PREVIOUS_KEYS_ENV, "").split(",") if k.strip())
        return cls(BackupKey.parse(active), previous)


def _aad(header: bytes, index: int, final: bool) -> bytes:
    return header + _AAD_TAIL.pack(index, 1 if final else 0)


def _nonce(prefix: bytes, index: int) -> bytes:
    if index >= 2**32:
        raise BackupCryptoError("archive too large for one nonce prefix (4 PiB)")
    return prefix + struct.pack(">I", index)


def encrypt_stream(src: BinaryIO, dst: BinaryIO, key: BackupKey) -> int:
    """Encrypt ``src`` to ``dst``; returns plaintext bytes written."""
    key_id = key.key_id.encode("ascii")
    prefix = os.urandom(_NONCE_PREFIX)
    header = MAGIC + bytes([len(key_id)]) + key_id + prefix
    dst.write(header)
    aead = AESGCM(key.key)
    total = 0
    index = 0
    chunk = src.read(CHUNK)
    while True:
        following = src.read(CHUNK) if chunk else b""
        final = not following
        sealed = aead.encrypt(_nonce(prefix, index), chunk, _aad(header, index, final))
        dst.write(_LEN.pack(len(sealed)))
        dst.write(sealed)
        total += len(chunk)
        index += 1
        if final:
            return total
        chunk = following


def _read_exact(src: BinaryIO, n: int) -> bytes:
    data = src.read(n)
    if len(data) != n:
        raise BackupCryptoError("archive is truncated")
    return data


def read_key_id(src: BinaryIO) -> tuple[bytes, str]:
    magic = src.read(len(MAGIC))
    if magic != MAGIC:
        raise BackupCryptoError("not an Omnify encrypted backup (bad magic)")
    length = _read_exact(src, 1)[0]
    key_id = _read_exact(src, length)
    prefix = _read_exact(src, _NONCE_PREFIX)
    return MAGIC + bytes([length]) + key_id + prefix, key_id.decode("ascii")


def decrypt_stream(src: BinaryIO, dst: BinaryIO, keys: KeyRing) -> int:
    """Decrypt and authenticate ``src`` into ``dst``; returns plaintext bytes.

    Raises BackupCryptoError on a wrong key, tampering or truncation. ``dst`` may then hold a
    prefix of the plaintext: callers write to a temporary file and move it into place only on
    success.
    """
    header, key_id = read_key_id(src)
    prefix = header[-_NONCE_PREFIX:]
    aead = AESGCM(keys.by_id(key_id).key)
    total = 0
    index = 0
    pending = src.read(_LEN.size)
    if not pending:
        raise BackupCryptoError("archive has no data chunk")
    while pending:
        if len(pending) != _LEN.size:
            raise BackupCryptoError("archive is truncated")
        (length,) = _LEN.unpack(pending)
        sealed = _read_exact(src, length)
        pending = src.read(_LEN.size)
        final = not pending
        try:
            plain = aead.decrypt(_nonce(prefix, index), sealed, _aad(header, index, final))
        except InvalidTag as exc:
            raise BackupCryptoError(f"archive chunk {index} failed authentication (tampered or truncated)") from exc
        dst.write(plain)
        total += len(plain)
        index += 1
    return total
