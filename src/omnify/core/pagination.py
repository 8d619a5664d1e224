"""Cursor pagination and ``fields=`` selection shared by every list endpoint.

Keyset pagination on ``(created_at, id)`` descending: stable under inserts, O(log n) per
page on the composite indexes every tenant table carries, and the cursor is opaque
(URL-safe base64 JSON) so clients cannot depend on its contents.
"""

from __future__ import annotations

import base64
import binascii
import json
import uuid
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Annotated, Any, Generic, TypeVar

from fastapi import Query
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from sqlalchemy import Select, and_, or_
from sqlalchemy.orm import InstrumentedAttribute

from omnify.core.errors import BadRequest
from omnify.core.openapi import raises

T = TypeVar("T")
DEFAULT_LIMIT = 50
MAX_LIMIT = 200


class Page(BaseModel, Generic[T]):
    items: list[T]
    next_cursor: str | None = Field(None, description="Pass as `cursor` to get the next page; null at the end.")


class PageParams(BaseModel):
    limit: int = DEFAULT_LIMIT
    cursor: str | None = None


@raises(400)  # the listing decodes the cursor: an invalid one is a 400
def page_params(
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT, description="Items per page.")] = DEFAULT_LIMIT,
    cursor: Annotated[str | None, Query(max_length=512, description="Opaque cursor from `next_cursor`.")] = None,
) -> PageParams:
    return PageParams(limit=limit, cursor=cursor)


def encode_cursor(created_at: datetime, row_id: uuid.UUID) -> str:
    raw = json.dumps([created_at.isoformat(), str(row_id)]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        created, row_id = json.loads(base64.urlsafe_b64decode(padded.encode()))
        return datetime.fromisoformat(created), uuid.UUID(row_id)
    except (ValueError, TypeError, binascii.Error, json.JSONDecodeError) as exc:
        raise BadRequest("The cursor is not valid; start again without one.", code="invalid-cursor") from exc


def keyset(
    stmt: Select[Any],
    created_col: InstrumentedAttribute[datetime],
    id_col: InstrumentedAttribute[uuid.UUID],
    params: PageParams,
) -> Select[Any]:
    """Order newest first and start after the cursor; fetch one extra row to know if more exist."""
    if params.cursor:
        created, row_id = decode_cursor(params.cursor)
        stmt = stmt.where(or_(created_col < created, and_(created_col == created, id_col < row_id)))
    return stmt.order_by(created_col.desc(), id_col.desc()).limit(params.limit + 1)


CursorKey = Callable[[Any], tuple[datetime, uuid.UUID]]


def _default_key(row: Any) -> tuple[datetime, uuid.UUID]:
    return row.created_at, row.id


def paginate_rows(
    rows: Sequence[T], params: PageParams, key: CursorKey = _default_key
) -> tuple[list[T], str | None]:
    """Trim the look-ahead row and build the next cursor from the last returned row."""
    items = list(rows[: params.limit])
    if len(rows) > params.limit and items:
        return items, encode_cursor(*key(items[-1]))
    return items, None


# ------------------------------------------------------------------------------- fields=
@raises(400)  # an unknown field name is a 400 (select_fields)
def fields_param(
    fields: Annotated[
        str | None,
        Query(max_length=1000, description="Comma-separated top-level fields to return, e.g. `id,name`."),
    ] = None,
) -> set[str] | None:
    if not fields:
        return None
    chosen = {f.strip() for f in fields.split(",") if f.strip()}
    return chosen or None


def select_fields(model: type[BaseModel], items: list[dict[str, Any]], fields: set[str] | None) -> list[dict[str, Any]]:
    """Keep only the requested fields (``id`` always stays); unknown names are a 400."""
    if fields is None:
        return items
    unknown = fields - set(model.model_fields)
    if unknown:
        raise BadRequest(
            f"Unknown field(s) in `fields`: {', '.join(sorted(unknown))}.",
            code="invalid-fields",
            allowed=sorted(model.model_fields),
        )
    keep = fields | {"id"}
    return [{k: v for k, v in item.items() if k in keep} for item in items]


def page_response(
    model: type[BaseModel],
    rows: Sequence[Any],
    params: PageParams,
    fields: set[str] | None,
    dump: Callable[[Any], dict[str, Any]] | None = None,
    key: CursorKey = _default_key,
) -> JSONResponse:
    """Shape one page: validate each row through ``model`` (or ``dump``), apply ``fields``.

    Returned as a ready JSONResponse: with ``fields=`` the items are partial on purpose,
    so FastAPI must not re-validate them against the full response model.
    """
    items, next_cursor = paginate_rows(rows, params, key)
    dumper = dump or (lambda r: model.model_validate(r).model_dump(mode="json"))
    body = {"items": select_fields(model, [dumper(r) for r in items], fields), "next_cursor": next_cursor}
    return JSONResponse(body)
