"""Problem pages: the same errors as the API's problem+json, as HTML for browsers.

The JSON handlers of :mod:`omnify.core.errors` stay in charge; these wrap them and
answer HTML only when a browser navigates (or HTMX asks for a fragment). A 401 on a page
sends the browser to the sign-in page and back; another organization's object is the
API's 404, rendered as a page.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import structlog
from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm.exc import StaleDataError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from omnify.core import browser
from omnify.core.errors import AppError, as_app_error
from omnify.web.deps import login_url
from omnify.web.templating import render

log = structlog.get_logger(__name__)

Handler = Callable[[Request, Any], Awaitable[Response] | Response]

TITLES = {400: "Bad request", 401: "Sign-in required", 403: "Not allowed", 404: "Page not found",
          405: "Not allowed here", 409: "Conflict", 410: "Gone", 413: "Too large", 422: "Check the form",
          429: "Slow down", 500: "Something went wrong", 502: "The platform did not answer",
          503: "Temporarily unavailable"}


def describe(exc: Exception) -> tuple[int, str, str, dict[str, str]]:
    """(status, title, detail, headers) of an exception, as the JSON handlers see it."""
    app_error = as_app_error(exc)
    if app_error is not None:
        return app_error.status, app_error.title, app_error.detail, dict(app_error.headers)
    if isinstance(exc, RequestValidationError):
        fields = ", ".join(sorted({".".join(str(p) for p in e.get("loc", ())[1:]) or "request"
                                   for e in exc.errors()}))
        return 422, TITLES[422], f"Some values are missing or invalid: {fields}.", {}
    if isinstance(exc, StarletteHTTPException):
        detail = exc.detail if isinstance(exc.detail, str) else ""
        if exc.status_code == 404 and detail in ("", "Not Found"):
            detail = "There is nothing at this address."
        return exc.status_code, TITLES.get(exc.status_code, "Error"), detail, dict(exc.headers or {})
    return 500, TITLES[500], "An unexpected error occurred; quote the request id when reporting it.", {}


def problem_page(request: Request, exc: Exception) -> Response:
    status, title, detail, headers = describe(exc)
    headers.pop("WWW-Authenticate", None)
    if status == 401 and request.method == "GET":
        if browser.is_htmx(request):
            return Response(status_code=204, headers={"HX-Redirect": login_url(request)})
        return RedirectResponse(login_url(request), status_code=303)
    generic = status == 404 or status >= 500  # one wording for "nothing here" and "our fault"
    context = {"status": status, "title": TITLES.get(status, title) if generic else title, "detail": detail,
               "request_id": getattr(request.state, "request_id", None)}
    if browser.is_htmx(request):
        headers.update({"HX-Retarget": "#flash", "HX-Reswap": "innerHTML"})
        return render(request, "_problem_fragment.html", context, status=status, headers=headers)
    return render(request, "problem.html", context, status=status, headers=headers)


def _negotiating(original: Handler) -> Handler:
    async def handler(request: Request, exc: Any) -> Response:
        if browser.prefers_html(request) or browser.is_htmx(request):
            if as_app_error(exc) is None and not isinstance(exc, RequestValidationError | StarletteHTTPException):
                log.exception("unhandled_error", error_type=type(exc).__name__)
            try:
                return problem_page(request, exc)
            except Exception:  # never let the error page hide the error
                log.exception("web.problem_page_failed")
        result = original(request, exc)
        return await result if not isinstance(result, Response) else result

    return handler


def install(app: FastAPI) -> None:
    """Wrap the problem+json handlers (call after :func:`install_error_handlers`)."""
    for kind in (AppError, StaleDataError, IntegrityError, RequestValidationError, StarletteHTTPException, Exception):
        original = app.exception_handlers.get(kind)
        if original is not None:
            app.exception_handlers[kind] = _negotiating(original)
