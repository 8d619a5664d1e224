"""Rule evaluation over a preloaded frame of daily metrics: pure numpy, no I/O.

One code path serves the live run, the preview and the backtest. A :class:`Frame` holds,
for every entity (ad or campaign) of one or more clients, its daily components (spend,
impressions, clicks, conversions, revenue, frequency weight) as ``(entities, days)``
arrays with cumulative sums along the days, so the sum over any window ending on any day
is one subtraction. An :class:`Evaluator` evaluates conditions for a *vector* of
evaluation days at once: the live run asks for one day, the backtest for all 90, with
the same arithmetic. Only what depends on earlier decisions (an ad already paused, a
cooldown, the cap per run, a budget already raised) is stepped day by day in
:func:`decide`, again the same function for live runs and replays.

What "the history as known on each day" means here: on day ``t`` every window ends at
``t`` and nothing after ``t`` is read. Platforms restate recent days (late conversions);
the synced rows hold the latest restatement, so a replay sees slightly more settled
numbers than the live rule saw on that day. That difference is documented, not hidden.

Backtest state: an entity counts as running on a day when it delivered (impressions or
spend) that day, unless the replayed rule paused or resumed it earlier; after a replayed
pause its actual later spend is counted as *saved*, and after a replayed budget change
``(new / old - 1)`` of its actual later spend is counted as *shifted* (spend responds
roughly in proportion to budget while the budget binds; the figure is an estimate and
labelled as one). The platform's historical budgets are not synced, so a replay starts
from today's budget.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import numpy as np
import numpy.typing as npt

from omnify.integrations.money import MoneyError, currency_exponent
from omnify.rules.definition import (
    Action,
    ActionType,
    Condition,
    Group,
    Metric,
    MetricRef,
    Op,
    RuleDefinition,
    window_days,
)

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]
IntArray = npt.NDArray[np.int64]

#: Additive daily components, in this order in :attr:`Frame.cum`.
COMPONENTS = ("spend", "impressions", "clicks", "conversions", "revenue", "freq_w", "freq_n")


@dataclass(frozen=True, slots=True)
class Entity:
    """One ad or campaign as a rule sees it (ids as text: Omnify's and the platform's)."""

    key: str
    external_id: str
    name: str
    platform: str
    account_id: str
    level: str
    client_id: str
    currency: str
    status: str = "active"
    campaign_key: str | None = None
    campaign_external_id: str | None = None
    budget_minor: int | None = None
    labels: frozenset[str] = frozenset()

    def ref(self) -> dict[str, Any]:
        return {"level": self.level, "id": self.key, "external_id": self.external_id, "name": self.name,
                "platform": self.platform, "account_id": self.account_id, "client_id": self.client_id,
                "currency": self.currency}


@dataclass(frozen=True, slots=True)
class DayRow:
    entity_key: str
    day: date
    spend_minor: int
    impressions: int
    clicks: int
    conversions: float
    revenue_minor: int
    frequency: float | None = None


def _exponent(currency: str) -> int:
    try:
        return currency_exponent(currency)
    except MoneyError:
        return 2


class Frame:
    """Entities x consecutive days of additive components, with cumulative sums."""

    def __init__(self, entities: Sequence[Entity], start: date, end: date,
                 data: dict[str, FloatArray] | None = None) -> None:
        if end < start:
            raise ValueError("a frame needs at least one day")
        self.entities = list(entities)
        self.start, self.end = start, end
        self.n_days = (end - start).days + 1
        self.index = {e.key: i for i, e in enumerate(self.entities)}
        n = len(self.entities)
        raw = data or {c: np.zeros((n, self.n_days)) for c in COMPONENTS}
        self.raw = raw
        self.cum = {c: np.concatenate([np.zeros((n, 1)), np.cumsum(raw[c], axis=1)], axis=1) for c in COMPONENTS}
        self.scale = np.array([10.0 ** -_exponent(e.currency) for e in self.entities]) if n else np.zeros(0)
        self.delivered: BoolArray = (raw["impressions"] > 0) | (raw["spend"] > 0)
        any_day = self.delivered.any(axis=1)
        self.first_day: IntArray = np.where(any_day, self.delivered.argmax(axis=1), self.n_days).astype(np.int64)
        self.budget_minor = np.array([float(e.budget_minor) if e.budget_minor else math.nan
                                      for e in self.entities])
        self.active_now: BoolArray = np.array([e.status == "active" for e in self.entities], dtype=bool)
        self._columns: dict[str, npt.NDArray[np.str_]] | None = None

    @classmethod
    def from_rows(cls, entities: Sequence[Entity], rows: Iterable[DayRow], start: date, end: date) -> Frame:
        """Scatter rows into the arrays (rows of unknown entities or outside the days are ignored)."""
        index = {e.key: i for i, e in enumerate(entities)}
        ei: list[int] = []
        di: list[int] = []
        vals: list[tuple[float, ...]] = []
        n_days = (end - start).days + 1
        for r in rows:
            i = index.get(r.entity_key)
            d = (r.day - start).days
            if i is None or not 0 <= d < n_days:
                continue
            freq = r.frequency if r.frequency is not None and r.frequency > 0 else None
            ei.append(i)
            di.append(d)
            vals.append((r.spend_minor, r.impressions, r.clicks, r.conversions, r.revenue_minor,
                         (freq or 0.0) * r.impressions, r.impressions if freq is not None else 0.0))
        data = {c: np.zeros((len(entities), n_days)) for c in COMPONENTS}
        if vals:
            v = np.asarray(vals, dtype=np.float64)
            e_idx, d_idx = np.asarray(ei), np.asarray(di)
            for k, c in enumerate(COMPONENTS):
                np.add.at(data[c], (e_idx, d_idx), v[:, k])
        return cls(entities, start, end, data)

    def columns(self) -> dict[str, npt.NDArray[np.str_]]:
        """Entity attributes as arrays, for vectorised scope filters (built once)."""
        if self._columns is None:
            ents = self.entities
            self._columns = {
                "level": np.array([e.level for e in ents], dtype=object),
                "client": np.array([e.client_id for e in ents], dtype=object),
                "platform": np.array([e.platform for e in ents], dtype=object),
                "key": np.array([e.key for e in ents], dtype=object),
                "external": np.array([e.external_id for e in ents], dtype=object),
                "campaign": np.array([e.campaign_key or "" for e in ents], dtype=object),
                "campaign_external": np.array([e.campaign_external_id or "" for e in ents], dtype=object),
            }
        return self._columns

    def day_index(self, day: date) -> int:
        return (day - self.start).days

    def day_of(self, t: int) -> date:
        return self.start + timedelta(days=int(t))


# ------------------------------------------------------------------------- conditions
def _bounds(window: str, t: IntArray, previous: bool) -> tuple[IntArray, IntArray]:
    """Inclusive day-index bounds (lo, hi) of ``window`` at each evaluation day ``t``."""
    hi = t - 1 if window == "yesterday" else t.copy()
    n = window_days(window)
    lo = np.zeros_like(hi) if n is None else hi - n + 1
    if previous:
        assert n is not None
        hi, lo = lo - 1, lo - n
    return lo, hi


def _divide(num: FloatArray, den: FloatArray, factor: float = 1.0) -> FloatArray:
    out = np.full(np.broadcast(num, den).shape, np.nan)
    np.divide(num * factor, den, out=out, where=den > 1e-9)
    return out


_COMPARE: dict[Op, Callable[[FloatArray, FloatArray], BoolArray]] = {
    Op.GT: np.greater, Op.GE: np.greater_equal, Op.LT: np.less, Op.LE: np.less_equal,
    Op.EQ: lambda a, b: np.isclose(a, b, rtol=1e-9, atol=1e-9),
    Op.NE: lambda a, b: ~np.isclose(a, b, rtol=1e-9, atol=1e-9) & ~np.isnan(a) & ~np.isnan(b),
}


class Evaluator:
    """Condition values for every entity at every evaluation day in ``t`` (cached, so
    many rules over one frame share their window sums)."""

    def __init__(self, frame: Frame, t: Sequence[int] | IntArray, budgets: FloatArray | None = None) -> None:
        self.frame = frame
        self.t = np.asarray(t, dtype=np.int64)
        self.budgets = frame.budget_minor if budgets is None else budgets
        self._sums: dict[tuple[str, str, bool], FloatArray] = {}
        self._metrics: dict[tuple[Metric, str, bool], FloatArray] = {}
        self._conditions: dict[Condition, tuple[BoolArray, FloatArray, FloatArray]] = {}

    def window_sum(self, component: str, window: str, previous: bool = False) -> FloatArray:
        key = (component, window, previous)
        found = self._sums.get(key)
        if found is None:
            lo, hi = _bounds(window, self.t, previous)
            d = self.frame.n_days
            lo_c, hi_c = np.clip(lo, 0, d), np.clip(hi + 1, 0, d)
            cum = self.frame.cum[component]
            found = cum[:, hi_c] - cum[:, np.minimum(lo_c, hi_c)]
            self._sums[key] = found
        return found

    def metric(self, metric: Metric, window: str, previous: bool = False) -> FloatArray:
        """Values in display units: money in major units of each entity's currency, rates in percent."""
        key = (metric, window, previous)
        found = self._metrics.get(key)
        if found is not None:
            return found
        def s(component: str) -> FloatArray:
            return self.window_sum(component, window, previous)

        scale = self.frame.scale[:, None]
        if metric == Metric.SPEND:
            value = s("spend") * scale
        elif metric == Metric.REVENUE:
            value = s("revenue") * scale
        elif metric in (Metric.IMPRESSIONS, Metric.CLICKS, Metric.CONVERSIONS):
            value = s(metric.value)
        elif metric == Metric.CTR:
            value = _divide(s("clicks"), s("impressions"), 100.0)
        elif metric == Metric.CPC:
            value = _divide(s("spend") * scale, s("clicks"))
        elif metric == Metric.CPM:
            value = _divide(s("spend") * scale, s("impressions"), 1000.0)
        elif metric == Metric.CPA:
            value = _divide(s("spend") * scale, s("conversions"))
        elif metric == Metric.ROAS:
            value = _divide(s("revenue"), s("spend"))
        elif metric == Metric.CONVERSION_RATE:
            value = _divide(s("conversions"), s("clicks"), 100.0)
        elif metric == Metric.FREQUENCY:
            value = _divide(s("freq_w"), s("freq_n"))
        else:  # budget: a level, not a sum; the same on every evaluation day
            value = np.repeat((self.budgets * self.frame.scale)[:, None], len(self.t), axis=1)
        self._metrics[key] = value
        return value

    def condition(self, cond: Condition) -> tuple[BoolArray, FloatArray, FloatArray]:
        """(met, value, what it was compared with), each (entities, days)."""
        found = self._conditions.get(cond)
        if found is not None:
            return found
        value = self.metric(cond.metric, cond.window)
        if isinstance(cond.compare_to, MetricRef):
            ref = cond.compare_to
            target = self.metric(ref.metric, ref.window) * ref.multiplier
            lhs = value
        elif cond.compare_to == "previous_window":
            prev = self.metric(cond.metric, cond.window, previous=True)
            lhs = _divide(value - prev, np.abs(prev), 100.0)  # change in percent
            target = np.full(value.shape, float(cond.value or 0.0))
        else:
            lhs = value
            target = np.full(value.shape, float(cond.value or 0.0))
        with np.errstate(invalid="ignore"):
            met = _COMPARE[cond.op](lhs, target) & ~np.isnan(lhs) & ~np.isnan(target)
        self._conditions[cond] = (met, lhs, target)
        return met, lhs, target

    def group(self, group: Group) -> BoolArray:
        parts = [self.group(c) if isinstance(c, Group) else self.condition(c)[0] for c in group.children]
        out = parts[0].copy()
        for p in parts[1:]:
            out = (out & p) if group.mode == "all" else (out | p)
        return out

    def guard(self, rule: RuleDefinition) -> BoolArray:
        g = rule.min_data
        ok = np.ones((len(self.frame.entities), len(self.t)), dtype=bool)
        if g.min_spend:
            ok &= self.metric(Metric.SPEND, g.window) >= g.min_spend - 1e-9
        if g.min_impressions:
            ok &= self.window_sum("impressions", g.window) >= g.min_impressions
        if g.min_clicks:
            ok &= self.window_sum("clicks", g.window) >= g.min_clicks
        if g.min_days_live:
            live = self.t[None, :] - self.frame.first_day[:, None] + 1
            ok &= live >= g.min_days_live
        return ok


def scope_mask(frame: Frame, rule: RuleDefinition) -> BoolArray:
    """Entities of the rule's level inside its scope (vectorised over the frame's columns)."""
    sc = rule.scope
    cols = frame.columns()
    out: BoolArray = np.asarray(cols["level"] == rule.level.value, dtype=bool)
    if sc.client_ids:
        out &= np.isin(cols["client"], [str(c) for c in sc.client_ids])
    if sc.platforms:
        out &= np.isin(cols["platform"], [p.value for p in sc.platforms])
    if sc.campaign_ids:
        wanted = list(sc.campaign_ids)
        own = np.isin(cols["key"], wanted) | np.isin(cols["external"], wanted)
        parent = np.isin(cols["campaign"], wanted) | np.isin(cols["campaign_external"], wanted)
        out &= np.where(cols["level"] == "campaign", own, parent)
    if sc.ad_ids:
        wanted = list(sc.ad_ids)
        out &= (cols["level"] != "ad") | np.isin(cols["key"], wanted) | np.isin(cols["external"], wanted)
    if sc.labels:
        labels = set(sc.labels)
        out &= np.array([bool(labels & e.labels) for e in frame.entities], dtype=bool)
    matcher = sc.name_matcher()
    if matcher is not None:
        for i in np.flatnonzero(out):
            out[i] = matcher.search(frame.entities[i].name or "") is not None
    return out


# ---------------------------------------------------------------------------- decide
@dataclass(slots=True)
class State:
    """What earlier decisions changed: running or not, budgets, cooldowns (epoch seconds)."""

    active: BoolArray
    budget_minor: FloatArray
    ready_at: FloatArray

    @classmethod
    def initial(cls, frame: Frame, ready_at: dict[str, float] | None = None) -> State:
        ready = np.full(len(frame.entities), -np.inf)
        for key, at in (ready_at or {}).items():
            i = frame.index.get(key)
            if i is not None:
                ready[i] = at
        return cls(frame.active_now.copy(), frame.budget_minor.copy(), ready)


@dataclass(slots=True)
class Decision:
    entity: int
    outcome: str  # "act" | "skip"
    reason: str | None
    effect: str | None  # pause | resume | set_budget | change_budget | notify
    #: The deciding numbers; filled by :meth:`RuleRun.explain` for the decisions a caller keeps.
    values: dict[str, float | None]
    budget_from_minor: int | None = None
    budget_to_minor: int | None = None


def condition_label(cond: Condition) -> str:
    ref = cond.compare_to
    if isinstance(ref, MetricRef):
        rhs = f"{ref.metric.value}({ref.window})" + (f" x {ref.multiplier:g}" if ref.multiplier != 1 else "")
    elif ref == "previous_window":
        rhs = f"{cond.value:g}% vs previous window"
    else:
        rhs = f"{cond.value:g}"
    return f"{cond.metric.value}({cond.window}) {cond.op.value} {rhs}"


def _target_budget(action: Action, current: float, exponent: int) -> float:
    unit = 10.0 ** exponent
    if action.type == ActionType.SET_BUDGET or (action.type == ActionType.RECOMMEND
                                                 and action.propose == ActionType.SET_BUDGET):
        target = float(action.amount or 0) * unit
    elif action.percent is not None:
        target = current * (1 + action.percent / 100.0)
    else:
        target = current + float(action.amount or 0) * unit
    if action.floor is not None:
        target = max(target, action.floor * unit)
    if action.ceiling is not None:
        target = min(target, action.ceiling * unit)
    return float(max(round(target), 0))


@dataclass(slots=True)
class DayEvaluation:
    """One evaluation day of one rule: what matched (with deciding values) and what to do."""

    matched: list[int]
    decisions: list[Decision]


class RuleRun:
    """Conditions of one rule over an evaluator's days; :meth:`decide` steps one day."""

    def __init__(self, rule: RuleDefinition, ev: Evaluator) -> None:
        self.rule, self.ev = rule, ev
        self.conditions = rule.conditions_list()
        self.in_scope = scope_mask(ev.frame, rule)
        self.match = ev.group(rule.conditions) & ev.guard(rule) & self.in_scope[:, None]
        # Bigger spenders first when the cap cuts the list: they matter most.
        longest = max(self.conditions, key=lambda c: window_days(c.window) or 10_000).window
        self.priority = ev.window_sum("spend", longest) * ev.frame.scale[:, None]

    def values(self, entities: Sequence[int], col: int) -> list[dict[str, float | None]]:
        """The deciding numbers of each entity on evaluation day ``col`` (one dict per entity)."""
        idx = np.asarray(entities, dtype=np.int64)
        out: list[dict[str, float | None]] = [{} for _ in entities]
        for cond in self.conditions:
            _met, lhs, target = self.ev.condition(cond)
            label = condition_label(cond)
            columns = [(label, lhs[idx, col])]
            if isinstance(cond.compare_to, MetricRef):
                columns.append((label + " [target]", target[idx, col]))
            for name, arr in columns:
                for k, x in enumerate(np.round(arr, 6).tolist()):
                    out[k][name] = x if math.isfinite(x) else None
        return out

    def explain(self, decisions: Sequence[Decision], col: int) -> None:
        for d, values in zip(decisions, self.values([d.entity for d in decisions], col), strict=True):
            d.values = values

    def decide(self, col: int, state: State, now_ts: float, *, active: BoolArray | None = None) -> DayEvaluation:
        """Decisions for evaluation day ``self.ev.t[col]``; ``state`` is updated for acts."""
        rule, frame = self.rule, self.ev.frame
        running = state.active if active is None else active
        matched = np.flatnonzero(self.match[:, col])
        keys = [frame.entities[e].key for e in matched]
        order = [int(matched[i]) for i in np.lexsort((keys, -self.priority[matched, col]))] if len(matched) else []
        action = rule.entity_action
        effect = action.effect if action is not None else None
        decisions: list[Decision] = []
        taken = 0
        cooldown = rule.cooldown_hours * 3600.0
        for e in order:
            d = Decision(e, "act", None, (effect.value if effect else ActionType.NOTIFY.value), {})
            if state.ready_at[e] > now_ts:
                d.outcome = "skip"
                until = datetime.fromtimestamp(state.ready_at[e], UTC).isoformat()
                d.reason = f"cooldown until {until}"
            elif effect == ActionType.PAUSE and not running[e]:
                d.outcome, d.reason = "skip", "already paused"
            elif effect == ActionType.RESUME and running[e]:
                d.outcome, d.reason = "skip", "already running"
            elif effect in (ActionType.SET_BUDGET, ActionType.CHANGE_BUDGET):
                assert action is not None
                current = state.budget_minor[e]
                if not math.isfinite(current) or current <= 0:
                    d.outcome, d.reason = "skip", "current daily budget unknown (set at the ad group or lifetime)"
                else:
                    target = _target_budget(action, current, _exponent(frame.entities[e].currency))
                    d.budget_from_minor, d.budget_to_minor = int(current), int(target)
                    if int(target) == int(current):
                        d.outcome, d.reason = "skip", "budget already at its target (floor/ceiling)"
            if d.outcome == "act" and taken >= rule.max_actions_per_run:
                d.outcome, d.reason = "skip", f"action cap reached ({rule.max_actions_per_run} per run)"
            if d.outcome == "act":
                taken += 1
                state.ready_at[e] = now_ts + cooldown if cooldown else -np.inf
                if action is not None and action.type != ActionType.RECOMMEND:
                    if effect == ActionType.PAUSE:
                        state.active[e] = False
                    elif effect == ActionType.RESUME:
                        state.active[e] = True
                    elif d.budget_to_minor is not None:
                        state.budget_minor[e] = float(d.budget_to_minor)
            decisions.append(d)
        return DayEvaluation(order, decisions)


def end_of_day_ts(day: date) -> float:
    """A replayed evaluation happens when the day is complete (midnight after it, UTC)."""
    return datetime.combine(day + timedelta(days=1), time.min, tzinfo=UTC).timestamp()


# --------------------------------------------------------------------------- backtest
@dataclass
class BacktestResult:
    days: list[dict[str, Any]] = field(default_factory=list)
    actions: list[dict[str, Any]] = field(default_factory=list)
    saved_minor: dict[str, int] = field(default_factory=dict)
    shifted_minor: dict[str, int] = field(default_factory=dict)
    matched_entity_days: int = 0
    skipped: int = 0

    def summary(self) -> dict[str, Any]:
        return {"actions": len(self.actions), "entities": len({a["entity"]["id"] for a in self.actions}),
                "matched_entity_days": self.matched_entity_days, "skipped": self.skipped,
                "spend_saved_minor": dict(sorted(self.saved_minor.items())),
                "spend_shifted_minor": dict(sorted(self.shifted_minor.items()))}


def backtest(rule: RuleDefinition, frame: Frame, first: date, last: date) -> BacktestResult:
    """Replay ``rule`` on each day from ``first`` to ``last`` with the live decision code."""
    t0, t1 = frame.day_index(first), frame.day_index(last)
    if t0 < 0 or t1 >= frame.n_days or t1 < t0:
        raise ValueError("the replay days must lie inside the frame")
    ev = Evaluator(frame, np.arange(t0, t1 + 1))
    run = RuleRun(rule, ev)
    n = len(frame.entities)
    state = State(np.zeros(n, dtype=bool), frame.budget_minor.copy(), np.full(n, -np.inf))
    override = np.zeros(n, dtype=np.int8)  # 0: as history, 1: paused by the replay, 2: resumed by it
    multiplier = np.ones(n)
    original_budget = frame.budget_minor.copy()
    spend = frame.raw["spend"]
    result = BacktestResult()
    currencies = [e.currency for e in frame.entities]
    for col, t in enumerate(range(t0, t1 + 1)):
        day_spend = spend[:, t]
        for e in np.flatnonzero(override == 1):
            if day_spend[e] > 0:
                result.saved_minor[currencies[e]] = result.saved_minor.get(currencies[e], 0) + int(day_spend[e])
        for e in np.flatnonzero(multiplier != 1.0):
            if override[e] != 1 and day_spend[e] > 0:
                extra = round(float((multiplier[e] - 1.0) * day_spend[e]))
                result.shifted_minor[currencies[e]] = result.shifted_minor.get(currencies[e], 0) + extra
        running = np.where(override == 0, frame.delivered[:, t], override == 2)
        state.active = running.copy()
        day = frame.day_of(t)
        outcome = run.decide(col, state, end_of_day_ts(day), active=running)
        result.matched_entity_days += len(outcome.matched)
        acted = []
        kept = [d for d in outcome.decisions if d.outcome == "act"]
        result.skipped += len(outcome.decisions) - len(kept)
        run.explain(kept, col)
        for d in kept:
            entity = frame.entities[d.entity]
            record: dict[str, Any] = {"day": day.isoformat(), "entity": entity.ref(), "effect": d.effect,
                                      "values": d.values}
            if d.budget_to_minor is not None:
                record.update(budget_from_minor=d.budget_from_minor, budget_to_minor=d.budget_to_minor)
            result.actions.append(record)
            acted.append(record)
            action = rule.entity_action
            if action is None or action.type == ActionType.RECOMMEND:
                continue
            if d.effect == ActionType.PAUSE.value:
                override[d.entity] = 1
            elif d.effect == ActionType.RESUME.value:
                override[d.entity] = 2
            elif d.budget_to_minor is not None and original_budget[d.entity] > 0:
                multiplier[d.entity] = d.budget_to_minor / original_budget[d.entity]
        result.days.append({"day": day.isoformat(), "matched": len(outcome.matched), "actions": len(acted)})
    return result
