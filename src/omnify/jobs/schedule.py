"""The beat schedule: what runs periodically, overridable from settings.

Entries are keyed by *task name*, not by import path. Beat runs with
:class:`OmnifyScheduler`, which refuses to start when an entry names a task that no
module of this build registers: a schedule entry that silently never runs (an audit
export, a backup check) is worse than a beat that does not start and says why.

Override with ``OMNIFY_JOBS_BEAT_SCHEDULE`` (JSON), e.g.
``{"omnify.brain.run_due": {"every": 1800}, "omnify.audit.export": {"cron": "30 2 * * *"},
"omnify.backup.check": null}``.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import structlog
from celery.beat import PersistentScheduler
from celery.schedules import crontab

from omnify.jobs import broker_recovery as recovery

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
    # Objects an upload wrote but never recorded (its process died between the two writes).
    "omnify.files.sweep_orphans": {"cron": "47 * * * *"},
    "omnify.clients.purge_archived": {"cron": "37 3 * * *"},
    # Housekeeping.
    "omnify.jobs.purge": {"cron": "17 3 * * *"},
    "omnify.auth.purge_expired": {"cron": "27 3 * * *"},
    # Audit log export to cold storage.
    "omnify.audit.export": {"cron": "45 2 * * *"},
    # Automation rules whose slot is due (15 min, hourly, daily at each client's local time).
    "omnify.rules.run_due": {"every": 60},
    # Actions left 'applying'/'undoing' by a worker that died mid-apply: settled from the
    # platform once older than action_reconcile_after_seconds.
    "omnify.actions.reconcile_interrupted": {"every": 5 * 60},
    # Scheduled client reports (weekly/monthly PDFs at each client's local time).
    "omnify.reports.send_due": {"every": 15 * 60},
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


def unregistered_tasks(app: Any, schedule: dict[str, dict[str, Any]] | None = None) -> list[str]:
    """Scheduled task names that no imported task module registers (after importing them all)."""
    app.loader.import_default_modules()
    entries = app.conf.beat_schedule if schedule is None else schedule
    return sorted({entry["task"] for entry in entries.values()} - set(app.tasks))


class OmnifyScheduler(PersistentScheduler):  # type: ignore[misc]
    """Beat scheduler that fails at start-up on a schedule entry with no task behind it."""

    def setup_schedule(self) -> None:
        missing = unregistered_tasks(self.app)
        if missing:
            log.error("jobs.beat_tasks_not_registered", tasks=missing)
            raise ScheduleError(
                "the beat schedule names tasks no module defines: " + ", ".join(missing)
                + " (fix the name, add the task, or disable it: OMNIFY_JOBS_BEAT_SCHEDULE='{\"<name>\": null}')")
        super().setup_schedule()
        self._due_at_start()

    def _due_at_start(self) -> None:
        """Make the entries named in ``OMNIFY_JOBS_BEAT_RUN_AT_START`` due on the first tick.

        Celery counts an interval from the moment beat first sees an entry, so an hourly
        sweep first runs an hour after start: a fresh ``omnify up`` showed no brain output
        for its first hour.
        """
        from omnify.jobs.config import get_jobs_settings

        wanted = set(get_jobs_settings().beat_run_at_start)
        unknown = wanted - {entry.task for entry in self.schedule.values()}
        if unknown:
            log.warning("jobs.beat_run_at_start_not_scheduled", tasks=sorted(unknown))
        for entry in self.schedule.values():
            if entry.task in wanted:
                entry.last_run_at = datetime(2000, 1, 1, tzinfo=self.app.timezone)

    def apply_entry(self, entry: Any, producer: Any = None) -> None:
        """Publish a due entry; after a broker error, reconnect and publish it again.

        Celery's own version logs the error with a traceback and keeps the producer, whose
        entities stay bound to the dead channel: on the embedded broker every later publish
        then failed with "channel disconnected" (issue 14). Here the producer and its
        connection are dropped (rebuilt lazily, kombu's retry policy on the new one), and
        the error costs one log line and one counter increment.
        """
        log.info("jobs.beat_sending", entry=entry.name, task=entry.task)
        for attempt in (1, 2):
            try:
                self.apply_async(entry, producer=self.producer if attempt > 1 else producer, advance=False)
                return
            except Exception as exc:
                recovery.note_broker_error("beat", exc)
                self._drop_publisher()
        log.error("jobs.beat_publish_failed", entry=entry.name, task=entry.task)

    def _drop_publisher(self) -> None:
        self.__dict__.pop("producer", None)
        connection = self.__dict__.pop("connection", None)
        if connection is not None:
            try:
                connection.release()
            except Exception:  # already broken: nothing left to release
                log.debug("jobs.beat_connection_release_failed")
