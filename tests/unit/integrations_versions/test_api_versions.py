"""The API-version gate: every connector pins a version its platform serves, with two months
to spare, and the gate really fails once the clock moves past a sunset.

``test_pinned_versions_have_two_months_left`` is the one test in the suite that reads the wall
clock on purpose (marker ``version_gate``): its job is to go red 60 days before a platform
switches our version off. Every other test here injects ``today``.
"""

from __future__ import annotations

from datetime import date, timedelta

import pytest

from omnify.integrations.versions import (
    WARN_DAYS,
    ApiVersion,
    VersionExpired,
    VersionPolicy,
    check_all,
    expired_versions,
    policies,
)
from omnify.settings import InsecureSettingError, Settings

CORE = {"meta_ads", "google_ads", "tiktok_ads", "shopify", "linkedin_ads"}


@pytest.mark.version_gate
def test_pinned_versions_have_two_months_left() -> None:
    configured = Settings(_env_file=None).configured_api_versions()  # type: ignore[call-arg]
    left = check_all(date.today(), configured)
    assert set(left) >= {f"{p}:{policies()[p].pinned}" for p in CORE}
    assert min(left.values()) >= WARN_DAYS


def test_every_platform_has_a_policy_with_sourced_dates() -> None:
    table = policies()
    assert set(table) >= CORE
    for platform, policy in table.items():
        assert policy.sources and all(s.startswith("https://") for s in policy.sources), platform
        assert policy.is_served(policy.pinned), f"{platform} pins {policy.pinned}, not served on {policy.reviewed}"
        for row in policy.versions:
            assert row.released < row.sunset, (platform, row.name)
            assert row.published or row.note, f"{platform} {row.name}: an assumed sunset needs its reason"


@pytest.mark.parametrize("platform", sorted(CORE))
def test_moving_the_clock_past_the_sunset_fails_the_gate(platform: str) -> None:
    policy = policies()[platform]
    sunset = policy.current.sunset
    assert policy.check(sunset - timedelta(days=WARN_DAYS)) == WARN_DAYS
    with pytest.raises(VersionExpired, match="Move to"):
        policy.check(sunset - timedelta(days=WARN_DAYS - 1))
    with pytest.raises(VersionExpired) as failed:
        check_all(sunset + timedelta(days=1))
    assert f"{policy.pinned}" in str(failed.value) and policy.platform in str(failed.value)


def test_gate_checks_configured_overrides_and_unknown_versions() -> None:
    meta = policies()["meta_ads"]
    with pytest.raises(VersionExpired, match=r"v22\.0 sunsets on 2026-02-19"):
        check_all(meta.reviewed, [("meta_ads", "v22.0")])
    with pytest.raises(VersionExpired, match="not in the version table"):
        check_all(meta.reviewed, [("meta_ads", "v99.0")])
    with pytest.raises(VersionExpired, match="no version policy"):
        check_all(meta.reviewed, [("myspace_ads", "v1")])


def test_served_versions_follow_the_injected_date() -> None:
    policy = VersionPolicy(
        platform="example", pinned="v2", reviewed=date(2026, 1, 1), sources=("https://example.test/versions",),
        versions=(ApiVersion("v2", date(2025, 6, 1), date(2026, 6, 1)), ApiVersion("v1", date(2024, 6, 1),
                                                                                  date(2025, 9, 1))),
    )
    assert policy.served() == ["v2"] and policy.is_expired("v1") and not policy.is_expired("v3")
    assert policy.is_expired("v0") and not policy.is_expired("beta")
    assert policy.served(date(2025, 7, 1)) == ["v2", "v1"] and policy.oldest_served(date(2025, 7, 1)) == "v1"
    assert policy.served(date(2026, 6, 1)) == [] and policy.days_left("v2", date(2026, 5, 2)) == 30
    with pytest.raises(ValueError, match="not in the table"):
        VersionPolicy(platform="x", pinned="v9", reviewed=date(2026, 1, 1), sources=(), versions=policy.versions)


def test_production_refuses_an_override_that_the_platform_switched_off() -> None:
    from tests.factories import production_safe

    safe = production_safe()
    Settings(_env_file=None, **safe).assert_production_safe()  # type: ignore[arg-type,call-arg]
    with pytest.raises(InsecureSettingError, match=r"meta_ads v21\.0"):
        Settings(_env_file=None, meta_api_version="v21.0", **safe).assert_production_safe()  # type: ignore[arg-type,call-arg]
    assert expired_versions([("google_ads", "v20"), ("google_ads", "v26")], date(2026, 12, 3)) == [
        "google_ads v20 (sunset 2026-06-10)"]


def test_empty_setting_means_the_pinned_version() -> None:
    s = Settings(_env_file=None, meta_api_version="", google_ads_api_version="v25")  # type: ignore[call-arg]
    assert s.meta_api_version == policies()["meta_ads"].pinned and s.google_ads_api_version == "v25"
