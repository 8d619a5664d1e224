"""The synced data's section of the weekly digest: spend and return per platform, sync health."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from omnify.integrations.money import format_minor
from omnify.notifications.digest import DigestRow, DigestSection, register_section
from omnify.sync import repository


async def section(session: AsyncSession, org_id: uuid.UUID, start: datetime, end: datetime) -> DigestSection | None:
    spend = await repository.digest_spend(session, org_id, start.date(), end.date())
    runs = await repository.digest_runs(session, org_id, start, end)
    if not spend and not runs:
        return None
    rows = []
    for platform, currency, spend_minor, revenue_minor, conversions in spend:
        roas = f", ROAS {revenue_minor / spend_minor:.2f}" if spend_minor else ""
        rows.append(DigestRow(f"{platform.replace('_', ' ').title()} ({currency})",
                              f"spend {format_minor(spend_minor, currency)}, revenue "
                              f"{format_minor(revenue_minor, currency)}{roas}, {conversions:,.0f} conversions"))
    failed = runs.get("failed", 0)
    rows.append(DigestRow("Syncs", f"{runs.get('succeeded', 0)} succeeded, {failed} failed"))
    note = "Some syncs failed: check the connections page." if failed else None
    return DigestSection("Spend and data", rows, note=note, order=20)


register_section("sync", section)
