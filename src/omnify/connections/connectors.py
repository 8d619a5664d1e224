"""Building platform connectors from settings: the one switch between sandbox and live.

The app-level secrets and base URLs come from :class:`omnify.settings.Settings`; the
tokens come from the encrypted credential store. Retry policy and circuit breakers are
injectable so tests run with fast retries and their own breakers, and production can
share breaker state across workers.

An app (or a test) overrides the factory with ``app.state.connector_factory``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import SecretStr

from omnify.connections.config import knob
from omnify.core.errors import UnprocessableEntity
from omnify.integrations.base import AdConnector, Platform, TokenSet
from omnify.integrations.http import CircuitBreakers, HttpObserver, RetryPolicy, TokenCallback
from omnify.integrations.shopify.client import ShopifyConnector, ShopifySettings
from omnify.settings import Settings

AnyConnector = AdConnector | ShopifyConnector


class PlatformNotConfigured(UnprocessableEntity):
    code, title = "platform-not-configured", "Platform app credentials are not configured"


def _secret(value: SecretStr | None) -> str:
    return value.get_secret_value() if value is not None else ""


def retry_policy_from(settings: Settings) -> RetryPolicy:
    return RetryPolicy(
        max_attempts=int(knob(settings, "sync_retry_max_attempts", 5)),
        base_delay=float(knob(settings, "sync_retry_base_delay", 0.5)),
        max_delay=float(knob(settings, "sync_retry_max_delay", 30.0)),
        max_retry_after=float(knob(settings, "sync_retry_max_retry_after", 120.0)),
    )


def linkedin_config(settings: Settings, *, client_secret: str | None = None) -> Any:
    """The LinkedIn connector's configuration from settings (the API version is the pin unless
    a deployment overrides it: see the settings' ``_pinned_api_versions``)."""
    from omnify.integrations.linkedin import LinkedInConfig

    return LinkedInConfig(client_id=settings.linkedin_client_id or "",
                          client_secret=client_secret or _secret(settings.linkedin_client_secret),
                          api_url=settings.linkedin_api_url, oauth_url=settings.linkedin_oauth_url,
                          api_version=settings.linkedin_api_version)


@dataclass
class ConnectorFactory:
    settings: Settings
    retry: RetryPolicy | None = None
    breakers: CircuitBreakers | None = None
    observer: HttpObserver | None = None

    def __post_init__(self) -> None:
        if self.retry is None:
            self.retry = retry_policy_from(self.settings)

    def _common(self) -> dict[str, Any]:
        return {"retry": self.retry, "breakers": self.breakers, "observer": self.observer}

    # -- app configuration --------------------------------------------------------
    def check_configured(self, platform: Platform) -> None:
        """Refuse to start a flow the platform would reject for lack of our app's identity."""
        if platform.value in self.settings.missing_platform_settings():
            raise PlatformNotConfigured(
                f"{platform.value} is not configured on this Omnify instance (its app id and secret are missing); "
                "an operator must set them.")

    @property
    def google_developer_token(self) -> str:
        return _secret(self.settings.google_developer_token)

    # -- connectors -----------------------------------------------------------------
    def ad(self, platform: Platform, tokens: TokenSet | None = None, *,
           on_tokens: TokenCallback | None = None) -> AdConnector:
        s = self.settings
        if platform == Platform.META_ADS:
            from omnify.integrations.meta import MetaAdsConnector, MetaConfig

            return MetaAdsConnector(MetaConfig(app_id=s.meta_app_id, app_secret=_secret(s.meta_app_secret),
                                               graph_url=s.meta_graph_url, dialog_url=s.meta_dialog_url,
                                               api_version=s.meta_api_version), tokens, **self._common())
        if platform == Platform.GOOGLE_ADS:
            from omnify.integrations.google import GoogleAdsConnector, GoogleConfig

            return GoogleAdsConnector(GoogleConfig(
                client_id=s.google_client_id, client_secret=_secret(s.google_client_secret),
                developer_token=_secret(s.google_developer_token), login_customer_id=s.google_login_customer_id,
                ads_url=s.google_ads_url, auth_url=s.google_auth_url, token_url=s.google_token_url,
                revoke_url=s.google_revoke_url, api_version=s.google_ads_api_version,
            ), tokens, **self._common())
        if platform == Platform.TIKTOK_ADS:
            from omnify.integrations.tiktok import TikTokConnector, TikTokSettings

            return TikTokConnector(TikTokSettings(app_id=s.tiktok_app_id or "", secret=_secret(s.tiktok_app_secret),
                                                  base_url=s.tiktok_base_url, auth_url=s.tiktok_auth_url),
                                   tokens, on_tokens=on_tokens, **self._common())
        if platform == Platform.LINKEDIN_ADS:
            from omnify.integrations.linkedin import LinkedInAdsConnector

            return LinkedInAdsConnector(linkedin_config(s), tokens, on_tokens=on_tokens, **self._common())
        raise ValueError(f"{platform.value} is not an ad platform")

    def shopify(self, shop: str, tokens: TokenSet | None = None) -> ShopifyConnector:
        s = self.settings
        config = ShopifySettings(api_key=s.shopify_api_key or "", api_secret=_secret(s.shopify_api_secret),
                                 shop_url_template=s.shopify_shop_url_template, api_version=s.shopify_api_version)
        return ShopifyConnector(config, shop, tokens, **self._common())

    def shopify_secrets(self) -> list[str]:
        """Current and previous app secret: callbacks signed by either are accepted (rotation)."""
        secrets_ = [_secret(self.settings.shopify_api_secret)]
        previous = getattr(self.settings, "shopify_previous_api_secret", None)
        if isinstance(previous, SecretStr):
            secrets_.append(previous.get_secret_value())
        return [s for s in secrets_ if s]
