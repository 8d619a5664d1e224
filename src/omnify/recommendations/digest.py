"""The brain's section of the weekly digest: what it found this week, and what is worth most."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from omnify.integrations.money import format_minor
from omnify.notifications.digest import DigestRow, DigestSection, register_section, tally
from omnify.recommendations import repository


async def section(session: AsyncSession, org_id: uuid.UUID, start: datetime, end: datetime) -> DigestSection | None:
    new = await repository.digest_new_by_module(session, org_id, start, end)
    top = await repository.digest_top_open(session, org_id)
    open_count = await repository.count_open(session, org_id)
    if not new and not open_count:
        return None
    rows = [DigestRow("New this week", tally(new)),
            DigestRow("Open, waiting for you", str(open_count))]
    rows += [DigestRow(rec.title, f"about {format_minor(rec.impact_minor or 0, rec.currency)} at stake"
                       if rec.currency else "impact not estimated") for rec in top]
    return DigestSection("Recommendations from the brain", rows, note="Apply or dismiss them in Omnify.", order=10)


register_section("recommendations", section)
