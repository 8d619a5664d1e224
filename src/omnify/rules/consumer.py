"""Outbox consumer of the rules domain: ``after_sync`` rules run when a client's sync completes.

Called by the domain-event dispatcher in its transaction; the run task is nudged after
commit and is idempotent on its slot (``sync:<event id>``), so a re-dispatched event
runs each rule once. A lost nudge is not recovered by a sweep (after-sync rules have no
periodic slot): the next sync triggers the rule again.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from omnify.notifications import dispatch
from omnify.rules import service
from omnify.settings import Settings


async def on_event(session: AsyncSession, settings: Settings, org_id: uuid.UUID, event_id: uuid.UUID,
                   event_type: str, payload: dict[str, Any], occurred_at: datetime) -> int:
    if event_type != "sync.completed":
        return 0
    calls = await service.on_sync_completed(session, org_id, event_id, payload)
    for name, kwargs in calls:
        dispatch.enqueue_after_commit(session, name, kwargs)
    return len(calls)
