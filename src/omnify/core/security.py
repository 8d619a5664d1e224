"""Passwords, access tokens and opaque secrets.

- Passwords: argon2id (argon2-cffi defaults track OWASP guidance); hashes are upgraded on
  login when parameters change. The policy rejects short passwords and anything zxcvbn
  rates as guessable, which covers its embedded list of ~30k breached common passwords.
- Access tokens: short-lived HS256 JWTs (PyJWT). They carry the user's session version so
  a password change or "log out everywhere" invalidates them before they expire.
- Opaque secrets (refresh tokens, API keys, invitations): 256 random bits, stored only
  as SHA-256. A slow hash adds nothing for values with that much entropy and would make
  every API call pay for it.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from omnify.settings import Settings

_hasher = PasswordHasher()
# Verified against when the e-mail is unknown, so a miss costs as much as a hit.
_DUMMY_HASH = _hasher.hash("omnify-dummy-password-for-timing")


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password: str, password_hash: str | None) -> bool:
    try:
        return _hasher.verify(password_hash or _DUMMY_HASH, password) and password_hash is not None
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def password_needs_rehash(password_hash: str) -> bool:
    return _hasher.check_needs_rehash(password_hash)


#: The longest input zxcvbn estimates (its default; it refuses longer ones).
ZXCVBN_MAX_LENGTH = 72


def password_problems(password: str, settings: Settings, user_inputs: list[str] | None = None) -> list[str]:
    """Explain why a password is refused; empty when acceptable."""
    problems: list[str] = []
    if len(password) < settings.password_min_length:
        problems.append(f"must be at least {settings.password_min_length} characters long")
    if len(password) > 256:
        problems.append("must be at most 256 characters long")
    if problems:
        return problems
    from zxcvbn import zxcvbn  # imported lazily: loading its dictionaries takes ~100 ms

    # zxcvbn raises ValueError beyond its max_length (72 since 4.5; a 500 found by schemathesis):
    # the strength of a longer password is judged on its first 72 characters, which only
    # under-rates it.
    result = zxcvbn(password[:ZXCVBN_MAX_LENGTH], user_inputs=[u for u in (user_inputs or []) if u],
                    max_length=ZXCVBN_MAX_LENGTH)
    if result["score"] < 3:
        hint = result.get("feedback", {}).get("warning") or "it is too easy to guess"
        problems.append(f"is too weak: {hint.rstrip('.')}")
    return problems


# --------------------------------------------------------------------------- access tokens
@dataclass(frozen=True, slots=True)
class AccessClaims:
    user_id: uuid.UUID
    session_version: int
    expires_at: datetime


class InvalidToken(Exception):
    """Expired, malformed or wrongly signed token; the message is safe to show."""


def create_access_token(settings: Settings, user_id: uuid.UUID, session_version: int) -> tuple[str, datetime]:
    now = datetime.now(UTC)
    expires = now + timedelta(seconds=settings.access_token_ttl_seconds)
    payload: dict[str, Any] = {
        "sub": str(user_id),
        "sv": session_version,
        "iat": int(now.timestamp()),
        "exp": int(expires.timestamp()),
        "iss": settings.jwt_issuer,
        "typ": "access",
        "jti": secrets.token_hex(8),
    }
    token = jwt.encode(payload, settings.secret_key.get_secret_value(), algorithm=settings.jwt_algorithm)
    return token, expires


def decode_access_token(settings: Settings, token: str) -> AccessClaims:
    try:
        payload = jwt.decode(
            token,
            settings.secret_key.get_secret_value(),
            algorithms=[settings.jwt_algorithm],
            issuer=settings.jwt_issuer,
            options={"require": ["sub", "exp", "iat", "iss"]},
        )
    except jwt.ExpiredSignatureError as exc:
        raise InvalidToken("access token expired") from exc
    except jwt.PyJWTError as exc:
        raise InvalidToken("access token invalid") from exc
    if payload.get("typ") != "access":
        raise InvalidToken("access token invalid")
    try:
        return AccessClaims(
            user_id=uuid.UUID(payload["sub"]),
            session_version=int(payload.get("sv", 0)),
            expires_at=datetime.fromtimestamp(payload["exp"], UTC),
        )
    except (ValueError, TypeError) as exc:
        raise InvalidToken("access token invalid") from exc


# --------------------------------------------------------------------------- password reset
def _password_fingerprint(password_hash: str) -> str:
    return hashlib.sha256(password_hash.encode()).hexdigest()[:16]


def create_reset_token(settings: Settings, user_id: uuid.UUID, password_hash: str) -> tuple[str, datetime]:
    """A signed, expiring reset token that dies as soon as the password changes.

    It carries a fingerprint of the current password hash, so it is single-use without a
    table: the reset changes the hash and every earlier token stops matching.
    """
    now = datetime.now(UTC)
    expires = now + timedelta(seconds=settings.password_reset_ttl_seconds)
    payload = {"sub": str(user_id), "typ": "reset", "pwf": _password_fingerprint(password_hash),
               "iat": int(now.timestamp()), "exp": int(expires.timestamp()), "iss": settings.jwt_issuer}
    return jwt.encode(payload, settings.secret_key.get_secret_value(), algorithm=settings.jwt_algorithm), expires


def reset_token_user(settings: Settings, token: str) -> tuple[uuid.UUID, str]:
    """Return (user id, password fingerprint) of a valid reset token, else InvalidToken."""
    try:
        payload = jwt.decode(token, settings.secret_key.get_secret_value(), algorithms=[settings.jwt_algorithm],
                             issuer=settings.jwt_issuer, options={"require": ["sub", "exp", "iss"]})
        if payload.get("typ") != "reset":
            raise InvalidToken("reset token invalid")
        return uuid.UUID(payload["sub"]), str(payload["pwf"])
    except jwt.ExpiredSignatureError as exc:
        raise InvalidToken("reset link expired") from exc
    except (jwt.PyJWTError, KeyError, ValueError) as exc:
        raise InvalidToken("reset token invalid") from exc


def reset_token_matches(fingerprint: str, password_hash: str) -> bool:
    return constant_time_equals(fingerprint, _password_fingerprint(password_hash))


# ------------------------------------------------------------------------------ signed links
def create_link_token(settings: Settings, typ: str, claims: dict[str, str], ttl_seconds: int) -> str:
    """A signed, expiring token for a link opened without a session (a chart image Slack
    fetches, an unsubscribe link in an e-mail). ``typ`` keeps one purpose's token from
    working for another."""
    now = datetime.now(UTC)
    payload = {**claims, "typ": typ, "iat": int(now.timestamp()), "exp": int(now.timestamp()) + ttl_seconds,
               "iss": settings.jwt_issuer}
    return jwt.encode(payload, settings.secret_key.get_secret_value(), algorithm=settings.jwt_algorithm)


def read_link_token(settings: Settings, typ: str, token: str) -> dict[str, str]:
    """The claims of a valid token of ``typ``; :class:`InvalidToken` otherwise."""
    try:
        payload = jwt.decode(token, settings.secret_key.get_secret_value(), algorithms=[settings.jwt_algorithm],
                             issuer=settings.jwt_issuer, options={"require": ["exp", "iss"]})
    except jwt.ExpiredSignatureError as exc:
        raise InvalidToken("link expired") from exc
    except jwt.PyJWTError as exc:
        raise InvalidToken("link invalid") from exc
    if payload.get("typ") != typ:
        raise InvalidToken("link invalid")
    return {k: str(v) for k, v in payload.items()}


# --------------------------------------------------------------------------- opaque secrets
def sha256_hex(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def new_secret(nbytes: int = 32) -> str:
    return secrets.token_urlsafe(nbytes)


def constant_time_equals(a: str | bytes, b: str | bytes) -> bool:
    a_b = a.encode() if isinstance(a, str) else a
    b_b = b.encode() if isinstance(b, str) else b
    return hmac.compare_digest(a_b, b_b)


REFRESH_PREFIX = "ort_"
API_KEY_PREFIX = "omk_"
INVITATION_PREFIX = "oinv_"


def new_refresh_token() -> str:
    return REFRESH_PREFIX + new_secret()


@dataclass(frozen=True, slots=True)
class NewApiKey:
    token: str  # shown once
    prefix: str  # stored and shown, identifies the key in lists and logs
    key_hash: str


def new_api_key() -> NewApiKey:
    prefix = secrets.token_hex(4)
    token = f"{API_KEY_PREFIX}{prefix}_{new_secret()}"
    return NewApiKey(token=token, prefix=f"{API_KEY_PREFIX}{prefix}", key_hash=sha256_hex(token))


def new_invitation_token(org_id: uuid.UUID) -> str:
    """The org id travels in the token so the accept step can scope its look-up (RLS)."""
    return f"{INVITATION_PREFIX}{org_id.hex}_{new_secret()}"


def invitation_org(token: str) -> uuid.UUID | None:
    if not token.startswith(INVITATION_PREFIX):
        return None
    try:
        org_hex, _ = token[len(INVITATION_PREFIX):].split("_", 1)
        return uuid.UUID(hex=org_hex)
    except ValueError:
        return None
