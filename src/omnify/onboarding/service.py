"""Onboarding progress, computed from the real state of a client.

Steps, in the order an account manager works through them:

* ``company_info``: industry, website, primary contact name and e-mail, time zone and
  currency filled in on the profile;
* ``logo``: a logo file uploaded;
* ``brand_assets``: brand colours and tone of voice described, and a brand guide or a
  creative uploaded;
* ``connect_<platform>``: one per chosen platform, done while a usable credential
  (stored, not invalid, not expired) exists; with no platform chosen, a single
  ``connect_platform`` step asks for at least one;
* ``first_campaign_idea``: at least one idea that is not archived.

Other domains call :func:`refresh` in the transaction of every change that can move a
step. When all steps are first done together, ``completed_at`` is stamped (once: it is
a milestone, so a later regression does not "un-onboard" the client), and an audit
entry and a ``client.onboarding_completed`` event are written in that same
transaction, for the webhook and e-mail layers to pick up.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm.attributes import set_committed_value

from omnify.audit import service as audit
from omnify.campaigns import service as campaigns
from omnify.clients import service as clients
from omnify.clients.models import ClientProfile
from omnify.core.context import Actor
from omnify.core.db import utcnow
from omnify.credentials import service as credentials
from omnify.credentials.platforms import PLATFORMS, Platform
from omnify.events import service as events
from omnify.files import service as files
from omnify.files.sniffing import FileCategory
from omnify.onboarding import repository
from omnify.onboarding.models import OnboardingState

API = "/api/v1"
Method = Literal["GET", "POST", "PUT", "PATCH", "DELETE"]
Status = Literal["not_started", "in_progress", "completed"]
COMPANY_FIELDS = ("industry", "website", "contact_name", "contact_email", "timezone", "currency")


@dataclass(frozen=True, slots=True)
class Step:
    key: str
    title: str
    done: bool
    advice: str | None
    method: Method
    path: str


@dataclass(frozen=True, slots=True)
class Progress:
    client_id: uuid.UUID
    steps: list[Step]
    platforms: list[Platform]
    platforms_chosen: bool
    completed_at: datetime | None

    @property
    def done_count(self) -> int:
        return sum(1 for s in self.steps if s.done)

    @property
    def all_done(self) -> bool:
        return all(s.done for s in self.steps)

    @property
    def progress(self) -> float:
        return round(self.done_count / len(self.steps), 4) if self.steps else 1.0

    @property
    def status(self) -> Status:
        if self.completed_at is not None:
            return "completed"
        return "in_progress" if self.done_count else "not_started"

    @property
    def next_step(self) -> Step | None:
        return next((s for s in self.steps if not s.done), None)


def _missing_company_fields(client: ClientProfile) -> list[str]:
    return [name for name in COMPANY_FIELDS if not getattr(client, name)]


async def _state(
    session: AsyncSession, org_id: uuid.UUID, client_id: uuid.UUID, *, create: bool
) -> OnboardingState | None:
    state = await repository.get(session, org_id, client_id)
    if state is None and create:
        # Two requests for the same client (choosing platforms while a file upload refreshes
        # progress) both found no row: an INSERT of each broke the unique client_id and
        # answered 500 (found by schemathesis). The constraint now decides; both read the winner.
        await repository.create_once(session, org_id, client_id)
        state = await repository.get(session, org_id, client_id)
    return state


async def compute(
    session: AsyncSession, org_id: uuid.UUID, client_id: uuid.UUID, state: OnboardingState | None = None
) -> Progress:
    """The client's progress from live state; read-only."""
    client = await clients.get_client(session, org_id, client_id)
    if state is None:
        state = await _state(session, org_id, client_id, create=False)
    base = f"{API}/orgs/{org_id}/clients/{client_id}"
    counts = await files.count_live_by_category(session, org_id, client_id)
    connected = await credentials.connected_platforms(session, org_id, client_id)
    ideas = await campaigns.count_active_ideas(session, org_id, client_id)

    steps: list[Step] = []
    missing = _missing_company_fields(client)
    steps.append(Step("company_info", "Company information", not missing,
                      f"Fill in {', '.join(missing)} on the client profile." if missing else None, "PATCH", base))
    has_logo = counts.get(FileCategory.LOGO.value, 0) > 0
    steps.append(Step("logo", "Logo", has_logo, None if has_logo else "Upload the client's logo (category logo).",
                      "POST", f"{base}/files"))
    brand = client.brand or {}
    brand_gaps = []
    if not brand.get("colors"):
        brand_gaps.append("add brand colours")
    if not brand.get("tone_of_voice"):
        brand_gaps.append("describe the tone of voice")
    if not (counts.get(FileCategory.BRAND_GUIDE.value, 0) or counts.get(FileCategory.CREATIVE.value, 0)):
        brand_gaps.append("upload a brand guide or a creative")
    profile_gap = not brand.get("colors") or not brand.get("tone_of_voice")
    method: Method = "PATCH" if profile_gap else "POST"
    path = base if profile_gap else f"{base}/files"
    steps.append(Step("brand_assets", "Brand assets", not brand_gaps,
                      ("To finish the brand assets: " + "; ".join(brand_gaps) + ".") if brand_gaps else None,
                      method, path))

    chosen = state.platforms if state is not None else None
    order = list(Platform)
    platforms = [Platform(p) for p in chosen] if chosen else sorted((Platform(p) for p in connected), key=order.index)
    if platforms:
        for platform in platforms:
            ok = platform.value in connected
            label = PLATFORMS[platform].label
            steps.append(Step(f"connect_{platform.value}", f"Connect {label}", ok,
                              None if ok else f"Store a valid {label} credential for this client.",
                              "PUT", f"{base}/credentials/{platform.value}"))
    else:
        steps.append(Step("connect_platform", "Connect an ad platform", False,
                          "Choose the client's platforms (PUT onboarding) or connect at least one credential.",
                          "PUT", f"{base}/onboarding"))
    steps.append(Step("first_campaign_idea", "First campaign idea", ideas > 0,
                      None if ideas else "Draft a first campaign idea.", "POST", f"{base}/campaign-ideas"))
    return Progress(client_id=client_id, steps=steps, platforms=platforms, platforms_chosen=bool(chosen),
                    completed_at=state.completed_at if state is not None else None)


async def refresh(session: AsyncSession, org_id: uuid.UUID, client_id: uuid.UUID, actor: Actor) -> Progress:
    """Recompute in the caller's transaction and record completion the first time.

    The caller commits: the milestone, its audit entry and its event are part of the
    change that completed onboarding, or of nothing.
    """
    state = await _state(session, org_id, client_id, create=True)
    assert state is not None
    progress = await compute(session, org_id, client_id, state)
    if not progress.all_done or state.completed_at is not None:
        return progress
    now = utcnow()
    if not await repository.mark_completed(session, org_id, state.id, now):
        return progress  # a concurrent change completed it first and emitted the event
    set_committed_value(state, "completed_at", now)
    client = await clients.get_client(session, org_id, client_id)
    await audit.record(session, org_id, actor, "client.onboarding_completed", target_type="client",
                       target_id=client_id, changes={"steps": [s.key for s in progress.steps]})
    await events.emit(session, org_id, "client.onboarding_completed",
                      {"client_id": client_id, "company_name": client.company_name, "completed_at": now,
                       "platforms": [p.value for p in progress.platforms]})
    return Progress(client_id=client_id, steps=progress.steps, platforms=progress.platforms,
                    platforms_chosen=progress.platforms_chosen, completed_at=now)


async def get_progress(session: AsyncSession, org_id: uuid.UUID, client_id: uuid.UUID) -> Progress:
    return await compute(session, org_id, client_id)


async def choose_platforms(
    session: AsyncSession, org_id: uuid.UUID, actor: Actor, client_id: uuid.UUID, platforms: list[Platform]
) -> Progress:
    await clients.get_live_client(session, org_id, client_id)
    state = await _state(session, org_id, client_id, create=True)
    assert state is not None
    chosen = [p.value for p in platforms]
    if state.platforms != chosen:
        before = state.platforms
        state.platforms = chosen
        await session.flush()
        await audit.record(session, org_id, actor, "client.onboarding_platforms_set", target_type="client",
                           target_id=client_id, changes={"from": before, "to": chosen})
    progress = await refresh(session, org_id, client_id, actor)
    await session.commit()
    return progress


async def count_onboarded(session: AsyncSession, org_id: uuid.UUID) -> int:
    """Clients of the organization that completed onboarding (for the business gauge)."""
    return await repository.count_completed(session, org_id)
