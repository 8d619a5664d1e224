"""Cursor paging for list pages: a page link whose cursor no longer decodes (forged, or
from an older release) shows the newest page with a note, never an error page."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

from fastapi import Request

from omnify.core.errors import AppError
from omnify.core.pagination import PageParams, paginate_rows

T = TypeVar("T")


async def page_or_newest(request: Request, limit: int, fetch: Callable[[PageParams], Awaitable[Sequence[T]]],
                         notes: list[str], noun: str) -> tuple[list[T], str | None, PageParams]:
    """One page of ``fetch`` at the request's ``cursor``: (items, next cursor, the params used)."""
    params = PageParams(limit=limit, cursor=request.query_params.get("cursor") or None)
    try:
        rows = await fetch(params)
    except AppError:  # a forged or stale cursor: start again from the newest
        params = PageParams(limit=limit)
        notes.append(f"That page link is no longer valid: showing the newest {noun}.")
        rows = await fetch(params)
    items, next_cursor = paginate_rows(rows, params)
    return items, next_cursor, params
