"""Structured logging: one JSON object per line on stdout, secrets scrubbed.

Why this shape:

* Every log line goes through the *stdlib* ``logging`` machinery and one
  :class:`structlog.stdlib.ProcessorFormatter` on the root handler, so records from
  uvicorn, SQLAlchemy, Celery, httpx and our own ``structlog`` loggers all come out as
  the same JSON document. A log shipper (Loki, CloudWatch, Datadog) then needs a single
  parser.
* Request-scoped facts (``request_id``, ``trace_id``, ``org_id``, ``user_id``) live in
  :mod:`contextvars` through :mod:`structlog.contextvars`, so code deep in a service logs
  them without passing a logger around. The request middleware binds them; the auth
  layer adds ``org_id``/``user_id`` with :func:`bind_log_context`.
* The active OpenTelemetry span (when tracing is on) is authoritative for
  ``trace_id``/``span_id``, so logs and traces join up in the backend.
* Redaction runs last, after exceptions are formatted, so a token that slips into a
  message, a header dump or a traceback never reaches the sink. Over-redaction is the
  accepted failure mode.

Celery's worker must not hijack the root logger: set ``worker_hijack_root_logger=False``
and call :func:`configure_logging` from the ``setup_logging`` signal.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Mapping
from typing import Any, Final

import structlog
from opentelemetry import trace as otel_trace
from structlog.types import EventDict, Processor, WrappedLogger

from omnify.settings import Settings

REDACTED: Final = "[REDACTED]"

#: Substrings of (normalised, lower-case) keys whose values are never logged.
SENSITIVE_KEY_PARTS: Final = (
    "password",
    "passwd",
    "passphrase",
    "secret",
    "token",
    "authorization",
    "api_key",
    "apikey",
    "cookie",
    "credential",
    "private_key",
    "signature",
)

#: Keys naming an identifier *of* a secret (``api_key_id``, ``token_prefix``) are safe
#: and valuable when following an incident, so they are exempt.
SAFE_KEY_SUFFIXES: Final = ("_id", "_ids", "_prefix")

_VALUE_PATTERNS: Final[tuple[tuple[re.Pattern[str], str], ...]] = (
    # Authorization header values: "Bearer <anything>", "Basic <base64>".
    (re.compile(r"\b(Bearer|Basic)\s+[A-Za-z0-9._~+/=-]+", re.IGNORECASE), r"\1 " + REDACTED),
    # JSON Web Tokens (header.payload.signature, base64url, header starts with '{"').
    (re.compile(r"\beyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]*"), REDACTED),
    # Omnify API keys.
    (re.compile(r"\bomk_[A-Za-z0-9_-]{6,}"), "omk_" + REDACTED),
    # Shopify access tokens and app secrets (shpat_, shpca_, shppa_, shpss_).
    (re.compile(r"\b(shp(?:at|ca|pa|ss)_)[A-Za-z0-9]{6,}"), r"\1" + REDACTED),
    # Credentials inside URLs: scheme://user:password@host
    (re.compile(r"\b([a-zA-Z][a-zA-Z0-9+.-]*://[^:/@\s]*:)[^@/\s]+@"), r"\1" + REDACTED + "@"),
    # key=value / "key": "value" pairs in free text (exception messages, dumped dicts).
    (
        re.compile(
            r"""\b((?:password|passwd|pwd|secret|client_secret|token|access_token|refresh_token|"""
            r"""api[_-]?key)["']?\s*[=:]\s*["']?)[^\s"'&,;)}]+""",
            re.IGNORECASE,
        ),
        r"\1" + REDACTED,
    ),
    # Secrets in query strings (OAuth callbacks, signed URLs, tokens in links).
    (
        re.compile(
            r"([?&](?:access_token|refresh_token|id_token|token|api_key|apikey|password|secret|"
            r"client_secret|code|auth_code|hmac|signature|sig|X-Amz-Signature|X-Amz-Credential|"
            r"X-Amz-Security-Token)=)"
            r"[^&\s\"']+",
            re.IGNORECASE,
        ),
        r"\1" + REDACTED,
    ),
)


_MAX_DEPTH: Final = 12
#: Correlation ids on every line when tracing is on; plain hex, which no secret pattern
#: above can match, so they skip the regexes (issue 16: tracing's cost per request).
_HEX_ID_KEYS: Final = ("trace_id", "span_id")
_HEX_ID_RE: Final = re.compile(r"[0-9a-f]{16,32}")
_HANDLER_MARK: Final = "_omnify_log_handler"


# ------------------------------------------------------------------------------ redaction
def is_sensitive_key(key: str) -> bool:
    """Whether a mapping key names a secret (``password``, ``X-Api-Key``, ``refresh_token``...)."""
    normalised = key.lower().replace("-", "_")
    if normalised.endswith(SAFE_KEY_SUFFIXES):
        return False
    return any(part in normalised for part in SENSITIVE_KEY_PARTS)


def redact_text(text: str) -> str:
    """Scrub token-shaped substrings from free text (messages, tracebacks, URLs)."""
    for pattern, replacement in _VALUE_PATTERNS:
        text = pattern.sub(replacement, text)
    return text


def redact(value: Any, _depth: int = 0) -> Any:
    """Return a copy of ``value`` with secrets replaced, walking dicts, lists and tuples.

    A 2-tuple whose first item is a sensitive string is treated as a key/value pair,
    because header lists (``[("authorization", "...")]``) are logged that way.
    """
    if _depth > _MAX_DEPTH:
        return value
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, Mapping):
        return {
            k: (REDACTED if isinstance(k, str) and is_sensitive_key(k) and v is not None else redact(v, _depth + 1))
            for k, v in value.items()
        }
    if isinstance(value, tuple) and len(value) == 2 and isinstance(value[0], str | bytes):
        key = value[0].decode("latin-1") if isinstance(value[0], bytes) else value[0]
        if is_sensitive_key(key):
            return (value[0], REDACTED)
        return (value[0], redact(value[1], _depth + 1))
    if isinstance(value, list | tuple | set | frozenset):
        return [redact(v, _depth + 1) for v in value]
    return value


def redact_processor(_logger: WrappedLogger, _method: str, event_dict: EventDict) -> EventDict:
    """structlog processor: redact every key and value of the event (recursively)."""
    kept = {}
    for key in _HEX_ID_KEYS:
        value = event_dict.get(key)
        if isinstance(value, str) and _HEX_ID_RE.fullmatch(value):
            kept[key] = event_dict.pop(key)
    redacted: EventDict = redact(event_dict)
    if kept:
        redacted.update(kept)
    return redacted


# ---------------------------------------------------------------------------- enrichment
def add_trace_context(_logger: WrappedLogger, _method: str, event_dict: EventDict) -> EventDict:
    """Attach the active OpenTelemetry span's ids; a no-op span (tracing off) adds nothing."""
    ctx = otel_trace.get_current_span().get_span_context()
    if ctx.is_valid:
        event_dict["trace_id"] = format(ctx.trace_id, "032x")
        event_dict["span_id"] = format(ctx.span_id, "016x")
    return event_dict


def _drop_noise(_logger: WrappedLogger, _method: str, event_dict: EventDict) -> EventDict:
    # uvicorn passes an ANSI-coloured copy of each message as ``extra``, and a record
    # formatted earlier by another handler carries ``message``: both repeat ``event``.
    event_dict.pop("color_message", None)
    if event_dict.get("message") == event_dict.get("event"):
        event_dict.pop("message", None)
    return event_dict


def bind_log_context(**values: Any) -> None:
    """Bind request-scoped facts (``org_id``, ``user_id``...) for every later log line."""
    structlog.contextvars.bind_contextvars(**{k: (str(v) if v is not None else None) for k, v in values.items()})


def clear_log_context() -> None:
    """Forget everything bound for the previous unit of work (request, task)."""
    structlog.contextvars.clear_contextvars()


def get_log_context() -> dict[str, Any]:
    """The currently bound context (used by the access log and by tests)."""
    return structlog.contextvars.get_contextvars()


# ------------------------------------------------------------------------- configuration
class _StdoutHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to *the current* ``sys.stdout``.

    Looking the stream up on every record (instead of once at construction) keeps the
    handler correct when stdout is swapped later: pytest's capture, a daemoniser, or a
    test harness redirecting output.
    """

    def __init__(self) -> None:
        super().__init__(sys.stdout)

    def emit(self, record: logging.LogRecord) -> None:
        self.stream = sys.stdout
        super().emit(record)


def _resolve_level(name: str) -> int:
    levels = logging.getLevelNamesMapping()
    level = levels.get(name.strip().upper())
    if level is None:
        allowed = ", ".join(sorted(k for k in levels if k not in {"NOTSET", "WARN", "FATAL"}))
        raise ValueError(f"OMNIFY_LOG_LEVEL={name!r} is not a log level; use one of {allowed}")
    return level


_SHARED_PROCESSORS: Final[list[Processor]] = [
    structlog.contextvars.merge_contextvars,
    structlog.stdlib.add_log_level,
    structlog.stdlib.add_logger_name,
    structlog.processors.TimeStamper(fmt="iso", utc=True),
    add_trace_context,
]


def build_formatter(json_output: bool) -> structlog.stdlib.ProcessorFormatter:
    """The formatter every stdlib record and structlog event is rendered by."""
    renderer: Processor
    if json_output:
        renderer = structlog.processors.JSONRenderer()
    else:
        renderer = structlog.dev.ConsoleRenderer(colors=sys.stdout.isatty())
    return structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[*_SHARED_PROCESSORS, structlog.stdlib.ExtraAdder()],
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            _drop_noise,
            structlog.processors.format_exc_info,
            redact_processor,
            renderer,
        ],
    )


def json_logs(settings: Settings, stream: Any = None) -> bool:
    """JSON unless the operator asked otherwise or a person is reading a terminal (not in production)."""
    if settings.log_json is not None:
        return settings.log_json
    if settings.env == "production":
        return True
    stream = stream if stream is not None else sys.stdout
    isatty = getattr(stream, "isatty", None)
    return not (callable(isatty) and isatty())


def configure_logging(settings: Settings) -> None:
    """Route all logging (ours and third-party) through one JSON (or console) handler.

    Idempotent: every call replaces the handler installed by the previous call, so
    building several apps in one process (tests) does not duplicate lines. Handlers that
    others attached to the root logger (pytest's ``caplog``) are left in place.
    """
    level = _resolve_level(settings.log_level)

    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,
            *_SHARED_PROCESSORS,
            structlog.stdlib.PositionalArgumentsFormatter(),
            structlog.processors.StackInfoRenderer(),
            structlog.processors.UnicodeDecoder(),
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        context_class=dict,
        # The chain above never depends on settings (rendering lives in the handler's
        # formatter), so caching bound loggers stays correct across reconfiguration.
        cache_logger_on_first_use=True,
    )

    handler = _StdoutHandler()
    setattr(handler, _HANDLER_MARK, True)
    handler.setFormatter(build_formatter(json_logs(settings)))

    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, _HANDLER_MARK, False)]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)

    # uvicorn installs its own handlers through dictConfig before the app is imported;
    # hand its records to the root handler instead so they are JSON too.
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access", "gunicorn.error", "gunicorn.access"):
        lib_logger = logging.getLogger(name)
        lib_logger.handlers.clear()
        lib_logger.propagate = True
        # An embedded uvicorn (e.g. a sandbox server) may have pinned its own level.
        lib_logger.setLevel(logging.NOTSET)
        lib_logger.disabled = False
    # Our access-log middleware writes a richer line (route template, ids, latency);
    # uvicorn's own access line would only duplicate it.
    logging.getLogger("uvicorn.access").setLevel(logging.WARNING)


def get_logger(name: str | None = None, **initial: Any) -> structlog.stdlib.BoundLogger:
    """A structlog logger bound to ``name``; use module ``__name__``."""
    logger: structlog.stdlib.BoundLogger = structlog.get_logger(name, **initial)
    return logger
