"""The task base class every Omnify task uses, and the per-message worker hooks.

Why a base class rather than per-task options: the guarantees (acknowledge late, come
back after a crash, retry transient errors with jittered backoff, dead-letter the rest,
log with org and trace ids, count everything) must hold for every task, including ones
written later by people who never read this file.

Two halves, because Celery splits a task run across two processes under prefork:

* :class:`OmnifyTask` runs where the task body runs (the pool child): retries, logs,
  idempotency key, dead-letter recording.
* :class:`OmnifyRequest` runs in the worker's main process, which sees every outcome,
  including the child being killed by the hard time limit: metrics live there.
"""

from __future__ import annotations

import contextvars
import json
import random
import time
import uuid
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

import structlog
from billiard.einfo import ExceptionInfo
from billiard.exceptions import WorkerLostError
from celery import Task
from celery.app.task import Context
from celery.exceptions import Ignore, Reject, Retry
from celery.worker.request import Request

from omnify.core.db import utcnow
from omnify.integrations.base import ConnectorError
from omnify.integrations.base import RateLimited as ConnectorRateLimited
from omnify.integrations.base import TransientError as ConnectorTransientError
from omnify.jobs import metrics
from omnify.jobs.config import get_jobs_settings
from omnify.jobs.idempotency import RunIdentity, current_run

log = structlog.get_logger("omnify.jobs")

# Message headers carrying the enqueuer's context to the worker (and through retries).
HEADER_TRACE_ID = "omnify_trace_id"
HEADER_ORG_ID = "omnify_org_id"
HEADER_REQUEST_ID = "omnify_request_id"
HEADER_FIRST_FAILED_AT = "omnify_first_failed_at"
HEADER_REPLAY_OF = "omnify_replay_of"


class TransientJobError(Exception):
    """Raise from a task for a failure worth retrying (a dependency briefly away).

    ``retry_after`` (seconds), when known, is honoured as the minimum delay.
    """

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


# ------------------------------------------------------------------ enqueuer context
def _otel_trace_id() -> str | None:
    try:
        from opentelemetry import trace
    except ImportError:  # pragma: no cover - opentelemetry-api is a dependency
        return None
    ctx = trace.get_current_span().get_span_context()
    return format(ctx.trace_id, "032x") if ctx.is_valid else None


def context_headers() -> dict[str, str]:
    """Headers describing who enqueues: trace id, org id, request id.

    Read from structlog's context variables (bound by the HTTP middleware, or by a task
    that enqueues another), then OpenTelemetry's current span; a new trace id otherwise,
    so every job run is traceable even when it starts a trace.
    """
    bound = structlog.contextvars.get_contextvars()
    headers = {HEADER_TRACE_ID: str(bound.get("trace_id") or _otel_trace_id() or uuid.uuid4().hex)}
    if bound.get("org_id"):
        headers[HEADER_ORG_ID] = str(bound["org_id"])
    if bound.get("request_id"):
        headers[HEADER_REQUEST_ID] = str(bound["request_id"])
    return headers


def add_context_headers(headers: dict[str, Any] | None = None, **_: Any) -> None:
    """``before_task_publish`` receiver; explicit headers (retries, replays) win."""
    if headers is None:
        return
    for key, value in context_headers().items():
        headers.setdefault(key, value)


def _header(request: Context, name: str) -> str | None:
    value = (request.headers or {}).get(name)
    if value is None:
        value = getattr(request, name, None)
    return str(value) if value is not None else None


def _org_id(kwargs: Mapping[str, Any], request: Context) -> str | None:
    org = kwargs.get("org_id")
    if org:
        try:
            return str(uuid.UUID(str(org)))
        except ValueError:
            pass
    return _header(request, HEADER_ORG_ID)


def _jsonable(value: Any) -> Any:
    """Message args are JSON already; this guards the odd object from an eager call."""
    return json.loads(json.dumps(value, default=repr))


#: Set by OmnifyRequest.on_timeout: on a hard time limit Celery calls the task's
#: on_failure in the *main* process, where ``task.request`` is not that run's context.
_timeout_context: contextvars.ContextVar[Context | None] = contextvars.ContextVar(
    "omnify_job_timeout_context", default=None
)


# --------------------------------------------------------------------------- the base
class OmnifyTask(Task):  # type: ignore[type-arg]
    """Base of every Omnify task (``Celery(task_cls=...)`` makes it the default)."""

    abstract = True
    acks_late = True
    reject_on_worker_lost = True
    acks_on_failure_or_timeout = True  # dead-lettered first, so acknowledging loses nothing
    Request = "omnify.jobs.base:OmnifyRequest"

    #: Exceptions retried with backoff; connector errors flagged ``retryable`` also are.
    retry_for: tuple[type[BaseException], ...] = (
        TransientJobError,
        ConnectorTransientError,
        ConnectorRateLimited,
    )
    #: ``f(*args, **kwargs) -> str``: the natural id of the effect (see idempotency.once).
    idempotency_key: Callable[..., str] | None = None

    _settings = get_jobs_settings()
    max_retries = _settings.max_retries
    soft_time_limit = _settings.soft_time_limit
    time_limit = _settings.time_limit
    retry_backoff_base: float = _settings.retry_backoff_base
    retry_backoff_max: float = _settings.retry_backoff_max

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        # @app.task(idempotency_key=lambda ...) stores a plain function on the generated
        # class, which would otherwise bind as a method and receive the task as `self`.
        fn = cls.__dict__.get("idempotency_key")
        if fn is not None and not isinstance(fn, staticmethod):
            cls.idempotency_key = staticmethod(fn)

    # ----------------------------------------------------------------- policy
    def is_transient(self, exc: BaseException) -> bool:
        if isinstance(exc, self.retry_for):
            return True
        return isinstance(exc, ConnectorError) and exc.retryable

    def backoff(self, retries: int, exc: BaseException | None = None) -> float:
        """Exponential backoff with full jitter, never sooner than ``retry_after``.

        Full jitter (uniform in [0, cap]) spreads a burst of failures over the window
        instead of sending them back in lockstep against a recovering dependency.
        """
        cap = min(self.retry_backoff_max, self.retry_backoff_base * (2**retries))
        delay = random.uniform(0, cap)  # noqa: S311 - scheduling jitter, not security
        retry_after = getattr(exc, "retry_after", None)
        if isinstance(retry_after, int | float) and retry_after > 0:
            delay = max(delay, float(retry_after))
        return delay

    def compute_idempotency_key(self, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> str | None:
        fn = self.idempotency_key
        if fn is None:
            return None
        return str(fn(*args, **kwargs))

    # ------------------------------------------------------------------- run
    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        request: Context = self.request
        if request.called_directly:
            return self.run(*args, **kwargs)
        trace_id = _header(request, HEADER_TRACE_ID) or uuid.uuid4().hex
        attempt = request.retries + 1
        key = self.compute_idempotency_key(args, kwargs)
        token = current_run.set(RunIdentity(key, self.name, request.id)) if key else None
        bound = {
            "task": self.name,
            "task_id": request.id,
            "trace_id": trace_id,
            "org_id": _org_id(kwargs, request),
            "attempt": attempt,
        }
        if key:
            bound["idempotency_key"] = key
        started = time.monotonic()
        try:
            with structlog.contextvars.bound_contextvars(**bound):
                log.info("job.started")
                try:
                    result = self.run(*args, **kwargs)
                except (Retry, Ignore, Reject):
                    raise
                except Exception as exc:
                    self._handle_error(exc, request, started)
                    raise
                log.info("job.succeeded", duration_s=round(time.monotonic() - started, 4))
                return result
        finally:
            if token is not None:
                current_run.reset(token)

    def _handle_error(self, exc: Exception, request: Context, started: float) -> None:
        """Retry a transient error (raises Retry) or log the final failure and return."""
        duration = round(time.monotonic() - started, 4)
        error = f"{type(exc).__name__}: {exc}"
        exhausted = self.max_retries is not None and request.retries >= self.max_retries
        if self.is_transient(exc) and not exhausted:
            countdown = self.backoff(request.retries, exc)
            headers = dict(request.headers or {})
            headers.setdefault(HEADER_FIRST_FAILED_AT, utcnow().isoformat())
            log.warning("job.retrying", error=error, countdown_s=round(countdown, 3), duration_s=duration)
            raise self.retry(exc=exc, countdown=countdown, headers=headers)
        reason = "retries_exhausted" if self.is_transient(exc) else "not_retryable"
        log.error("job.failed", error=error, reason=reason, duration_s=duration)

    # --------------------------------------------------------- dead letters
    def on_failure(
        self, exc: Exception, task_id: str, args: Any, kwargs: Any, einfo: ExceptionInfo | None
    ) -> None:
        if isinstance(exc, Retry | Ignore | Reject):
            return
        request = self.request if self.request.id == task_id else _timeout_context.get()
        if request is None:
            request = Context({"id": task_id, "retries": 0})
        headers = request.headers or {}
        first_failed = _parse_time(headers.get(HEADER_FIRST_FAILED_AT)) or utcnow()
        replay_of = headers.get(HEADER_REPLAY_OF)
        kwargs = dict(kwargs or {})
        delivery = request.delivery_info or {}
        from omnify.jobs.service import FailureRecord, record_failure_safely

        record_failure_safely(
            FailureRecord(
                task_name=self.name,
                task_id=task_id,
                queue=str(delivery.get("routing_key") or "") or None,
                args=_jsonable(list(args or [])),
                kwargs=_jsonable(kwargs),
                error_type=type(exc).__name__,
                error=str(exc) or type(exc).__name__,
                traceback=einfo.traceback if einfo is not None else None,
                attempts=request.retries + 1,
                org_id=_org_id(kwargs, request),
                trace_id=_header(request, HEADER_TRACE_ID),
                first_failed_at=first_failed,
                replay_of_id=str(replay_of) if replay_of else None,
            )
        )


def _parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else None


# ----------------------------------------------------------- main-process request hooks
def _unwrap(exc_info: ExceptionInfo) -> BaseException | None:
    exc = exc_info.exception
    if type(exc).__name__ == "ExceptionWithTraceback":  # billiard's picklable wrapper
        inner = getattr(exc, "exc", None)
        if isinstance(inner, BaseException):
            return inner
    return exc


class OmnifyRequest(Request):
    """Counts every outcome in the process that owns the metrics endpoint."""

    def _elapsed(self) -> float | None:
        started = self.time_start
        return None if started is None else max(time.time() - started, 0.0)

    def on_accepted(self, pid: Any, time_accepted: float) -> None:
        super().on_accepted(pid, time_accepted)
        metrics.TASKS_TOTAL.labels(task=self.name, state=metrics.STARTED).inc()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        # The worker does not use this class directly: celery.worker.request's
        # create_request_cls() subclasses it per task and *replaces* on_success without
        # calling super(). Wrap whatever on_success a subclass defines so successes are
        # counted whichever way the request class was built.
        super().__init_subclass__(**kwargs)
        inner = cls.__dict__.get("on_success")
        if inner is None or getattr(inner, "_omnify_counted", False):
            return

        def on_success(self: OmnifyRequest, failed__retval__runtime: Any, **kw: Any) -> Any:
            self._count_success(failed__retval__runtime)
            return inner(self, failed__retval__runtime, **kw)

        on_success._omnify_counted = True  # type: ignore[attr-defined]
        cls.on_success = on_success  # type: ignore[method-assign]

    def _count_success(self, failed__retval__runtime: Any) -> None:
        failed, _retval, runtime = failed__retval__runtime
        if failed:  # forwarded to on_failure, counted there
            return
        metrics.TASKS_TOTAL.labels(task=self.name, state=metrics.SUCCEEDED).inc()
        if runtime is not None:
            metrics.TASK_DURATION.labels(task=self.name).observe(runtime)

    def on_success(self, failed__retval__runtime: Any, **kwargs: Any) -> None:
        self._count_success(failed__retval__runtime)
        super().on_success(failed__retval__runtime, **kwargs)

    def on_failure(self, exc_info: ExceptionInfo, send_failed_event: bool = True, return_ok: bool = False) -> None:
        exc = _unwrap(exc_info)
        state: str | None
        if isinstance(exc, Retry):
            state = metrics.RETRIED
        elif isinstance(exc, WorkerLostError | SystemExit | KeyboardInterrupt):
            # The message goes back to the queue (reject_on_worker_lost): another try.
            state = metrics.RETRIED
        elif isinstance(exc, Ignore | Reject) or type(exc).__name__ == "Terminated":
            state = None
        else:
            state = metrics.FAILED
        if state is not None:
            metrics.TASKS_TOTAL.labels(task=self.name, state=state).inc()
            elapsed = self._elapsed()
            if elapsed is not None:
                metrics.TASK_DURATION.labels(task=self.name).observe(elapsed)
        if state == metrics.FAILED:
            metrics.JOB_FAILURES.labels(task=self.name).inc()
        super().on_failure(exc_info, send_failed_event=send_failed_event, return_ok=return_ok)

    def on_timeout(self, soft: bool, timeout: float) -> None:
        if soft:
            super().on_timeout(soft, timeout)
            return
        # Hard limit: the child is gone; Celery calls the task's on_failure from here.
        token = _timeout_context.set(Context(dict(self.request_dict)))
        try:
            super().on_timeout(soft, timeout)
        finally:
            _timeout_context.reset(token)


__all__ = [
    "HEADER_FIRST_FAILED_AT",
    "HEADER_ORG_ID",
    "HEADER_REPLAY_OF",
    "HEADER_REQUEST_ID",
    "HEADER_TRACE_ID",
    "OmnifyRequest",
    "OmnifyTask",
    "TransientJobError",
    "add_context_headers",
    "context_headers",
]
