"""The actions' section of the weekly digest: what was changed at the platforms, and to what effect."""

from __future__ import annotations

import uuid
from collections import Counter, defaultdict
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from omnify.actions import repository
from omnify.actions.models import ActionStatus
from omnify.integrations.money import format_minor
from omnify.notifications.digest import DigestRow, DigestSection, register_section, tally


async def section(session: AsyncSession, org_id: uuid.UUID, start: datetime, end: datetime) -> DigestSection | None:
    rows = await repository.digest_by_status(session, org_id, start, end)
    if not rows:
        return None
    by_status: Counter[str] = Counter()
    applied_kinds: Counter[str] = Counter()
    per_day: defaultdict[str, int] = defaultdict(int)
    for status, kind, currency, count, money in rows:
        by_status[status] += count
        if status in (ActionStatus.APPLIED, ActionStatus.UNDONE):
            applied_kinds[kind] += count
            if currency and status == ActionStatus.APPLIED:
                per_day[currency] += money
    out = [DigestRow("Applied", tally(applied_kinds))]
    out += [DigestRow(f"Budget moved per day ({cur})", format_minor(amount, cur))
            for cur, amount in sorted(per_day.items())]
    for status, label in ((ActionStatus.UNDONE, "Undone"), (ActionStatus.PENDING_APPROVAL, "Waiting for approval"),
                          (ActionStatus.FAILED, "Failed at the platform")):
        if by_status[status]:
            out.append(DigestRow(label, str(by_status[status])))
    return DigestSection("Actions", out, order=30)


register_section("actions", section)
