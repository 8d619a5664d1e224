"""Encrypting webhook secrets at rest with the project's envelope encryption.

Signing secrets must be recoverable (we sign with them), so they are encrypted, not
hashed. The associated data binds each blob to its organization, its row and its
purpose: a blob copied into another endpoint, tenant or column does not decrypt.

The key ring is cached per process because the Vault and AWS backends are network calls:
one cache per configuration, shared with platform credentials
(:func:`omnify.core.secrets.keyring_cache`), so a rotation or retirement reaches both.
"""

from __future__ import annotations

import uuid

from sqlalchemy.ext.asyncio import AsyncSession

from omnify.core.crypto import EncryptedBlob, build_aad, decrypt_str, encrypt_str, needs_rewrap, rewrap
from omnify.core.secrets import KeyRing, keyring_cache
from omnify.settings import Settings


def _aad(purpose: str, org_id: uuid.UUID, row_id: uuid.UUID) -> bytes:
    return build_aad(purpose=purpose, org_id=org_id, row_id=row_id)


async def seal(settings: Settings, purpose: str, org_id: uuid.UUID, row_id: uuid.UUID, secret: str) -> bytes:
    ring = await keyring_cache(settings).get()
    return encrypt_str(secret, ring, _aad(purpose, org_id, row_id)).to_bytes()


async def unseal(settings: Settings, purpose: str, org_id: uuid.UUID, row_id: uuid.UUID, blob: bytes) -> str:
    parsed = EncryptedBlob.from_bytes(blob)
    ring = await keyring_cache(settings).for_key(parsed.master_key_id)
    return decrypt_str(parsed, ring, _aad(purpose, org_id, row_id))


#: Both the current and the previous secret of an endpoint (rotation moves the blob as is).
ENDPOINT_SECRET = "webhook-endpoint-secret"
INBOUND_SOURCE_SECRET = "inbound-webhook-source-secret"


async def rewrap_all(session: AsyncSession, ring: KeyRing) -> int:
    """Re-wrap every webhook secret's data key under the ring's active master key.

    For ``omnify keys rotate``: needs no associated data, so it runs without decrypting
    anything, and skips blobs already under the active key (safe to run again). Reads every
    row the session can see: the migration (owner) connection sees every organization's, the
    app's role one bound tenant's (row-level security). The caller commits.
    """
    from sqlalchemy import select

    from omnify.webhooks.models import InboundSource, WebhookEndpoint

    changed = 0
    for endpoint in (await session.scalars(select(WebhookEndpoint))).all():
        for column in ("secret_blob", "previous_secret_blob"):
            raw = getattr(endpoint, column)
            if raw is None:
                continue
            blob = EncryptedBlob.from_bytes(raw)
            if needs_rewrap(blob, ring):
                setattr(endpoint, column, rewrap(blob, ring).to_bytes())
                changed += 1
    from omnify.chat.models import ChatConnection  # Slack bot tokens and chat webhook URLs

    for connection in (await session.scalars(select(ChatConnection))).all():
        blob = EncryptedBlob.from_bytes(connection.secret_blob)
        if needs_rewrap(blob, ring):
            connection.secret_blob = rewrap(blob, ring).to_bytes()
            changed += 1
    for source in (await session.scalars(select(InboundSource).where(InboundSource.secret_blob.is_not(None)))).all():
        assert source.secret_blob is not None
        blob = EncryptedBlob.from_bytes(source.secret_blob)
        if needs_rewrap(blob, ring):
            source.secret_blob = rewrap(blob, ring).to_bytes()
            changed += 1
    await session.flush()
    return changed
