"""Standard Webhooks signatures (https://www.standardwebhooks.com/).

``webhook-signature`` = space-separated ``v1,<base64 HMAC-SHA256(secret, id.timestamp.body)>``.
The spec allows several signatures in one header precisely so a sender can sign with
the old and the new secret while a rotation is in progress; a receiver accepts the
message if any ``v1`` signature matches one of its secrets.

Secrets are ``whsec_`` + base64 of 32 random bytes; the HMAC key is the decoded bytes,
not the string, which is what every Standard Webhooks library expects.

Written here rather than taken from the ``standardwebhooks`` package on purpose: the
tests verify our signatures with that package, so the two implementations check each
other.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
from collections.abc import Iterable

SECRET_PREFIX = "whsec_"
SECRET_BYTES = 32


class InvalidSecret(ValueError):
    pass


def generate_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode("ascii")


def secret_key(secret: str) -> bytes:
    """The HMAC key of a ``whsec_`` secret."""
    raw = secret[len(SECRET_PREFIX):] if secret.startswith(SECRET_PREFIX) else secret
    try:
        key = base64.b64decode(raw + "=" * (-len(raw) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise InvalidSecret("webhook secret is not valid base64") from None
    if not 24 <= len(key) <= 64:
        raise InvalidSecret("webhook secret must decode to 24..64 bytes")
    return key


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """One ``v1,<base64>`` signature."""
    to_sign = f"{msg_id}.{timestamp}.".encode() + body
    digest = hmac.new(secret_key(secret), to_sign, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode("ascii")


def signature_header(secrets_: Iterable[str], msg_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` value: one signature per live secret, newest first."""
    signatures = [sign(s, msg_id, timestamp, body) for s in secrets_]
    if not signatures:
        raise InvalidSecret("at least one secret is needed to sign")
    return " ".join(signatures)


def headers(secrets_: Iterable[str], msg_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": signature_header(secrets_, msg_id, timestamp, body),
    }
