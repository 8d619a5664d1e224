"""The beat schedule: what runs periodically, overridable from settings.

Entries are keyed by *task name*, not by import path, so the schedule can name tasks of
domains that are not written yet (sync, brain, webhooks, ...). Beat runs with
:class:`OmnifyScheduler`, which skips an entry whose task is not registered in this
build (logging it once) instead of flooding the broker with messages no worker can run.

Override with ``OMNIFY_JOBS_BEAT_SCHEDULE`` (JSON), e.g.
``{"omnify.brain.run_due": {"every": 1800}, "omnify.audit.export": {"cron": "30 2 * * *"},
"omnify.backup.check": null}``.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import structlog
from celery.beat import PersistentScheduler, ScheduleEntry
from celery.schedules import crontab

log = structlog.get_logger(__name__)

#: name -> {"every": seconds} | {"cron": "m h dom mon dow"}, plus optional "queue",
#: "args", "kwargs", "enabled". Task names are the contract with each domain's tasks.py.
DEFAULT_BEAT_SCHEDULE: dict[str, dict[str, Any]] = {
    # Incremental platform syncs: the task picks connections whose next run is due.
    "omnify.sync.run_due": {"every": 15 * 60},
    # OAuth tokens that expire within the refresh window.
    "omnify.connections.refresh_expiring": {"every": 10 * 60},
    # The brain's evaluation of every onboarded client.
    "omnify.brain.run_due": {"every": 60 * 60},
    # Outbound webhook attempts whose retry time has come.
    "omnify.webhooks.redeliver_due": {"every": 15},
    "omnify.webhooks.dispatch_events": {"every": 10},
    "omnify.webhooks.process_inbound_due": {"every": 60},
    "omnify.webhooks.purge": {"cron": "37 3 * * *"},
    # E-mail outbox and the weekly digest.
    "omnify.notifications.send_due": {"every": 30},
    "omnify.notifications.weekly_digest": {"cron": "0 7 * * 1"},
    # Soft-deleted files and archived clients past their restore window.
    "omnify.files.purge_deleted": {"every": 600},
    "omnify.clients.purge_archived": {"cron": "37 3 * * *"},
    # Housekeeping.
    "omnify.jobs.purge": {"cron": "17 3 * * *"},
    "omnify.auth.purge_expired": {"cron": "27 3 * * *"},
    # Audit log export to cold storage.
    "omnify.audit.export": {"cron": "45 2 * * *"},
    # Backup freshness check (alerts when the last base backup is too old).
    "omnify.backup.check": {"cron": "5 * * * *"},
}


class ScheduleError(ValueError):
    """An override in OMNIFY_JOBS_BEAT_SCHEDULE cannot be understood."""


def _parse_cron(expr: str, name: str) -> crontab:
    fields = expr.split()
    if len(fields) != 5:
        raise ScheduleError(f"{name}: cron needs 5 fields (m h dom mon dow), got {expr!r}")
    minute, hour, day_of_month, month_of_year, day_of_week = fields
    try:
        return crontab(
            minute=minute,
            hour=hour,
            day_of_month=day_of_month,
            month_of_year=month_of_year,
            day_of_week=day_of_week,
        )
    except (ValueError, TypeError) as exc:
        raise ScheduleError(f"{name}: invalid cron {expr!r}: {exc}") from exc


def _to_celery_entry(name: str, spec: dict[str, Any]) -> dict[str, Any]:
    unknown = set(spec) - {"every", "cron", "queue", "args", "kwargs", "enabled"}
    if unknown:
        raise ScheduleError(f"{name}: unknown keys {sorted(unknown)}")
    schedule: timedelta | crontab
    if "every" in spec and "cron" in spec:
        raise ScheduleError(f"{name}: give either 'every' or 'cron', not both")
    if "every" in spec:
        every = spec["every"]
        if not isinstance(every, int | float) or isinstance(every, bool) or every <= 0:
            raise ScheduleError(f"{name}: 'every' must be a positive number of seconds")
        schedule = timedelta(seconds=float(every))
    elif "cron" in spec:
        if not isinstance(spec["cron"], str):
            raise ScheduleError(f"{name}: 'cron' must be a string")
        schedule = _parse_cron(spec["cron"], name)
    else:
        raise ScheduleError(f"{name}: needs 'every' (seconds) or 'cron'")
    entry: dict[str, Any] = {
        "task": name,
        "schedule": schedule,
        "args": tuple(spec.get("args") or ()),
        "kwargs": dict(spec.get("kwargs") or {}),
    }
    if spec.get("queue"):
        entry["options"] = {"queue": str(spec["queue"])}
    return entry


def build_beat_schedule(overrides: dict[str, Any] | None = None) -> dict[str, dict[str, Any]]:
    """Merge overrides into the defaults and convert to Celery's ``beat_schedule``."""
    merged: dict[str, dict[str, Any] | None] = {k: dict(v) for k, v in DEFAULT_BEAT_SCHEDULE.items()}
    for name, spec in (overrides or {}).items():
        if spec is None:
            merged[name] = None
            continue
        if not isinstance(spec, dict):
            raise ScheduleError(f"{name}: expected an object or null")
        base = merged.get(name) or {}
        if "every" in spec or "cron" in spec:
            base = {k: v for k, v in base.items() if k not in ("every", "cron")}
        merged[name] = {**base, **spec}
    schedule: dict[str, dict[str, Any]] = {}
    for name, maybe_spec in merged.items():
        if maybe_spec is None or maybe_spec.get("enabled", True) is False:
            continue
        schedule[name] = _to_celery_entry(name, maybe_spec)
    return schedule


class OmnifyScheduler(PersistentScheduler):  # type: ignore[misc]
    """Beat scheduler that tolerates entries for tasks this build does not have."""

    _warned: set[str]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._warned = set()
        super().__init__(*args, **kwargs)

    def apply_async(
        self, entry: ScheduleEntry, producer: Any = None, advance: bool = True, **kwargs: Any
    ) -> Any:
        if entry.task not in self.app.tasks:
            if entry.task and entry.task not in self._warned:
                self._warned.add(entry.task)
                log.warning("jobs.beat_task_not_registered", task=entry.task, entry=entry.name)
            return None
        return super().apply_async(entry, producer=producer, advance=advance, **kwargs)
