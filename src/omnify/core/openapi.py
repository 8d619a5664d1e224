"""The API description's error responses, documented in one place.

Every error the API returns is an RFC 9457 problem (``application/problem+json``, see
:mod:`omnify.core.errors`). FastAPI documents none of them by itself (only a 422 with its own
``application/json`` shape), so client generators had no type for errors and treated a 401, a
404 or a 429 as undocumented. Here the schema is completed after FastAPI builds it:

* what every operation can answer: 422 (validation; the NUL gate applies to every path and
  query), 503 (database unavailable, with ``Retry-After``);
* what its request body adds: 400 (malformed JSON or multipart) and 413 (too large);
* what its dependencies raise: each dependency that can refuse a request declares the
  statuses with :func:`raises` (authentication 401, roles 403, the organization 404, rate
  limits 429, a bad cursor 400...), and every route that depends on it, directly or through
  another dependency, documents them - a new route gets them without a line of its own;
* what a router or route declares itself (``responses={409: {"description": ...}}``, or
  :func:`problems`) for the errors of its own domain (conflicts, quotas, platform errors).

Every 4xx/5xx response then carries the ``Problem`` schema under ``application/problem+json``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from http import HTTPStatus
from typing import Any, TypeVar

from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute, RouteContext, iter_route_contexts

from omnify.core.errors import PROBLEM_CONTENT_TYPE

F = TypeVar("F", bound=Callable[..., Any])

_ATTRIBUTE = "__omnify_problem_statuses__"
PROBLEM_REF = "#/components/schemas/Problem"

#: RFC 9457 members plus the extensions the handlers add (``request_id``, ``errors``); other
#: extensions (``max_bytes``, ``retry_after``...) are allowed by ``additionalProperties``.
PROBLEM_SCHEMA: dict[str, Any] = {
    "title": "Problem",
    "description": "An RFC 9457 problem: `type` names the error (a stable URL; its last segment is the "
                   "error code), `detail` explains this occurrence.",
    "type": "object",
    "required": ["type", "title", "status", "detail"],
    "properties": {
        "type": {"type": "string", "description": "https://docs.omnify.dev/problems/<code>"},
        "title": {"type": "string"},
        "status": {"type": "integer", "minimum": 100, "maximum": 599},
        "detail": {"type": "string"},
        "instance": {"type": "string", "description": "The request path."},
        "request_id": {"type": "string", "description": "Quote it when reporting a problem."},
        "errors": {
            "type": "array",
            "description": "Validation errors, one per field.",
            "items": {
                "type": "object",
                "properties": {
                    "loc": {"type": "array", "items": {"anyOf": [{"type": "string"}, {"type": "integer"}]}},
                    "field": {"type": "string"},
                    "msg": {"anyOf": [{"type": "string"}, {"type": "null"}]},
                    "type": {"anyOf": [{"type": "string"}, {"type": "null"}]},
                },
                "additionalProperties": True,
            },
        },
    },
    "additionalProperties": True,
}

#: The descriptions of the common statuses (a route's own description wins).
DESCRIPTIONS: dict[int, str] = {
    400: "Malformed request (invalid JSON or multipart, an invalid cursor or field selection).",
    401: "Authentication required: no, an invalid or an expired access token or API key.",
    402: "A plan quota is reached.",
    403: "The caller's role or API key scopes do not allow this.",
    404: "No such organization or object (also for another organization's objects).",
    409: "Conflict with the object's current state.",
    413: "The request body is too large.",
    415: "Unsupported media type.",
    422: "Invalid fields (`errors` lists them).",
    429: "Rate limit exceeded (`Retry-After` says when to retry).",
    502: "The upstream platform refused the request.",
    503: "Temporarily unavailable (the database, a platform or storage); retry after `Retry-After`.",
}

_HEADERS: dict[int, dict[str, Any]] = {
    401: {"WWW-Authenticate": {"description": "Bearer realm", "schema": {"type": "string"}}},
    429: {"Retry-After": {"description": "Seconds to wait.", "schema": {"type": "integer"}}},
    503: {"Retry-After": {"description": "Seconds to wait.", "schema": {"type": "integer"}}},
}

#: What any operation can answer (the validation and NUL gates, an unreachable database).
EVERY_OPERATION = (422, 503)
#: What a request body adds (its parser, the body size limit).
WITH_BODY = (400, 413)


def raises(*statuses: int) -> Callable[[F], F]:
    """Declare the problem statuses a dependency can answer: every route depending on it
    documents them."""

    def mark(func: F) -> F:
        setattr(func, _ATTRIBUTE, tuple(sorted({*getattr(func, _ATTRIBUTE, ()), *statuses})))
        return func

    return mark


def problems(*statuses: int, **descriptions: str) -> dict[int | str, dict[str, Any]]:
    """``responses=`` entries for a router or route's own problem statuses
    (``problems(409, 402)``); the schema is filled in by :func:`install_openapi`."""
    return {status: {"description": DESCRIPTIONS.get(status, HTTPStatus(status).phrase)} for status in statuses}


def _dependency_statuses(dependant: Dependant, seen: set[int] | None = None) -> set[int]:
    seen = set() if seen is None else seen
    found: set[int] = set()
    for dep in dependant.dependencies:
        if id(dep) in seen:
            continue
        seen.add(id(dep))
        found.update(getattr(dep.call, _ATTRIBUTE, ()))
        found |= _dependency_statuses(dep, seen)
    return found


def _problem_response(status: int, existing: dict[str, Any] | None) -> dict[str, Any]:
    response = dict(existing or {})
    generic = HTTPStatus(status).phrase if status in HTTPStatus._value2member_map_ else "Error"
    if not response.get("description") or response["description"] in (generic, "Validation Error"):
        response["description"] = DESCRIPTIONS.get(status, generic)
    response["content"] = {PROBLEM_CONTENT_TYPE: {"schema": {"$ref": PROBLEM_REF}}}
    if status in _HEADERS:
        response["headers"] = {**_HEADERS[status], **response.get("headers", {})}
    return response


def complete_error_responses(schema: dict[str, Any], routes: Iterable[APIRoute | RouteContext]) -> dict[str, Any]:
    """Add the problem responses to every operation of ``schema`` (in place; returned)."""
    statuses_of: dict[tuple[str, str], set[int]] = {}
    for route in routes:
        from_deps = _dependency_statuses(route.dependant)
        for method in route.methods or ():
            statuses_of[(str(route.path_format), method.lower())] = from_deps
    for path, item in schema.get("paths", {}).items():
        for method, operation in item.items():
            if not isinstance(operation, dict) or "responses" not in operation:
                continue
            responses: dict[str, Any] = operation["responses"]
            wanted = {*EVERY_OPERATION, *statuses_of.get((path, method), set())}
            if "requestBody" in operation:
                wanted.update(WITH_BODY)
            if method in ("post", "put", "patch", "delete") and path.startswith("/api/v1/orgs/{org_id}/"):
                # A change to an organization's objects can conflict with their state (an
                # archived client, a duplicate name, a workflow step, a disconnected platform).
                wanted.add(409)
            wanted.update(int(code) for code in responses if code.isdigit() and int(code) >= 400)
            for status in sorted(wanted):
                responses[str(status)] = _problem_response(status, responses.get(str(status)))
            operation["responses"] = dict(sorted(responses.items()))
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    components["Problem"] = PROBLEM_SCHEMA
    # FastAPI's own 422 shapes are never answered (the handler answers a Problem).
    text = repr(schema.get("paths", {}))
    for unused in ("HTTPValidationError", "ValidationError"):
        if f"#/components/schemas/{unused}'" not in text:
            components.pop(unused, None)
    return schema


def install_openapi(app: FastAPI) -> None:
    """Replace ``app.openapi`` with one that documents the problem responses (built once)."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = FastAPI.openapi(app)  # FastAPI's own, cached on the app: completed in place
            # Included routers are resolved lazily: their routes as mounted (prefix, router
            # dependencies) come from iter_route_contexts.
            routes = [r for r in iter_route_contexts(app.routes) if isinstance(r.original_route, APIRoute)]
            app.openapi_schema = complete_error_responses(schema, routes)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
