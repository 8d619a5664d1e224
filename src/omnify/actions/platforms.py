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
from omnify.core.errors import AppError, Conflict
from omnify.credentials import service as credentials
from omnify.credentials.keys import keyrings_for
from omnify.credentials.platforms import Platform as CredentialPlatform
from omnify.credentials.service import RevealedCredential
from omnify.integrations.base import AdConnector, ConnectorError, Platform, TokenSet
from omnify.settings import Settings


class PlatformNotSupported(Conflict):
    code, title = "platform-not-supported", "Platform does not support this action"


class PlatformError(AppError):
    """The ad platform refused or failed the change; nothing is left half-done (see service)."""

    status, code, title = 502, "platform-error", "The ad platform refused the change"


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


def platform_error(exc: ConnectorError, platform: str) -> PlatformError:
    """A client-safe error (connector messages never carry secrets)."""
    return PlatformError(f"{platform}: {exc}", platform=platform, platform_code=exc.platform_code,
                         upstream_status=exc.status)


