"""Sandbox data: deterministic, fast, and carrying the phenomena the brain looks for."""

from __future__ import annotations

import time
from datetime import date, timedelta

import numpy as np
import pytest
import time_machine

from omnify.integrations import sandbox_data
from omnify.integrations.google.sandbox import GoogleSandboxConfig
from omnify.integrations.linkedin.sandbox import LinkedInSandboxConfig
from omnify.integrations.meta.sandbox import MetaSandboxConfig
from omnify.integrations.sandbox_data import (
    RECENT_FATIGUE_DAYS_AGO,
    AccountSpec,
    EntityNotFound,
    World,
    WorldConfig,
    _hill,
    default_specs,
)
from tests.dates import PINNED_NOW

END = date(2026, 6, 30)


@pytest.fixture(scope="module")
def world() -> World:
    return World(WorldConfig(platform="test", end=END))


def test_deterministic_and_independent_per_account() -> None:
    a = World(WorldConfig(platform="test", end=END))
    b = World(WorldConfig(platform="test", end=END, accounts=[default_specs()[0]]))
    assert np.array_equal(a.account("1000001").metrics.spend_minor, b.account("1000001").metrics.spend_minor)
    assert list(a.account("1000001").ads) == list(b.account("1000001").ads)
    other = World(WorldConfig(platform="other", end=END, accounts=[default_specs()[0]]))
    assert not np.array_equal(
        a.account("1000001").metrics.spend_minor, other.account("1000001").metrics.spend_minor
    )


def test_two_hundred_ads_for_a_year_is_fast() -> None:
    started = time.perf_counter()
    w = World(
        WorldConfig(
            platform="speed",
            end=END,
            accounts=[AccountSpec(42, "big", campaigns=5, ad_groups_per_campaign=4, ads_per_ad_group=10)],
        )
    )
    rows = w.account("42").metric_rows(END - timedelta(days=364), END)
    assert time.perf_counter() - started < 2.0
    assert len(w.account("42").ads) == 200
    assert w.account("42").metrics.spend_minor.shape == (200, 365)
    assert len(rows) > 200 * 200


def test_structure_and_hierarchy(world: World) -> None:
    acc = world.account("1000001")
    assert (len(acc.campaigns), len(acc.ad_groups), len(acc.ads)) == (5, 20, 200)
    for ad in acc.ads.values():
        assert acc.ad_groups[ad.ad_group_id].campaign_id == ad.campaign_id
        assert ad.creative.image_url.startswith("https://")
    assert world.account("1000002").currency == "EUR"
    with pytest.raises(EntityNotFound):
        world.account("999")


def test_rows_consistency_and_levels(world: World) -> None:
    acc = world.account("1000001")
    since, until = date(2026, 6, 1), date(2026, 6, 30)
    ad_rows = acc.metric_rows(since, until)
    camp_rows = acc.metric_rows(since, until, level="campaign")
    grp_rows = acc.metric_rows(since, until, level="ad_group")
    assert ad_rows.spend_minor.sum() == camp_rows.spend_minor.sum() == grp_rows.spend_minor.sum()
    assert ad_rows.revenue_minor.sum() == camp_rows.revenue_minor.sum()
    assert set(camp_rows.entity_ids) == set(acc.campaigns)
    assert min(ad_rows.days) >= since and max(ad_rows.days) <= until
    assert ad_rows.days == sorted(ad_rows.days)  # day-major
    assert (ad_rows.clicks <= ad_rows.impressions).all() and (ad_rows.reach <= ad_rows.impressions).all()
    assert (ad_rows.impressions > 0).all()
    one = next(iter(acc.ads))
    only = acc.metric_rows(since, until, entity_ids=[one])
    assert set(only.entity_ids) == {one}
    assert len(acc.metric_rows(date(2010, 1, 1), date(2010, 2, 1))) == 0
    row = only.row(0)
    assert set(row) == {
        "entity_id",
        "day",
        "spend_minor",
        "impressions",
        "reach",
        "clicks",
        "conversions",
        "revenue_minor",
    }


def test_weekly_and_yearly_seasonality(world: World) -> None:
    acc = world.account("1000001")
    m = acc.metrics
    rev = m.revenue_minor.sum(axis=0).astype(float)
    days = [m.start + timedelta(days=i) for i in range(m.days)]
    weekend = np.mean([r for r, d in zip(rev, days, strict=True) if d.weekday() >= 5])
    weekday = np.mean([r for r, d in zip(rev, days, strict=True) if d.weekday() in (0, 1)])
    assert weekend > weekday
    dec = np.mean([r for r, d in zip(rev, days, strict=True) if d.month == 12])
    jun = np.mean([r for r, d in zip(rev, days, strict=True) if d.month == 6])
    assert dec > jun


def test_creative_fatigue_lowers_ctr(world: World) -> None:
    acc = world.account("1000001")
    m = acc.metrics
    drops = []
    for ad in acc.ads.values():
        onset = ad.creative.fatigue_onset
        if onset is None or (onset - m.start).days < 14 or (m.end - onset).days < 60:
            continue
        i, o = ad.index, (onset - m.start).days
        before = m.clicks[i, o - 14 : o].sum() / max(m.impressions[i, o - 14 : o].sum(), 1)
        after = m.clicks[i, o + 45 : o + 59].sum() / max(m.impressions[i, o + 45 : o + 59].sum(), 1)
        drops.append(after / before if before else 1.0)
    assert len(drops) >= 10
    assert float(np.median(drops)) < 0.7


def test_injected_anomalies_are_visible(world: World) -> None:
    acc = world.account("1000001")
    spikes = [a for a in acc.anomalies if a.kind == "spend_spike"]
    assert spikes and any(a.kind == "conversion_drop" for a in acc.anomalies)
    spike = spikes[0]
    rows = acc.metric_rows(
        spike.start - timedelta(days=14), spike.end, level="campaign", entity_ids=[spike.campaign_id]
    )
    by_day = dict(zip(rows.days, rows.spend_minor.tolist(), strict=True))
    baseline = np.median([v for d, v in by_day.items() if d < spike.start])
    assert by_day[spike.start] > 2 * baseline


def test_hill_response_saturates(world: World) -> None:
    camp = next(iter(world.account("1000001").campaigns.values()))
    s = np.array([0.0, 0.5, 1.0, 2.0, 4.0, 8.0]) * camp.hill[1]
    r = _hill(s, camp.hill)
    assert r[0] == 0 and (np.diff(r) > 0).all()
    marginal = np.diff(r[2:]) / np.diff(s[2:])
    assert (np.diff(marginal) < 0).all()  # diminishing returns past the half-saturation point
    assert r[-1] < camp.hill[0]


@time_machine.travel(PINNED_NOW, tick=False)  # writes apply from the world's "today" (UTC)
def test_writes_change_entities_and_metrics() -> None:
    today = PINNED_NOW.date()
    w = World(WorldConfig(platform="writes", end=today, accounts=[default_specs()[2]]))
    acc = w.account("1000003")
    camp_id, camp = next(iter(acc.campaigns.items()))
    ad = next(a for a in acc.ads.values() if a.campaign_id == camp_id)
    before = acc.metric_rows(today, today, entity_ids=[ad.id], include_zero=True)
    assert w.set_status(ad.id, "paused") == ("active", "paused")
    assert acc.ads[ad.id].status == "paused"
    after = acc.metric_rows(today, today, entity_ids=[ad.id], include_zero=True)
    assert after.spend_minor.sum() == 0 <= before.spend_minor.sum()
    yesterday = acc.metric_rows(
        today - timedelta(days=1), today - timedelta(days=1), entity_ids=[ad.id], include_zero=True
    )
    assert yesterday.spend_minor.sum() == acc.metrics.spend_minor[ad.index, -2]  # history untouched
    w.set_status(ad.id, "active")
    # a paused campaign silences a resumed ad
    w.set_status(camp_id, "paused")
    w.set_status(ad.id, "active")
    assert acc.metric_rows(today, today, entity_ids=[ad.id], include_zero=True).spend_minor.sum() == 0
    w.set_status(camp_id, "active")

    spend_before = acc.metric_rows(today, today, level="campaign", entity_ids=[camp_id]).spend_minor.sum()
    old = camp.daily_budget_minor
    assert w.set_budget(camp_id, old * 2) == (old, old * 2)
    spend_after = acc.metric_rows(today, today, level="campaign", entity_ids=[camp_id]).spend_minor.sum()
    assert spend_after == pytest.approx(spend_before * 2, rel=0.02, abs=len(acc.ads))
    with pytest.raises(ValueError):
        w.set_budget(camp_id, 0)
    with pytest.raises(ValueError):
        w.set_budget(ad.id, 100)
    with pytest.raises(EntityNotFound):
        w.set_status("nope", "paused")
    w.reset()
    assert w.account("1000003").campaigns[camp_id].daily_budget_minor == old


@pytest.mark.parametrize("platform", ["meta_ads", "google_ads", "tiktok_ads", "linkedin_ads"])
def test_every_account_carries_a_recent_wear_out_the_brain_calls_in_60_days(platform: str) -> None:
    """`omnify up` syncs 60 days: each account has one creative whose CTR starts falling
    ``RECENT_FATIGUE_DAYS_AGO`` days before the end, and the brain's detector (as it is)
    flags exactly that ad as fatigued from those 60 days, with an onset near the truth."""
    from omnify.brain.fatigue import detect_fatigue
    from omnify.brain.types import DailyAdMetrics

    accounts = {"meta_ads": MetaSandboxConfig().accounts, "google_ads": GoogleSandboxConfig().accounts,
                "linkedin_ads": LinkedInSandboxConfig().accounts, "tiktok_ads": default_specs()}[platform]
    world = World(WorldConfig(platform=platform, end=END, accounts=list(accounts)))  # as each sandbox has them
    since = END - timedelta(days=59)
    for acc in world.accounts.values():
        planted = [a for a in acc.ads.values() if a.creative.fatigue_onset == END - timedelta(RECENT_FATIGUE_DAYS_AGO)]
        assert len(planted) == 1, acc.id
        ad = planted[0]
        i, o = ad.index, acc.metrics.day_index(ad.creative.fatigue_onset)
        m = acc.metrics
        before = m.clicks[i, o - 14 : o].sum() / m.impressions[i, o - 14 : o].sum()
        after = m.clicks[i, -7:].sum() / m.impressions[i, -7:].sum()
        assert after < 0.5 * before, (acc.id, before, after)
        rows = acc.metric_rows(since, END)
        frame = DailyAdMetrics.build(
            ad_id=rows.entity_ids, date=rows.days, impressions=rows.impressions, clicks=rows.clicks,
            conversions=rows.conversions, spend=rows.spend_minor,
            campaign_id=[acc.ads[a].campaign_id for a in rows.entity_ids], platform=[platform] * len(rows))
        verdicts = {r.ad_id: r for r in detect_fatigue(frame)}
        found = verdicts[ad.id]
        assert found.fatigued and found.onset_date, (acc.id, found.state, found.reason)
        assert abs((date.fromisoformat(found.onset_date) - ad.creative.fatigue_onset).days) <= 7
        truth = {a.id for a in acc.ads.values() if a.creative.fatigue_onset}
        assert {r.ad_id for r in verdicts.values() if r.fatigued} <= truth, acc.id  # no false alarm either


def test_the_recent_wear_out_leaves_every_other_number_as_it_was(monkeypatch: pytest.MonkeyPatch) -> None:
    """The planted decline has its own random stream: without it, every other ad's numbers
    (and the planted ad's delivery) are exactly the same; only its clicks and what follows
    from them (conversions, revenue) fall after the onset."""
    planted = World(WorldConfig(platform="test", end=END)).account("1000003")
    monkeypatch.setattr(sandbox_data, "_plant_recent_fatigue", lambda *args, **kwargs: None)
    plain = World(WorldConfig(platform="test", end=END)).account("1000003")
    [ad] = [a for a in planted.ads.values() if a.creative.fatigue_onset == END - timedelta(RECENT_FATIGUE_DAYS_AGO)]
    assert plain.ads[ad.id].creative.fatigue_onset is None
    others = [a.index for a in planted.ads.values() if a.id != ad.id]
    onset = planted.metrics.day_index(END - timedelta(RECENT_FATIGUE_DAYS_AGO))
    for name in ("spend_minor", "impressions", "reach", "clicks", "conversions", "revenue_minor"):
        a, b = getattr(planted.metrics, name), getattr(plain.metrics, name)
        assert np.array_equal(a[others], b[others]), name
        assert np.array_equal(a[ad.index, :onset], b[ad.index, :onset]), name
    assert np.array_equal(planted.metrics.impressions[ad.index], plain.metrics.impressions[ad.index])
    assert planted.metrics.clicks[ad.index, -7:].sum() < 0.5 * plain.metrics.clicks[ad.index, -7:].sum()
    assert planted.metrics.conversions[ad.index, onset:].sum() <= plain.metrics.conversions[ad.index, onset:].sum()
