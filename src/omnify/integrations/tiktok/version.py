"""TikTok API for Business versions: the one the connector pins and TikTok's version table.

Source: TikTok API for Business "Versioning" and "Timelines" pages (v1.3 current since
2022-08-15; v1.2 deprecated and switched off on 2023-08-15 after a one-year migration window),
checked on ``reviewed``. TikTok has announced no end for v1.3; since it gave v1.2 users a year
of notice, the assumed sunset is a year after the table was last checked, so the gate asks
for a fresh look within a year. How to move up: docs/integrations.md.
"""

from __future__ import annotations

from datetime import date

from omnify.integrations.versions import ApiVersion, VersionPolicy

POLICY = VersionPolicy(
    platform="tiktok_ads",
    pinned="v1.3",
    reviewed=date(2026, 12, 3),
    sources=(
        "https://business-api.tiktok.com/portal/docs?id=1740029169927169",
        "https://business-api.tiktok.com/portal/docs?id=1740578661644289",
    ),
    versions=(
        ApiVersion("v1.3", date(2022, 8, 15), date(2027, 12, 3), published=False,
                   note="no sunset announced; TikTok gives a year of notice (v1.2 -> v1.3), so none can land "
                        "before a year after the table was checked"),
        ApiVersion("v1.2", date(2021, 3, 19), date(2023, 8, 15)),
    ),
)
