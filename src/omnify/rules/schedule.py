"""When a rule runs: slots and the next due time. Pure functions of the clock.

A *slot* names one scheduled run; it is unique per rule in ``rule_evaluations``, so a
beat tick, a retried task and a second worker that all pick the same slot run it once.

* ``15m`` / ``1h``: the latest quarter-hour / hour boundary (UTC) at or before now; one
  slot covers every client of the rule.
* ``1d`` at ``HH:MM``: the time is in **each client's own time zone** (its profile's
  ``timezone``, UTC when unset), so a rule over a New York and a Berlin client runs for
  each at their own morning. Clients whose local time falls on the same instant share a
  slot; the rule is next due at the earliest client's next instant.
* ``after_sync``: no periodic slot; a ``sync.completed`` event of a client runs the rule
  for that client (slot ``sync:<event id>``).

A worker that was down does not replay missed slots: only the latest is run (a rule is
about the present state of the account; ten stacked stop-loss runs would do nothing
the last one does not).
"""

from __future__ import annotations

import zoneinfo
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

from omnify.rules.definition import Schedule

PERIODS = {"15m": timedelta(minutes=15), "1h": timedelta(hours=1)}
DEFAULT_DAILY_AT = time(7, 0)


def zone(name: str | None) -> zoneinfo.ZoneInfo:
    try:
        return zoneinfo.ZoneInfo(name or "UTC")
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return zoneinfo.ZoneInfo("UTC")


def local_today(now: datetime, tz: str | None) -> date:
    """The evaluation day of a client: its calendar date now."""
    return now.astimezone(zone(tz)).date()


def _boundary(now: datetime, period: timedelta) -> datetime:
    epoch = datetime(2000, 1, 1, tzinfo=UTC)
    steps = (now - epoch) // period
    return epoch + steps * period


def _daily_instant(now: datetime, tz: str | None, at: time) -> datetime:
    """The latest local ``at`` at or before ``now``, as a UTC instant."""
    z = zone(tz)
    local = now.astimezone(z)
    candidate = datetime.combine(local.date(), at, tzinfo=z)
    if candidate > local:
        candidate = datetime.combine(local.date() - timedelta(days=1), at, tzinfo=z)
    return candidate.astimezone(UTC)


@dataclass(frozen=True, slots=True)
class Slot:
    key: str
    at: datetime
    client_ids: tuple[str, ...]


def due_slots(schedule: Schedule, now: datetime, client_tzs: dict[str, str | None]) -> list[Slot]:
    """The latest slot(s) at or before ``now`` (empty for after_sync rules)."""
    if schedule.every == "after_sync":
        return []
    clients = tuple(sorted(client_tzs))
    if schedule.every in PERIODS:
        at = _boundary(now, PERIODS[schedule.every])
        return [Slot(f"{schedule.every}@{at.isoformat()}", at, clients)]
    at_time = schedule.at or DEFAULT_DAILY_AT
    groups: dict[datetime, list[str]] = {}
    for client in clients:
        groups.setdefault(_daily_instant(now, client_tzs[client], at_time), []).append(client)
    return [Slot(f"1d@{at.isoformat()}", at, tuple(ids)) for at, ids in sorted(groups.items())]


def next_run(schedule: Schedule, now: datetime, client_tzs: dict[str, str | None]) -> datetime | None:
    """When the rule is next due after ``now``."""
    if schedule.every == "after_sync":
        return None
    if schedule.every in PERIODS:
        return _boundary(now, PERIODS[schedule.every]) + PERIODS[schedule.every]
    at_time = schedule.at or DEFAULT_DAILY_AT
    out = []
    for tz in list(client_tzs.values()) or [None]:
        z = zone(tz)
        last_local = _daily_instant(now, tz, at_time).astimezone(z).date()
        out.append(datetime.combine(last_local + timedelta(days=1), at_time, tzinfo=z).astimezone(UTC))
    return min(out)
