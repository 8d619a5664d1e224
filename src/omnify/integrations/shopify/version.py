"""Shopify Admin API versions: the one the connector pins and Shopify's support window.

Source: Shopify's "About Shopify API versioning": a stable version is released every quarter
(``YYYY-MM``, on the 1st) and "supported for a minimum of 12 months"; the exact retirement
day is announced later (2025-07 was retired on 2026-07-16), so the table uses release + 12
months, the earliest day it may go. A request for a retired version is not refused: Shopify
*falls forward* to the oldest supported version and says so in ``X-Shopify-API-Version``,
which is why the gate matters more here than anywhere. How to move up: docs/integrations.md.
"""

from __future__ import annotations

from datetime import date

from omnify.integrations.versions import ApiVersion, VersionPolicy


def _quarter(year: int, month: int) -> ApiVersion:
    return ApiVersion(f"{year}-{month:02d}", date(year, month, 1), date(year + 1, month, 1),
                      note="supported for a minimum of 12 months")


POLICY = VersionPolicy(
    platform="shopify",
    pinned="2026-10",
    reviewed=date(2026, 12, 3),
    sources=("https://shopify.dev/docs/api/usage/versioning",),
    versions=tuple(_quarter(y, m) for y, m in (
        (2026, 10), (2026, 7), (2026, 4), (2026, 1), (2025, 10), (2025, 7), (2025, 4), (2025, 1), (2024, 10),
    )),
)
