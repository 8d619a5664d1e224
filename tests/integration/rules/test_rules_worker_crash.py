"""A worker's pool child SIGKILLed mid rule evaluation, after it paused ads at the platform:
the slot is evaluated again once, with no action applied twice and one ``rule.fired``.

A real Celery worker process (embedded SQLite broker) runs ``omnify.rules.run_rule`` for a
synced client; the test-only ``rule_evaluation_test_pause_seconds`` holds the evaluation
after its actions are applied (committed, the sandbox ads paused) and before it records
its result, and the pool child is killed there. The worker requeues the message (Celery's
``worker_lost_wait``, 10 s); the redelivered task meets the dead evaluation within its
lease (``rule_evaluation_lease_seconds``, short here), tries again once it lapsed, closes
it as abandoned and evaluates the slot again: the actions the dead evaluation applied are
found through their recommendations (keyed on the slot), not applied again.
"""

from __future__ import annotations

import os
import signal
import time
import uuid
from collections import Counter
from pathlib import Path

import pytest
from sqlalchemy import select

from omnify.actions.models import Action
from omnify.events.models import DomainEvent
from omnify.jobs.celery_app import create_celery_app
from omnify.rules.models import RuleEvaluation
from omnify.rules.service import ABANDONED_ERROR, FIRED_EVENT, RUN_TASK
from omnify.sync.tasks import LOCKED_SLACK_SECONDS
from tests.integration.connections.conn_support import Env
from tests.integration.jobs.jobs_testlib import WorkerProcess
from tests.integration.rules.rules_support import Synced
from tests.integration.rules.test_rules_sandbox import create_rule, sandbox_status
from tests.integration.sync.test_sync_worker_crash import pool_child, until, worker_jobs_env

pytestmark = [pytest.mark.slow]

#: The evaluation's lease in the worker (no heartbeat: counted from its start).
LEASE = 20.0
#: Seconds each evaluation pauses after acting.
PAUSE = 5.0
#: Celery's ``worker_lost_wait``.
WORKER_LOST_WAIT = 10.0
#: From the kill, the redo starts within the lease + 10 % jitter + the retry's slack, or at
#: the redelivery if later (docs/operations.md, "Rule evaluations whose worker died").
BOUND = max(WORKER_LOST_WAIT, LEASE * 1.1 + LOCKED_SLACK_SECONDS)
MARGIN = 10.0 + PAUSE


async def evaluations(env: Env, rule_id: str) -> list[RuleEvaluation]:
    async with env.owner_db.sessionmaker() as session:
        stmt = select(RuleEvaluation).where(RuleEvaluation.rule_id == uuid.UUID(rule_id)) \
            .order_by(RuleEvaluation.started_at, RuleEvaluation.finished_at)
        return list((await session.scalars(stmt)).all())


async def rule_actions(env: Env, client_id: str) -> list[Action]:
    async with env.owner_db.sessionmaker() as session:
        stmt = select(Action).where(Action.client_id == uuid.UUID(client_id), Action.module == "rules")
        return list((await session.scalars(stmt)).all())


async def fired(env: Env, org_id: str, rule_id: str) -> list[DomainEvent]:
    async with env.owner_db.sessionmaker() as session:
        stmt = select(DomainEvent).where(DomainEvent.org_id == uuid.UUID(org_id), DomainEvent.type == FIRED_EVENT)
        return [e for e in (await session.scalars(stmt)).all() if str(e.payload.get("rule_id")) == rule_id]


async def test_rule_slot_evaluated_again_once_after_worker_sigkill(env: Env, synced: Synced, tmp_path: Path,
                                                                   workers: list[WorkerProcess]) -> None:
    for ad in env.boxes.meta.world.account("1000003").ads.values():
        ad.status = "active"
    org_id, client_id = synced.team.owner.org_id, synced.team.client_id
    rule = await create_rule(env, synced, {
        "conditions": {"all": [{"metric": "spend", "window": "last_7_days", "op": ">", "value": 0}]},
        "actions": [{"type": "pause"}], "max_actions_per_run": 100})
    slot = f"sync:{uuid.uuid4()}"

    jobs = worker_jobs_env(env, tmp_path, "sqlite")
    jobs.extra_env.update(OMNIFY_RULE_EVALUATION_LEASE_SECONDS=str(LEASE),
                          OMNIFY_RULE_EVALUATION_TEST_PAUSE_SECONDS=str(PAUSE))
    app = create_celery_app(jobs.settings(), jobs.jobs_settings())
    try:
        worker = WorkerProcess(jobs, queue=jobs.queue, log_path=tmp_path / "worker.log")
        workers.append(worker.start(timeout=60))
        app.send_task(RUN_TASK, queue=jobs.queue,
                      kwargs={"org_id": org_id, "rule_id": rule["id"], "slot": slot, "client_id": client_id})

        seen: list[int] = []

        async def acted() -> bool:  # every action applied, none added for a while: in the pause
            runs = await evaluations(env, rule["id"])
            acts = await rule_actions(env, client_id)
            seen.append(len(acts) if acts and all(a.status == "applied" for a in acts) else 0)
            return bool(runs) and runs[0].status == "running" and seen[-1] > 0 and seen[-5:] == [seen[-1]] * 5
        await until(acted, timeout=60, what="the evaluation to act", interval=0.1)
        applied_by_dead = {a.id for a in await rule_actions(env, client_id)}
        killed_at = time.monotonic()
        os.kill(pool_child(worker), signal.SIGKILL)

        async def done() -> RuleEvaluation | None:
            return next((e for e in await evaluations(env, rule["id"])
                         if e.slot == slot and e.status != "running" and e.finished_at is not None), None)
        redo = await until(done, timeout=BOUND + MARGIN + 10, what="the slot evaluated again")
        done_after = time.monotonic() - killed_at
    finally:
        app.close()

    runs = await evaluations(env, rule["id"])
    assert [(e.status, e.error) for e in runs] == [("failed", ABANDONED_ERROR), ("succeeded", None)], runs
    assert runs[1].id == redo.id and runs[0].slot.startswith(slot) and runs[0].slot != slot
    acts = await rule_actions(env, client_id)
    assert {a.id for a in acts} == applied_by_dead  # the redo applied nothing again
    assert all(n == 1 for n in Counter(a.recommendation_id for a in acts).values())
    assert redo.acted == len(acts) > 0
    assert {uuid.UUID(e["action_id"]) for e in redo.entities if e.get("action_id")} == applied_by_dead
    for a in acts:
        assert a.status == "applied"
    [event] = await fired(env, org_id, rule["id"])  # one rule.fired: none lost, none doubled
    assert str(event.payload["evaluation_id"]) == str(redo.id)
    paused = [ad for ad in env.boxes.meta.world.account("1000003").ads.values() if ad.status == "paused"]
    assert len(paused) >= len(acts)
    assert all(sandbox_status(env, ad.id) == "paused" for ad in paused)
    print({"lease_s": LEASE, "bound_s": BOUND, "done_after_s": round(done_after, 2), "actions": len(acts)})
