"""What each ad platform's credential is made of.

Adding a platform is adding a :class:`Platform` member and its :class:`PlatformSpec`:
routes, validation, masking and onboarding steps all read this table.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass


class Platform(enum.StrEnum):
    META_ADS = "meta_ads"
    GOOGLE_ADS = "google_ads"
    TIKTOK_ADS = "tiktok_ads"
    LINKEDIN_ADS = "linkedin_ads"
    SHOPIFY = "shopify"


@dataclass(frozen=True, slots=True)
class PlatformSpec:
    label: str
    #: Secret fields that must be present; encrypted, never returned.
    required_secrets: tuple[str, ...]
    optional_secrets: tuple[str, ...]
    #: What ``account_id`` means on this platform, and its shape.
    account_label: str
    account_pattern: re.Pattern[str]
    account_required: bool = True

    @property
    def secret_fields(self) -> tuple[str, ...]:
        return self.required_secrets + self.optional_secrets


PLATFORMS: dict[Platform, PlatformSpec] = {
    Platform.META_ADS: PlatformSpec(
        label="Meta Ads",
        required_secrets=("access_token",),
        optional_secrets=("app_secret",),
        account_label="ad account id (act_<digits>)",
        account_pattern=re.compile(r"^act_[0-9]{1,20}$"),
    ),
    Platform.GOOGLE_ADS: PlatformSpec(
        label="Google Ads",
        required_secrets=("refresh_token", "developer_token"),
        optional_secrets=("access_token", "client_secret"),
        account_label="customer id (123-456-7890)",
        account_pattern=re.compile(r"^[0-9]{3}-?[0-9]{3}-?[0-9]{4}$"),
    ),
    Platform.TIKTOK_ADS: PlatformSpec(
        label="TikTok Ads",
        required_secrets=("access_token",),
        optional_secrets=("refresh_token", "app_secret"),
        account_label="advertiser id (digits)",
        account_pattern=re.compile(r"^[0-9]{6,25}$"),
    ),
    Platform.LINKEDIN_ADS: PlatformSpec(
        label="LinkedIn Ads",
        required_secrets=("access_token",),
        optional_secrets=("refresh_token", "client_secret"),
        account_label="ad account id (digits)",
        account_pattern=re.compile(r"^[0-9]{4,20}$"),
    ),
    Platform.SHOPIFY: PlatformSpec(
        label="Shopify",
        required_secrets=("access_token",),
        optional_secrets=("api_secret",),
        account_label="shop domain (<shop>.myshopify.com)",
        account_pattern=re.compile(r"^[a-z0-9][a-z0-9-]{0,60}\.myshopify\.com$"),
    ),
}
