"""RFC 9457 problem details for every error the API returns.

Services raise :class:`AppError` subclasses; handlers here turn them, FastAPI's
validation errors and Starlette's HTTP errors into ``application/problem+json``. An
unexpected exception becomes a generic 500 with the request id and no stack trace.
"""

from __future__ import annotations

from typing import Any

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

PROBLEM_CONTENT_TYPE = "application/problem+json"
PROBLEM_BASE = "https://docs.omnify.dev/problems/"

log = structlog.get_logger(__name__)


class AppError(Exception):
    status: int = 400
    code: str = "bad-request"
    title: str = "Bad request"

    def __init__(
        self,
        detail: str | None = None,
        *,
        code: str | None = None,
        headers: dict[str, str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(detail or self.title)
        self.detail = detail or self.title
        if code:
            self.code = code
        self.headers = headers or {}
        self.extra = extra


class BadRequest(AppError):
    pass


class Unauthorized(AppError):
    status, code, title = 401, "unauthorized", "Authentication required"

    def __init__(self, detail: str | None = None, *, code: str | None = None, **extra: Any) -> None:
        super().__init__(detail, code=code, headers={"WWW-Authenticate": 'Bearer realm="omnify"'}, **extra)


class Forbidden(AppError):
    status, code, title = 403, "forbidden", "Not allowed"


class NotFound(AppError):
    status, code, title = 404, "not-found", "Not found"


class Conflict(AppError):
    status, code, title = 409, "conflict", "Conflict"


class ConcurrentChange(Conflict):
    """Another request changed or deleted the row this one was saving (an UPDATE matched no
    row: SQLAlchemy's StaleDataError). Nothing of this request was saved; a reload shows the
    row as it is now."""

    code, title = "concurrent-change", "Changed meanwhile"


def as_app_error(exc: BaseException) -> AppError | None:
    """The client's view of an error raised below the services, or None (a bug: a 500)."""
    if isinstance(exc, AppError):
        return exc
    from sqlalchemy.orm.exc import StaleDataError

    if isinstance(exc, StaleDataError):
        return ConcurrentChange("It was changed or deleted by another request meanwhile; reload and try again.")
    from sqlalchemy.exc import IntegrityError

    if isinstance(exc, IntegrityError):
        # The services validate what they write, so a constraint that still fails means another
        # request got there first (a parent deleted, the same unique value taken meanwhile).
        return ConcurrentChange("It conflicts with a change another request made meanwhile; reload and try again.")
    return None


class Gone(AppError):
    status, code, title = 410, "gone", "Gone"


class PayloadTooLarge(AppError):
    status, code, title = 413, "payload-too-large", "Payload too large"


class UnsupportedMediaType(AppError):
    status, code, title = 415, "unsupported-media-type", "Unsupported media type"


class UnprocessableEntity(AppError):
    status, code, title = 422, "validation-error", "Validation failed"


class Locked(AppError):
    status, code, title = 423, "locked", "Locked"


class QuotaExceeded(AppError):
    status, code, title = 402, "quota-exceeded", "Plan quota exceeded"


class RateLimited(AppError):
    status, code, title = 429, "rate-limited", "Too many requests"


class ServiceUnavailable(AppError):
    status, code, title = 503, "service-unavailable", "Service unavailable"


def problem(
    request: Request,
    status: int,
    title: str,
    detail: str,
    code: str,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> JSONResponse:
    body: dict[str, Any] = {
        "type": PROBLEM_BASE + code,
        "title": title,
        "status": status,
        "detail": detail,
        "instance": request.url.path,
    }
    request_id = getattr(request.state, "request_id", None)
    if request_id:
        body["request_id"] = request_id
        # 500s are answered outside the request-id middleware: carry the header ourselves.
        headers = {**(headers or {}), "X-Request-ID": request_id}
    body.update(extra)
    return JSONResponse(body, status_code=status, media_type=PROBLEM_CONTENT_TYPE, headers=headers)


_STATUS_CODES = {
    400: ("bad-request", "Bad request"),
    401: ("unauthorized", "Authentication required"),
    403: ("forbidden", "Not allowed"),
    404: ("not-found", "Not found"),
    405: ("method-not-allowed", "Method not allowed"),
    406: ("not-acceptable", "Not acceptable"),
    409: ("conflict", "Conflict"),
    413: ("payload-too-large", "Payload too large"),
    415: ("unsupported-media-type", "Unsupported media type"),
    422: ("validation-error", "Validation failed"),
    429: ("rate-limited", "Too many requests"),
}


def _jsonable_errors(exc: RequestValidationError) -> list[dict[str, Any]]:
    out = []
    for err in exc.errors():
        loc = [str(p) for p in err.get("loc", ())]
        out.append({"loc": loc, "field": ".".join(loc[1:]) or loc[0] if loc else "", "msg": err.get("msg"),
                    "type": err.get("type")})
    return out


#: What a 503 for an unreachable database tells clients to wait (a restart takes seconds).
DB_RETRY_AFTER_SECONDS = 5


def database_unavailable(exc: BaseException) -> bool:
    """Whether ``exc`` means the database could not be reached (refused, reset, timed out),
    found anywhere in its cause chain (SQLAlchemy wraps the driver's error)."""
    from sqlalchemy.exc import DBAPIError

    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, DBAPIError) and current.connection_invalidated:
            return True
        if type(current).__name__ in _UNREACHABLE_NAMES:
            return True
        if isinstance(current, (ConnectionError, TimeoutError)) and _raised_by_database_driver(current):
            return True
        current = current.__cause__ or current.__context__
    return False


def _raised_by_database_driver(exc: BaseException) -> bool:
    """A refused or timed-out connection of the database driver, not of a platform client:
    SQLAlchemy re-raises the socket error of a failed connect as is."""
    tb = exc.__traceback__
    while tb is not None:
        module = tb.tb_frame.f_globals.get("__name__", "")
        if module.startswith(("sqlalchemy.", "asyncpg.", "aiosqlite")):
            return True
        tb = tb.tb_next
    return False


#: asyncpg's "server gone / not ready" errors (matched by name: the driver is optional).
_UNREACHABLE_NAMES = frozenset({"CannotConnectNowError", "ConnectionDoesNotExistError", "ConnectionFailureError",
                                "AdminShutdownError", "CrashShutdownError"})


def _database_unavailable(request: Request, exc: BaseException) -> JSONResponse:
    # The database is down or restarting: a temporary condition the client should retry, not a
    # bug; nothing was acknowledged, so nothing is lost.
    log.warning("database_unavailable", error_type=type(exc).__name__)
    return problem(request, 503, "Service unavailable",
                   "The database is temporarily unavailable; retry after the indicated delay.",
                   "database-unavailable", {"Retry-After": str(DB_RETRY_AFTER_SECONDS)})


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(AppError)
    async def _app_error(request: Request, exc: AppError) -> JSONResponse:
        return problem(request, exc.status, exc.title, exc.detail, exc.code, exc.headers, **exc.extra)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = _jsonable_errors(exc)
        malformed = any(e["type"] == "json_invalid" for e in errors)
        if malformed:
            return problem(request, 400, "Malformed JSON", "The request body is not valid JSON.",
                           "malformed-json", errors=errors)
        return problem(request, 422, "Validation failed", "The request has invalid fields.",
                       "validation-error", errors=errors)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code, title = _STATUS_CODES.get(exc.status_code, ("error", "Error"))
        detail = exc.detail if isinstance(exc.detail, str) else title
        if exc.status_code == 404 and detail == "Not Found":
            detail = f"No route or resource at {request.url.path}."
        return problem(request, exc.status_code, title, detail, code, dict(exc.headers or {}))

    async def _database_or_socket_error(request: Request, exc: Exception) -> JSONResponse:
        """A database or socket error raised by a route: 503 when the database is unreachable.

        Answered here, inside the app, rather than by the catch-all below: Starlette's
        ``ServerErrorMiddleware`` re-raises after its handler's response, so uvicorn logged an
        "Exception in ASGI application", closed the keep-alive connection (a client's next
        request on it failed with a dropped connection) and the access log and RED metrics
        counted a 500. Any other error of these types goes on to the catch-all (a 500)."""
        if database_unavailable(exc):
            return _database_unavailable(request, exc)
        raise exc

    from sqlalchemy.exc import DBAPIError, IntegrityError
    from sqlalchemy.orm.exc import StaleDataError

    async def _stale(request: Request, exc: StaleDataError | IntegrityError) -> JSONResponse:
        log.warning("concurrent_change", error_type=type(exc).__name__, error=str(exc).splitlines()[0][:300])
        converted = as_app_error(exc)
        assert converted is not None
        return await _app_error(request, converted)

    app.add_exception_handler(StaleDataError, _stale)  # type: ignore[arg-type]
    app.add_exception_handler(IntegrityError, _stale)  # type: ignore[arg-type]
    app.add_exception_handler(DBAPIError, _database_or_socket_error)  # type: ignore[arg-type]
    # A refused connect surfaces as the socket's own error (ConnectionRefusedError, TimeoutError).
    app.add_exception_handler(OSError, _database_or_socket_error)  # type: ignore[arg-type]

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        if database_unavailable(exc):  # raised outside the routes (a middleware)
            return _database_unavailable(request, exc)
        log.exception("unhandled_error", error_type=type(exc).__name__)
        return problem(request, 500, "Internal server error",
                       "An unexpected error occurred; quote the request id when reporting it.",
                       "internal-error")
