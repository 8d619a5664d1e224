"""Meta Marketing API versions: the one the connector pins and Meta's published table.

Source: Meta's Marketing API version history (release and expiration dates), checked on
``reviewed``. The Marketing API expires versions sooner than the Graph API table on the
Graph changelog; ads calls follow the Marketing API table, so that is the one used here.
We pin v26.0 because it is the version of the current facebook-business major (26.x), so the
official SDK and our connector speak the same version. How to move up: docs/integrations.md.
"""

from __future__ import annotations

from datetime import date

from omnify.integrations.versions import ApiVersion, VersionPolicy

POLICY = VersionPolicy(
    platform="meta_ads",
    pinned="v26.0",
    reviewed=date(2026, 12, 3),
    sources=("https://developers.facebook.com/docs/marketing-api/marketing-api-changelog/versions",),
    versions=(
        ApiVersion("v27.0", date(2026, 11, 4), date(2027, 11, 4), published=False,
                   note="expiration TBD in Meta's table; assumed release + 12 months"),
        ApiVersion("v26.0", date(2026, 7, 29), date(2027, 7, 29), published=False,
                   note="expiration TBD in Meta's table; assumed release + 12 months, the shortest life of a "
                        "recent version (v25.0: 2026-02-18 to 2027-02-23, v24.0: 2025-10-08 to 2026-11-10)"),
        ApiVersion("v25.0", date(2026, 2, 18), date(2027, 2, 23)),
        ApiVersion("v24.0", date(2025, 10, 8), date(2026, 11, 10)),
        ApiVersion("v23.0", date(2025, 5, 29), date(2026, 6, 9)),
        ApiVersion("v22.0", date(2025, 1, 21), date(2026, 2, 19)),
        ApiVersion("v21.0", date(2024, 10, 2), date(2025, 9, 9)),
    ),
)
