"""Dead-letter store, idempotency claims and the admin API on the real database.

Runs on the suite's database (SQLite, or PostgreSQL when OMNIFY_DATABASE_URL says so,
connected as the RLS-bound app role); the job tables are created here until the lead's
migration lands (create_all skips them once it has). Replays publish to a real embedded
broker (SQLite file) and are checked by reading that queue.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from celery import Celery
from fastapi import FastAPI
from sqlalchemy import Engine, create_engine, select, update
from sqlalchemy.orm import Session, sessionmaker

from omnify.auth.models import User
from omnify.core import migrate
from omnify.core.db import Base, Database, utcnow
from omnify.core.errors import Conflict, install_error_handlers
from omnify.core.pagination import PageParams, paginate_rows
from omnify.core.ratelimit import RateLimiter
from omnify.core.rls import grant_app_role
from omnify.jobs import service
from omnify.jobs.celery_app import create_celery_app
from omnify.jobs.config import JobsSettings
from omnify.jobs.db import create_sync_engine
from omnify.jobs.idempotency import MissingIdempotencyKey, RunIdentity, aonce, claim, current_run, once
from omnify.jobs.models import FailureStatus, JobFailure, JobRun
from omnify.jobs.repository import FailureFilter
from omnify.jobs.router import build_router
from omnify.settings import Settings
from tests.factories import Account, register


# ----------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def jobs_engine(settings: Settings) -> Iterator[Engine]:
    owner = create_engine(migrate.sync_url(settings.resolved_migration_database_url))
    Base.metadata.create_all(owner, tables=[JobFailure.__table__, JobRun.__table__])
    with owner.begin() as conn:
        grant_app_role(conn, settings.db_app_role)
    owner.dispose()
    engine = create_sync_engine(settings)  # as the worker connects: the app role
    yield engine
    engine.dispose()


@pytest.fixture
def session_factory(jobs_engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(jobs_engine, expire_on_commit=False)


@pytest.fixture(scope="module")
def broker_app(tmp_path_factory: pytest.TempPathFactory, settings: Settings) -> Iterator[Celery]:
    """A Celery app publishing to its own embedded broker file."""
    data = tmp_path_factory.mktemp("jobs-broker")
    app = create_celery_app(
        settings.model_copy(update={"data_dir": data, "broker_url": None}),
        JobsSettings(default_queue="jobs-store-test"),
    )
    yield app
    app.close()


def queue_size(app: Celery, queue: str = "jobs-store-test") -> int:
    with app.connection_for_write() as conn:
        channel: Any = conn.channel()
        return int(channel.queue_declare(queue=queue, passive=True).message_count)


def record(session_factory: sessionmaker[Session], **overrides: Any) -> JobFailure:
    org_id = str(uuid.uuid4())
    values: dict[str, Any] = dict(
        task_name=f"tests.jobs.{uuid.uuid4().hex[:8]}",
        task_id=str(uuid.uuid4()),
        args=[1, "two"],
        kwargs={"org_id": org_id},
        org_id=org_id,
        error_type="ValueError",
        error="boom",
        traceback="Traceback (most recent call last):\nValueError: boom",
        attempts=1,
        trace_id=uuid.uuid4().hex,
        queue="jobs-store-test",
    )
    values.update(overrides)
    with session_factory.begin() as session:
        return service.record_failure(session, service.FailureRecord(**values))


# ---------------------------------------------------------------------------- idempotency
def test_claim_is_exclusive_and_rolls_back_with_the_transaction(session_factory: sessionmaker[Session]) -> None:
    key = f"k:{uuid.uuid4()}"
    with session_factory() as s:
        with s.begin():
            assert claim(s, key) is True
            s.rollback()  # the effect failed: the claim must go with it
    with session_factory.begin() as s, once(s, key) as first:
        assert first is True
    with session_factory.begin() as s, once(s, key) as first:
        assert first is False
    with session_factory() as s:
        assert s.scalar(select(JobRun.key).where(JobRun.key == key)) == key


def test_concurrent_duplicate_waits_for_the_first_then_skips(session_factory: sessionmaker[Session]) -> None:
    """Two deliveries at once: the second must not do the effect, whether the first
    commits before or after it tries."""
    key = f"k:{uuid.uuid4()}"
    results: list[bool] = []
    first_claimed = threading.Event()

    def second() -> None:
        first_claimed.wait(5)
        with session_factory.begin() as s:
            results.append(claim(s, key))

    holder = session_factory()
    holder.begin()
    try:
        assert claim(holder, key) is True
        thread = threading.Thread(target=second)
        thread.start()
        first_claimed.set()
        time.sleep(0.3)  # the second is now blocked on the key (PostgreSQL) or the write lock (SQLite)
        assert results == []
        holder.commit()
    finally:
        holder.close()
    thread.join(10)
    assert results == [False]


def test_once_takes_the_key_of_the_running_task(session_factory: sessionmaker[Session]) -> None:
    with session_factory.begin() as s, pytest.raises(MissingIdempotencyKey):
        claim(s)
    key = f"task-key:{uuid.uuid4()}"
    token = current_run.set(RunIdentity(key, "tests.task", "task-1"))
    try:
        with session_factory.begin() as s, once(s) as first:
            assert first
    finally:
        current_run.reset(token)
    with session_factory() as s:
        row = s.scalars(select(JobRun).where(JobRun.key == key)).one()
        assert (row.task_name, row.task_id) == ("tests.task", "task-1")
    with session_factory.begin() as s, pytest.raises(ValueError):
        claim(s, "x" * 256)


async def test_async_once_shares_the_claims(database: Database, session_factory: sessionmaker[Session]) -> None:
    key = f"async:{uuid.uuid4()}"
    async with database.sessionmaker() as session:
        async with aonce(session, key) as first:
            assert first
        await session.commit()
    async with database.sessionmaker() as session, aonce(session, key) as first:
        assert not first
    with session_factory.begin() as s:
        assert not claim(s, key)


# ---------------------------------------------------------------------------- dead letters
def test_recording_the_same_run_twice_updates_one_row(session_factory: sessionmaker[Session]) -> None:
    first = record(session_factory, attempts=2)
    again = record(session_factory, task_id=first.task_id, task_name=first.task_name, attempts=3, error="later")
    assert again.id == first.id
    with session_factory() as s:
        rows = s.scalars(select(JobFailure).where(JobFailure.task_id == first.task_id)).all()
    assert len(rows) == 1
    assert rows[0].attempts == 3 and rows[0].error == "later"
    assert rows[0].last_failed_at >= rows[0].first_failed_at


def test_record_failure_safely_survives_an_unreachable_database(tmp_path: Path) -> None:
    broken = Settings(data_dir=tmp_path, database_url="postgresql+asyncpg://nobody@127.0.0.1:1/none")
    rec = service.FailureRecord("t", str(uuid.uuid4()), [], {}, "ValueError", "boom", None, 1)
    assert service.record_failure_safely(rec, broken) is None  # logged for the operator, not raised


def test_record_failure_safely_returns_the_row_id(settings: Settings, jobs_engine: Engine) -> None:
    rec = service.FailureRecord("t", str(uuid.uuid4()), ["a"], {}, "ValueError", "boom", None, 4)
    failure_id = service.record_failure_safely(rec, settings)
    assert failure_id is not None
    with Session(jobs_engine) as s:
        row = s.get(JobFailure, failure_id)
        assert row is not None and row.attempts == 4 and row.task_args == ["a"]


def test_list_filters_and_pages(session_factory: sessionmaker[Session]) -> None:
    task = f"tests.jobs.page.{uuid.uuid4().hex[:8]}"
    made = [record(session_factory, task_name=task) for _ in range(5)]
    seen: list[uuid.UUID] = []
    params = PageParams(limit=2)
    while True:
        with session_factory() as s:
            rows = service.list_failures(s, FailureFilter(task_name=task), params)
        items, cursor = paginate_rows(rows, params)
        seen.extend(f.id for f in items)
        if not cursor:
            break
        params = PageParams(limit=2, cursor=cursor)
    assert seen == [f.id for f in sorted(made, key=lambda f: (f.created_at, f.id), reverse=True)]
    org = made[0].org_id
    with session_factory() as s:
        only = service.list_failures(s, FailureFilter(org_id=org), PageParams(limit=10))
    assert [f.id for f in only] == [made[0].id]


def test_replay_publishes_original_arguments_once(session_factory: sessionmaker[Session], broker_app: Celery) -> None:
    failure = record(session_factory)
    before = queue_size(broker_app)
    with session_factory.begin() as s:
        plan = service.replay(s, failure.id, broker_app)
    assert (plan.args, plan.kwargs) == ([1, "two"], failure.task_kwargs)
    assert plan.headers["omnify_replay_of"] == str(failure.id)
    assert plan.headers["omnify_trace_id"] == failure.trace_id
    assert queue_size(broker_app) == before + 1
    with session_factory.begin() as s, pytest.raises(Conflict):
        service.replay(s, failure.id, broker_app)
    assert queue_size(broker_app) == before + 1
    with session_factory() as s:
        after = s.get(JobFailure, failure.id)
        assert after is not None and after.status == "replayed" and after.replay_task_id == plan.task_id


def test_purge_keeps_dead_letters_unless_asked(session_factory: sessionmaker[Session]) -> None:
    dead, resolved = record(session_factory), record(session_factory)
    with session_factory.begin() as s:
        service.resolve(s, resolved.id)
        old = utcnow() - timedelta(days=40)
        s.execute(update(JobFailure).where(JobFailure.id.in_([dead.id, resolved.id])).values(created_at=old))
        run_key = f"old:{uuid.uuid4()}"
        claim(s, run_key)
        s.execute(update(JobRun).where(JobRun.key == run_key).values(created_at=old))
    with session_factory.begin() as s:
        result = service.purge(s, failures_older_than_days=30, job_runs_older_than_days=30)
    assert result.failures >= 1 and result.job_runs >= 1
    with session_factory() as s:
        assert s.get(JobFailure, resolved.id) is None
        assert s.get(JobFailure, dead.id) is not None
        assert s.scalar(select(JobRun).where(JobRun.key == run_key)) is None
    with session_factory.begin() as s:
        service.purge(s, failures_older_than_days=30, include_dead=True)
    with session_factory() as s:
        assert s.get(JobFailure, dead.id) is None


# ------------------------------------------------------------------------------ admin API
@pytest.fixture(scope="module")
async def api(
    settings: Settings, database: Database, broker_app: Celery, jobs_engine: Engine, tmp_path_factory: Any
) -> AsyncIterator[httpx.AsyncClient]:
    """The jobs router in an app of its own (auth is the real platform-admin guard)."""
    down = create_celery_app(
        settings.model_copy(update={"data_dir": tmp_path_factory.mktemp("down"),
                                    "broker_url": "amqp://guest:guest@127.0.0.1:1//"}),
        JobsSettings(default_queue="jobs-store-test"),
    )
    # Give up on the dead broker after one quick retry (kombu's default spends ~6 s).
    down.conf.broker_transport_options = {"max_retries": 1, "interval_start": 0, "interval_step": 0.1}
    app = FastAPI()
    app.state.settings, app.state.db, app.state.rate_limiter = settings, database, RateLimiter(settings)
    install_error_handlers(app)
    app.include_router(build_router(sender=lambda: broker_app), prefix="/api/v1")
    app.include_router(build_router(sender=lambda: down), prefix="/broken/api/v1")
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://jobs") as c:
        yield c
    await app.state.rate_limiter.close()
    down.close()


async def make_admin(database: Database, account: Account) -> None:
    async with database.sessionmaker() as session:  # the owner: not bound by RLS
        await session.execute(
            update(User).where(User.id == uuid.UUID(account.user_id)).values(is_platform_admin=True)
        )
        await session.commit()


@pytest.fixture(scope="module")
async def admin(client: httpx.AsyncClient, owner_database: Database) -> Account:
    account = await register(client)
    await make_admin(owner_database, account)
    return account


def problem(resp: httpx.Response, status: int) -> dict[str, Any]:
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = resp.json()
    assert body["status"] == status
    return body


async def test_api_requires_a_platform_admin(api: httpx.AsyncClient, client: httpx.AsyncClient) -> None:
    problem(await api.get("/api/v1/admin/jobs/failures"), 401)
    member = await register(client)
    body = problem(await api.get("/api/v1/admin/jobs/failures", headers=member.headers), 403)
    assert body["detail"] == "Platform administrators only."
    problem(await api.post(f"/api/v1/admin/jobs/failures/{uuid.uuid4()}/replay", headers=member.headers), 403)


async def test_api_lists_pages_and_selects_fields(
    api: httpx.AsyncClient, admin: Account, session_factory: sessionmaker[Session]
) -> None:
    task = f"tests.jobs.api.{uuid.uuid4().hex[:8]}"
    made = [record(session_factory, task_name=task) for _ in range(3)]
    url = "/api/v1/admin/jobs/failures"
    first = await api.get(url, params={"task_name": task, "limit": 2}, headers=admin.headers)
    assert first.status_code == 200, first.text
    page = first.json()
    assert len(page["items"]) == 2 and page["next_cursor"]
    item = page["items"][0]
    assert item["task_name"] == task and item["task_args"] == [1, "two"] and item["status"] == "dead"
    second = await api.get(
        url, params={"task_name": task, "limit": 2, "cursor": page["next_cursor"]}, headers=admin.headers
    )
    ids = [i["id"] for i in page["items"]] + [i["id"] for i in second.json()["items"]]
    assert sorted(ids) == sorted(str(f.id) for f in made) and second.json()["next_cursor"] is None
    slim = await api.get(url, params={"task_name": task, "fields": "id,error"}, headers=admin.headers)
    assert set(slim.json()["items"][0]) == {"id", "error"}
    one = await api.get(f"{url}/{made[0].id}", headers=admin.headers)
    assert one.status_code == 200 and "ValueError" in one.json()["traceback"]


async def test_api_rejects_bad_input_with_problem_details(api: httpx.AsyncClient, admin: Account) -> None:
    url = "/api/v1/admin/jobs/failures"
    problem(await api.get(url, params={"status": "exploded"}, headers=admin.headers), 422)
    problem(await api.get(url, params={"limit": 0}, headers=admin.headers), 422)
    problem(await api.get(url, params={"cursor": "not-a-cursor"}, headers=admin.headers), 400)
    problem(await api.get(url, params={"fields": "nope"}, headers=admin.headers), 400)
    problem(await api.get(f"{url}/not-a-uuid", headers=admin.headers), 422)
    problem(await api.get(f"{url}/{uuid.uuid4()}", headers=admin.headers), 404)
    problem(await api.post(f"{url}/{uuid.uuid4()}/replay", headers=admin.headers), 404)


async def test_api_replay_and_resolve(
    api: httpx.AsyncClient, admin: Account, session_factory: sessionmaker[Session], broker_app: Celery
) -> None:
    url = "/api/v1/admin/jobs/failures"
    failure = record(session_factory)
    before = queue_size(broker_app)
    resp = await api.post(f"{url}/{failure.id}/replay", headers=admin.headers)
    assert resp.status_code == 202, resp.text
    assert resp.json()["status"] == "replayed" and resp.json()["task_name"] == failure.task_name
    assert queue_size(broker_app) == before + 1
    body = problem(await api.post(f"{url}/{failure.id}/replay", headers=admin.headers), 409)
    assert body["type"].endswith("job-failure-not-dead")

    other = record(session_factory)
    resolved = await api.post(f"{url}/{other.id}/resolve", headers=admin.headers)
    assert resolved.status_code == 200 and resolved.json()["status"] == "resolved"
    problem(await api.post(f"{url}/{other.id}/resolve", headers=admin.headers), 409)


async def test_api_replay_with_the_broker_down_changes_nothing(
    api: httpx.AsyncClient, admin: Account, session_factory: sessionmaker[Session]
) -> None:
    failure = record(session_factory)
    body = problem(await api.post(f"/broken/api/v1/admin/jobs/failures/{failure.id}/replay",
                                  headers=admin.headers), 503)
    assert body["type"].endswith("broker-unavailable")
    with session_factory() as s:
        after = s.get(JobFailure, failure.id)
        assert after is not None and after.status == FailureStatus.DEAD.value and after.replay_count == 0
