"""A worker SIGKILLed inside the rules beat job, after it advanced a rule's next run and
before it evaluated the slot: the slot is evaluated once, later, by the next tick.

A real Celery worker process (embedded SQLite broker) runs ``omnify.rules.run_due``; the
test-only ``rule_schedule_test_pause_seconds`` holds the job after it committed the due
slot as a ``pending`` evaluation together with the rule's advanced ``next_run_at``, and
the pool child is killed there. Before this, the slot was lost: the rule was no longer
due and nothing remembered the slot. The test then plays the beat (``run_due`` every few
seconds, and the killed message is also redelivered): the pending slot is started by one
tick, evaluated once, its actions applied once and one ``rule.fired`` emitted.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
import uuid
from collections import Counter
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select, update

from omnify.jobs.celery_app import create_celery_app
from omnify.rules.models import Rule
from tests.integration.connections.conn_support import Env
from tests.integration.jobs.jobs_testlib import WorkerProcess, pool_child, until
from tests.integration.rules.rules_support import Synced
from tests.integration.rules.test_rules_sandbox import create_rule, sandbox_status
from tests.integration.rules.test_rules_worker_crash import evaluations, fired, rule_actions
from tests.integration.sync.test_sync_worker_crash import worker_jobs_env

pytestmark = [pytest.mark.slow]

#: Seconds the beat job pauses between recording the due slots and evaluating them.
PAUSE = 4.0
#: The beat, played by the test (production: every 60 s).
TICK = 3.0


async def next_run_at(env: Env, rule_id: str) -> datetime | None:
    async with env.owner_db.sessionmaker() as session:
        return await session.scalar(select(Rule.next_run_at).where(Rule.id == uuid.UUID(rule_id)))


async def push_next_run(env: Env, rule_id: str, by: timedelta) -> None:
    nxt = await next_run_at(env, rule_id)
    assert nxt is not None
    async with env.owner_db.sessionmaker() as session:  # a Python value: SQLite has no interval arithmetic
        await session.execute(update(Rule).where(Rule.id == uuid.UUID(rule_id)).values(next_run_at=nxt + by))
        await session.commit()


async def test_scheduled_slot_evaluated_once_after_worker_sigkill_in_run_due(
        env: Env, synced: Synced, tmp_path: Path, workers: list[WorkerProcess]) -> None:
    for ad in env.boxes.meta.world.account("1000003").ads.values():
        ad.status = "active"
    org_id, client_id = synced.team.owner.org_id, synced.team.client_id
    rule = await create_rule(env, synced, {
        "conditions": {"all": [{"metric": "spend", "window": "last_7_days", "op": ">", "value": 0}]},
        "actions": [{"type": "pause"}], "max_actions_per_run": 100, "schedule": {"every": "15m"}})
    due_at = await next_run_at(env, rule["id"])
    assert due_at is not None

    jobs = worker_jobs_env(env, tmp_path, "sqlite")
    jobs.extra_env.update(OMNIFY_RULE_SCHEDULE_TEST_PAUSE_SECONDS=str(PAUSE))
    app = create_celery_app(jobs.settings(), jobs.jobs_settings())
    try:
        worker = WorkerProcess(jobs, queue=jobs.queue, log_path=tmp_path / "worker.log")
        workers.append(worker.start(timeout=60))
        app.send_task("omnify.rules.run_due", queue=jobs.queue)

        async def scheduled() -> bool:  # the slot recorded, the rule advanced, nothing evaluated yet
            runs = await evaluations(env, rule["id"])
            nxt = await next_run_at(env, rule["id"])
            return bool(runs) and nxt is not None and nxt > due_at
        await until(scheduled, timeout=60, what="the slot to be scheduled", interval=0.1)
        [pending] = await evaluations(env, rule["id"])
        assert pending.status == "pending" and pending.trigger == "schedule"
        killed_at = time.monotonic()
        os.kill(pool_child(worker), signal.SIGKILL)
        assert not await rule_actions(env, client_id)  # killed before it evaluated anything
        # The slot after the recorded one is a wall-clock 15-minute boundary: a run that crosses it (CI did at
        # 02:59:40) would rightly record that slot too. Pushing the rule's next run past the test keeps the
        # check about the one recorded slot, whatever the time of day.
        await push_next_run(env, rule["id"], timedelta(days=1))

        async def done() -> bool:
            runs = await evaluations(env, rule["id"])
            return bool(runs) and all(e.status != "pending" and e.finished_at is not None for e in runs)

        async def beat() -> None:
            while True:
                await asyncio.sleep(TICK)
                app.send_task("omnify.rules.run_due", queue=jobs.queue)
        ticking = asyncio.create_task(beat())
        try:
            await until(done, timeout=120, what="the recorded slot evaluated")
        finally:
            ticking.cancel()
        done_after = time.monotonic() - killed_at
        await asyncio.sleep(2 * TICK + PAUSE)  # later ticks evaluate nothing again
    finally:
        app.close()

    runs = await evaluations(env, rule["id"])
    assert [(e.id, e.slot, e.status, e.error) for e in runs] == [
        (pending.id, pending.slot, "succeeded", None)], runs  # the recorded row, evaluated exactly once
    acts = await rule_actions(env, client_id)
    assert runs[0].acted == len(acts) > 0
    assert all(n == 1 for n in Counter(a.recommendation_id for a in acts).values())
    assert all(a.status == "applied" for a in acts)
    [event] = await fired(env, org_id, rule["id"])  # one rule.fired: none lost, none doubled
    assert str(event.payload["evaluation_id"]) == str(pending.id)
    paused = [ad for ad in env.boxes.meta.world.account("1000003").ads.values() if ad.status == "paused"]
    assert len(paused) >= len(acts) and all(sandbox_status(env, ad.id) == "paused" for ad in paused)
    print({"pause_s": PAUSE, "tick_s": TICK, "done_after_s": round(done_after, 2), "actions": len(acts)})
