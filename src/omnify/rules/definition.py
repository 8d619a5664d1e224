"""The rule language: what a user writes, validated before anything is stored or run.

A rule is data, not code. The shape (JSON, as the API takes it)::

    {"level": "ad",
     "scope": {"client_ids": [...], "platforms": ["meta_ads"], "campaign_ids": [...],
               "ad_ids": [...], "name_pattern": "*Summer*", "labels": ["prospecting"]},
     "conditions": {"all": [
         {"metric": "spend", "window": "last_3_days", "op": ">", "value": 50},
         {"metric": "conversions", "window": "last_3_days", "op": "==", "value": 0},
         {"any": [...]}]},
     "min_data": {"min_spend": 10, "min_days_live": 10},
     "actions": [{"type": "pause"}, {"type": "notify", "channels": ["slack"]}],
     "schedule": {"every": "15m"},
     "cooldown_hours": 24, "max_actions_per_run": 10}

Why these choices:

* Money in a condition is in **major units of the entity's own currency** (``50`` is
  $50 for a USD ad and 50 EUR for a EUR one): that is how a marketer writes it, and an
  entity only ever has one currency, so no conversion is ever guessed.
* Windows end on the evaluation day and include it (``today``, ``yesterday``,
  ``last_<n>_days``, ``lifetime``). ``compare_to: "previous_window"`` compares with the
  same number of days just before, as a change in percent (``-30`` = down 30 %).
* A comparison with no data (a CPA with no conversions, a change from zero) is *not
  met*: a rule never acts on a number that does not exist.
* Validation errors name the field with its full path (``conditions.all.1.window``), so
  the API's 422 says exactly what to fix.
"""

from __future__ import annotations

import enum
import fnmatch
import re
import uuid
from datetime import time
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, field_validator, model_validator

from omnify.integrations.base import Platform

MAX_GROUP_DEPTH = 4
MAX_CONDITIONS = 50
MAX_WINDOW_DAYS = 365
MAX_ACTIONS_PER_RUN = 500
WINDOW_RE = re.compile(r"^(today|yesterday|lifetime|last_([1-9][0-9]{0,2})_days)$")


class Metric(enum.StrEnum):
    SPEND = "spend"
    IMPRESSIONS = "impressions"
    CLICKS = "clicks"
    CONVERSIONS = "conversions"
    REVENUE = "revenue"
    CTR = "ctr"  # percent: clicks / impressions * 100
    CPC = "cpc"
    CPM = "cpm"
    CPA = "cpa"
    ROAS = "roas"
    CONVERSION_RATE = "conversion_rate"  # percent: conversions / clicks * 100
    FREQUENCY = "frequency"  # where the platform reports it (impression-weighted)
    BUDGET = "budget"  # the current daily budget (campaign level; not windowed)


MONEY_METRICS = frozenset({Metric.SPEND, Metric.REVENUE, Metric.CPC, Metric.CPM, Metric.CPA, Metric.BUDGET})


class Op(enum.StrEnum):
    GT = ">"
    GE = ">="
    LT = "<"
    LE = "<="
    EQ = "=="
    NE = "!="


class Level(enum.StrEnum):
    AD = "ad"
    CAMPAIGN = "campaign"


_FIELD_MSG = re.compile(r"^(?:Value error, )?@([a-z_]+): (.*)$", re.DOTALL)


def _err(field: str, message: str) -> ValueError:
    """A cross-field error that still names its field (see :func:`error_entries`)."""
    return ValueError(f"@{field}: {message}")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, use_enum_values=False)


def window_days(window: str) -> int | None:
    """Length in days (``None`` for lifetime)."""
    if window in ("today", "yesterday"):
        return 1
    if window == "lifetime":
        return None
    match = WINDOW_RE.fullmatch(window)
    assert match is not None and match.group(2)
    return int(match.group(2))


class _Windowed(_Strict):
    window: str = Field("last_7_days", description="today, yesterday, last_<n>_days (n <= 365) or lifetime.")

    @field_validator("window")
    @classmethod
    def _window(cls, value: str) -> str:
        value = value.strip().lower()
        if not WINDOW_RE.fullmatch(value):
            raise ValueError("must be today, yesterday, lifetime or last_<n>_days (e.g. last_7_days)")
        days = window_days(value)
        if days is not None and days > MAX_WINDOW_DAYS:
            raise ValueError(f"windows are limited to {MAX_WINDOW_DAYS} days")
        return value


class MetricRef(_Windowed):
    """Another metric (or the same one over another window), optionally scaled."""

    metric: Metric
    multiplier: float = Field(1.0, gt=0, le=1000)


class Condition(_Windowed):
    metric: Metric
    op: Op
    value: float | None = Field(None, description="The number to compare with (a percent for previous_window).")
    compare_to: Annotated[
        Annotated[Literal["value", "previous_window"], Tag("kind")] | Annotated[MetricRef, Tag("metric")],
        Discriminator(lambda v: "metric" if isinstance(v, dict | MetricRef) else "kind"),
    ] = "value"

    @model_validator(mode="after")
    def _target(self) -> Condition:
        if self.compare_to in ("value", "previous_window") and self.value is None:
            raise _err("value", "is required when comparing with a number or with the previous window")
        if isinstance(self.compare_to, MetricRef) and self.value is not None:
            raise _err("value", "give either value or a metric in compare_to, not both")
        if self.metric == Metric.BUDGET and self.compare_to == "previous_window":
            raise _err("compare_to", "budget has no previous window")
        if self.compare_to == "previous_window" and self.window == "lifetime":
            raise _err("compare_to", "lifetime has no previous window")
        return self


def _node_kind(value: Any) -> str:
    if isinstance(value, dict):
        return "group" if ("all" in value or "any" in value) and "metric" not in value else "condition"
    return "group" if isinstance(value, Group) else "condition"


Node = Annotated[
    Annotated[Condition, Tag("condition")] | Annotated["Group", Tag("group")], Discriminator(_node_kind)]


class Group(_Strict):
    all: list[Node] | None = Field(None, min_length=1)
    any: list[Node] | None = Field(None, min_length=1)

    @model_validator(mode="after")
    def _one_kind(self) -> Group:
        if (self.all is None) == (self.any is None):
            raise _err("all", "a group has exactly one of all or any")
        return self

    @property
    def children(self) -> list[Condition | Group]:
        return list(self.all if self.all is not None else self.any or [])

    @property
    def mode(self) -> Literal["all", "any"]:
        return "all" if self.all is not None else "any"


class Scope(_Strict):
    client_ids: list[uuid.UUID] = Field(default_factory=list, max_length=500)
    platforms: list[Platform] = Field(default_factory=list)
    campaign_ids: list[str] = Field(default_factory=list, max_length=1000,
                                    description="Omnify ids or the platform's ids of campaigns.")
    ad_ids: list[str] = Field(default_factory=list, max_length=5000,
                              description="Omnify ids or the platform's ids of ads.")
    name_pattern: str | None = Field(None, max_length=200, description="Shell-style (*, ?) and case-insensitive; "
                                     "prefix with re: for a regular expression.")
    labels: list[Annotated[str, Field(min_length=1, max_length=64)]] = Field(default_factory=list, max_length=50)

    @field_validator("platforms")
    @classmethod
    def _ad_platforms(cls, value: list[Platform]) -> list[Platform]:
        if Platform.SHOPIFY in value:
            raise ValueError("shopify has no ads to act on")
        return value

    @field_validator("name_pattern")
    @classmethod
    def _pattern(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        if value.startswith("re:"):
            try:
                re.compile(value[3:])
            except re.error as exc:
                raise ValueError(f"not a valid regular expression: {exc}") from None
        return value

    def name_matcher(self) -> re.Pattern[str] | None:
        if not self.name_pattern:
            return None
        if self.name_pattern.startswith("re:"):
            return re.compile(self.name_pattern[3:], re.IGNORECASE)
        return re.compile(fnmatch.translate(self.name_pattern), re.IGNORECASE)


class MinData(_Windowed):
    """Do not judge an entity before it has this much data (over ``window``, default lifetime)."""

    window: str = "lifetime"
    min_spend: float = Field(0, ge=0)
    min_impressions: int = Field(0, ge=0)
    min_clicks: int = Field(0, ge=0)
    min_days_live: int = Field(0, ge=0, le=3650)


class ActionType(enum.StrEnum):
    PAUSE = "pause"
    RESUME = "resume"
    SET_BUDGET = "set_budget"
    CHANGE_BUDGET = "change_budget"
    NOTIFY = "notify"
    RECOMMEND = "recommend"


ENTITY_ACTIONS = frozenset({ActionType.PAUSE, ActionType.RESUME, ActionType.SET_BUDGET, ActionType.CHANGE_BUDGET})
BUDGET_ACTIONS = frozenset({ActionType.SET_BUDGET, ActionType.CHANGE_BUDGET})


class NotifyChannel(enum.StrEnum):
    SLACK = "slack"
    TEAMS = "teams"
    EMAIL = "email"
    WEBHOOK = "webhook"


class Action(_Strict):
    type: ActionType
    #: set_budget: the new daily budget (major units); change_budget: the change.
    amount: float | None = Field(None, description="set_budget: the new daily budget; change_budget: +/- amount.")
    percent: float | None = Field(None, ge=-100, le=1000, description="change_budget: +/- percent of the current "
                                  "budget (e.g. 20 for +20 %).")
    floor: float | None = Field(None, ge=0, description="Never set a budget below this (major units).")
    ceiling: float | None = Field(None, gt=0, description="Never set a budget above this (major units).")
    channels: list[NotifyChannel] = Field(default_factory=list, description="notify: where to send it.")
    emails: list[Annotated[str, Field(max_length=320, pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$")]] = Field(
        default_factory=list, max_length=20, description="notify by e-mail: recipients (default: the org's admins).")
    #: recommend: what the recommendation proposes (pause, resume or a budget change).
    propose: ActionType | None = None

    @model_validator(mode="after")
    def _fields(self) -> Action:
        t = self.type
        if t == ActionType.SET_BUDGET:
            if self.amount is None or self.amount <= 0:
                raise _err("amount", "set_budget needs a positive amount")
            if self.percent is not None:
                raise _err("percent", "set_budget takes an amount, not a percent")
        if t == ActionType.CHANGE_BUDGET and (self.amount is None) == (self.percent is None):
            raise _err("amount", "change_budget needs exactly one of amount or percent")
        budget_fields = (self.amount, self.percent, self.floor, self.ceiling) != (None,) * 4
        if t not in BUDGET_ACTIONS and budget_fields and not (t == ActionType.RECOMMEND
                                                              and self.propose in BUDGET_ACTIONS):
            raise _err("type", f"{t.value} takes no amount, percent, floor or ceiling")
        if self.floor is not None and self.ceiling is not None and self.floor > self.ceiling:
            raise _err("floor", "must not be above ceiling")
        if t == ActionType.NOTIFY and not self.channels:
            raise _err("channels", "notify needs at least one channel")
        if t != ActionType.NOTIFY and (self.channels or self.emails):
            raise _err("channels", "only notify takes channels or emails")
        if t == ActionType.RECOMMEND:
            if self.propose is None or self.propose not in ENTITY_ACTIONS:
                raise _err("propose", "recommend needs propose: pause, resume, set_budget or change_budget")
        elif self.propose is not None:
            raise _err("propose", "only recommend takes propose")
        return self

    @property
    def effect(self) -> ActionType | None:
        """The entity change this action makes or proposes (None for notify)."""
        if self.type in ENTITY_ACTIONS:
            return self.type
        return self.propose


class Schedule(_Strict):
    """``every``: 15m, 1h or 1d (``at`` the local time, in the client's time zone), or after_sync."""

    every: Literal["15m", "1h", "1d", "after_sync"] = "1h"
    at: time | None = Field(None, description="For 1d: the local time of day (HH:MM) in the client's time zone.")

    @model_validator(mode="after")
    def _at(self) -> Schedule:
        if self.at is not None and self.every != "1d":
            raise _err("at", "is only for a daily schedule (every: 1d)")
        return self


class RuleDefinition(_Strict):
    level: Level = Level.AD
    scope: Scope = Field(default_factory=Scope)
    conditions: Group
    min_data: MinData = Field(default_factory=MinData)
    actions: list[Action] = Field(min_length=1, max_length=5)
    schedule: Schedule = Field(default_factory=Schedule)
    cooldown_hours: float = Field(24, ge=0, le=24 * 90, description="Per entity, after an action on it.")
    max_actions_per_run: int = Field(25, ge=1, le=MAX_ACTIONS_PER_RUN)

    @model_validator(mode="after")
    def _consistent(self) -> RuleDefinition:
        count, depth = _walk(self.conditions, 1)
        if depth > MAX_GROUP_DEPTH:
            raise _err("conditions", f"conditions nest at most {MAX_GROUP_DEPTH} groups deep")
        if count > MAX_CONDITIONS:
            raise _err("conditions", f"a rule has at most {MAX_CONDITIONS} conditions")
        effects = [a.effect for a in self.actions if a.effect is not None]
        if len(effects) > 1:
            raise _err("actions", "a rule changes entities in at most one way "
                       "(one of pause, resume, budget, recommend)")
        if any(e in BUDGET_ACTIONS for e in effects) and self.level != Level.CAMPAIGN:
            raise _err("level", "budget actions need level: campaign (budgets live on campaigns)")
        return self

    def conditions_list(self) -> list[Condition]:
        out: list[Condition] = []
        _collect(self.conditions, out)
        return out

    @property
    def entity_action(self) -> Action | None:
        for action in self.actions:
            if action.effect is not None:
                return action
        return None

    @property
    def notify_actions(self) -> list[Action]:
        return [a for a in self.actions if a.type == ActionType.NOTIFY]


def _walk(group: Group, depth: int) -> tuple[int, int]:
    count, deepest = 0, depth
    for child in group.children:
        if isinstance(child, Group):
            c, d = _walk(child, depth + 1)
            count, deepest = count + c, max(deepest, d)
        else:
            count += 1
    return count, deepest


def _collect(group: Group, out: list[Condition]) -> None:
    for child in group.children:
        if isinstance(child, Group):
            _collect(child, out)
        else:
            out.append(child)


def field_path(loc: tuple[Any, ...]) -> str:
    """Pydantic's location without its union-branch tags: ``conditions.all.1.window``.

    A tag is dropped only where it stands for a union branch (``metric`` is a tag after
    ``compare_to`` but a real field elsewhere)."""
    parts: list[str] = []
    for i, p in enumerate(loc):
        prev = str(loc[i - 1]) if i else ""
        if isinstance(p, str) and (p in ("condition", "group") or (p in ("kind", "metric") and prev == "compare_to")):
            continue
        if isinstance(p, str) and p.startswith("function-"):
            continue
        parts.append(str(p))
    return ".".join(parts)


def error_entries(errors: list[Any], prefix: tuple[str, ...] = ("body",)) -> list[dict[str, Any]]:
    """Pydantic errors as the API's 422 ``errors``: each names its field by full path.

    ``prefix`` is prepended to each location (``body`` for a model validated on its own;
    FastAPI's request errors already start with ``body``)."""
    out = []
    for err in errors:
        loc = [*prefix, *(p for p in field_path(tuple(err["loc"])).split(".") if p)]
        msg = str(err.get("msg", ""))
        match = _FIELD_MSG.match(msg)
        if match:
            loc.append(match.group(1))
            msg = match.group(2)
        elif msg.startswith("Value error, "):
            msg = msg[len("Value error, "):]
        field = ".".join(loc[1:]) if len(loc) > 1 and loc[0] in ("body", "query", "path") else ".".join(loc)
        out.append({"loc": loc, "field": field, "msg": msg, "type": err.get("type")})
    return out
