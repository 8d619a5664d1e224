"""The OAuth ``state`` parameter: signed, expiring, bound to user, organization and client.

Why a signed token and not only a random nonce: the callback arrives from the platform
through the user's browser, without our bearer token, so the state is the only thing
that says who started the flow and for which tenant; the signature makes it
unforgeable, the expiry bounds a leaked one, and the nonce inside (whose hash is stored
in ``oauth_states``) makes it single-use. It is a JWT signed with the application
secret, with its own ``typ`` and audience so it can never pass as an access token (and
an access token never as a state).
"""

from __future__ import annotations

import secrets
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt

from omnify.settings import Settings

STATE_TYPE = "oauth_state"
STATE_AUDIENCE = "omnify:oauth-callback"


class InvalidState(Exception):
    """Tampered, expired or malformed state; the message is safe to show."""


@dataclass(frozen=True, slots=True)
class StateClaims:
    user_id: uuid.UUID
    org_id: uuid.UUID
    client_id: uuid.UUID
    platform: str
    nonce: str
    expires_at: datetime


def new_nonce() -> str:
    return secrets.token_urlsafe(24)


def sign_state(
    settings: Settings, *, user_id: uuid.UUID, org_id: uuid.UUID, client_id: uuid.UUID, platform: str,
    nonce: str, ttl_seconds: float, now: datetime | None = None,
) -> tuple[str, datetime]:
    issued = now or datetime.now(UTC)
    expires = issued + timedelta(seconds=ttl_seconds)
    payload: dict[str, Any] = {
        "typ": STATE_TYPE,
        "aud": STATE_AUDIENCE,
        "iss": settings.jwt_issuer,
        "sub": str(user_id),
        "org": str(org_id),
        "cli": str(client_id),
        "plt": platform,
        "jti": nonce,
        "iat": int(issued.timestamp()),
        "exp": int(expires.timestamp()),
    }
    token = jwt.encode(payload, settings.secret_key.get_secret_value(), algorithm=settings.jwt_algorithm)
    return token, expires


def verify_state(settings: Settings, token: str) -> StateClaims:
    try:
        payload = jwt.decode(
            token,
            settings.secret_key.get_secret_value(),
            algorithms=[settings.jwt_algorithm],
            audience=STATE_AUDIENCE,
            issuer=settings.jwt_issuer,
            options={"require": ["sub", "exp", "iat", "iss", "aud", "jti"]},
        )
    except jwt.ExpiredSignatureError as exc:
        raise InvalidState("The authorization took too long and its state expired; start again.") from exc
    except jwt.PyJWTError as exc:
        raise InvalidState("The state parameter is not valid.") from exc
    if payload.get("typ") != STATE_TYPE:
        raise InvalidState("The state parameter is not valid.")
    try:
        return StateClaims(
            user_id=uuid.UUID(str(payload["sub"])),
            org_id=uuid.UUID(str(payload["org"])),
            client_id=uuid.UUID(str(payload["cli"])),
            platform=str(payload["plt"]),
            nonce=str(payload["jti"]),
            expires_at=datetime.fromtimestamp(int(payload["exp"]), UTC),
        )
    except (KeyError, ValueError, TypeError) as exc:
        raise InvalidState("The state parameter is not valid.") from exc
