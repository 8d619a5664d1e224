"""The engine against hand-computed numbers on a tiny frame, and the schedule's slots."""

from __future__ import annotations

import math
from datetime import UTC, date, datetime, time, timedelta

import pytest

from omnify.rules.definition import Metric, RuleDefinition, Schedule
from omnify.rules.engine import DayRow, Entity, Evaluator, Frame, RuleRun, State, backtest, end_of_day_ts
from omnify.rules.schedule import due_slots, next_run

START = date(2025, 1, 1)


def ent(key: str, **kw: object) -> Entity:
    base: dict[str, object] = dict(key=key, external_id=f"x{key}", name=f"Ad {key}", platform="meta_ads",
                                   account_id="1", level="ad", client_id="c1", currency="USD")
    base.update(kw)
    return Entity(**base)  # type: ignore[arg-type]


def frame() -> Frame:
    """a: spends 10.00/day, 1 conversion every other day; b: 30.00/day, no conversions from day 5;
    c: JPY (exponent 0), 1000/day; d: nothing."""
    rows = []
    for d in range(10):
        day = START + timedelta(days=d)
        rows.append(DayRow("a", day, 1000, 1000, 20, 1.0 if d % 2 == 0 else 0.0, 3000, 2.0))
        rows.append(DayRow("b", day, 3000, 2000, 10 if d < 5 else 5, 1.0 if d < 5 else 0.0, 2000, None))
        rows.append(DayRow("c", day, 1000, 500, 5, 0.0, 0))
    entities = [ent("a"), ent("b", name="Summer B"), ent("c", currency="JPY"), ent("d", status="paused")]
    return Frame.from_rows(entities, rows, START, START + timedelta(days=9))


def rule(**kw: object) -> RuleDefinition:
    base: dict[str, object] = {"conditions": {"all": [{"metric": "spend", "window": "last_3_days", "op": ">",
                                                       "value": 50}]}, "actions": [{"type": "pause"}]}
    base.update(kw)
    return RuleDefinition.model_validate(base)


def test_metrics_match_hand_computed_values() -> None:
    f = frame()
    ev = Evaluator(f, [9, 4])
    spend = ev.metric(Metric.SPEND, "last_3_days")
    assert spend[:, 0].tolist() == [30.0, 90.0, 3000.0, 0.0]  # JPY has no minor unit
    assert ev.metric(Metric.CTR, "lifetime")[1, 0] == pytest.approx((50 + 25) / 20000 * 100)
    assert ev.metric(Metric.CPA, "last_3_days")[0, 0] == pytest.approx(30.0 / 1)  # day 8 had the conversion
    assert math.isnan(ev.metric(Metric.CPA, "last_3_days")[1, 0])  # no conversions: no CPA, not 0
    assert ev.metric(Metric.ROAS, "today")[0, 0] == pytest.approx(3.0)
    assert ev.metric(Metric.FREQUENCY, "last_7_days")[0, 0] == pytest.approx(2.0)
    assert math.isnan(ev.metric(Metric.FREQUENCY, "last_7_days")[1, 0])
    assert ev.metric(Metric.SPEND, "yesterday")[1, 1] == pytest.approx(30.0)  # day 3
    # Previous window of the last 3 days at day 9 is days 4-6.
    assert ev.window_sum("conversions", "last_3_days", previous=True)[0, 0] == 2.0  # days 4, 6


def test_and_or_guard_scope_and_previous_window() -> None:
    f = frame()
    ev = Evaluator(f, [9])
    r = rule(conditions={"any": [{"metric": "conversions", "window": "last_3_days", "op": "==", "value": 0},
                                 {"metric": "spend", "window": "today", "op": ">", "value": 900}]})
    # d has no rows at all: zero conversions is a fact about it (counts are 0, not missing).
    assert RuleRun(r, ev).match[:, 0].tolist() == [False, True, True, True]
    drop = rule(conditions={"all": [{"metric": "clicks", "window": "last_3_days", "op": "<=", "value": -30,
                                     "compare_to": "previous_window"}]})
    # b: 15 clicks in days 7-9 vs 20 in 4-6 = -25 %; at day 6: 20 vs 30 = -33 %.
    assert RuleRun(drop, Evaluator(f, [9, 6])).match[1].tolist() == [False, True]
    guarded = rule(min_data={"min_spend": 100, "min_days_live": 5})
    assert RuleRun(guarded, Evaluator(f, [2, 9])).match[:, 1].tolist() == [False, True, True, False]
    assert not RuleRun(guarded, Evaluator(f, [2, 9])).match[:, 0].any()  # 3 days live only
    scoped = rule(scope={"name_pattern": "summer*"})
    assert RuleRun(scoped, ev).match[:, 0].tolist() == [False, True, False, False]
    ref = rule(conditions={"all": [{"metric": "cpc", "window": "last_3_days", "op": ">",
                                    "compare_to": {"metric": "cpc", "window": "lifetime", "multiplier": 1.2}}]})
    assert RuleRun(ref, ev).match[:, 0].tolist() == [False, True, False, False]  # b's CPC rose from 3 to 6


def test_decide_cap_cooldown_and_budget_floor_ceiling() -> None:
    f = frame()
    ev = Evaluator(f, [9])
    capped = rule(conditions={"all": [{"metric": "spend", "window": "today", "op": ">", "value": 0}]},
                  max_actions_per_run=1)
    out = RuleRun(capped, ev).decide(0, State.initial(f), 1e9)
    assert [(f.entities[d.entity].key, d.outcome) for d in out.decisions] == [("c", "act"), ("b", "skip"),
                                                                              ("a", "skip")]
    cool = State.initial(f, {"c": 2e9})
    out = RuleRun(capped, ev).decide(0, cool, 1e9)
    assert [(f.entities[d.entity].key, d.outcome) for d in out.decisions][:2] == [("c", "skip"), ("b", "act")]
    camp = [Entity(key="k", external_id="k1", name="C", platform="meta_ads", account_id="1", level="campaign",
                   client_id="c1", currency="USD", budget_minor=10_000)]
    cf = Frame.from_rows(camp, [DayRow("k", START, 500, 10, 1, 0.0, 0)], START, START)
    up = RuleDefinition.model_validate({"level": "campaign", "conditions": {"all": [
        {"metric": "budget", "window": "today", "op": ">=", "value": 1}]},
        "actions": [{"type": "change_budget", "percent": 50, "ceiling": 120}]})
    [d] = RuleRun(up, Evaluator(cf, [0])).decide(0, State.initial(cf), 1e9).decisions
    assert (d.budget_from_minor, d.budget_to_minor, d.outcome) == (10_000, 12_000, "act")
    down = up.model_copy(update={"actions": [up.actions[0].model_copy(update={"percent": -90, "floor": 95,
                                                                               "ceiling": None})]})
    [d] = RuleRun(down, Evaluator(cf, [0])).decide(0, State.initial(cf), 1e9).decisions
    assert (d.budget_to_minor, d.outcome) == (9_500, "act")


def test_backtest_pauses_once_and_counts_later_spend_as_saved() -> None:
    f = frame()
    r = rule(conditions={"all": [{"metric": "conversions", "window": "last_3_days", "op": "==", "value": 0},
                                 {"metric": "spend", "window": "last_3_days", "op": ">", "value": 50}]},
             cooldown_hours=0)
    result = backtest(r, f, START + timedelta(days=3), START + timedelta(days=9))
    # b: no conversions in days 5-7 first at day 7; paused then; days 8-9 saved (2 x 3000).
    assert [(a["day"], a["entity"]["id"]) for a in result.actions] == [("2025-01-08", "b"), ("2025-01-04", "c")][::-1]
    assert result.saved_minor == {"USD": 6000, "JPY": 6000}  # c: days 5-10 of JPY 1000
    assert end_of_day_ts(START) == datetime(2025, 1, 2, tzinfo=UTC).timestamp()


def test_schedule_slots_per_client_time_zone() -> None:
    now = datetime(2025, 3, 10, 14, 7, tzinfo=UTC)
    [slot] = due_slots(Schedule(every="15m"), now, {"a": None})
    assert slot.key == "15m@2025-03-10T14:00:00+00:00"
    assert next_run(Schedule(every="1h"), now, {}) == datetime(2025, 3, 10, 15, 0, tzinfo=UTC)
    daily = Schedule(every="1d", at=time(9, 0))
    slots = due_slots(daily, now, {"ny": "America/New_York", "ber": "Europe/Berlin", "utc": None})
    assert {s.key: s.client_ids for s in slots} == {
        "1d@2025-03-10T08:00:00+00:00": ("ber",), "1d@2025-03-10T09:00:00+00:00": ("utc",),
        "1d@2025-03-10T13:00:00+00:00": ("ny",)}  # 09:00 in New York (EDT since March 9) is 13:00 UTC
    assert next_run(daily, now, {"ny": "America/New_York"}) == datetime(2025, 3, 11, 13, 0, tzinfo=UTC)
    early = datetime(2025, 3, 10, 12, 0, tzinfo=UTC)  # 08:00 in New York: today's 09:00 is still ahead
    assert [s.key for s in due_slots(daily, early, {"ny": "America/New_York"})] == ["1d@2025-03-09T13:00:00+00:00"]
    assert due_slots(Schedule(every="after_sync"), now, {"a": None}) == []
