"""Ready-made rules for the well-known tactics; each is an ordinary, editable definition.

The numbers are starting points agencies commonly use, not magic: every template is
created as a draft-able rule (``dry_run`` on by default for the ones that spend money)
that the user tunes before switching it on.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from omnify.rules.definition import RuleDefinition


@dataclass(frozen=True, slots=True)
class Template:
    key: str
    name: str
    description: str
    definition: dict[str, Any]
    dry_run: bool = True

    def parsed(self) -> RuleDefinition:
        return RuleDefinition.model_validate(self.definition)


TEMPLATES: dict[str, Template] = {t.key: t for t in (
    Template(
        "stop_loss", "Stop-loss: pause ads that spend without converting",
        "Pause an ad that spent more than 50 in the last 3 days with no conversion, once it has "
        "10 days and 10 of spend behind it.",
        {"level": "ad",
         "conditions": {"all": [
             {"metric": "spend", "window": "last_3_days", "op": ">", "value": 50},
             {"metric": "conversions", "window": "last_3_days", "op": "==", "value": 0}]},
         "min_data": {"min_spend": 10, "min_days_live": 10},
         "actions": [{"type": "pause"}, {"type": "notify", "channels": ["slack"]}],
         "schedule": {"every": "15m"}, "cooldown_hours": 24, "max_actions_per_run": 10}),
    Template(
        "revive_winners", "Revive paused winners",
        "Resume a paused ad whose return on ad spend over its life was at least 3 with 5 or more conversions.",
        {"level": "ad",
         "conditions": {"all": [
             {"metric": "roas", "window": "lifetime", "op": ">=", "value": 3},
             {"metric": "conversions", "window": "lifetime", "op": ">=", "value": 5}]},
         "min_data": {"min_spend": 20},
         "actions": [{"type": "resume"}],
         "schedule": {"every": "1d", "at": "08:00"}, "cooldown_hours": 72, "max_actions_per_run": 5}),
    Template(
        "surf_scale", "Surf-scale: +20 % a day while ROAS holds",
        "Raise a campaign's daily budget by 20 % (never above 500) each day its 3-day ROAS stays at or above 2.5 "
        "and did not fall more than 10 % from the 3 days before.",
        {"level": "campaign",
         "conditions": {"all": [
             {"metric": "roas", "window": "last_3_days", "op": ">=", "value": 2.5},
             {"metric": "roas", "window": "last_3_days", "op": ">=", "value": -10, "compare_to": "previous_window"}]},
         "min_data": {"min_spend": 30, "min_days_live": 7},
         "actions": [{"type": "change_budget", "percent": 20, "ceiling": 500}],
         "schedule": {"every": "1d", "at": "09:00"}, "cooldown_hours": 23, "max_actions_per_run": 10}),
    Template(
        "sunset_fatigued", "Sunset creatives past fatigue",
        "Pause an ad whose CTR over the last 7 days fell more than 35 % from the 7 days before while its frequency "
        "is above 3 (or CTR is half its lifetime level).",
        {"level": "ad",
         "conditions": {"all": [
             {"metric": "ctr", "window": "last_7_days", "op": "<", "value": -35, "compare_to": "previous_window"},
             {"any": [
                 {"metric": "frequency", "window": "last_7_days", "op": ">", "value": 3},
                 {"metric": "ctr", "window": "last_7_days", "op": "<",
                  "compare_to": {"metric": "ctr", "window": "lifetime", "multiplier": 0.5}}]}]},
         "min_data": {"min_impressions": 5000, "min_days_live": 21},
         "actions": [{"type": "pause"}],
         "schedule": {"every": "1d", "at": "07:00"}, "cooldown_hours": 168, "max_actions_per_run": 10}),
    Template(
        "budget_cap", "Budget cap: stop a campaign that overspends today",
        "Pause a campaign whose spend today is above 1,000.",
        {"level": "campaign",
         "conditions": {"all": [{"metric": "spend", "window": "today", "op": ">", "value": 1000}]},
         "actions": [{"type": "pause"}, {"type": "notify", "channels": ["slack", "email"]}],
         "schedule": {"every": "15m"}, "cooldown_hours": 20, "max_actions_per_run": 25},
        dry_run=False),
)}
