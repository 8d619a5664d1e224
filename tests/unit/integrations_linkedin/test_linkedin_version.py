"""LinkedIn's version table (the shared gate in tests/unit/integrations_versions checks the pin
against its sunset): monthly versions, each served at least a year, newest first."""

from __future__ import annotations

from datetime import date, timedelta

from omnify.integrations.linkedin.version import PINNED, POLICY


def test_table_is_monthly_newest_first_and_a_year_long() -> None:
    names = [v.name for v in POLICY.versions]
    assert names == sorted(names, reverse=True) and names[0] == PINNED
    for row in POLICY.versions:
        assert row.published, row.name  # every LinkedIn sunset here is on its Migrations page
        assert timedelta(days=365) <= row.sunset - row.released <= timedelta(days=400), row
        assert row.released == date(int(row.name[:4]), int(row.name[4:]), 1)


def test_served_versions_on_the_review_date() -> None:
    served = POLICY.served()
    assert served[0] == PINNED and "202507" not in served and "202508" not in served
    assert POLICY.is_expired("202507") and not POLICY.is_served("202401")
