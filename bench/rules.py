"""Rule evaluation speed: 1,000 rules over 500 ads x 90 days (target: under 1 s).

Run:  .venv/bin/python bench/rules.py
      .venv/bin/python bench/rules.py --rules 100 --ads 100     # smoke size

What is timed, with the product's own code (omnify.rules.engine):

* ``frame_seconds``: building the preloaded frame (cumulative sums) from 45,000 daily rows;
* ``evaluate_seconds``: evaluating every rule on the latest day - conditions (AND/OR
  groups, windows from today to lifetime, previous-window changes, metric-vs-metric),
  the minimum-data guard, scope filters, and the decisions with cooldowns and the cap,
  explaining the deciding values of every match - as a live sweep does. This is the
  figure the 1-second target applies to (frame built once per client and sweep);
* ``backtest_seconds_per_rule``: one 90-day replay of a rule;
* ``baseline_seconds_per_rule``: a plain-Python evaluation of the same rules (per ad, per
  condition, sums over day dictionaries) on a sample, as a reference measured in the same
  run: ``speedup`` is its per-rule time over the engine's. Both must agree on every match
  (``agree``), which doubles as a check of the engine against an independent reading.

The rules are generated (seeded) from the metrics, windows and operators users write; a
third of them have nested OR groups, a sixth compare with the previous window, a sixth
with another metric. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import sys
import time
from datetime import date, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import numpy as np

from omnify.rules.definition import Condition, Group, Metric, MetricRef, Op, RuleDefinition, window_days
from omnify.rules.engine import DayRow, Entity, Evaluator, Frame, RuleRun, State, backtest

METRICS = ["spend", "impressions", "clicks", "conversions", "revenue", "ctr", "cpc", "cpm", "cpa", "roas",
           "conversion_rate", "frequency"]
WINDOWS = ["today", "yesterday", "last_3_days", "last_7_days", "last_14_days", "last_30_days", "lifetime"]
THRESHOLDS = {"spend": (5, 300), "impressions": (500, 50_000), "clicks": (5, 500), "conversions": (0, 20),
              "revenue": (10, 1000), "ctr": (0.3, 3), "cpc": (0.2, 3), "cpm": (2, 30), "cpa": (5, 80),
              "roas": (0.5, 5), "conversion_rate": (1, 10), "frequency": (1, 5)}


def world(n_ads: int, n_days: int, seed: int) -> tuple[list[Entity], list[DayRow], date, date]:
    rng = np.random.default_rng(seed)
    end = date(2026, 6, 30)
    start = end - timedelta(days=n_days - 1)
    entities, rows = [], []
    for i in range(n_ads):
        key = f"ad{i:04d}"
        entities.append(Entity(key=key, external_id=str(10_000 + i), name=f"Ad {i} {'Summer' if i % 3 else 'Brand'}",
                               platform=("meta_ads", "google_ads", "tiktok_ads")[i % 3], account_id="1", level="ad",
                               client_id="c1", currency="USD", status="active" if i % 7 else "paused",
                               campaign_key=f"c{i % 20}", campaign_external_id=str(i % 20)))
        launch = int(rng.integers(0, n_days // 2))
        base_impr, ctr, cvr = rng.lognormal(8, 0.8), rng.uniform(0.004, 0.03), rng.uniform(0.01, 0.08)
        for d in range(launch, n_days):
            impr = int(rng.poisson(base_impr * (0.7 if d % 7 in (5, 6) else 1.0)))
            clicks = int(rng.binomial(impr, ctr * math.exp(-max(0, d - launch - 40) / 60)))
            conv = float(rng.binomial(clicks, cvr))
            spend = int(impr * rng.uniform(0.5, 1.5))  # cents, CPM ~ 10
            rows.append(DayRow(key, start + timedelta(days=d), spend, impr, clicks, conv,
                               int(conv * rng.uniform(2000, 9000)), float(rng.uniform(1, 4))))
    return entities, rows, start, end


def random_condition(rnd: random.Random) -> dict[str, Any]:
    metric = rnd.choice(METRICS)
    lo, hi = THRESHOLDS[metric]
    window = rnd.choice(WINDOWS)
    cond: dict[str, Any] = {"metric": metric, "window": window, "op": rnd.choice([">", ">=", "<", "<="])}
    kind = rnd.random()
    if kind < 1 / 6 and window != "lifetime":
        cond.update(compare_to="previous_window", value=rnd.choice([-50, -30, -20, 20, 50]))
    elif kind < 2 / 6:
        cond["compare_to"] = {"metric": metric, "window": rnd.choice(WINDOWS), "multiplier": rnd.choice([0.5, 1, 1.5])}
    else:
        cond["value"] = round(rnd.uniform(lo, hi), 2)
    return cond


def random_rule(rnd: random.Random) -> RuleDefinition:
    conds: list[dict[str, Any]] = [random_condition(rnd) for _ in range(rnd.randint(1, 3))]
    if rnd.random() < 1 / 3:
        conds.append({"any": [random_condition(rnd) for _ in range(2)]})
    definition = {"conditions": {"all": conds}, "actions": [{"type": rnd.choice(["pause", "resume"])}],
                  "min_data": {"min_spend": rnd.choice([0, 10]), "min_days_live": rnd.choice([0, 7])},
                  "max_actions_per_run": rnd.choice([5, 25, 500]), "cooldown_hours": 24}
    if rnd.random() < 0.2:
        definition["scope"] = {"name_pattern": "*Summer*", "platforms": ["meta_ads", "google_ads"]}
    return RuleDefinition.model_validate(definition)


# ------------------------------------------------------------- plain-Python reference
def _sums(series: dict[date, DayRow], last: date, window: str, previous: bool, first: date) -> dict[str, float]:
    n = window_days(window)
    hi = last - timedelta(days=1) if window == "yesterday" else last
    lo = first if n is None else hi - timedelta(days=n - 1)
    if previous:
        assert n is not None
        hi, lo = lo - timedelta(days=1), lo - timedelta(days=n)
    out = dict.fromkeys(("spend", "impressions", "clicks", "conversions", "revenue", "fw", "fn"), 0.0)
    d = lo
    while d <= hi:
        r = series.get(d)
        if r is not None:
            out["spend"] += r.spend_minor / 100
            out["impressions"] += r.impressions
            out["clicks"] += r.clicks
            out["conversions"] += r.conversions
            out["revenue"] += r.revenue_minor / 100
            if r.frequency:
                out["fw"] += r.frequency * r.impressions
                out["fn"] += r.impressions
        d += timedelta(days=1)
    return out


def _value(s: dict[str, float], metric: Metric) -> float:
    def div(a: float, b: float, k: float = 1.0) -> float:
        return a * k / b if b > 1e-9 else math.nan

    return {
        Metric.SPEND: s["spend"], Metric.IMPRESSIONS: s["impressions"], Metric.CLICKS: s["clicks"],
        Metric.CONVERSIONS: s["conversions"], Metric.REVENUE: s["revenue"],
        Metric.CTR: div(s["clicks"], s["impressions"], 100), Metric.CPC: div(s["spend"], s["clicks"]),
        Metric.CPM: div(s["spend"], s["impressions"], 1000), Metric.CPA: div(s["spend"], s["conversions"]),
        Metric.ROAS: div(s["revenue"], s["spend"]), Metric.CONVERSION_RATE: div(s["conversions"], s["clicks"], 100),
        Metric.FREQUENCY: div(s["fw"], s["fn"]),
    }[metric]


def _cond(series: dict[date, DayRow], last: date, first: date, c: Condition) -> bool:
    v = _value(_sums(series, last, c.window, False, first), c.metric)
    if isinstance(c.compare_to, MetricRef):
        target = _value(_sums(series, last, c.compare_to.window, False, first), c.compare_to.metric)
        target *= c.compare_to.multiplier
    elif c.compare_to == "previous_window":
        prev = _value(_sums(series, last, c.window, True, first), c.metric)
        v = (v - prev) / abs(prev) * 100 if prev and not math.isnan(prev) else math.nan
        target = float(c.value or 0)
    else:
        target = float(c.value or 0)
    if math.isnan(v) or math.isnan(target):
        return False
    return {Op.GT: v > target + 1e-9 * max(1, abs(target)), Op.GE: v >= target - 1e-9 * max(1, abs(target)),
            Op.LT: v < target - 1e-9 * max(1, abs(target)), Op.LE: v <= target + 1e-9 * max(1, abs(target)),
            Op.EQ: abs(v - target) <= 1e-9, Op.NE: abs(v - target) > 1e-9}[c.op]


def _group(series: dict[date, DayRow], last: date, first: date, g: Group) -> bool:
    parts = [_group(series, last, first, c) if isinstance(c, Group) else _cond(series, last, first, c)
             for c in g.children]
    return all(parts) if g.mode == "all" else any(parts)


def reference_matches(rule: RuleDefinition, entities: list[Entity], by_ad: dict[str, dict[date, DayRow]],
                      first: date, last: date) -> set[str]:
    out = set()
    matcher = rule.scope.name_matcher()
    platforms = {p.value for p in rule.scope.platforms}
    for e in entities:
        if platforms and e.platform not in platforms:
            continue
        if matcher is not None and not matcher.search(e.name):
            continue
        series = by_ad.get(e.key, {})
        g = rule.min_data
        s = _sums(series, last, g.window, False, first)
        delivered = [d for d, r in series.items() if (r.impressions or r.spend_minor) and d <= last]
        live = (last - min(delivered)).days + 1 if delivered else 0
        if s["spend"] < g.min_spend - 1e-9 or live < g.min_days_live:
            continue
        if _group(series, last, first, rule.conditions):
            out.add(e.key)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rules", type=int, default=1000)
    parser.add_argument("--ads", type=int, default=500)
    parser.add_argument("--days", type=int, default=90)
    parser.add_argument("--baseline-rules", type=int, default=20)
    parser.add_argument("--seed", type=int, default=20260601)
    args = parser.parse_args()

    entities, rows, start, end = world(args.ads, args.days, args.seed)
    rnd = random.Random(args.seed)
    rules = [random_rule(rnd) for _ in range(args.rules)]

    t0 = time.perf_counter()
    frame = Frame.from_rows(entities, rows, start, end)
    frame_seconds = time.perf_counter() - t0

    runs: list[list[str]] = []
    acts = 0
    best = math.inf
    for _ in range(3):  # the least disturbed of three sweeps (the machine is shared)
        t0 = time.perf_counter()
        ev = Evaluator(frame, [frame.n_days - 1])
        runs = []
        acts = 0
        for rule in rules:
            run = RuleRun(rule, ev)
            out = run.decide(0, State.initial(frame), 1e12)
            run.explain(out.decisions, 0)
            acts += sum(d.outcome == "act" for d in out.decisions)
            runs.append(sorted(frame.entities[e].key for e in out.matched))
        best = min(best, time.perf_counter() - t0)

    t0 = time.perf_counter()
    sample = rules[: min(100, len(rules))]
    replays = [backtest(rule, frame, start + timedelta(days=30), end) for rule in sample]
    backtest_per_rule = (time.perf_counter() - t0) / len(sample)

    by_ad: dict[str, dict[date, DayRow]] = {}
    for r in rows:
        by_ad.setdefault(r.entity_key, {})[r.day] = r
    n_ref = min(args.baseline_rules, len(rules))
    t0 = time.perf_counter()
    reference = [reference_matches(rules[i], entities, by_ad, start, end) for i in range(n_ref)]
    baseline_per_rule = (time.perf_counter() - t0) / max(n_ref, 1)
    agree = all(set(runs[i]) == reference[i] for i in range(n_ref))

    per_rule = best / len(rules)
    print(json.dumps({
        "rules": len(rules), "ads": args.ads, "days": args.days, "rows": len(rows),
        "frame_seconds": round(frame_seconds, 4),
        "evaluate_seconds": round(best, 4),
        "target_seconds": 1.0, "target_met": best < 1.0,
        "evaluate_ms_per_rule": round(per_rule * 1000, 4),
        "matched_per_rule_mean": round(sum(len(r) for r in runs) / len(runs), 2),
        "acts_total": acts,
        "backtest_seconds_per_rule": round(backtest_per_rule, 4),
        "backtest_actions_mean": round(sum(len(r.actions) for r in replays) / len(replays), 2),
        "baseline_seconds_per_rule": round(baseline_per_rule, 4),
        "speedup": round(baseline_per_rule / per_rule, 1) if per_rule else None,
        "agree": agree, "baseline_rules_checked": n_ref,
        "load_average_1m": round(os.getloadavg()[0], 2),
    }))
    if not agree:
        sys.exit(2)


if __name__ == "__main__":
    main()
