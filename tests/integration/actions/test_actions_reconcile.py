"""Actions left ``applying``/``undoing`` by a worker that died mid-apply, settled by the
reconciliation sweep from what the Meta sandbox shows.

Each case is staged as a dead worker leaves it: the real apply (or undo) runs through the
connector against the sandbox, and the "worker" dies (a BaseException, as a SIGKILL
leaves no handler a chance) after a chosen number of platform writes; the claim is
committed, the platform holds what those writes did. The claim is then aged past the
threshold and the sweep runs on the app role (RLS on PostgreSQL).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import update

from omnify.actions import platforms, repository
from omnify.actions import service as actions
from omnify.actions.models import Action
from omnify.core.context import Actor
from omnify.core.db import Database, bind_tenant, utcnow
from omnify.credentials.service import RevealedCredential
from omnify.events import service as events
from omnify.integrations.base import AdConnector, Platform, TransientError
from omnify.orgs.models import Role
from omnify.settings import Settings
from tests.factories import Account
from tests.integration.brain_product.conftest import (
    MetaEnv,
    Team,
    budget_finding,
    connect_meta,
    new_client,
    org_url,
    pause_finding,
    rec_id_by_key,
    sandbox_ads,
    sandbox_campaigns,
    seed,
)


class WorkerKilled(BaseException):
    """The worker process dying: nothing below catches it (no except Exception runs)."""


class _Dying:
    """A real connector whose process dies after ``writes`` successful platform writes."""

    def __init__(self, inner: AdConnector, budget: list[int]) -> None:
        self._inner, self._budget = inner, budget

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    async def _write(self, name: str, *args: Any) -> Any:
        if self._budget[0] <= 0:
            raise WorkerKilled
        result = await getattr(self._inner, name)(*args)
        self._budget[0] -= 1
        if self._budget[0] <= 0:
            raise WorkerKilled
        return result

    async def set_status(self, *args: Any) -> Any:
        return await self._write("set_status", *args)

    async def set_daily_budget(self, *args: Any) -> Any:
        return await self._write("set_daily_budget", *args)


@pytest.fixture
def dying(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[int]]:
    """``dying[0] = n``: the next apply/undo's worker dies after n platform writes (0: before any)."""
    budget = [10**6]
    real = platforms.connector_factory

    def factory(settings: Settings, platform: Platform, cred: RevealedCredential) -> AdConnector:
        return _Dying(real(settings, platform, cred), budget)  # type: ignore[return-value]

    monkeypatch.setattr(platforms, "connector_factory", factory)
    yield budget


def _actor(acct: Account) -> Actor:
    return Actor(actor_type="user", actor_id=acct.user_id, label=acct.email)


async def _killed_apply(database: Database, settings: Settings, acct: Account, rec_id: str, dying: list[int],
                        writes: int) -> uuid.UUID:
    """Apply, the worker dying after ``writes`` platform writes; the action id left behind."""
    org_id = uuid.UUID(acct.org_id)
    dying[0] = writes
    async with database.sessionmaker() as session:
        await bind_tenant(session, org_id)
        with pytest.raises(WorkerKilled):
            await actions.apply(session, settings, org_id, actions.Caller(Role.OWNER, _actor(acct)),
                                uuid.UUID(rec_id))
    dying[0] = 10**6
    async with database.sessionmaker() as session:
        await bind_tenant(session, org_id)
        action = await actions.latest_for_recommendation(session, org_id, uuid.UUID(rec_id))
    assert action is not None and action.status == "applying" and action.applying_started_at is not None
    return action.id


async def _age(owner_database: Database, action_id: uuid.UUID, minutes: int = 30) -> None:
    """The claim made ``minutes`` ago, as a worker that died then left it."""
    async with owner_database.sessionmaker() as s:
        await s.execute(update(Action).where(Action.id == action_id)
                        .values(applying_started_at=utcnow() - timedelta(minutes=minutes)))
        await s.commit()


async def _action(api: httpx.AsyncClient, acct: Account, action_id: uuid.UUID) -> dict[str, Any]:
    resp = await api.get(org_url(acct, "actions", str(action_id)), headers=acct.headers)
    assert resp.status_code == 200, resp.text
    return dict(resp.json())


async def _rec_status(api: httpx.AsyncClient, acct: Account, rec_id: str) -> str:
    return str((await api.get(org_url(acct, "recommendations", rec_id), headers=acct.headers)).json()["status"])


async def _audit(api: httpx.AsyncClient, acct: Account, action_id: uuid.UUID) -> list[dict[str, Any]]:
    items = (await api.get(org_url(acct, "audit"), headers=acct.headers, params={"limit": 200})).json()["items"]
    return [e for e in items if e["target_id"] == str(action_id)]


async def _events(database: Database, acct: Account, kind: str, action_id: uuid.UUID) -> list[Any]:
    async with database.sessionmaker() as s:
        await bind_tenant(s, uuid.UUID(acct.org_id))
        emitted = await events.list_for_org(s, uuid.UUID(acct.org_id), kind)
    return [e for e in emitted if e.payload["action_id"] == str(action_id)]


async def _budget_rec(api: httpx.AsyncClient, team: Team, meta_env: MetaEnv, database: Database,
                      ) -> tuple[str, list[Any], list[int], list[int]]:
    client_id = await new_client(api, team.owner)
    await connect_meta(api, team.owner, client_id, meta_env)
    campaigns = sandbox_campaigns(meta_env)
    before = [c.daily_budget_minor for c in campaigns]
    after = [int(before[0] * 1.05), int(before[1] * 0.95)]
    finding = budget_finding([(campaigns[0], before[0], after[0]), (campaigns[1], before[1], after[1])],
                             key=f"USD|allocation:{uuid.uuid4().hex[:8]}")
    await seed(database, team.owner.org_id, client_id, [finding])
    return await rec_id_by_key(api, team.owner, client_id, finding.dedupe_key), campaigns, before, after


async def _pause_rec(api: httpx.AsyncClient, team: Team, meta_env: MetaEnv, database: Database,
                     ad_index: int) -> tuple[str, Any]:
    client_id = await new_client(api, team.owner)
    await connect_meta(api, team.owner, client_id, meta_env)
    ad = sandbox_ads(meta_env)[ad_index]
    ad.status = "active"
    finding = pause_finding(ad, key=f"USD|fatigue:{ad.id}:{uuid.uuid4().hex[:6]}")
    await seed(database, team.owner.org_id, client_id, [finding])
    return await rec_id_by_key(api, team.owner, client_id, finding.dedupe_key), ad


async def test_every_change_on_the_platform_settles_applied(
    api: httpx.AsyncClient, team: Team, meta_env: MetaEnv, database: Database, owner_database: Database,
    brain_settings: Settings, dying: list[int],
) -> None:
    rec_id, campaigns, before, after = await _budget_rec(api, team, meta_env, database)
    # The worker dies after both budgets were written, before it recorded anything.
    action_id = await _killed_apply(database, brain_settings, team.owner, rec_id, dying, writes=2)
    assert [c.daily_budget_minor for c in campaigns[:2]] == after
    await _age(owner_database, action_id)

    await actions.reconcile_interrupted(database.sessionmaker, brain_settings)

    action = await _action(api, team.owner, action_id)
    assert action["status"] == "applied" and action["applied_at"] is not None
    assert [c["before"] for c in action["changes"]] == [{"daily_budget_minor": b} for b in before]
    assert [c["after"] for c in action["changes"]] == [{"daily_budget_minor": a} for a in after]
    assert await _rec_status(api, team.owner, rec_id) == "applied"
    entries = await _audit(api, team.owner, action_id)
    applied = [e for e in entries if e["action"] == "action.applied"]
    assert len(applied) == 1 and applied[0]["changes"]["reconciled"] is True
    assert len(await _events(database, team.owner, "action.applied", action_id)) == 1
    assert [c.daily_budget_minor for c in campaigns[:2]] == after
    # Settled with its previous budgets known, it can be undone as any applied action.
    undo = await api.post(org_url(team.owner, "actions", str(action_id), "undo"), headers=team.owner.headers)
    assert undo.status_code == 200, undo.text
    assert [c.daily_budget_minor for c in campaigns[:2]] == before


async def test_no_change_on_the_platform_settles_failed_and_reopens(
    api: httpx.AsyncClient, team: Team, meta_env: MetaEnv, database: Database, owner_database: Database,
    brain_settings: Settings, dying: list[int],
) -> None:
    rec_id, ad = await _pause_rec(api, team, meta_env, database, 0)
    action_id = await _killed_apply(database, brain_settings, team.owner, rec_id, dying, writes=0)
    await _age(owner_database, action_id)
    assert await _rec_status(api, team.owner, rec_id) == "applied"

    await actions.reconcile_interrupted(database.sessionmaker, brain_settings)

    action = await _action(api, team.owner, action_id)
    assert action["status"] == "failed" and action["error"] == "interrupted; the platform shows no change"
    assert action["changes"] == [] and action["applied_at"] is None
    assert await _rec_status(api, team.owner, rec_id) == "open"
    assert [e["action"] for e in await _audit(api, team.owner, action_id)].count("action.failed") == 1
    assert meta_env.sandbox.world.find(ad.id)[2].status == "active"
    # Reopened, it can be applied again (the rules engine refused an 'applying' one for good).
    again = await api.post(org_url(team.owner, "recommendations", rec_id, "apply"), headers=team.owner.headers)
    assert again.status_code == 200, again.text
    assert meta_env.sandbox.world.find(ad.id)[2].status == "paused"
    ad.status = "active"


async def test_part_of_the_change_is_reverted_then_failed(
    api: httpx.AsyncClient, team: Team, meta_env: MetaEnv, database: Database, owner_database: Database,
    brain_settings: Settings, dying: list[int],
) -> None:
    rec_id, campaigns, before, after = await _budget_rec(api, team, meta_env, database)
    action_id = await _killed_apply(database, brain_settings, team.owner, rec_id, dying, writes=1)
    assert [c.daily_budget_minor for c in campaigns[:2]] == [after[0], before[1]]
    await _age(owner_database, action_id)

    await actions.reconcile_interrupted(database.sessionmaker, brain_settings)

    action = await _action(api, team.owner, action_id)
    assert action["status"] == "failed" and action["error"].startswith("interrupted; the platform showed 1 of 2")
    assert len(action["changes"]) == 1 and action["changes"][0]["entity_id"] == campaigns[0].id
    assert action["changes"][0]["reverted"] is True
    assert [c.daily_budget_minor for c in campaigns[:2]] == before  # the platform is back where it started
    assert await _rec_status(api, team.owner, rec_id) == "open"
    failed = [e for e in await _audit(api, team.owner, action_id) if e["action"] == "action.failed"]
    assert len(failed) == 1 and failed[0]["changes"]["partial"][0]["entity_id"] == campaigns[0].id


async def test_a_fresh_claim_is_left_alone(
    api: httpx.AsyncClient, team: Team, meta_env: MetaEnv, database: Database, owner_database: Database,
    brain_settings: Settings, dying: list[int],
) -> None:
    rec_id, ad = await _pause_rec(api, team, meta_env, database, 1)
    action_id = await _killed_apply(database, brain_settings, team.owner, rec_id, dying, writes=1)
    await _age(owner_database, action_id, minutes=2)  # younger than the 10-minute threshold

    await actions.reconcile_interrupted(database.sessionmaker, brain_settings)

    assert (await _action(api, team.owner, action_id))["status"] == "applying"
    assert await _audit(api, team.owner, action_id) == []
    assert meta_env.sandbox.world.find(ad.id)[2].status == "paused"
    await _age(owner_database, action_id)  # once past it, the next sweep settles it
    await actions.reconcile_interrupted(database.sessionmaker, brain_settings)
    assert (await _action(api, team.owner, action_id))["status"] == "applied"
    ad.status = "active"


async def test_two_sweeps_at_once_settle_once(
    api: httpx.AsyncClient, team: Team, meta_env: MetaEnv, database: Database, owner_database: Database,
    brain_settings: Settings, dying: list[int], monkeypatch: pytest.MonkeyPatch,
) -> None:
    rec_id, campaigns, before, _after = await _budget_rec(api, team, meta_env, database)
    action_id = await _killed_apply(database, brain_settings, team.owner, rec_id, dying, writes=1)
    await _age(owner_database, action_id)
    writes = len(meta_env.writes())
    # Both sweeps read the interrupted actions before either takes one over: the race.
    read = repository.interrupted
    both_read = asyncio.Barrier(2)

    async def read_then_meet(*args: Any) -> Any:
        rows = await read(*args)
        await both_read.wait()
        return rows

    monkeypatch.setattr(repository, "interrupted", read_then_meet)
    other = Database(brain_settings)
    try:
        first, second = await asyncio.gather(
            actions.reconcile_interrupted(database.sessionmaker, brain_settings),
            actions.reconcile_interrupted(other.sessionmaker, brain_settings))
    finally:
        await other.dispose()
    assert first.get("failed", 0) + second.get("failed", 0) == 1, (first, second)
    assert first.get("busy", 0) + second.get("busy", 0) >= 1, (first, second)  # the other met it taken
    assert (await _action(api, team.owner, action_id))["status"] == "failed"
    assert len(meta_env.writes()) == writes + 1  # one revert of the one changed budget, not two
    assert [c.daily_budget_minor for c in campaigns[:2]] == before
    assert [e["action"] for e in await _audit(api, team.owner, action_id)].count("action.failed") == 1


class _Slow:
    """A real connector whose apply outlives the threshold: after its last write (before the
    apply records anything) the claim is aged and the sweep runs, as a platform call that
    took longer than ``action_reconcile_after_seconds`` would meet it."""

    def __init__(self, inner: AdConnector, after_writes: int, meanwhile: Any) -> None:
        self._inner, self._left, self._meanwhile = inner, after_writes, meanwhile

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    async def set_daily_budget(self, *args: Any) -> Any:
        result = await self._inner.set_daily_budget(*args)
        self._left -= 1
        if self._left == 0:
            await self._meanwhile()
        return result


async def test_an_apply_that_outlives_the_threshold_and_meets_the_sweep_is_recorded_once(
    api: httpx.AsyncClient, team: Team, meta_env: MetaEnv, database: Database, owner_database: Database,
    brain_settings: Settings, monkeypatch: pytest.MonkeyPatch,
) -> None:
    rec_id, campaigns, _before, after = await _budget_rec(api, team, meta_env, database)
    org_id = uuid.UUID(team.owner.org_id)
    swept: list[dict[str, int]] = []

    async def sweep_meanwhile() -> None:
        async with database.sessionmaker() as s:
            await bind_tenant(s, org_id)
            in_flight = await actions.latest_for_recommendation(s, org_id, uuid.UUID(rec_id))
        assert in_flight is not None and in_flight.status == "applying"
        await _age(owner_database, in_flight.id)
        swept.append(await actions.reconcile_interrupted(database.sessionmaker, brain_settings))

    real = platforms.connector_factory
    slow: list[_Slow] = []

    def factory(settings: Settings, platform: Platform, cred: RevealedCredential) -> AdConnector:
        if slow:  # the sweep's own connector: a plain one
            return real(settings, platform, cred)
        slow.append(_Slow(real(settings, platform, cred), after_writes=2, meanwhile=sweep_meanwhile))
        return slow[0]  # type: ignore[return-value]

    monkeypatch.setattr(platforms, "connector_factory", factory)
    async with database.sessionmaker() as session:
        await bind_tenant(session, org_id)
        outcome = await actions.apply(session, brain_settings, org_id,
                                      actions.Caller(Role.OWNER, _actor(team.owner)), uuid.UUID(rec_id))
    # The sweep found both budgets on the platform and settled it applied; the apply, back from
    # its last call, found it settled and recorded nothing more.
    assert swept == [{"applied": 1}]
    assert outcome.status_code == 200 and outcome.action.status == "applied"
    entries = await _audit(api, team.owner, outcome.action.id)
    applied = [e for e in entries if e["action"] == "action.applied"]
    assert len(applied) == 1 and applied[0]["changes"]["reconciled"] is True
    assert len(await _events(database, team.owner, "action.applied", outcome.action.id)) == 1
    assert [c.daily_budget_minor for c in campaigns[:2]] == after
    assert await _rec_status(api, team.owner, rec_id) == "applied"


async def test_an_unreachable_platform_leaves_it_for_the_next_sweep(
    api: httpx.AsyncClient, team: Team, meta_env: MetaEnv, database: Database, owner_database: Database,
    brain_settings: Settings, dying: list[int], monkeypatch: pytest.MonkeyPatch,
) -> None:
    rec_id, ad = await _pause_rec(api, team, meta_env, database, 2)
    action_id = await _killed_apply(database, brain_settings, team.owner, rec_id, dying, writes=1)
    await _age(owner_database, action_id)
    working = platforms.connector_factory

    async def down(*_: Any) -> Any:
        raise TransientError("connection refused", status=503)

    def unreachable(settings: Settings, platform: Platform, cred: RevealedCredential) -> AdConnector:
        conn = working(settings, platform, cred)
        conn.read_entity = down  # type: ignore[method-assign,assignment]
        return conn

    monkeypatch.setattr(platforms, "connector_factory", unreachable)
    tally = await actions.reconcile_interrupted(database.sessionmaker, brain_settings)
    assert tally.get("unreachable", 0) >= 1
    assert (await _action(api, team.owner, action_id))["status"] == "applying"
    monkeypatch.setattr(platforms, "connector_factory", working)
    await actions.reconcile_interrupted(database.sessionmaker, brain_settings)  # handed back: not waiting again
    action = await _action(api, team.owner, action_id)
    assert action["status"] == "applied" and action["changes"][0]["before"] is None
    assert action["changes"][0]["after"] == {"status": "paused"} and action["undoable"] is False
    ad.status = "active"


async def _killed_undo(api: httpx.AsyncClient, team: Team, meta_env: MetaEnv, database: Database,
                       settings: Settings, dying: list[int], ad_index: int, writes: int) -> tuple[str, Any, uuid.UUID]:
    """An applied pause whose undo's worker dies after ``writes`` platform writes."""
    rec_id, ad = await _pause_rec(api, team, meta_env, database, ad_index)
    applied = await api.post(org_url(team.owner, "recommendations", rec_id, "apply"), headers=team.owner.headers)
    assert applied.status_code == 200, applied.text
    action_id = uuid.UUID(applied.json()["id"])
    org_id = uuid.UUID(team.owner.org_id)
    claimed_after = utcnow()
    dying[0] = writes
    async with database.sessionmaker() as session:
        await bind_tenant(session, org_id)
        with pytest.raises(WorkerKilled):
            await actions.undo(session, settings, org_id, actions.Caller(Role.OWNER, _actor(team.owner)), action_id)
    dying[0] = 10**6
    async with database.sessionmaker() as session:
        await bind_tenant(session, org_id)
        row = await actions.get(session, org_id, action_id)
    assert row.status == "undoing"
    assert row.applying_started_at is not None and row.applying_started_at >= claimed_after  # the undo's claim
    return rec_id, ad, action_id


async def test_an_interrupted_undo_settles_undone(
    api: httpx.AsyncClient, team: Team, meta_env: MetaEnv, database: Database, owner_database: Database,
    brain_settings: Settings, dying: list[int],
) -> None:
    # The undo's write lands, then the worker dies.
    rec_id, ad, action_id = await _killed_undo(api, team, meta_env, database, brain_settings, dying, 3, writes=1)
    assert meta_env.sandbox.world.find(ad.id)[2].status == "active"
    await _age(owner_database, action_id)

    await actions.reconcile_interrupted(database.sessionmaker, brain_settings)

    action = await _action(api, team.owner, action_id)
    assert action["status"] == "undone"
    assert await _rec_status(api, team.owner, rec_id) == "open"
    assert [e["action"] for e in await _audit(api, team.owner, action_id)].count("action.undone") == 1
    assert len(await _events(database, team.owner, "action.undone", action_id)) == 1


async def test_an_undo_interrupted_before_its_write_settles_applied(
    api: httpx.AsyncClient, team: Team, meta_env: MetaEnv, database: Database, owner_database: Database,
    brain_settings: Settings, dying: list[int],
) -> None:
    rec_id, ad, action_id = await _killed_undo(api, team, meta_env, database, brain_settings, dying, 4, writes=0)
    assert meta_env.sandbox.world.find(ad.id)[2].status == "paused"
    await _age(owner_database, action_id)

    await actions.reconcile_interrupted(database.sessionmaker, brain_settings)

    action = await _action(api, team.owner, action_id)
    assert action["status"] == "applied" and action["undoable"] is True and action["undone_at"] is None
    assert await _rec_status(api, team.owner, rec_id) == "applied"
    failed = [e for e in await _audit(api, team.owner, action_id) if e["action"] == "action.undo_failed"]
    assert len(failed) == 1 and failed[0]["changes"]["error"] == "interrupted; the platform shows no change"
    assert await _events(database, team.owner, "action.undone", action_id) == []
    # Applied again, it can be undone for real.
    undo = await api.post(org_url(team.owner, "actions", str(action_id), "undo"), headers=team.owner.headers)
    assert undo.status_code == 200, undo.text
    assert meta_env.sandbox.world.find(ad.id)[2].status == "active"
