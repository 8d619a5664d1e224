"""Celery tasks of the auth domain (thin: the rules are in service.py)."""

from __future__ import annotations

from dataclasses import asdict

from omnify.auth import service
from omnify.core.db import Database
from omnify.jobs.celery_app import celery_app
from omnify.notifications import runtime
from omnify.settings import Settings


@celery_app.task(name="omnify.auth.purge_expired")
def purge_expired() -> dict[str, int]:
    """Nightly: expired tokens, sessions, throttles, invitations and e-mailed links."""

    async def work(db: Database, settings: Settings) -> dict[str, int]:
        return asdict(await service.purge_expired(db, settings))

    return runtime.run(work)
