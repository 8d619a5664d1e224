"""Opening a write-capable ad-platform connector for one client.

The client's token comes from :func:`omnify.credentials.service.reveal` (decrypted,
audited with the purpose); the app-level settings (app id/secret, base URLs, which the
sandbox overrides) come from :class:`omnify.settings.Settings`. Tests and alternative
deployments replace :data:`connector_factory` (e.g. with a transport-injecting one).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from omnify.core.context import Actor
from omnify.core.errors import AppError, Conflict, ServiceUnavailable
from omnify.credentials import service as credentials
from omnify.credentials.keys import keyrings_for
from omnify.credentials.platforms import Platform as CredentialPlatform
from omnify.credentials.service import RevealedCredential
from omnify.integrations.base import (
    AdConnector,
    AuthExpired,
    AuthRevoked,
    CircuitOpen,
    ConnectorError,
    InvalidRequest,
    PermissionDenied,
    Platform,
    TokenSet,
    retry_after_seconds,
)
from omnify.settings import Settings


class PlatformNotSupported(Conflict):
    code, title = "platform-not-supported", "Platform does not support this action"


class PlatformError(AppError):
    """The ad platform failed the change in a way neither refused it nor asked to retry (an
    answer the connector could not read); nothing is left half-done (see service)."""

    status, code, title = 502, "platform-error", "The ad platform failed the change"


class PlatformRefused(Conflict):
    """The platform answered and refused: the entity is not (or no longer) reachable with this
    connection, a field is invalid for its current state, or access was revoked. Retrying the
    same change will not help until something changes on the platform or the connection, so it
    is the caller's conflict with the platform's state (409), not a failure of ours or of the
    platform (5xx)."""

    code, title = "platform-refused", "The ad platform refused the change"


class PlatformBusy(ServiceUnavailable):
    """The platform is rate limiting, failing transiently or short-circuited: retry later."""

    code, title = "platform-unavailable", "The ad platform is unavailable"


#: Seconds a client should wait when the platform gave no Retry-After of its own.
PLATFORM_RETRY_AFTER_SECONDS = 30


def _secret(value: Any) -> str:
    return value.get_secret_value() if value is not None else ""


def build_connector(settings: Settings, platform: Platform, cred: RevealedCredential) -> AdConnector:
    """A connector bound to the credential's token (no I/O yet)."""
    tokens = TokenSet(access_token=cred.secret("access_token") if "access_token" in cred.secrets else "",
                      refresh_token=cred.get("refresh_token"), expires_at=cred.expires_at, scopes=list(cred.scopes))
    if platform == Platform.META_ADS:
        from omnify.integrations.meta import MetaAdsConnector, MetaConfig

        app_secret = cred.get("app_secret") or _secret(settings.meta_app_secret)
        return MetaAdsConnector(MetaConfig(app_id=settings.meta_app_id, app_secret=app_secret,
                                           graph_url=settings.meta_graph_url, dialog_url=settings.meta_dialog_url,
                                           api_version=settings.meta_api_version), tokens)
    if platform == Platform.GOOGLE_ADS:
        from omnify.integrations.google import GoogleAdsConnector, GoogleConfig

        developer = cred.get("developer_token") or _secret(settings.google_developer_token)
        return GoogleAdsConnector(GoogleConfig(
            client_id=settings.google_client_id,
            client_secret=cred.get("client_secret") or _secret(settings.google_client_secret),
            developer_token=developer, login_customer_id=settings.google_login_customer_id,
            ads_url=settings.google_ads_url, auth_url=settings.google_auth_url, token_url=settings.google_token_url,
            revoke_url=settings.google_revoke_url, api_version=settings.google_ads_api_version,
        ), tokens)
    if platform == Platform.TIKTOK_ADS:
        from omnify.integrations.tiktok.client import TikTokConnector, TikTokSettings

        return TikTokConnector(TikTokSettings(
            app_id=settings.tiktok_app_id or "", secret=cred.get("app_secret") or _secret(settings.tiktok_app_secret),
            base_url=settings.tiktok_base_url, auth_url=settings.tiktok_auth_url,
        ), tokens)
    if platform == Platform.LINKEDIN_ADS:
        from omnify.connections.connectors import linkedin_config
        from omnify.integrations.linkedin import LinkedInAdsConnector

        return LinkedInAdsConnector(linkedin_config(settings, client_secret=cred.get("client_secret")), tokens)
    raise PlatformNotSupported(f"{platform.value} has no ad write actions.")


ConnectorFactory = Callable[[Settings, Platform, RevealedCredential], AdConnector]
#: Swappable (tests inject transports or fakes of platforms that have no sandbox).
connector_factory: ConnectorFactory = build_connector


async def open_connector(
    session: AsyncSession, settings: Settings, org_id: uuid.UUID, client_id: uuid.UUID, platform: str,
    actor: Actor, *, purpose: str,
) -> AdConnector:
    """Decrypt the client's credential for ``platform`` (audited) and bind a connector to it."""
    try:
        plat = Platform(platform)
        cred_platform = CredentialPlatform(platform)
    except ValueError:
        raise PlatformNotSupported(f"Unknown platform {platform!r}.") from None
    cred = await credentials.reveal(session, keyrings_for(settings), org_id, client_id, cred_platform, actor,
                                    purpose=purpose)
    return connector_factory(settings, plat, cred)


def platform_error(exc: ConnectorError, platform: str) -> AppError:
    """A client-safe error (connector messages never carry secrets), by what the platform said:
    a refusal is 409, a retryable failure 503 with Retry-After, anything else 502."""
    detail = f"{platform}: {exc}"
    extra: dict[str, Any] = {"platform": platform, "platform_code": exc.platform_code, "upstream_status": exc.status}
    if isinstance(exc, InvalidRequest | PermissionDenied | AuthRevoked | AuthExpired):
        return PlatformRefused(detail, **extra)
    if exc.retryable or isinstance(exc, CircuitOpen):
        wait = retry_after_seconds(exc) or PLATFORM_RETRY_AFTER_SECONDS
        return PlatformBusy(detail, headers={"Retry-After": str(wait)}, **extra)
    return PlatformError(detail, **extra)


