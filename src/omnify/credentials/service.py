"""Platform credentials: validated, envelope-encrypted, shown only as masked hints.

The secret bundle of a credential (``{"access_token": ..., ...}``) is encrypted under a
fresh data key with associated data naming the organization, client and platform, so a
ciphertext moved to another row refuses to decrypt. The only way back to plaintext is
:func:`reveal`, meant for the integration services that call the platforms: each call
is audited (with its purpose), and the result holds the secrets as ``SecretStr`` so an
accidental log line or repr prints asterisks.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from pydantic import SecretStr
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from omnify.audit import service as audit
from omnify.clients import service as clients
from omnify.core.context import Actor
from omnify.core.crypto import DecryptionError, EncryptedBlob, UnknownMasterKeyError, build_aad, decrypt, encrypt, mask
from omnify.core.db import utcnow
from omnify.core.errors import Conflict, NotFound, ServiceUnavailable, UnprocessableEntity
from omnify.core.pagination import PageParams
from omnify.core.secrets import KeyRingCache
from omnify.credentials import repository
from omnify.credentials.models import PlatformCredential
from omnify.credentials.platforms import PLATFORMS, Platform
from omnify.credentials.schemas import CredentialIn
from omnify.events import service as events

CredentialStatus = Literal["active", "expired", "invalid"]


class CredentialUnreadable(Conflict):
    code, title = "credential-unreadable", "Stored credential cannot be decrypted"


class MasterKeyUnavailable(ServiceUnavailable):
    """The blob names a master key this process cannot load: an operations problem (a
    key retired too early, a backend unreachable), not a bad credential."""

    code, title = "master-key-unavailable", "Encryption key unavailable"


def aad_for(org_id: uuid.UUID, client_id: uuid.UUID, platform: str) -> bytes:
    return build_aad(purpose="platform-credential", org_id=org_id, client_id=client_id, platform=platform)


def status_of(row: PlatformCredential, now: datetime | None = None) -> CredentialStatus:
    if row.status == "invalid":
        return "invalid"
    if row.expires_at is not None and row.expires_at <= (now or utcnow()):
        return "expired"
    return "active"


def _field_error(field_name: str, msg: str, kind: str = "value_error") -> dict[str, Any]:
    return {"loc": ["body", *field_name.split(".")], "field": field_name, "msg": msg, "type": kind}


def _validate(platform: Platform, body: CredentialIn) -> None:
    """Platform-specific rules the schema cannot know (it does not see the path)."""
    spec = PLATFORMS[platform]
    errors = []
    for name in body.secrets:
        if name not in spec.secret_fields:
            errors.append(_field_error(f"secrets.{name}", f"unknown secret for {platform.value}; expected "
                                                          f"{', '.join(spec.secret_fields)}"))
    for name in spec.required_secrets:
        if name not in body.secrets:
            errors.append(_field_error(f"secrets.{name}", "Field required", "missing"))
    if body.account_id is None:
        if spec.account_required:
            errors.append(_field_error("account_id", f"Field required: the {spec.account_label}", "missing"))
    elif not spec.account_pattern.fullmatch(body.account_id.strip()):
        errors.append(_field_error("account_id", f"must be the {spec.account_label}"))
    if errors:
        raise UnprocessableEntity("The credential has invalid fields.", errors=errors)


# ------------------------------------------------------------------------------- reads
async def get_credential(
    session: AsyncSession, org_id: uuid.UUID, client_id: uuid.UUID, platform: Platform
) -> PlatformCredential:
    await clients.get_client(session, org_id, client_id)
    row = await repository.get(session, org_id, client_id, platform.value)
    if row is None:
        raise NotFound(f"No {PLATFORMS[platform].label} credential for this client.")
    return row


async def list_credentials(
    session: AsyncSession, org_id: uuid.UUID, client_id: uuid.UUID, params: PageParams
) -> list[PlatformCredential]:
    await clients.get_client(session, org_id, client_id)
    return list(await repository.list_for_client(session, org_id, client_id, params))


async def connected_platforms(session: AsyncSession, org_id: uuid.UUID, client_id: uuid.UUID) -> set[str]:
    """Platforms with a usable credential (stored, not invalid, not expired)."""
    now = utcnow()
    return {row.platform for row in await repository.all_for_client(session, org_id, client_id)
            if status_of(row, now) == "active"}


# ------------------------------------------------------------------------------ writes
async def put_credential(
    session: AsyncSession,
    keyrings: KeyRingCache,
    org_id: uuid.UUID,
    actor: Actor,
    client_id: uuid.UUID,
    platform: Platform,
    body: CredentialIn,
) -> tuple[PlatformCredential, bool]:
    """Create or replace the client's credential for ``platform``; True when created."""
    await clients.get_live_client(session, org_id, client_id)
    _validate(platform, body)
    secrets = {name: value.get_secret_value() for name, value in sorted(body.secrets.items())}
    ring = await keyrings.get()
    blob = encrypt(json.dumps(secrets, separators=(",", ":")).encode("utf-8"), ring,
                   aad_for(org_id, client_id, platform.value))
    hints = {name: mask(value) for name, value in secrets.items()}
    del secrets
    row = await repository.get(session, org_id, client_id, platform.value)
    created = row is None
    if row is None:
        row = PlatformCredential(id=uuid.uuid4(), org_id=org_id, client_id=client_id, platform=platform.value,
                                 created_by_id=clients.user_id_of(actor))
        repository.add(session, row)
    row.secret_blob = blob.to_bytes()
    row.master_key_id = blob.master_key_id
    row.hints = hints
    row.account_id = body.account_id.strip() if body.account_id else None
    row.scopes = list(body.scopes)
    row.expires_at = body.expires_at
    row.status = "active"
    row.last_error = None
    row.last_verified_at = None
    try:
        await session.flush()
    except IntegrityError:  # a concurrent PUT created it first
        await session.rollback()
        raise Conflict("The credential was changed concurrently; send the request again.") from None
    action = "credential.connected" if created else "credential.replaced"
    await audit.record(session, org_id, actor, action, target_type="credential", target_id=row.id,
                       changes={"client_id": str(client_id), "platform": platform.value,
                                "account_id": row.account_id, "fields": sorted(hints), "scopes": row.scopes,
                                "expires_at": row.expires_at.isoformat() if row.expires_at else None})
    await events.emit(session, org_id, "credential.connected",
                      {"client_id": client_id, "platform": platform.value, "account_id": row.account_id,
                       "replaced": not created})
    await _progress_changed(session, org_id, client_id, actor)
    await session.commit()
    return row, created


async def delete_credential(
    session: AsyncSession, org_id: uuid.UUID, actor: Actor, client_id: uuid.UUID, platform: Platform
) -> None:
    """Hard delete: a disconnected platform's secret has no reason to linger."""
    await clients.get_live_client(session, org_id, client_id)
    row = await repository.get(session, org_id, client_id, platform.value)
    if row is None:
        raise NotFound(f"No {PLATFORMS[platform].label} credential for this client.")
    await repository.delete_row(session, org_id, row.id)
    await audit.record(session, org_id, actor, "credential.deleted", target_type="credential", target_id=row.id,
                       changes={"client_id": str(client_id), "platform": platform.value})
    await events.emit(session, org_id, "credential.removed", {"client_id": client_id, "platform": platform.value})
    await _progress_changed(session, org_id, client_id, actor)
    await session.commit()


async def _progress_changed(session: AsyncSession, org_id: uuid.UUID, client_id: uuid.UUID, actor: Actor) -> None:
    from omnify.onboarding import service as onboarding  # late import: onboarding reads credentials

    await onboarding.refresh(session, org_id, client_id, actor)


# -------------------------------------------------------------- for the integrations only
@dataclass(frozen=True)
class RevealedCredential:
    """Decrypted credential. Secrets stay ``SecretStr`` until :meth:`secret` is called."""

    org_id: uuid.UUID
    client_id: uuid.UUID
    platform: Platform
    account_id: str | None
    scopes: list[str]
    expires_at: datetime | None
    secrets: Mapping[str, SecretStr] = field(repr=False)

    def secret(self, name: str) -> str:
        return self.secrets[name].get_secret_value()

    def get(self, name: str) -> str | None:
        value = self.secrets.get(name)
        return value.get_secret_value() if value is not None else None


async def reveal(
    session: AsyncSession,
    keyrings: KeyRingCache,
    org_id: uuid.UUID,
    client_id: uuid.UUID,
    platform: Platform,
    actor: Actor,
    *,
    purpose: str,
) -> RevealedCredential:
    """Decrypt a credential to call its platform; audited and committed before returning.

    The audit entry is committed here (not left to the caller) so the trail of who read
    which secret survives even when the platform call that follows fails and the
    caller rolls back. A blob that does not authenticate (tampered, moved, or wrapped by
    a key no longer in the ring) marks the credential invalid, is audited as such, and
    raises :class:`CredentialUnreadable` with a fixed message. A blob under a master key
    this process cannot load raises :class:`MasterKeyUnavailable` instead and leaves the
    credential's status alone: that is an operations problem, not a bad credential.
    """
    row = await repository.get(session, org_id, client_id, platform.value)
    if row is None:
        raise NotFound(f"No {PLATFORMS[platform].label} credential for this client.")
    try:
        blob = EncryptedBlob.from_bytes(bytes(row.secret_blob))
        ring = await keyrings.for_key(blob.master_key_id)
        raw = decrypt(blob, ring, aad_for(org_id, client_id, platform.value))
        values = json.loads(raw)
        if not isinstance(values, dict):
            raise DecryptionError
    except UnknownMasterKeyError:
        await audit.record(session, org_id, actor, "credential.decrypt_failed", target_type="credential",
                           target_id=row.id, changes={"platform": platform.value, "purpose": purpose,
                                                      "reason": "UnknownMasterKeyError"})
        await session.commit()
        raise MasterKeyUnavailable("The key that protects this credential is not available; "
                                   "an operator must restore it.") from None
    except (DecryptionError, ValueError) as exc:
        row.status = "invalid"
        row.last_error = "The stored secret could not be decrypted; reconnect the platform."
        await audit.record(session, org_id, actor, "credential.decrypt_failed", target_type="credential",
                           target_id=row.id,
                           changes={"platform": platform.value, "purpose": purpose, "reason": type(exc).__name__})
        await session.commit()
        raise CredentialUnreadable(
            f"The stored {PLATFORMS[platform].label} credential cannot be decrypted; reconnect the platform."
        ) from None
    row.last_used_at = utcnow()
    await audit.record(session, org_id, actor, "credential.decrypted", target_type="credential", target_id=row.id,
                       changes={"client_id": str(client_id), "platform": platform.value, "purpose": purpose[:200]})
    await session.commit()
    return RevealedCredential(
        org_id=org_id, client_id=client_id, platform=platform, account_id=row.account_id, scopes=list(row.scopes),
        expires_at=row.expires_at, secrets={str(k): SecretStr(str(v)) for k, v in values.items()},
    )


async def record_verification(
    session: AsyncSession, org_id: uuid.UUID, actor: Actor, client_id: uuid.UUID, platform: Platform, *,
    ok: bool, error: str | None = None,
) -> PlatformCredential:
    """Record the outcome of an integration's test call with the credential.

    ``error`` is shown to users: pass the platform's error *message*, never a request or
    response dump that could contain the token.
    """
    row = await repository.get(session, org_id, client_id, platform.value)
    if row is None:
        raise NotFound(f"No {PLATFORMS[platform].label} credential for this client.")
    row.last_verified_at = utcnow()
    row.status = "active" if ok else "invalid"
    row.last_error = None if ok else (error or "Verification failed.")[:500]
    await audit.record(session, org_id, actor, "credential.verified", target_type="credential", target_id=row.id,
                       changes={"platform": platform.value, "ok": ok})
    await _progress_changed(session, org_id, client_id, actor)
    await session.commit()
    return row
