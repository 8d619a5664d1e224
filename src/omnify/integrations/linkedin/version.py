"""LinkedIn Marketing API versions: the one the connector pins and LinkedIn's version table.

LinkedIn versions its Marketing APIs monthly (``LinkedIn-Version: YYYYMM`` on every call under
``/rest``) and serves each version for at least a year; a request with a sunset version gets
HTTP 426 ``NONEXISTENT_VERSION`` ("Requested version 20250401 is not active"), one without the
header a 400 ``VERSION_MISSING``. The sunset dates come from LinkedIn's "Migrations" page (API
Migration Status table), checked on ``reviewed``; LinkedIn published no December 2025 version.
How to move up: docs/integrations-linkedin.md (``OMNIFY_LINKEDIN_API_VERSION`` overrides the
pin per deployment).
"""

from __future__ import annotations

from datetime import date

from omnify.integrations.versions import ApiVersion, VersionPolicy

POLICY = VersionPolicy(
    platform="linkedin_ads",
    pinned="202607",
    reviewed=date(2026, 12, 3),
    sources=(
        "https://learn.microsoft.com/en-us/linkedin/marketing/integrations/migrations",
        "https://learn.microsoft.com/en-us/linkedin/marketing/versioning",
    ),
    upgrade_doc="docs/integrations-linkedin.md#api-versions",
    versions=(
        ApiVersion("202607", date(2026, 7, 1), date(2027, 7, 15)),
        ApiVersion("202606", date(2026, 6, 1), date(2027, 6, 15)),
        ApiVersion("202605", date(2026, 5, 1), date(2027, 5, 15)),
        ApiVersion("202604", date(2026, 4, 1), date(2027, 4, 15)),
        ApiVersion("202603", date(2026, 3, 1), date(2027, 3, 16)),
        ApiVersion("202602", date(2026, 2, 1), date(2027, 2, 15)),
        ApiVersion("202601", date(2026, 1, 1), date(2027, 1, 15)),
        ApiVersion("202511", date(2025, 11, 1), date(2026, 11, 16)),
        ApiVersion("202510", date(2025, 10, 1), date(2026, 10, 15)),
        ApiVersion("202509", date(2025, 9, 1), date(2026, 9, 15)),
        ApiVersion("202508", date(2025, 8, 1), date(2026, 8, 17)),
        ApiVersion("202507", date(2025, 7, 1), date(2026, 7, 15)),
    ),
)
PINNED = POLICY.pinned

