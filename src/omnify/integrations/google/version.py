"""Google Ads API versions: the one the connector pins and Google's sunset timetable.

Sources: Google's "Deprecation and sunset" timetable, the v26 release post (2026-10-14) and the
sunset reminders for v20-v22, checked on ``reviewed``. Google publishes sunsets of live
versions as a tentative *month* ("the sunset could happen any time in that month"), so those
rows take the first day of the month. v26 is also the newest version the official
``google-ads`` library (34.x) supports. How to move up: docs/integrations.md.
"""

from __future__ import annotations

from datetime import date

from omnify.integrations.versions import ApiVersion, VersionPolicy

_TENTATIVE = "Google's timetable gives the month only (tentative); the first day of it is used"

POLICY = VersionPolicy(
    platform="google_ads",
    pinned="v26",
    reviewed=date(2026, 12, 3),
    sources=(
        "https://developers.google.com/google-ads/api/docs/sunset-dates",
        "https://developers.google.com/ads/blog/posts/2026/10/announcing-v26-of-google-ads-api",
        "https://developers.google.com/ads/blog/posts/2025/09/more-frequent-releases-coming-for",
        "https://developers.google.com/ads/blog/posts/2026/09/google-ads-api-v22-sunset-reminder",
    ),
    versions=(
        ApiVersion("v26", date(2026, 10, 14), date(2027, 11, 1), published=False, note=f"November 2027; {_TENTATIVE}"),
        ApiVersion("v25", date(2026, 7, 22), date(2027, 8, 1), published=False, note=f"August 2027; {_TENTATIVE}"),
        ApiVersion("v24", date(2026, 4, 1), date(2027, 5, 1), published=False,
                   note=f"released April 2026, sunset May 2027; {_TENTATIVE}"),
        ApiVersion("v23", date(2026, 1, 1), date(2027, 2, 1), published=False,
                   note=f"released January 2026, sunset February 2027; {_TENTATIVE}"),
        ApiVersion("v22", date(2025, 10, 1), date(2026, 10, 7), note="sunset reminder of 2026-09-02"),
        ApiVersion("v21", date(2025, 8, 1), date(2026, 8, 5), note="sunset reminder of 2026-06-25"),
        ApiVersion("v20", date(2025, 6, 4), date(2026, 6, 10), note="sunset reminder of 2026-04-29"),
    ),
)
