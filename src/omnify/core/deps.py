"""Request-scoped dependencies that belong to no domain."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncSession

from omnify.core.context import Actor
from omnify.core.db import close_session
from omnify.settings import Settings


async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    """One session per request. Services commit; anything uncommitted is rolled back."""
    session: AsyncSession = request.app.state.db.sessionmaker()
    try:
        yield session
    finally:
        await close_session(session)


async def get_app_settings(request: Request) -> Settings:
    """``async`` on purpose: FastAPI runs a plain ``def`` dependency in a worker thread,
    a thread hop on every request for a dictionary look-up."""
    settings: Settings = request.app.state.settings
    return settings


def client_ip(request: Request) -> str:
    """One definition of the caller's address, shared with rate limiting."""
    from omnify.core.ratelimit import client_ip as limiter_ip

    return limiter_ip(request)


def request_meta(request: Request) -> Actor:
    """An anonymous actor carrying the request's origin; auth upgrades it."""
    return Actor(
        actor_type="anonymous",
        actor_id=None,
        ip=client_ip(request),
        user_agent=request.headers.get("user-agent"),
        request_id=getattr(request.state, "request_id", None),
    )


SessionDep = Annotated[AsyncSession, Depends(get_session)]
SettingsDep = Annotated[Settings, Depends(get_app_settings)]
