"""Form handling shared by the pages: read a url-encoded form, validate it with the API's
own request schema (one set of rules for both doors), and turn errors into per-field
messages a form can show next to its inputs."""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from starlette.requests import Request

from omnify.core import browser
from omnify.core.errors import AppError

M = TypeVar("M", bound=BaseModel)
Errors = dict[str, str]


async def form_data(request: Request) -> dict[str, str]:
    form = await request.form()
    return {k: v.strip() if k not in ("password", "new_password", "current_password") else v
            for k, v in form.multi_items() if isinstance(v, str) and k != browser.CSRF_FIELD}


async def form_lists(request: Request) -> dict[str, list[str]]:
    """Repeated fields (checkboxes) as lists."""
    form = await request.form()
    out: dict[str, list[str]] = {}
    for key, value in form.multi_items():
        if isinstance(value, str) and key != browser.CSRF_FIELD:
            out.setdefault(key, []).append(value)
    return out


def validation_errors(exc: ValidationError) -> Errors:
    errors: Errors = {}
    for err in exc.errors():
        name = ".".join(str(p) for p in err.get("loc", ())) or "form"
        message = str(err.get("msg", "is invalid"))
        errors.setdefault(name.split(".")[0], message.removeprefix("Value error, "))
    return errors


def parse(model: type[M], data: dict[str, Any]) -> tuple[M | None, Errors]:
    """Validate the fields ``model`` knows (empty strings count as absent)."""
    values = {k: v for k, v in data.items() if k in model.model_fields and v != ""}
    try:
        return model.model_validate(values), {}
    except ValidationError as exc:
        return None, validation_errors(exc)


def app_error_fields(exc: AppError) -> Errors:
    """Per-field messages an :class:`AppError` carries (``errors=[{"field", "msg"}]``)."""
    errors: Errors = {}
    for item in exc.extra.get("errors") or []:
        if isinstance(item, dict) and item.get("field"):
            errors.setdefault(str(item["field"]).split(".")[0], str(item.get("msg") or "is invalid"))
    return errors
