"""One fixed calendar for tests whose data follows the calendar.

The sandbox worlds end "today" (``integrations/sandbox_data.py``) and what the brain finds in them
depends on which weekdays and seasons those 120-365 days cover; a test asserting on that content
builds its world to end on ``PINNED_DAY`` (and, when code under test reads the clock, travels
there with time-machine) so that it means the same thing on every date the suite runs. The
clock-ahead runs of .ci/run (``OMNIFY_TEST_CLOCK_AHEAD_DAYS``) check that nothing else follows it.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time

PINNED_DAY = date(2026, 6, 30)
PINNED_NOW = datetime.combine(PINNED_DAY, time(12, 0), tzinfo=UTC)
