"""Platform connections: the OAuth dance, account choice, health checks, token lifecycle.

Rules worth knowing:

* The ``state`` of an authorization is signed and bound to user, organization, client
  and platform (:mod:`omnify.connections.oauth_state`); its nonce is stored hashed and
  consumed once, *before* the code is exchanged, so a replayed callback is refused even
  when the first one failed. PKCE verifiers (Google) never leave the server.
* Tokens go to the encrypted credential store (:mod:`omnify.credentials.service`) and
  nowhere else; this domain keeps only the access token's expiry, to refresh in time.
* A refused refresh or verification marks the connection ``needs_reauth``, e-mails the
  organization's owners and emits ``connection.failed``; transient platform trouble only
  records the error and is tried again later.
* The callback's answer lists the accounts the authorization reaches. With a single
  account (or a reconnect whose previous choice is still reachable) the choice is made
  and the backfill starts at once; otherwise ``PUT .../accounts`` starts it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import secrets as pysecrets
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog
from pydantic import SecretStr
from sqlalchemy.ext.asyncio import AsyncSession

from omnify.audit import service as audit
from omnify.auth import repository as auth_repo
from omnify.auth.models import User
from omnify.auth.permissions import Permission, role_allows
from omnify.clients import service as clients
from omnify.connections import repository
from omnify.connections.config import ConnectionsConfig
from omnify.connections.connectors import AnyConnector, ConnectorFactory
from omnify.connections.models import BackfillStatus, Connection, ConnectionStatus, OAuthState
from omnify.connections.oauth_state import InvalidState, new_nonce, sign_state, verify_state
from omnify.core.context import Actor
from omnify.core.crypto import DecryptionError, EncryptedBlob, build_aad, decrypt, encrypt
from omnify.core.db import Database, bind_tenant, utcnow
from omnify.core.errors import BadRequest, Conflict, Forbidden, NotFound, ServiceUnavailable, UnprocessableEntity
from omnify.core.pagination import PageParams
from omnify.core.security import sha256_hex
from omnify.credentials import service as credentials
from omnify.credentials.keys import keyrings_for
from omnify.credentials.platforms import PLATFORMS
from omnify.credentials.platforms import Platform as CredentialPlatform
from omnify.credentials.schemas import CredentialIn
from omnify.events import service as events
from omnify.integrations.base import (
    AdConnector,
    AuthExpired,
    AuthRevoked,
    CircuitOpen,
    ConnectorError,
    InvalidRequest,
    PermissionDenied,
    Platform,
    RateLimited,
    TokenSet,
    TransientError,
    retry_after_seconds,
)
from omnify.integrations.shopify import oauth as shopify_oauth
from omnify.integrations.shopify.client import ShopifyConnector
from omnify.notifications import dispatch
from omnify.notifications.service import queue_email
from omnify.orgs import service as orgs
from omnify.orgs.models import Role
from omnify.settings import Settings

log = structlog.get_logger(__name__)

#: Task that runs one connection's sync (omnify.sync.tasks); enqueued by name so this
#: domain does not import the sync domain (which depends on this one).
SYNC_TASK = "omnify.sync.run_connection"
CALLBACK_PATH = "/api/v1/connections/{platform}/callback"

TokenPersist = Callable[[TokenSet], Awaitable[None]]


class PlatformUnavailable(ServiceUnavailable):
    code, title = "platform-unavailable", "The ad platform is unavailable"


class AuthorizationFailed(BadRequest):
    code, title = "authorization-failed", "The platform authorization failed"


class NotConnected(NotFound):
    code, title = "not-connected", "Platform not connected"


# ------------------------------------------------------------------------------ helpers
def platform_label(platform: str) -> str:
    """"LinkedIn Ads" for ``linkedin_ads`` (the credential table names every platform once)."""
    try:
        return PLATFORMS[CredentialPlatform(platform)].label
    except ValueError:
        return platform


def redirect_uri(settings: Settings, platform: Platform) -> str:
    return settings.public_base_url.rstrip("/") + CALLBACK_PATH.format(platform=platform.value)


def safe_message(exc: BaseException, limit: int = 500) -> str:
    """A connector error's message for users (connector messages never carry secrets)."""
    return (str(exc) or type(exc).__name__)[:limit]


def error_code_for(exc: BaseException) -> str:
    codes: tuple[tuple[type[BaseException], str], ...] = (
        (AuthRevoked, "token_revoked"), (AuthExpired, "token_expired"), (PermissionDenied, "permission_denied"),
        (RateLimited, "rate_limited"), (TransientError, "platform_unavailable"), (CircuitOpen, "circuit_open"),
        (InvalidRequest, "invalid_request"), (ConnectorError, "platform_error"),
    )
    return next((code for kind, code in codes if isinstance(exc, kind)), "internal_error")


def platform_error(exc: ConnectorError) -> PlatformUnavailable | AuthorizationFailed:
    if exc.retryable or isinstance(exc, CircuitOpen):
        wait = retry_after_seconds(exc)
        headers = {"Retry-After": str(wait)} if wait is not None else None
        return PlatformUnavailable(f"The platform did not answer properly: {safe_message(exc)}",
                                   headers=headers, platform_code=exc.platform_code)
    return AuthorizationFailed(f"The platform refused: {safe_message(exc)}", platform_code=exc.platform_code)


def _account_view(platform: Platform, account: Any) -> dict[str, Any]:
    return {"id": str(account.external_id), "name": str(account.name)[:255], "currency": str(account.currency),
            "timezone": str(account.timezone), "status": str(account.status)}


def _credential_account_id(platform: Platform, account_id: str) -> str:
    """The account id in the shape the credential store validates for ``platform``."""
    if platform == Platform.META_ADS:
        return f"act_{account_id.removeprefix('act_')}"
    if platform == Platform.GOOGLE_ADS:
        return account_id.replace("-", "")
    return account_id


def _credential_in(factory: ConnectorFactory, platform: Platform, tokens: TokenSet,
                   account_id: str) -> CredentialIn:
    secrets: dict[str, str] = {"access_token": tokens.access_token}
    expires_at = None
    if platform == Platform.META_ADS:
        expires_at = tokens.expires_at  # no refresh token: the credential dies with the token
    elif platform == Platform.GOOGLE_ADS:
        if not tokens.refresh_token:
            raise AuthorizationFailed("Google granted no offline access (refresh token); authorize again.")
        secrets["refresh_token"] = tokens.refresh_token
        secrets["developer_token"] = factory.google_developer_token
    elif platform in (Platform.TIKTOK_ADS, Platform.LINKEDIN_ADS):
        # With a refresh token the credential lives as long as it does (LinkedIn: a year
        # from the first grant, however often the access token is refreshed).
        if tokens.refresh_token:
            secrets["refresh_token"] = tokens.refresh_token
            raw = tokens.extra.get("refresh_token_expires_at")
            expires_at = datetime.fromisoformat(raw) if isinstance(raw, str) else None
        else:
            expires_at = tokens.expires_at
    scopes = [s for s in dict.fromkeys(tokens.scopes) if s and len(s) <= 200][:100]
    return CredentialIn(secrets={k: SecretStr(v) for k, v in secrets.items() if v},
                        account_id=_credential_account_id(platform, account_id), scopes=scopes,
                        expires_at=expires_at)


async def _keyring_encrypt(settings: Settings, plaintext: str, aad: bytes) -> bytes:
    ring = await keyrings_for(settings).get()
    return encrypt(plaintext.encode(), ring, aad).to_bytes()


async def _keyring_decrypt(settings: Settings, blob_bytes: bytes, aad: bytes) -> str:
    blob = EncryptedBlob.from_bytes(blob_bytes)
    ring = await keyrings_for(settings).for_key(blob.master_key_id)
    return decrypt(blob, ring, aad).decode()


def _verifier_aad(org_id: uuid.UUID, state_id: uuid.UUID) -> bytes:
    return build_aad(purpose="oauth-pkce-verifier", org_id=org_id, state_id=state_id)


# ------------------------------------------------------------------------------ reads
async def get_connection(session: AsyncSession, org_id: uuid.UUID, client_id: uuid.UUID,
                         platform: Platform) -> Connection:
    await clients.get_client(session, org_id, client_id)
    conn = await repository.get(session, org_id, client_id, platform.value)
    if conn is None:
        raise NotConnected(f"{platform_label(platform.value)} is not connected for this client.")
    return conn


async def get_by_id(session: AsyncSession, org_id: uuid.UUID, connection_id: uuid.UUID) -> Connection:
    conn = await repository.get_by_id(session, org_id, connection_id)
    if conn is None:
        raise NotConnected("Connection not found.")
    return conn


async def list_connections(session: AsyncSession, org_id: uuid.UUID, client_id: uuid.UUID) -> list[Connection]:
    await clients.get_client(session, org_id, client_id)
    return list(await repository.list_for_client(session, org_id, client_id))


@dataclass(frozen=True, slots=True)
class Progress:
    percent: float
    eta_seconds: float | None


def backfill_progress(conn: Connection, now: datetime | None = None) -> Progress:
    total, done = conn.backfill_units_total or 0, conn.backfill_units_done or 0
    if conn.backfill_status == BackfillStatus.DONE.value:
        return Progress(100.0, 0.0)
    if total <= 0:
        return Progress(0.0, None)
    percent = round(min(100.0, 100.0 * done / total), 1)
    eta = None
    if conn.backfill_status == BackfillStatus.RUNNING.value and conn.backfill_started_at and done > 0:
        elapsed = ((now or utcnow()) - conn.backfill_started_at).total_seconds()
        eta = round(max(0.0, elapsed / done * (total - done)), 1)
    return Progress(percent, eta)


# ------------------------------------------------------------------------------ authorize
async def start_authorization(
    session: AsyncSession, settings: Settings, factory: ConnectorFactory, org_id: uuid.UUID, actor: Actor,
    user_id: uuid.UUID, client_id: uuid.UUID, platform: Platform, *, shop: str | None = None,
) -> str:
    """Create the server-side state and return the platform's consent URL."""
    await clients.get_live_client(session, org_id, client_id)
    factory.check_configured(platform)
    shop_domain = None
    if platform == Platform.SHOPIFY:
        try:
            shop_domain = shopify_oauth.validate_shop_domain(shop)
        except shopify_oauth.InvalidShopDomain:
            raise UnprocessableEntity("`shop` must be the store's <name>.myshopify.com domain.", errors=[
                {"loc": ["query", "shop"], "field": "shop", "msg": "must be <name>.myshopify.com",
                 "type": "value_error"}]) from None
    elif shop is not None:
        raise UnprocessableEntity("`shop` only applies to Shopify.", errors=[
            {"loc": ["query", "shop"], "field": "shop", "msg": "only for shopify", "type": "value_error"}])
    cfg = ConnectionsConfig.from_settings(settings)
    now = utcnow()
    await repository.purge_states(session, org_id, now - timedelta(days=1))
    nonce = new_nonce()
    token, expires = sign_state(settings, user_id=user_id, org_id=org_id, client_id=client_id,
                                platform=platform.value, nonce=nonce, ttl_seconds=cfg.state_ttl_seconds, now=now)
    callback = redirect_uri(settings, platform)
    connector: AnyConnector = (factory.shopify(shop_domain) if shop_domain else factory.ad(platform))
    try:
        start = connector.authorize_url(redirect_uri=callback, state=token)
    finally:
        await connector.aclose()
    row = OAuthState(id=uuid.uuid4(), org_id=org_id, client_id=client_id, user_id=user_id, platform=platform.value,
                     nonce_hash=sha256_hex(nonce), redirect_uri=callback, shop_domain=shop_domain,
                     expires_at=expires)
    if start.code_verifier:
        row.verifier_blob = await _keyring_encrypt(settings, start.code_verifier, _verifier_aad(org_id, row.id))
    repository.add(session, row)
    await audit.record(session, org_id, actor, "connection.authorization_started", target_type="client",
                       target_id=client_id, changes={"platform": platform.value, "shop": shop_domain,
                                                     "pkce": bool(start.code_verifier)})
    await session.commit()
    return start.url


# ------------------------------------------------------------------------------ callback
@dataclass(frozen=True, slots=True)
class _Flow:
    org_id: uuid.UUID
    client_id: uuid.UUID
    user_id: uuid.UUID
    redirect_uri: str
    shop_domain: str | None
    verifier: str | None
    actor: Actor


async def _consume(session: AsyncSession, settings: Settings, platform: Platform, state: str | None,
                   request_actor: Actor) -> _Flow:
    if not state:
        raise BadRequest("The callback has no `state`; start the authorization again.", code="invalid-state")
    try:
        claims = verify_state(settings, state)
    except InvalidState as exc:
        raise BadRequest(str(exc), code="invalid-state") from None
    if claims.platform != platform.value:
        raise BadRequest("The state was issued for another platform.", code="invalid-state")
    await bind_tenant(session, claims.org_id, user_id=str(claims.user_id))
    row = await repository.state_by_nonce(session, claims.org_id, sha256_hex(claims.nonce))
    now = utcnow()
    if (row is None or row.client_id != claims.client_id or row.user_id != claims.user_id
            or row.platform != platform.value):
        raise BadRequest("The state parameter is not valid.", code="invalid-state")
    if row.consumed_at is not None:
        raise BadRequest("This authorization was already completed; start again.", code="state-used")
    if row.expires_at <= now:
        raise BadRequest("The authorization took too long and its state expired; start again.",
                         code="invalid-state")
    verifier = None
    if row.verifier_blob is not None:
        try:
            verifier = await _keyring_decrypt(settings, bytes(row.verifier_blob), _verifier_aad(row.org_id, row.id))
        except DecryptionError:
            raise BadRequest("The authorization cannot be completed; start again.", code="invalid-state") from None
    flow = _Flow(org_id=row.org_id, client_id=row.client_id, user_id=row.user_id, redirect_uri=row.redirect_uri,
                 shop_domain=row.shop_domain, verifier=verifier, actor=request_actor)
    if not await repository.consume_state(session, row.org_id, row.id, now):
        raise BadRequest("This authorization was already completed; start again.", code="state-used")
    # Committed before anything else happens: whatever follows, this state is spent.
    await session.commit()
    user = await auth_repo.get_user(session, flow.user_id)
    role = await _role_of(session, flow.org_id, user) if user is not None and user.is_active else None
    if user is None or role is None:
        raise Forbidden("The user who started this authorization can no longer act in this organization.",
                        code="authorization-revoked")
    if not role_allows(role, Permission.CONNECTIONS_MANAGE):
        raise Forbidden(f"Your role ({role.value}) does not allow {Permission.CONNECTIONS_MANAGE.value}.",
                        code="insufficient-role")
    actor = dataclasses.replace(request_actor, actor_type="user", actor_id=str(user.id), label=user.email)
    return dataclasses.replace(flow, actor=actor)


async def _role_of(session: AsyncSession, org_id: uuid.UUID, user: User) -> Role | None:
    """The user's role in the organization *now* (it may have changed since authorize)."""
    memberships = await orgs.memberships_of(session, user)
    await bind_tenant(session, org_id, user_id=str(user.id))  # memberships_of unbinds the org
    return next((m.role for m, _org in memberships if m.org_id == org_id), None)


async def complete_authorization(
    session: AsyncSession, settings: Settings, factory: ConnectorFactory, platform: Platform,
    query: Sequence[tuple[str, str]], request_actor: Actor,
) -> Connection:
    """The platform sent the user back: check everything, exchange, store, list accounts."""
    params = dict(query)
    flow = await _consume(session, settings, platform, params.get("state"), request_actor)
    if params.get("error") or params.get("error_code"):
        reason = params.get("error_description") or params.get("error_reason") or params.get("error")
        await audit.record(session, flow.org_id, flow.actor, "connection.authorization_denied", target_type="client",
                           target_id=flow.client_id, changes={"platform": platform.value, "reason": str(reason)[:200]})
        await session.commit()
        raise BadRequest(f"The authorization was not granted on the platform ({str(reason)[:200]}).",
                         code="authorization-denied")
    code = params.get("code") or params.get("auth_code")
    if not code:
        raise BadRequest("The callback carries no authorization code.", code="authorization-failed")
    await clients.get_live_client(session, flow.org_id, flow.client_id)
    if platform == Platform.SHOPIFY:
        return await _complete_shopify(session, settings, factory, flow, query, code)

    connector = factory.ad(platform)
    try:
        tokens = await connector.exchange_code(code=code, redirect_uri=flow.redirect_uri,
                                               code_verifier=flow.verifier)
        connector.with_tokens(tokens)  # type: ignore[attr-defined]
        accounts = [_account_view(platform, a) for a in await connector.list_ad_accounts()]
        who = await _who(connector)
    except ConnectorError as exc:
        log.info("connection.authorization_failed", platform=platform.value, error=type(exc).__name__)
        raise platform_error(exc) from None
    finally:
        await connector.aclose()
    if not accounts:
        raise AuthorizationFailed("The authorized user has no ad account we can read; grant access to one and "
                                  "connect again.", code="no-ad-accounts")
    return await _store_connection(session, settings, factory, flow, platform, tokens, accounts, who)


async def _who(connector: AdConnector) -> str | None:
    """The platform-side user id, for support questions ("who connected this?")."""
    try:
        info = await connector.verify()
    except ConnectorError:
        return None
    value = info.get("user_id") or info.get("open_id") or info.get("customer_id")
    return str(value)[:255] if value else None


async def _complete_shopify(session: AsyncSession, settings: Settings, factory: ConnectorFactory, flow: _Flow,
                            query: Sequence[tuple[str, str]], code: str) -> Connection:
    try:
        shop = shopify_oauth.verify_shopify_request(query, factory.shopify_secrets())
    except InvalidRequest as exc:
        raise AuthorizationFailed(f"The Shopify callback is not authentic: {safe_message(exc)}",
                                  code="invalid-signature") from None
    if shop != flow.shop_domain:
        raise AuthorizationFailed("The Shopify callback is for another shop than the one being connected.",
                                  code="invalid-signature")
    connector = factory.shopify(shop)
    try:
        tokens = await connector.exchange_code(code=code, redirect_uri=flow.redirect_uri)
        connector.with_tokens(tokens)
        info = await connector.verify()
    except ConnectorError as exc:
        log.info("connection.authorization_failed", platform="shopify", error=type(exc).__name__)
        raise platform_error(exc) from None
    finally:
        await connector.aclose()
    account = {"id": shop, "name": str(info.get("name") or shop)[:255], "currency": str(info.get("currency") or "USD"),
               "timezone": str(info.get("timezone") or "UTC"), "status": "active"}
    conn = await _store_connection(session, settings, factory, flow, Platform.SHOPIFY, tokens, [account], shop)
    await _register_shop_webhooks(session, settings, factory, conn, shop, tokens, flow.actor)
    return conn


async def _register_shop_webhooks(session: AsyncSession, settings: Settings, factory: ConnectorFactory,
                                  conn: Connection, shop: str, tokens: TokenSet, actor: Actor) -> None:
    """Subscribe the shop's order and uninstall webhooks to this connection's inbound source.

    Best effort: the connection works without them (the scheduled sync reads orders
    anyway, only later), so a refusal is logged and audited, not raised. Idempotent: a
    topic already pointing at our address is not subscribed twice.
    """
    from omnify.integrations.shopify.webhooks import SUBSCRIBABLE_TOPICS
    from omnify.webhooks import inbound

    if conn.inbound_source_id is None:
        source = await inbound.create_source(session, settings, conn.org_id, provider="shopify",
                                             name=f"Shopify {shop}", account=shop, ref_type="connection",
                                             ref_id=str(conn.id))
        conn.inbound_source_id = source.id
        path = inbound.receiver_path(source)
        await session.commit()
    else:
        path = f"/api/v1/webhooks/inbound/shopify/{conn.inbound_source_id}"
    address = settings.public_base_url.rstrip("/") + path
    connector = factory.shopify(shop, tokens)
    subscribed: list[str] = []
    error = None
    try:
        existing = {(str(w.get("topic")), str(w.get("address"))) for w in await connector.webhooks()}
        for topic in sorted(t.value for t in SUBSCRIBABLE_TOPICS):
            if (topic, address) not in existing:
                await connector.subscribe_webhook(topic, address)
            subscribed.append(topic)
    except ConnectorError as exc:
        error = error_code_for(exc)
        log.warning("connection.shopify_webhooks_failed", shop=shop, error=type(exc).__name__)
    finally:
        await connector.aclose()
    await audit.record(session, conn.org_id, actor, "connection.webhooks_registered", target_type="connection",
                       target_id=conn.id, changes={"platform": "shopify", "topics": subscribed, "error": error})
    await session.commit()


async def _store_connection(
    session: AsyncSession, settings: Settings, factory: ConnectorFactory, flow: _Flow, platform: Platform,
    tokens: TokenSet, accounts: list[dict[str, Any]], who: str | None,
) -> Connection:
    org_id, client_id, actor = flow.org_id, flow.client_id, flow.actor
    conn = await repository.get(session, org_id, client_id, platform.value)
    reachable = [a["id"] for a in accounts]
    previous = [a for a in (conn.selected_account_ids if conn else []) if a in reachable]
    selected = previous or (reachable[:1] if len(reachable) == 1 else [])
    primary = selected[0] if selected else reachable[0]
    body = _credential_in(factory, platform, tokens, primary)
    await credentials.put_credential(session, keyrings_for(settings), org_id, actor, client_id,
                                     CredentialPlatform(platform.value), body)
    now = utcnow()
    created = conn is None
    if conn is None:
        conn = Connection(id=uuid.uuid4(), org_id=org_id, client_id=client_id, platform=platform.value,
                          backfill_status=BackfillStatus.NONE.value, consecutive_failures=0,
                          backfill_units_total=0, backfill_units_done=0, backfill_rows=0)
        repository.add(session, conn)
    conn.status = ConnectionStatus.CONNECTED.value
    conn.available_accounts = accounts
    conn.selected_account_ids = selected
    conn.scopes = list(body.scopes)
    conn.token_expires_at = tokens.expires_at
    conn.external_user_id = who
    conn.shop_domain = flow.shop_domain
    conn.connected_by_id = flow.user_id
    conn.connected_at = now
    conn.disconnected_at = None
    conn.last_verified_at = now
    conn.last_error = None
    conn.last_error_code = None
    conn.consecutive_failures = 0
    conn.next_sync_at = None
    await session.flush()
    await audit.record(session, org_id, actor, "connection.connected", target_type="connection", target_id=conn.id,
                       changes={"client_id": str(client_id), "platform": platform.value, "reconnected": not created,
                                "accounts": len(accounts), "selected": selected})
    await events.emit(session, org_id, "connection.connected",
                      {"connection_id": conn.id, "client_id": client_id, "platform": platform.value,
                       "accounts": reachable, "selected_account_ids": selected})
    if selected:
        _queue_sync(session, conn, trigger="connect", new_accounts=created or selected != previous)
    await session.commit()
    return conn


def _queue_sync(session: AsyncSession, conn: Connection, *, trigger: str, new_accounts: bool) -> None:
    """Nudge a run; a backfill is pending when nothing was backfilled yet, the last one
    failed, or accounts were added (a reconnect with the same accounts is incremental)."""
    if conn.backfill_status in (BackfillStatus.NONE.value, BackfillStatus.FAILED.value) or (
            new_accounts and conn.backfill_status == BackfillStatus.DONE.value):
        conn.backfill_status = BackfillStatus.PENDING.value
    dispatch.enqueue_after_commit(session, SYNC_TASK, {"org_id": str(conn.org_id), "connection_id": str(conn.id),
                                                       "trigger": trigger})


# ------------------------------------------------------------------------------ accounts
async def select_accounts(session: AsyncSession, org_id: uuid.UUID, actor: Actor, client_id: uuid.UUID,
                          platform: Platform, account_ids: Sequence[str]) -> Connection:
    await clients.get_live_client(session, org_id, client_id)
    conn = await get_connection(session, org_id, client_id, platform)
    if conn.status == ConnectionStatus.DISCONNECTED.value:
        raise Conflict("The platform is disconnected; connect it again first.", code="not-connected")
    reachable = {str(a.get("id")) for a in conn.available_accounts if isinstance(a, dict)}
    unknown = [a for a in account_ids if a not in reachable]
    if unknown:
        raise UnprocessableEntity("Some accounts are not reachable with this connection.", errors=[
            {"loc": ["body", "account_ids", str(i)], "field": f"account_ids.{i}",
             "msg": f"{a} is not one of this connection's accounts", "type": "value_error"}
            for i, a in enumerate(account_ids) if a in unknown])
    before = list(conn.selected_account_ids)
    conn.selected_account_ids = list(account_ids)
    added = [a for a in account_ids if a not in before]
    await audit.record(session, org_id, actor, "connection.accounts_selected", target_type="connection",
                       target_id=conn.id, changes={"platform": platform.value, "before": before,
                                                   "after": list(account_ids)})
    if added and conn.status == ConnectionStatus.CONNECTED.value:
        _queue_sync(session, conn, trigger="accounts", new_accounts=True)
    await session.commit()
    return conn


# ------------------------------------------------------------------------------ live connector
@dataclass
class LiveConnection:
    """A connector bound to a connection's current tokens, refreshing and persisting them.

    With ``defer_persist`` (the sync), tokens a connector refreshed by itself in the middle
    of a step are kept in memory until :meth:`flush_tokens`, called between steps: storing
    them needs its own transaction, which on SQLite would wait on the step's open write.
    """

    connection_id: uuid.UUID
    org_id: uuid.UUID
    client_id: uuid.UUID
    platform: Platform
    shop_domain: str | None
    connector: AnyConnector
    tokens: TokenSet
    persist: TokenPersist
    defer_persist: bool = False
    refreshed: int = field(default=0)
    _pending: TokenSet | None = field(default=None, repr=False)

    @property
    def ads(self) -> AdConnector:
        assert not isinstance(self.connector, ShopifyConnector)
        return self.connector

    @property
    def shop(self) -> ShopifyConnector:
        assert isinstance(self.connector, ShopifyConnector)
        return self.connector

    async def on_tokens(self, fresh: TokenSet) -> None:
        """Tokens a connector refreshed by itself (TikTok): keep and store them."""
        self.tokens = fresh
        self.refreshed += 1
        self._pending = fresh
        if not self.defer_persist:
            await self.flush_tokens()

    async def flush_tokens(self) -> None:
        pending, self._pending = self._pending, None
        if pending is not None:
            await self.persist(pending)

    async def refresh(self) -> TokenSet:
        if isinstance(self.connector, ShopifyConnector):
            raise AuthRevoked("Shopify tokens cannot be refreshed; reinstall the app")
        fresh = await self.connector.refresh(self.tokens)
        self.connector.with_tokens(fresh)  # type: ignore[attr-defined]
        self.tokens = fresh
        self.refreshed += 1
        self._pending = fresh
        await self.flush_tokens()
        return fresh

    async def aclose(self) -> None:
        await self.connector.aclose()


async def open_connector(
    session: AsyncSession, settings: Settings, factory: ConnectorFactory, conn: Connection, actor: Actor, *,
    purpose: str, persist: TokenPersist | None = None, refresh_if_due: bool = True, defer_persist: bool = False,
) -> LiveConnection:
    """Decrypt the connection's tokens (audited) and bind a connector; refresh first when the
    access token is expired or about to be, so the first call does not fail on it."""
    platform = Platform(conn.platform)
    org_id, conn_id, client_id = conn.org_id, conn.id, conn.client_id
    expires = conn.token_expires_at
    cred = await credentials.reveal(session, keyrings_for(settings), org_id, client_id,
                                    CredentialPlatform(platform.value), actor, purpose=purpose)
    tokens = TokenSet(access_token=cred.get("access_token") or "", refresh_token=cred.get("refresh_token"),
                      expires_at=expires, scopes=list(cred.scopes))

    async def default_persist(fresh: TokenSet) -> None:
        await save_tokens(session, settings, factory, org_id, conn_id, fresh, actor)

    live = LiveConnection(connection_id=conn_id, org_id=org_id, client_id=client_id, platform=platform,
                          shop_domain=conn.shop_domain, connector=None,  # type: ignore[arg-type]
                          tokens=tokens, persist=persist or default_persist, defer_persist=defer_persist)
    if platform == Platform.SHOPIFY:
        live.connector = factory.shopify(conn.shop_domain or cred.account_id or "", tokens)
    else:
        live.connector = factory.ad(platform, tokens, on_tokens=live.on_tokens)
    skew = ConnectionsConfig.from_settings(settings).refresh_skew_seconds
    if (refresh_if_due and platform != Platform.SHOPIFY and expires is not None
            and expires - utcnow() < timedelta(seconds=skew)):
        try:
            await live.refresh()
        except BaseException:
            await live.aclose()
            raise
    return live


async def save_tokens(session: AsyncSession, settings: Settings, factory: ConnectorFactory, org_id: uuid.UUID,
                      connection_id: uuid.UUID, tokens: TokenSet, actor: Actor) -> None:
    """Store refreshed tokens in the credential store and remember when they expire."""
    conn = await get_by_id(session, org_id, connection_id)
    platform = Platform(conn.platform)
    existing = await credentials.get_credential(session, org_id, conn.client_id, CredentialPlatform(platform.value))
    account = existing.account_id or (conn.selected_account_ids[0] if conn.selected_account_ids else "")
    if platform == Platform.META_ADS:
        account = account.removeprefix("act_")
    if not tokens.scopes:
        tokens.scopes = list(conn.scopes)
    body = _credential_in(factory, platform, tokens, account)
    await credentials.put_credential(session, keyrings_for(settings), org_id, actor, conn.client_id,
                                     CredentialPlatform(platform.value), body)
    conn = await get_by_id(session, org_id, connection_id)
    conn.token_expires_at = tokens.expires_at
    await audit.record(session, org_id, actor, "connection.tokens_refreshed", target_type="connection",
                       target_id=conn.id, changes={"platform": platform.value,
                                                   "expires_at": tokens.expires_at.isoformat()
                                                   if tokens.expires_at else None})
    await session.commit()


# ------------------------------------------------------------------------------ health
async def mark_failed(
    session: AsyncSession, settings: Settings, conn: Connection, actor: Actor, exc: BaseException, *,
    needs_reauth: bool,
) -> None:
    """Record a refused authorization (``needs_reauth``: owners e-mailed, connection.failed
    emitted) or another failure (``error``)."""
    code, message = error_code_for(exc), safe_message(exc)
    if isinstance(exc, NotFound):
        code, message = "credential_missing", "The stored credential was removed; connect the platform again."
    previous = conn.status
    conn.status = (ConnectionStatus.NEEDS_REAUTH if needs_reauth else ConnectionStatus.ERROR).value
    conn.last_error, conn.last_error_code = message[:1000], code
    await audit.record(session, conn.org_id, actor, "connection.failed", target_type="connection", target_id=conn.id,
                       changes={"platform": conn.platform, "status": conn.status, "error_code": code,
                                "previous_status": previous})
    if needs_reauth and previous != ConnectionStatus.NEEDS_REAUTH.value:
        await events.emit(session, conn.org_id, "connection.failed",
                          {"connection_id": conn.id, "client_id": conn.client_id, "platform": conn.platform,
                           "error_code": code, "message": message})
        await _email_owners(session, settings, conn, message)
    await session.commit()
    if needs_reauth:
        with contextlib.suppress(NotFound):
            await credentials.record_verification(session, conn.org_id, actor, conn.client_id,
                                                  CredentialPlatform(conn.platform), ok=False, error=message)


async def _email_owners(session: AsyncSession, settings: Settings, conn: Connection, message: str) -> None:
    org = await orgs.get_org(session, conn.org_id)
    client = await clients.get_client(session, conn.org_id, conn.client_id)
    owners = await orgs.list_members(session, conn.org_id, PageParams(limit=200), Role.OWNER)
    day = utcnow().date().isoformat()
    url = f"{settings.public_base_url}/orgs/{conn.org_id}/clients/{conn.client_id}/connections"
    for _membership, user in owners:
        if not user.is_active:
            continue
        await queue_email(
            session, to=user.email, template="sync_failing", org_id=conn.org_id,
            dedupe_key=f"connection-failed:{conn.id}:{day}:{user.id}",
            context={"name": user.name, "org_name": org.name, "client_name": client.company_name,
                     "platform": conn.platform,
                     "error_message": f"The connection needs to be authorized again. {message}"[:500],
                     "details_url": url})


async def test_connection(
    session: AsyncSession, settings: Settings, factory: ConnectorFactory, org_id: uuid.UUID, actor: Actor,
    client_id: uuid.UUID, platform: Platform,
) -> tuple[Connection, bool, dict[str, Any]]:
    """Call the platform with the stored tokens; record status, last_verified_at, last_error."""
    conn = await get_connection(session, org_id, client_id, platform)
    if conn.status == ConnectionStatus.DISCONNECTED.value:
        raise Conflict("The platform is disconnected; connect it again first.", code="not-connected")
    conn_id = conn.id
    details: dict[str, Any] = {}
    try:
        live = await open_connector(session, settings, factory, conn, actor, purpose="connection test")
        try:
            try:
                info = await live.connector.verify()
            except AuthExpired:
                await live.refresh()
                info = await live.connector.verify()
        finally:
            await live.aclose()
    except (TransientError, RateLimited, CircuitOpen) as exc:
        # The platform is having trouble, not the connection: say so, keep the status.
        await session.rollback()
        conn = await get_by_id(session, org_id, conn_id)
        conn.last_verified_at = utcnow()
        conn.last_error, conn.last_error_code = safe_message(exc)[:1000], error_code_for(exc)
        await session.commit()
        return conn, False, {"error_code": conn.last_error_code}
    except (ConnectorError, NotFound) as exc:
        await session.rollback()
        conn = await get_by_id(session, org_id, conn_id)
        conn.last_verified_at = utcnow()
        refused = isinstance(exc, AuthRevoked | AuthExpired | NotFound)
        await mark_failed(session, settings, conn, actor, exc, needs_reauth=refused)
        return await get_by_id(session, org_id, conn_id), False, {"error_code": conn.last_error_code}
    details = {k: v for k, v in info.items() if isinstance(v, str | int | float | bool | list) and k != "ok"}
    conn = await get_by_id(session, org_id, conn_id)
    conn.status = ConnectionStatus.CONNECTED.value
    conn.last_verified_at = utcnow()
    conn.last_error, conn.last_error_code = None, None
    await audit.record(session, org_id, actor, "connection.tested", target_type="connection", target_id=conn.id,
                       changes={"platform": platform.value, "ok": True})
    await session.commit()
    await credentials.record_verification(session, org_id, actor, client_id, CredentialPlatform(platform.value),
                                          ok=True)
    return await get_by_id(session, org_id, conn_id), True, details


# ------------------------------------------------------------------------------ disconnect
async def disconnect(
    session: AsyncSession, settings: Settings, factory: ConnectorFactory, org_id: uuid.UUID, actor: Actor,
    client_id: uuid.UUID, platform: Platform,
) -> bool:
    """Revoke at the platform (best effort: our secrets go regardless) and delete the secrets.

    Returns whether the platform confirmed the revocation. Synced history stays: the data
    was the client's and reports over past periods keep working.
    """
    conn = await get_connection(session, org_id, client_id, platform)
    if conn.status == ConnectionStatus.DISCONNECTED.value:
        raise NotConnected(f"{platform_label(platform.value)} is already disconnected.")
    conn_id = conn.id
    revoked, revoke_error = False, None
    try:
        live = await open_connector(session, settings, factory, conn, actor, purpose="disconnect (revoke)",
                                    refresh_if_due=False)
        try:
            await live.connector.revoke(live.tokens)
            revoked = True
        finally:
            await live.aclose()
    except ConnectorError as exc:
        revoke_error = error_code_for(exc)
        log.info("connection.revoke_failed", platform=platform.value, error=type(exc).__name__)
    except NotFound:
        revoke_error = "credential_missing"
    with contextlib.suppress(NotFound):
        await credentials.delete_credential(session, org_id, actor, client_id, CredentialPlatform(platform.value))
    conn = await get_by_id(session, org_id, conn_id)
    if conn.inbound_source_id is not None:  # uninstalling removed Shopify's subscriptions; stop listening too
        from omnify.webhooks import inbound

        with contextlib.suppress(NotFound):
            await inbound.disable_source(session, org_id, conn.inbound_source_id)
        conn.inbound_source_id = None
    conn.status = ConnectionStatus.DISCONNECTED.value
    conn.disconnected_at = utcnow()
    conn.token_expires_at = None
    conn.next_sync_at = None
    await audit.record(session, org_id, actor, "connection.disconnected", target_type="connection",
                       target_id=conn.id, changes={"platform": platform.value, "revoked_at_platform": revoked,
                                                   "revoke_error": revoke_error})
    await events.emit(session, org_id, "connection.disconnected",
                      {"connection_id": conn.id, "client_id": client_id, "platform": platform.value,
                       "revoked_at_platform": revoked})
    await session.commit()
    return revoked


# ------------------------------------------------------------------------------ token refresh job
@dataclass
class RefreshReport:
    checked: int = 0
    refreshed: int = 0
    needs_reauth: int = 0
    errors: list[str] = field(default_factory=list)


async def refresh_expiring(db: Database, factory: ConnectorFactory, *, now: datetime | None = None,
                           batch: int = 100) -> RefreshReport:
    """Refresh every connection whose access token expires within its platform's window.

    Walks organizations one at a time with the tenant bound (the app role's RLS). A
    refusal (revoked grant, dead refresh token, expired Meta token) marks the connection
    ``needs_reauth``; a transient failure is left for the next round.
    """
    settings = factory.settings
    cfg = ConnectionsConfig.from_settings(settings)
    moment = now or utcnow()
    report = RefreshReport()
    actor = Actor.system("token refresh")
    async with db.sessionmaker() as session:
        org_ids = await clients.all_org_ids(session)
    for org_id in org_ids:
        for platform, window in cfg.refresh_windows.items():
            async with db.sessionmaker() as session:
                await bind_tenant(session, org_id)
                due = [(c.id, c.platform) for c in
                       await repository.expiring(session, org_id, moment + timedelta(seconds=window), platform, batch)]
            for conn_id, plat in due:
                report.checked += 1
                async with db.sessionmaker() as session:
                    await bind_tenant(session, org_id)
                    await _refresh_one(session, settings, factory, org_id, conn_id, plat, actor, report)
    return report


async def _refresh_one(session: AsyncSession, settings: Settings, factory: ConnectorFactory, org_id: uuid.UUID,
                       conn_id: uuid.UUID, platform: str, actor: Actor, report: RefreshReport) -> None:
    conn = await get_by_id(session, org_id, conn_id)
    try:
        live = await open_connector(session, settings, factory, conn, actor, purpose="token refresh",
                                    refresh_if_due=False)
        try:
            await live.refresh()
        finally:
            await live.aclose()
        report.refreshed += 1
        log.info("connection.tokens_refreshed", platform=platform, connection_id=str(conn_id))
    except (TransientError, RateLimited, CircuitOpen) as exc:
        report.errors.append(f"{conn_id}: {type(exc).__name__}")
        log.warning("connection.refresh_deferred", platform=platform, connection_id=str(conn_id),
                    error=type(exc).__name__)
    except (ConnectorError, NotFound) as exc:
        await session.rollback()
        conn = await get_by_id(session, org_id, conn_id)
        await mark_failed(session, settings, conn, actor, exc, needs_reauth=True)
        report.needs_reauth += 1
        log.warning("connection.refresh_refused", platform=platform, connection_id=str(conn_id),
                    error=type(exc).__name__)


# ------------------------------------------------------------------------------ for omnify.sync
def new_lock_token() -> str:
    return pysecrets.token_hex(16)


async def acquire_sync_lock(session: AsyncSession, org_id: uuid.UUID, connection_id: uuid.UUID, token: str,
                            lease_seconds: float) -> bool:
    now = utcnow()
    got = await repository.try_lock(session, org_id, connection_id, token, now,
                                    now + timedelta(seconds=lease_seconds))
    await session.commit()
    return got


async def renew_sync_lock(session: AsyncSession, org_id: uuid.UUID, connection_id: uuid.UUID, token: str,
                          lease_seconds: float) -> bool:
    """Extend the lease (caller commits); false if another run took it over (lease lapsed)."""
    return await repository.renew_lock(session, org_id, connection_id, token,
                                       utcnow() + timedelta(seconds=lease_seconds))


async def sync_lock_remaining(session: AsyncSession, org_id: uuid.UUID, connection_id: uuid.UUID) -> float:
    """Seconds until the current holder's lease lapses (0 if free or already lapsed): how
    long a run that found the connection locked waits before it tries again."""
    until = await repository.lock_expiry(session, org_id, connection_id)
    if until is None:
        return 0.0
    if until.tzinfo is None:  # SQLite hands a naive value to a bare column read
        until = until.replace(tzinfo=UTC)
    return max((until - utcnow()).total_seconds(), 0.0)


async def release_sync_lock(session: AsyncSession, org_id: uuid.UUID, connection_id: uuid.UUID, token: str) -> None:
    await repository.unlock(session, org_id, connection_id, token)
    await session.commit()


async def due_connections(session: AsyncSession, org_id: uuid.UUID, now: datetime,
                          limit: int = 200) -> list[Connection]:
    return [c for c in await repository.due_for_sync(session, org_id, now, limit) if c.selected_account_ids]


async def active_connections(session: AsyncSession, org_id: uuid.UUID) -> list[Connection]:
    return list(await repository.active(session, org_id))


def record_backfill_start(conn: Connection, *, units: int, days: int, now: datetime) -> None:
    conn.backfill_status = BackfillStatus.RUNNING.value
    conn.backfill_days = days
    conn.backfill_started_at = now
    conn.backfill_finished_at = None
    conn.backfill_units_total = units
    conn.backfill_units_done = 0
    conn.backfill_rows = 0


def record_progress(conn: Connection, *, units: int, rows: int) -> None:
    conn.backfill_units_done = min((conn.backfill_units_done or 0) + units, conn.backfill_units_total or 0)
    conn.backfill_rows = (conn.backfill_rows or 0) + rows


def record_sync_success(conn: Connection, *, now: datetime, interval: float, backfill: bool) -> None:
    conn.last_synced_at = now
    conn.last_sync_status = "succeeded"
    conn.consecutive_failures = 0
    conn.next_sync_at = now + timedelta(seconds=interval)
    if conn.last_error_code in ("platform_unavailable", "circuit_open", "rate_limited", "lease_lost",
                                "internal_error", "platform_error"):
        conn.last_error, conn.last_error_code = None, None
    if backfill:
        conn.backfill_status = BackfillStatus.DONE.value
        conn.backfill_finished_at = now
        conn.backfill_units_done = conn.backfill_units_total


def record_sync_failure(conn: Connection, *, now: datetime, status: str, code: str, message: str,
                        cfg_interval: float, max_backoff: float, retry_after: float | None) -> None:
    """A deferred run comes back after the platform's Retry-After; a failed one after an
    exponential pause (5 min, 10 min, ... capped), so a broken platform is not hammered."""
    conn.last_sync_status = status
    conn.last_error, conn.last_error_code = message[:1000], code
    if retry_after is not None:
        conn.next_sync_at = now + timedelta(seconds=retry_after)
        return
    conn.consecutive_failures = (conn.consecutive_failures or 0) + 1
    base = min(cfg_interval, 300.0)
    pause = min(base * 2 ** (conn.consecutive_failures - 1), max_backoff)
    conn.next_sync_at = now + timedelta(seconds=pause)
    if conn.backfill_status == BackfillStatus.RUNNING.value:
        conn.backfill_status = BackfillStatus.FAILED.value


async def platform_revoked(session: AsyncSession, org_id: uuid.UUID, connection_id: uuid.UUID, actor: Actor, *,
                           reason: str) -> None:
    """The platform told us our access is gone (Shopify ``app/uninstalled``): forget the
    secret, stop listening, mark the connection disconnected. Idempotent. Commits (the
    credential store's delete does), so call it last in the processor's transaction."""
    conn = await get_by_id(session, org_id, connection_id)
    if conn.status == ConnectionStatus.DISCONNECTED.value:
        return
    if conn.inbound_source_id is not None:
        from omnify.webhooks import inbound

        with contextlib.suppress(NotFound):
            await inbound.disable_source(session, org_id, conn.inbound_source_id)
        conn.inbound_source_id = None
    conn.status = ConnectionStatus.DISCONNECTED.value
    conn.disconnected_at = utcnow()
    conn.token_expires_at = None
    conn.next_sync_at = None
    conn.last_error, conn.last_error_code = reason[:1000], "platform_revoked"
    await audit.record(session, org_id, actor, "connection.revoked_by_platform", target_type="connection",
                       target_id=conn.id, changes={"platform": conn.platform, "reason": reason[:200]})
    await events.emit(session, org_id, "connection.failed",
                      {"connection_id": conn.id, "client_id": conn.client_id, "platform": conn.platform,
                       "error_code": "platform_revoked", "message": reason[:500]})
    await session.flush()
    with contextlib.suppress(NotFound):
        await credentials.delete_credential(session, org_id, actor, conn.client_id,
                                            CredentialPlatform(conn.platform))
